"""Host pools on the target wired on a hypervisor node that logs in to it as an iscsi-initiator
(with the node's own IQN and CHAP, i.e. its ACL): `logical` (a volume group) and `disk` (a GPT)
each on one LUN's multipath map, which is named after the pool; `scsi` on the SCSI host of the
node's session over the first portal (its volumes are the LUNs); `mpath` over every multipath
map of the node. Pure parsers of `dmsetup info` and `iscsiadm -m session -P 3` output.

Why a LUN pool's map is named after the pool: libvirt names a disk pool's volumes after the
partitions parted makes on the pool's device (MAP1, MAP2, ...), so the map's name must be known
when the topology is written, and a user-friendly name (mpatha, mpathb) is handed out in the
order the node sees the LUNs. The name is an alias bound to the LUN's WWID in
/etc/multipath/conf.d/, with skip_kpartx: parted alone makes the partition maps (kpartx would
rename them MAP-part1, where libvirt does not look)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.backends.base import BLOCK_DEVICE_RE, LabContext, NodeView
from harness.backends.iscsi import initiator
from harness.backends.iscsi.plan import IscsiHostPool, IscsiPlan, of
from harness.errors import HarnessError
from harness.plan.model import need
from harness.run import wait_until
from harness.spec.topology import Pool

#: pools that take one LUN whole, and pools over every LUN of the node's sessions
LUN_POOLS = ("logical", "disk")
SESSION_POOLS = ("scsi", "mpath")
NODE_POOLS = LUN_POOLS + SESSION_POOLS

#: a LUN's WWID as multipath reads it (LIO: 36001405 and 25 hex digits); read from a node
WWID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
#: where a LUN pool's alias is written on the node (multipath reads every *.conf there)
CONF_DIR = "/etc/multipath/conf.d"


# -- names -------------------------------------------------------------------------------------
def map_name(pool: str) -> str:
    """The multipath map of a LUN pool: named after the pool."""
    return pool


def partition_name(device: str, number: int) -> str:
    """What parted calls partition ``number`` of device-mapper device ``device`` (and libvirt's
    disk pool, with part_separator='no', its volume): a 'p' only after a final digit."""
    return f"{device}{'p' if device[-1:].isdigit() else ''}{number}"


def extras(section: IscsiPlan, pool: Pool) -> dict[str, Any]:
    """What the plan resolves for a pool wired on a node: the portal its scsi adapter is found
    by, the target, and a LUN pool's LUN and map."""
    out: dict[str, Any] = {"server": section.portal_addresses[0], "target_iqn": section.iqn}
    if pool.type in LUN_POOLS:
        out |= {"lun": pool.lun, "device": f"/dev/mapper/{map_name(pool.name)}"}
    return out


def conf_path(pool: IscsiHostPool) -> str:
    return f"{CONF_DIR}/storlab-{map_name(pool.name)}.conf"


def alias_conf(section: IscsiPlan, pool: IscsiHostPool, wwid: str) -> str:
    """/etc/multipath/conf.d/storlab-POOL.conf: the LUN's map named after the pool, no kpartx."""
    if not WWID_RE.fullmatch(wwid):
        raise HarnessError(f"pool {pool.name}: WWID {wwid!r} read from {pool.host} is not one storlab writes into "
                           "multipath.conf")
    return (f"# storlab: LUN {pool.lun} of {section.iqn} is the map of pool {pool.name}, named after it; parted\n"
            "# alone makes its partition maps (libvirt's disk pool looks for NAME1, kpartx would make NAME-part1)\n"
            "multipaths {\n    multipath {\n"
            f"        wwid {wwid}\n        alias {map_name(pool.name)}\n        skip_kpartx yes\n"
            "    }\n}\n")


# -- parsers -----------------------------------------------------------------------------------
def map_wwid(uuid: str) -> str:
    """`dmsetup info -c --noheadings -o uuid MAP` of a multipath map ("mpath-WWID") -> WWID."""
    text = uuid.strip()
    wwid = text.removeprefix("mpath-")
    if wwid == text or not WWID_RE.fullmatch(wwid):
        raise HarnessError(f"{text[:80]!r} is not the dm uuid of a multipath map (mpath-WWID)")
    return wwid


@dataclass
class Session:
    """One iSCSI session of the node: target, portal (address:port), SCSI host, LUN -> disk."""
    target: str
    portal: str
    host: int | None = None
    disks: dict[int, str] = field(default_factory=dict)


_LUN = re.compile(r"scsi(\d+) Channel \d+ Id \d+ Lun: (\d+)")
_DISK = re.compile(r"Attached scsi disk (\S+)")


def parse_sessions(text: str) -> list[Session]:
    """`iscsiadm -m session -P 3` -> its sessions (a target lists one "Current Portal" per session)."""
    out: list[Session] = []
    target, lun = "", None
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("Target:"):
            words = line[len("Target:"):].split()  # "Target: IQN (non-flash)"
            target = words[0] if words else ""
        elif line.startswith("Current Portal:"):
            out.append(Session(target=target, portal=line.split(":", 1)[1].strip().split(",")[0]))
            lun = None
        elif not out:
            continue
        elif line.startswith("Host Number:"):
            out[-1].host = int(line.split(":", 1)[1].split()[0])
        elif m := _LUN.fullmatch(line):
            lun = int(m.group(2))
        elif (m := _DISK.match(line)) and lun is not None:
            out[-1].disks[lun] = m.group(1)
    return out


def scsi_host(sessions: list[Session], target: str, portal: str) -> str:
    """The SCSI host (hostN) of the session with ``target`` over ``portal`` (address:port)."""
    found = [s for s in sessions if s.target == target and s.portal == portal and s.host is not None]
    if len(found) != 1:
        seen = ", ".join(f"{s.target} over {s.portal}" for s in sessions) or "none"
        raise HarnessError(f"{len(found)} sessions with {target} over {portal} have a SCSI host (sessions: {seen})")
    return f"host{found[0].host}"


# -- on the pool's node --------------------------------------------------------------------------
def prepare(lab: LabContext, pool: IscsiHostPool) -> None:
    """Log the node in over every portal; a LUN pool's LUN gets its map named after the pool, a
    scsi or mpath pool waits for every LUN's map (so that it lists all of them when it starts)."""
    node = lab.node(pool.host)
    section = need(of(lab.plan), "iscsi section")
    if pool.type in LUN_POOLS:
        name_map(lab, node, pool)
        return
    for index in range(len(section.luns)):
        initiator.attach(lab, node, index)


def _map_uuid(node: NodeView, name: str) -> str | None:
    r = node.run(["dmsetup", "info", "-c", "--noheadings", "-o", "uuid", "--", name], timeout=30)
    return r.stdout.strip() if r.ok else None


def name_map(lab: LabContext, node: NodeView, pool: IscsiHostPool) -> None:
    """Name the LUN's multipath map after the pool (kept when it is named so already)."""
    section = need(of(lab.plan), "iscsi section")
    index = need(pool.lun, f"pool {pool.name}: lun")
    dev = initiator.attach(lab, node, index)
    if not (BLOCK_DEVICE_RE.fullmatch(dev) and dev.startswith("/dev/mapper/")):
        raise HarnessError(f"{node.name}: LUN {index} of {section.iqn} is {dev!r}, not a multipath map: a "
                           f"{pool.type} pool on a LUN needs multipathd (role iscsi-initiator)")
    wwid = map_wwid(need(_map_uuid(node, dev.removeprefix("/dev/mapper/")), f"dm uuid of {dev}"))
    if node.ensure_file(conf_path(pool), alias_conf(section, pool, wwid)):
        reconfigure(node)
    alias = map_name(pool.name)
    wait_until(lambda: _map_uuid(node, alias) == f"mpath-{wwid}", timeout=90,
               what=f"{node.name}: the map of LUN {index} ({wwid}) named {alias}")
    # device-mapper renames at once; /dev/mapper/NAME is udev's, made on the rename's change event
    # (libvirt opened it before udev had: "Failed to open storage volume with path '/dev/mapper/...'")
    wait_until(lambda: node.run(["sh", "-c", 'udevadm settle --timeout=10; test -b "$1"', "sh", f"/dev/mapper/{alias}"],
                                timeout=30).ok, timeout=90, what=f"{node.name}: /dev/mapper/{alias} (udev)")


def reconfigure(node: NodeView) -> None:
    """multipathd reads its configuration again and reloads every map (`all`: a reload carries
    skip_kpartx to udev; without it, a renamed map keeps what udev noted of it before)."""
    r = node.run(["multipathd", "reconfigure", "all"], timeout=60)
    if not r.ok or "fail" in r.stdout:  # a multipathd without `reconfigure all`
        node.succeed(["multipathd", "reconfigure"], timeout=60)


def adapter(pool: IscsiHostPool, sh: Callable[..., str]) -> str:
    """A scsi pool's adapter: the SCSI host of the node's session over the pool's portal."""
    out = sh(["iscsiadm", "-m", "session", "-P", "3"], timeout=30)
    return scsi_host(parse_sessions(out), need(pool.target_iqn, "target"), f"{need(pool.server, 'portal')}:3260")
