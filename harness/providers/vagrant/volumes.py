"""Which libvirt volumes are this lab's. A volume has no mark of its own: it is the lab's when
one of the lab's (marked) domains uses it, or the lab recorded it in VOLUME_RECORD: the paths its
domains used (recorded during `up` and before a teardown, so a volume a half-done teardown left is
still known), and the planned names that were free when `up` started (vagrant-libvirt makes a disk
before the domain that would show it; the lab lock keeps any other storlab from making that name
meanwhile)."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from typing import Any

from harness.providers.vagrant import box
from harness.providers.vagrant.domains import LabLibvirt

#: in the lab directory: the libvirt volumes the lab made (see LabVolumes.record)
VOLUME_RECORD = "libvirt-volumes.json"


class LabVolumes:
    def __init__(self, virt: LabLibvirt) -> None:
        self.virt = virt
        self.plan = virt.plan
        self.labdir = virt.labdir

    def conflicts(self) -> list[str]:
        """Volumes with this lab's names that are not this lab's."""
        out = []
        record, used = self.record(), self.used()
        planned = self.planned()
        for vol in self.pool_volumes():
            if planned.fullmatch(vol.name()) and not self.owned(vol, record, used):
                out.append(f"volume {box.STORAGE_POOL}/{vol.name()} (no domain of this lab uses it, and the lab "
                           "did not make it)")
        return out

    def planned(self) -> re.Pattern[str]:
        """The volumes vagrant-libvirt makes for this lab: each domain's root image and each data disk."""
        names = [re.escape(n.object) + r"(_\d+)?\.img" for n in self.plan.nodes]
        names += [re.escape(d.image) + r"\.qcow2" for n in self.plan.nodes for d in n.disks]
        return re.compile("|".join(names) or "(?!)")

    def names(self) -> list[str]:
        """The exact names of the volumes vagrant-libvirt makes first for this lab (root images, data disks)."""
        return [f"{n.object}.img" for n in self.plan.nodes] + [f"{d.image}.qcow2" for n in self.plan.nodes for d in n.disks]

    def record(self) -> dict[str, list[str]]:
        try:
            data = json.loads((self.labdir / VOLUME_RECORD).read_text())
        except (OSError, ValueError):
            return {"paths": [], "claimed": []}
        return {k: [str(x) for x in data.get(k, [])] for k in ("paths", "claimed")}

    def write_record(self, record: dict[str, list[str]]) -> None:
        self.labdir.mkdir(parents=True, exist_ok=True)
        tmp = self.labdir / f".{VOLUME_RECORD}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({k: sorted(set(v)) for k, v in record.items()}, indent=2) + "\n")
        tmp.replace(self.labdir / VOLUME_RECORD)

    def used(self) -> set[str]:
        """Paths of the disks this lab's (marked) domains use now."""
        return {src.get("file", "") for dom in self.virt.domains()
                for src in ET.fromstring(dom.XMLDesc(0)).iterfind("./devices/disk/source")} - {""}

    def record_used(self) -> None:
        """Add the disks this lab's domains use now to the lab's record."""
        record = self.record()
        used = self.used() - set(record["paths"])
        if used:
            record["paths"] += sorted(used)
            self.write_record(record)

    def pool_volumes(self) -> list[Any]:
        import libvirt
        try:
            pool = self.virt.conn().storagePoolLookupByName(box.STORAGE_POOL)
        except libvirt.libvirtError:
            return []
        if not pool.isActive():
            return []
        pool.refresh(0)
        return list(pool.listAllVolumes(0))

    def claim(self) -> None:
        """Before `vagrant up`: record the lab's planned volume names that no volume has yet."""
        have = {v.name() for v in self.pool_volumes()}
        record = self.record()
        free = [n for n in self.names() if n not in have and n not in record["claimed"]]
        if free:
            record["claimed"] += free
            self.write_record(record)

    def owned(self, vol: Any, record: dict[str, list[str]], used: set[str]) -> bool:
        if not self.planned().fullmatch(vol.name()):
            return False
        return vol.path() in used or vol.path() in record["paths"] or vol.name() in record["claimed"]

    def all(self) -> list[Any]:
        """This lab's volumes: a planned name, and used by one of its domains or in its record."""
        record, used = self.record(), self.used()
        return [v for v in self.pool_volumes() if self.owned(v, record, used)]


    def forget(self) -> None:
        """Drop the record (once no volume of the lab is left)."""
        (self.labdir / VOLUME_RECORD).unlink(missing_ok=True)
