"""iSCSI target role: targetcli (LIO) in nodes with their own kernel, tgt (userspace)
where the kernel is shared and has no LIO. Same LUNs, portals, IQN ACLs and CHAP."""

from __future__ import annotations

import re
from typing import Any

from harness.backends.base import LabContext, NodeView
from harness.backends.iscsi.chap import fill
from harness.backends.iscsi.plan import IscsiPlan, of
from harness.errors import HarnessError
from harness.nodes.roles.base import prepare_disks
from harness.plan.model import Plan, need
from harness.run import wait_until


def planned_lun_sizes(plan: Plan) -> list[int]:
    """Bytes of each LUN in topology order, as the plan defines them (a block LUN is its disk)."""
    iscsi = of(plan)
    if iscsi is None:
        return []
    disks = {d.name: d.size for d in plan.node(iscsi.target).disks}
    return [disks[lun.disk or ""] if lun.kind == "block" else (lun.size or 0) for lun in iscsi.luns]


_KEY_VALUE = re.compile(r"[A-Za-z][A-Za-z _/-]*:(\s|$)")  # "I_T nexus: 1", "Connection: 0" (an IQN has no space after ':')


def parse_tgt_show(text: str) -> dict[str, Any]:
    """`tgtadm --mode target --op show` -> {iqn: {'luns': {n: size_bytes}, 'acls': [...], 'users': [...]}}."""
    targets: dict[str, Any] = {}
    cur: dict[str, Any] | None = None
    lun: int | None = None
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if raw.startswith("Target "):
            cur = {"luns": {}, "acls": [], "users": []}
            targets[raw.split(":", 1)[1].strip()] = cur
        elif cur is None:
            continue
        elif line.startswith("LUN:"):
            lun = int(line.split(":")[1])
        elif line.startswith("Size:") and lun is not None and lun > 0:
            num, unit = line.split(":")[1].split(",")[0].split()
            cur["luns"][lun] = int(num) * {"MB": 1000**2, "GB": 1000**3, "KB": 1000}.get(unit, 1)
        elif line.startswith("Account information:"):
            section = "users"
        elif line.startswith("ACL information:"):
            section = "acls"
        elif line and section and raw.startswith("        ") and not _KEY_VALUE.match(line):
            cur[section].append(line.removesuffix(" (outgoing)"))  # an address, an IQN (iqn...:name) or a user
    return targets


def prepare_luns(node: NodeView, iscsi: IscsiPlan) -> None:
    for lun in iscsi.luns:
        if lun.kind == "fileio":
            path = need(lun.path, "a fileio LUN's path")
            d = path.rsplit("/", 1)[0] or "/"
            if not node.run(["mountpoint", "-q", d], timeout=15).ok:
                prepare_disks(node)
            node.succeed(["mkdir", "-p", d])
            if not node.run(["test", "-e", path], timeout=15).ok:
                node.succeed(["truncate", "-s", str(need(lun.size, "a fileio LUN's size")), path])
        elif lun.kind == "lvm":
            vg, lv = need(lun.vg, "an LVM LUN's vg"), need(lun.lv, "an LVM LUN's lv")
            device = need(lun.device, "an LVM LUN's disk")
            if not node.run(["test", "-e", f"/dev/{vg}/{lv}"], timeout=15).ok:
                if not node.run(["vgs", vg], timeout=30).ok:
                    node.succeed(["pvcreate", "-ff", "-y", device])
                    node.succeed(["vgcreate", vg, device])
                node.succeed(["lvcreate", "-y", "-L", f"{need(lun.size, 'an LVM LUN size') // 2**20}M", "-n", lv, vg])
        elif not node.run(["test", "-e", need(lun.device, "a block LUN's disk")], timeout=15).ok:
            raise HarnessError(f"{node.name}: block device {lun.device} for a LUN does not exist")


def apply(lab: LabContext) -> None:
    iscsi = of(lab.plan)
    if iscsi is None:
        return
    node = lab.node(iscsi.target)
    prepare_luns(node, iscsi)
    files = lab.files(node.name)
    if iscsi.implementation == "tgt":
        conf = fill((files / "etc/tgt/conf.d/storlab.conf").read_text(), lab, iscsi.acls)
        node.put("/etc/tgt/conf.d/storlab.conf", conf, "0600")
        node.enable_units(["tgt.service"], timeout=60)
        node.succeed(["tgt-admin", "--update", "ALL", "-f"], timeout=60)

        def configured() -> bool:
            t = parse_tgt_show(node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"]))
            return iscsi.iqn in t and len(t[iscsi.iqn]["luns"]) == len(iscsi.luns)
        wait_until(configured, timeout=30, what=f"tgt on {node.name} serving {len(iscsi.luns)} LUNs")
    else:
        # The unit is masked in the box so that it costs no boot time: start it before configuring,
        # as boot would (nothing saved yet: `targetctl restore` has nothing to do), so that it is
        # active: stopping it (`targetctl clear`) is the target's "stop", and it restores the saved
        # config at the next boot.
        node.enable_units(["rtslib-fb-targetctl.service"], timeout=120)
        if iscsi.iqn not in node.run(["targetcli", "ls", "/iscsi"], timeout=60).stdout:
            batch = fill((files / "root/storlab-targetcli.txt").read_text(), lab, iscsi.acls)
            script = "\n".join(line for line in batch.splitlines() if line and not line.startswith("#")) + "\n"
            # the batch (with CHAP secrets) goes to targetcli on stdin, never on a command line
            node.succeed(["targetcli"], input=script, timeout=120)
        # targetcli carries on past a failing batch line: check what matters took effect
        for acl in iscsi.acls:
            path = f"/iscsi/{iscsi.iqn}/tpg1/acls/{acl.initiator.lower()}"  # LIO stores IQNs in lower case
            if acl.chap:
                got = node.succeed(["targetcli", path, "get", "auth", "userid"]).strip()
                if got != f"userid={acl.chap.username}":
                    raise HarnessError(f"{node.name}: CHAP user for {acl.initiator} is {got!r} after targetcli")
