"""iSCSI under chaos: one writer on the KVM host through qemu's iscsi driver (libiscsi, what an
iscsi-direct pool's guests use), logged in with the IQN of the host's own pool (the ACL admits it)
and that ACL's CHAP, on the last LUN nothing else in the lab names: chaos writes over its first
blocks, so a LUN a pool or another backend (a cluster filesystem) uses is never taken, and with
none free the run is refused. The CHAP password reaches libiscsi as a qemu `secret` object read
from a 0600 file of the run directory (removed when the client is done), never argv. The lab is
whole again when the target's unit is active and the host logs in and sees that LUN.

With one target, a fault of it stops every write for as long as it lasts: the promise is how soon
writes resume after (support.outage_bound), not that they go on."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.backends.base import LabContext
from harness.backends.iscsi.chap import chap_password
from harness.backends.iscsi.initiator import lun_number
from harness.backends.iscsi.plan import AclPlan, IscsiHostPool, IscsiPlan, of
from harness.backends.iscsi.target import planned_lun_sizes
from harness.chaos.qemuio import QemuIo, QemuIoWriter, read_blocks
from harness.chaos.schedule import Event
from harness.chaos.support import WriteTarget, boot_allowance, client_secret, cuts_off, forget, outage_bound
from harness.errors import HarnessError
from harness.plan.model import Plan, need
from harness.run import run

#: seconds after the target is back for writes to resume: libiscsi waits one second more before
#: each new login attempt, up to 30 s between two (lib/connect.c, 1.19), then logs in and sends the
#: command again; qemu's NOP-Out every 5 s finds a silent target dead after 3 unanswered. Measured
#: on LXC: writes resumed within 20 s of tgt's restart (tests/lab/test_iscsi.py)
RESUME = 30.0 + 10.0
_LUN_LINE = re.compile(r"Lun:(\d+)\s+Type:DIRECT_ACCESS")


def planned(lab: LabContext) -> IscsiPlan:
    return need(of(lab.plan), "iscsi section")


def host_pool(lab: LabContext) -> IscsiHostPool:
    """The KVM host's own pool on the target (iscsi-direct first): its IQN is the one the ACL admits."""
    pools = sorted((p for p in lab.plan.host.pools if isinstance(p, IscsiHostPool) and p.host == "kvm" and p.initiator
                    and p.type in ("iscsi-direct", "iscsi")), key=lambda p: p.type != "iscsi-direct")
    if not pools:
        raise HarnessError(f"lab {lab.name}: an iSCSI chaos run writes from the KVM host with the IQN of its own pool: "
                           f"the topology needs an iscsi-direct (or iscsi) host pool on the KVM host with an initiator "
                           f"(see topologies/iscsi-userspace.yaml)")
    return pools[0]


def acl_of(section: IscsiPlan, initiator: str) -> AclPlan | None:
    return next((a for a in section.acls if a.initiator == initiator), None)


def claimed_luns(plan: Plan) -> set[int]:
    """Indexes of iscsi.luns that something in the lab names: a LUN pool's `lun`, another backend's
    block device (its `ref`). Found by walking the whole plan for objects of backend iscsi, so that
    no other backend is named here (a backend imports no other)."""
    out: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("backend") == "iscsi":
                out.update(v for k in ("lun", "ref") if isinstance(v := value.get(k), int) and not isinstance(v, bool))
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
    walk(plan.model_dump())
    return out


def scratch_lun(plan: Plan) -> int:
    """The index (under iscsi.luns) of the LUN chaos writes on: the last one nothing names."""
    section = need(of(plan), "iscsi section")
    taken = claimed_luns(plan)
    free = [i for i in range(len(section.luns)) if i not in taken]
    if not free:
        raise HarnessError(f"lab {plan.lab}: every LUN of {section.iqn} is used ({', '.join(map(str, sorted(taken)))}): "
                           f"chaos writes over a LUN's blocks and takes none a pool or filesystem uses; add a scratch "
                           f"LUN to iscsi.luns, e.g. {{kind: fileio, path: /iscsi/chaos.img, size: 64M}}")
    return free[-1]


def daemon_units(section: IscsiPlan) -> tuple[str, ...]:
    """tgtd's unit (a kill or a pause takes the target away); LIO has no process to kill or pause
    (its target is the kernel's: rtslib-fb-targetctl.service only saves and restores its config)."""
    return ("tgt.service",) if section.implementation == "tgt" else ()


class IscsiChaos:
    def daemons(self, lab: LabContext) -> Mapping[str, tuple[str, ...]]:
        section = planned(lab)
        units = daemon_units(section)
        return {section.target: units} if units else {}

    def targets(self, lab: LabContext, run_dir: Path, run_id: str, sync: bool = True,
                span: int = 1 << 20) -> list[WriteTarget]:
        section, pool = planned(lab), host_pool(lab)
        index, initiator = scratch_lun(lab.plan), need(pool.initiator, f"pool {pool.name}: initiator")
        size = planned_lun_sizes(lab.plan)[index]
        if size < span:
            raise HarnessError(f"LUN {index} of {section.iqn} ({size} bytes) is smaller than the run's span ({span}): "
                               "give a shorter run or a bigger scratch LUN")
        lun, portal = lun_number(section, index), f"{section.portal_addresses[0]}:3260"
        opts: dict[str, str | int] = {"file.driver": "iscsi", "file.transport": "tcp", "file.portal": portal,
                                      "file.target": section.iqn, "file.lun": lun, "file.initiator-name": initiator}
        acl, secrets = acl_of(section, initiator), list[Path]()
        objects: list[dict[str, str | int]] = []
        if acl is not None and acl.chap is not None:
            secret = client_secret(run_dir, "iscsi-chap.secret", chap_password(lab, acl))
            secrets.append(secret)
            objects.append({"qom-type": "secret", "id": "chap", "file": str(secret), "format": "raw"})
            opts |= {"file.user": acl.chap.username, "file.password-secret": "chap"}
        qio = QemuIo(opts, run_dir / "clients" / "iscsi.log", objects=objects)
        target = f"{section.iqn}/{lun}"

        def close() -> None:
            qio.close()
            forget(*secrets)
        return [WriteTarget("iscsi", f"qemu's iscsi driver (libiscsi, {initiator}) on LUN {lun} of {section.iqn} "
                            f"at {portal}", QemuIoWriter(qio, "iscsi", target, run_dir / "clients" / "iscsi.blk",
                                                          span=span, sync=sync),
                            lambda where: read_blocks(opts, run_dir / "clients" / "iscsi-read.log", target, where,
                                                      objects=objects),
                            close, qio.kill)]

    def health(self, lab: LabContext) -> str | None:
        section = planned(lab)
        node = lab.node(section.target)
        unit = "tgt.service" if section.implementation == "tgt" else "rtslib-fb-targetctl.service"
        if not node.run(["systemctl", "is-active", "--quiet", unit], timeout=15).ok:
            return f"{unit} active on {node.name}"
        lun = lun_number(section, scratch_lun(lab.plan))
        if lun not in host_sees(lab, section):
            return f"the KVM host logged in to {section.iqn} and seeing its LUN {lun}"
        return None

    def bound(self, lab: LabContext, event: Event) -> float | None:
        """The fault's duration + RESUME (+ TCP's backoff after a silent fault, a container's boot
        after a crash) for a fault that keeps the target away; None for the others and for a VM's
        crash (its boot is promised nothing)."""
        section = planned(lab)
        if not cuts_off(event, section.target, daemon_units(section)):
            return None
        return outage_bound(event, RESUME, boot_allowance(lab.plan))

    def faults(self) -> Mapping[str, Callable[[LabContext, Event], Callable[[], None]]]:
        return {}  # no error injection of its own yet: the node faults only

    def remove(self, lab: LabContext, run_id: str) -> None:
        """Nothing: the LUN stays (what chaos wrote on its first blocks is the next run's to overwrite)."""


def host_sees(lab: LabContext, section: IscsiPlan) -> set[int]:
    """The disk LUNs the KVM host sees when it logs in as its pool's IQN (libiscsi's iscsi-ls;
    CHAP in its environment, never argv); none when the login fails."""
    initiator = need(host_pool(lab).initiator, "the host pool's initiator")
    acl, env = acl_of(section, initiator), dict(os.environ)
    if acl is not None and acl.chap is not None:
        env |= {"LIBISCSI_CHAP_USERNAME": acl.chap.username, "LIBISCSI_CHAP_PASSWORD": chap_password(lab, acl)}
    r = run(["iscsi-ls", "-s", "-i", initiator, f"iscsi://{section.portal_addresses[0]}"], timeout=30, env=env)
    return parse_luns(r.stdout) if r.ok else set()


def parse_luns(text: str) -> set[int]:
    """The disk LUNs `iscsi-ls -s` lists."""
    return {int(n) for n in _LUN_LINE.findall(text)}
