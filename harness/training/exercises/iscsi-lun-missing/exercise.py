"""A LUN of the lab's iSCSI target deleted from the running target and from its config file: a new
login sees one disk fewer. Everything to repair is on the target node, none of it on the KVM host,
so it suits students isolated from the host (a class on Incus or on VMs, a class served from the
web). tgt (the target in containers) only."""

from __future__ import annotations

import re

from harness.backends.iscsi import planned
from harness.backends.iscsi.plan import IscsiPlan
from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.run import wait_until

TITLE = "A LUN has gone from the iSCSI target"
BACKEND = "iscsi"
TOPOLOGY = "iscsi-userspace.yaml"  # the topology it was written for (topologies/)

TGT_CONF = "/etc/tgt/conf.d/storlab.conf"  # where the role writes the target (0600: CHAP secrets)


def backing(iscsi: IscsiPlan, index: int) -> str:
    """The backing store of the plan's LUN ``index`` (0-based), as the role's tgt.conf names it."""
    lun = iscsi.luns[index]
    if lun.kind == "fileio":
        return str(lun.path)
    return str(lun.device) if lun.kind == "block" else f"/dev/{lun.vg}/{lun.lv}"


def lost(lab: Lab) -> tuple[int, str]:
    """The LUN the exercise takes away: the plan's last, as (LUN number, backing store)."""
    iscsi = planned(lab.plan)
    return len(iscsi.luns), backing(iscsi, len(iscsi.luns) - 1)


def target(lab: Lab) -> Node:
    iscsi = planned(lab.plan)
    if iscsi.implementation != "tgt":
        raise HarnessError(f"exercise iscsi-lun-missing is written for tgt (a target in a container); lab {lab.name}'s "
                           f"target runs {iscsi.implementation}")
    return lab.node(iscsi.target)


def served(node: Node, iqn: str) -> tuple[int, dict[int, str]]:
    """The target's id and its LUNs' backing stores (number -> path), from `tgtadm --op show`."""
    show = node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"], timeout=30)
    tid, luns, lun, mine = None, {}, None, False
    for line in show.splitlines():
        if m := re.match(r"Target (\d+): (\S+)", line):
            mine = m.group(2) == iqn
            tid = int(m.group(1)) if mine else tid
        elif mine and (m := re.match(r"\s+LUN: (\d+)", line)):
            lun = int(m.group(1))
        elif mine and lun and (m := re.match(r"\s+Backing store path: (\S+)", line)):
            luns[lun] = m.group(1)
    if tid is None:
        raise HarnessError(f"{node.name}: tgtd serves no target {iqn}")
    return tid, luns


def conf_without(text: str, path: str) -> str:
    return re.sub(rf"[ \t]*<backing-store {re.escape(path)}>\n.*?</backing-store>\n", "", text, flags=re.S)


def conf_with(text: str, lun: int, path: str) -> str:
    if f"<backing-store {path}>" in text:
        return text
    block = f"    <backing-store {path}>\n        lun {lun}\n    </backing-store>\n"
    ends = [m.end() for m in re.finditer(r"</backing-store>\n", text)]
    at = ends[-1] if ends else text.index("\n", text.index("<target ")) + 1
    return text[:at] + block + text[at:]


def break_lab(lab: Lab) -> None:
    iscsi = planned(lab.plan)
    node = target(lab)
    lun, path = lost(lab)
    lab.mark(f"training: LUN {lun} ({path}) removed from {iscsi.iqn}")
    text = node.get(TGT_CONF)
    if conf_without(text, path) != text:
        node.put(TGT_CONF, conf_without(text, path), "0600")
    tid, luns = served(node, iscsi.iqn)
    if lun in luns:  # a LUN in use by a session is not deleted: end the sessions first (the host logs in anew)
        show = node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "conn", "--op", "show", "--tid", str(tid)], timeout=30)
        for sid, cid in re.findall(r"Session: (\d+)\s+Connection: (\d+)", show):
            node.run(["tgtadm", "--lld", "iscsi", "--mode", "conn", "--op", "delete", "--tid", str(tid), "--sid", sid,
                      "--cid", cid], timeout=30)
        node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "delete", "--tid", str(tid),
                      "--lun", str(lun)], timeout=30)
    wait_until(lambda: lun not in served(node, iscsi.iqn)[1], timeout=30, what=f"LUN {lun} gone from {iscsi.iqn}")


def solve(lab: Lab) -> None:
    iscsi = planned(lab.plan)
    node = target(lab)
    lun, path = lost(lab)
    tid, luns = served(node, iscsi.iqn)
    if lun not in luns:
        node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "logicalunit", "--op", "new", "--tid", str(tid),
                      "--lun", str(lun), "--backing-store", path], timeout=30)
    text = node.get(TGT_CONF)
    if conf_with(text, lun, path) != text:
        node.put(TGT_CONF, conf_with(text, lun, path), "0600")
