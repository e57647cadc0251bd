"""The KVM host's initiator IQN removed from the target's ACL: the host can no longer log in,
its libvirt iSCSI pool fails its next refresh and goes inactive. tgt (conf.d file + tgt-admin)
or LIO (targetcli, saved config), whichever the plan says the target runs."""

from __future__ import annotations

import re
from typing import Any

from harness.backends.iscsi import planned
from harness.backends.iscsi.chap import chap_password
from harness.backends.iscsi.plan import AclPlan
from harness.errors import HarnessError
from harness.host.pools import start_pool
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import HostPoolPlan
from harness.run import wait_until

TITLE = "The KVM host's iSCSI pool cannot log in to the target any more"
BACKEND = "iscsi"
TOPOLOGY = "iscsi-userspace.yaml"  # the topology it was written for (topologies/)
HOST_POOLS = True  # the fault shows in the KVM host's libvirt iSCSI pool

TGT_CONF = "/etc/tgt/conf.d/storlab.conf"  # where the role writes the target (0600: CHAP secrets)


def host_pool(lab: Lab) -> HostPoolPlan:
    """The KVM host's libvirt pool on the lab's target (with its initiator IQN)."""
    for p in lab.plan.host.pools:
        if p.backend == "iscsi" and p.host == "kvm" and p.initiator:
            return p
    raise HarnessError(f"lab {lab.name}: no iSCSI pool on the KVM host (host.pools with backend iscsi and an initiator)")


def host_acl(lab: Lab) -> AclPlan:
    """The ACL entry the plan gives the KVM host's initiator."""
    initiator = host_pool(lab).initiator
    for a in planned(lab.plan).acls:
        if a.initiator == initiator:
            return a
    raise HarnessError(f"lab {lab.name}: the target's ACL has no entry for the host's initiator {initiator}")


def target(lab: Lab) -> Node:
    return lab.node(planned(lab.plan).target)


def parse_tgt_show(show: str) -> dict[str, dict[str, Any]]:
    """``tgtadm --mode target --op show`` -> {iqn: {'tid': N, 'acls': [...], 'nexus': [(sid, cid, initiator)]}}.
    Beyond harness' parse_tgt_show: the target id and the I_T nexus (sessions), which the break ends."""
    out: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    section = ""
    sid: str | None = None
    who = ""
    for raw in show.splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if raw.startswith("Target "):
            tid, iqn = raw[len("Target "):].split(":", 1)
            cur = out.setdefault(iqn.strip(), {"tid": int(tid), "acls": [], "nexus": []})
            section = ""
        elif cur is None or not line:
            continue
        elif indent == 4:
            section = line.rstrip(":")
        elif section == "ACL information" and indent >= 8:
            cur["acls"].append(line)
        elif section == "I_T nexus information":
            if line.startswith("I_T nexus:"):
                sid = line.split(":", 1)[1].strip()
            elif line.startswith("Initiator:"):
                who = line.split(":", 1)[1].split(" alias:")[0].strip()
            elif line.startswith("Connection:") and sid is not None:
                cur["nexus"].append((sid, line.split(":", 1)[1].strip(), who))
    return out


def tgt_target(node: Node, iqn: str) -> dict[str, Any]:
    shown = parse_tgt_show(node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"], timeout=30))
    if iqn not in shown:
        raise HarnessError(f"{node.name}: tgtd serves no target {iqn}")
    return shown[iqn]


def lio_acls(node: Node, iqn: str) -> list[str]:
    """The initiator IQNs (lower case, as LIO keeps them) with an ACL on tpg1 of ``iqn``."""
    out = node.succeed(["targetcli", "ls", f"/iscsi/{iqn}/tpg1/acls", "1"], timeout=60)
    return [m.lower() for m in re.findall(r"o-\s+(iqn\.\S+|eui\.\S+|naa\.\S+)", out)]


# -- tgt: the conf.d file for the next start, tgtadm for the running target. Not tgt-admin
# --update: with an initiator logged in it updates in place, takes an IQN in the running ACL for
# an address, fails ("this access control rule does not exist") and leaves the ACL half done ----
def tgt_without(text: str, initiator: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.split()[:2] != ["initiator-name", initiator])


def tgt_with(text: str, iqn: str, initiator: str) -> str:
    """``text`` with ``initiator-name initiator`` in the <target iqn> block (after its other ACL lines)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == f"<target {iqn}>"), None)
    if start is None:
        raise HarnessError(f"{TGT_CONF}: no <target {iqn}> block")
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "</target>")
    if any(line.split()[:2] == ["initiator-name", initiator] for line in lines[start:end]):
        return text
    at = max((i + 1 for i in range(start, end) if lines[i].split()[:1] in (["initiator-address"], ["initiator-name"])),
             default=end)
    return "".join([*lines[:at], f"    initiator-name {initiator}\n", *lines[at:]])


def tgt_save(node: Node, text: str) -> None:
    if node.get(TGT_CONF) != text:
        node.put(TGT_CONF, text, "0600")


# -- the KVM host's libvirt pool --------------------------------------------------------------
def refresh_pool(lab: Lab, start: bool) -> None:
    """Refresh the host's pool (a new login); ``start`` it first when it is inactive."""
    import libvirt
    spec = host_pool(lab)
    conn = connect(lab.plan.host.uri)
    try:
        pool: Any = conn.storagePoolLookupByName(spec.object)
        if not pool.isActive():
            if start:
                start_pool(pool, spec)
            return
        try:
            pool.refresh(0)
        except libvirt.libvirtError as exc:  # libvirt deactivates a pool whose refresh fails
            if not start:
                lab.mark(f"training: pool {spec.object} refresh failed: {exc}")
                return
            start_pool(pool, spec)
    finally:
        conn.close()


def break_lab(lab: Lab) -> None:
    iscsi = planned(lab.plan)
    node = target(lab)
    initiator = host_acl(lab).initiator
    lab.mark(f"training: remove {initiator} from the ACL of {iscsi.iqn}")
    if iscsi.implementation == "tgt":
        tgt_save(node, tgt_without(node.get(TGT_CONF), initiator))
        t = tgt_target(node, iscsi.iqn)
        if initiator in t["acls"]:
            node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "unbind", "--tid", str(t["tid"]),
                          "--initiator-name", initiator], timeout=30)
        for sid, cid, who in t["nexus"]:  # an unbind leaves sessions logged in: end them
            if who == initiator:
                node.run(["tgtadm", "--lld", "iscsi", "--mode", "conn", "--op", "delete", "--tid", str(t["tid"]),
                          "--sid", sid, "--cid", cid], timeout=30)

        def shut_out() -> bool:
            t = tgt_target(node, iscsi.iqn)
            return initiator not in t["acls"] and not any(who == initiator for _, _, who in t["nexus"])
        wait_until(shut_out, timeout=30, what=f"{initiator} out of the ACL of {iscsi.iqn} and logged out")
    else:
        if initiator.lower() in lio_acls(node, iscsi.iqn):  # deleting an ACL ends its sessions
            node.succeed(["targetcli", f"/iscsi/{iscsi.iqn}/tpg1/acls", "delete", initiator.lower()], timeout=60)
        node.succeed(["targetcli", "saveconfig"], timeout=60)
    refresh_pool(lab, start=False)  # what the host notices next: the pool fails and goes inactive


def solve(lab: Lab) -> None:
    iscsi = planned(lab.plan)
    node = target(lab)
    acl = host_acl(lab)
    if iscsi.implementation == "tgt":
        tgt_save(node, tgt_with(node.get(TGT_CONF), iscsi.iqn, acl.initiator))
        t = tgt_target(node, iscsi.iqn)
        if acl.initiator not in t["acls"]:
            node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "bind", "--tid", str(t["tid"]),
                          "--initiator-name", acl.initiator], timeout=30)
    else:
        path = f"/iscsi/{iscsi.iqn}/tpg1/acls"
        lines = []
        if acl.initiator.lower() not in lio_acls(node, iscsi.iqn):
            lines.append(f"{path} create {acl.initiator}")  # maps the TPG's LUNs (auto_add_mapped_luns)
        if acl.chap:  # the CHAP secret reaches targetcli on stdin, never argv
            lines.append(f"{path}/{acl.initiator.lower()} set auth userid={acl.chap.username} "
                         f"password={chap_password(lab, acl)}")
        lines.append("saveconfig")
        node.succeed(["targetcli"], input="\n".join(lines) + "\n", timeout=120)
    refresh_pool(lab, start=True)
