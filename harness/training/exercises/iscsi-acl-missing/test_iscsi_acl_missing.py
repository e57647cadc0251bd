"""Checks of iscsi-acl-missing: the target's ACL admits the KVM host's initiator (now and after a
restart of the target), a new login as that initiator sees the LUNs, and the host's libvirt pool
is active and refreshes (another new login) with the LUN volumes listed."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

from harness.backends.iscsi import planned
from harness.backends.iscsi.chap import chap_password
from harness.backends.iscsi.plan import AclPlan
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import HostPoolPlan

LIO_SAVED = "/etc/rtslib-fb-target/saveconfig.json"


def host_pool(lab: Lab) -> HostPoolPlan:
    return next(p for p in lab.plan.host.pools if p.backend == "iscsi" and p.host == "kvm" and p.initiator)


def host_acl(lab: Lab) -> AclPlan:
    return next(a for a in planned(lab.plan).acls if a.initiator == host_pool(lab).initiator)


def target(lab: Lab) -> Node:
    return lab.node(planned(lab.plan).target)


def parse_tgt_acls(show: str) -> dict[str, list[str]]:
    """target iqn -> its ``ACL information:`` entries from ``tgtadm --mode target --op show``."""
    out: dict[str, list[str]] = {}
    cur: list[str] | None = None
    in_acl = False
    for raw in show.splitlines():
        indent = len(raw) - len(raw.lstrip())
        if raw.startswith("Target "):
            cur = out.setdefault(raw.split(":", 1)[1].strip(), [])
            in_acl = False
        elif cur is not None and indent == 4:
            in_acl = raw.strip() == "ACL information:"
        elif cur is not None and in_acl and indent >= 8 and raw.strip():
            cur.append(raw.strip())
    return out


def test_target_acl_admits_the_host_initiator(lab: Lab) -> None:
    iscsi = planned(lab.plan)
    node = target(lab)
    initiator = host_acl(lab).initiator
    if iscsi.implementation == "tgt":
        shown = parse_tgt_acls(node.succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"], timeout=30))
        assert iscsi.iqn in shown, f"{node.name}: tgtd serves no target {iscsi.iqn} (`tgtadm --mode target --op show`)"
        acl = shown[iscsi.iqn]
        assert initiator in acl, (f"{node.name}: the ACL of {iscsi.iqn} in the running tgtd does not list {initiator} "
                                  f"(it lists {', '.join(acl) or 'nothing'})")
        conf = node.run(["grep", "-rhs", "initiator-name", "/etc/tgt/"], timeout=30).stdout.splitlines()
        assert any(line.split()[:2] == ["initiator-name", initiator] for line in conf), \
            f"{node.name}: /etc/tgt does not list {initiator} (initiator-name): a restart of tgt would drop it again"
    else:
        out = node.succeed(["targetcli", "ls", f"/iscsi/{iscsi.iqn}/tpg1/acls", "1"], timeout=60)
        acl = [m.lower() for m in re.findall(r"o-\s+(iqn\.\S+|eui\.\S+|naa\.\S+)", out)]
        assert initiator.lower() in acl, (f"{node.name}: no ACL for {initiator} on {iscsi.iqn}/tpg1 "
                                          f"(`targetcli ls /iscsi/{iscsi.iqn}/tpg1/acls` lists {', '.join(acl) or 'none'})")
        saved_json = node.run(["cat", LIO_SAVED], timeout=30).stdout.lower()
        assert f'"{initiator.lower()}"' in saved_json, \
            f"{node.name}: {LIO_SAVED} has no ACL for {initiator}: `targetcli saveconfig`, or a reboot drops it again"


def test_new_login_as_the_host_initiator_sees_the_luns(lab: Lab) -> None:
    """iscsi-ls logs in anew each time (libiscsi, as the host's initiator, with its CHAP secret)."""
    acl = host_acl(lab)
    env = dict(os.environ)
    if acl.chap:  # libiscsi takes CHAP credentials from the environment, not argv
        env.update(LIBISCSI_CHAP_USERNAME=acl.chap.username, LIBISCSI_CHAP_PASSWORD=chap_password(lab, acl))
    portal = target(lab).address
    r = subprocess.run(["iscsi-ls", "-s", "-i", acl.initiator, f"iscsi://{portal}"], capture_output=True, text=True,
                       timeout=30, env=env, check=False)
    luns = re.findall(r"Lun:(\d+)\s+Type:DIRECT_ACCESS", r.stdout)
    want = len(planned(lab.plan).luns)
    assert len(luns) == want, (f"a new login to {portal} as {acl.initiator} sees {len(luns)} disk LUN(s), not {want} "
                               f"(`iscsi-ls -s -i {acl.initiator} iscsi://{portal}` exited {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()[-300:] or 'no target discovered'})")


def test_host_pool_refreshes_with_the_luns(lab: Lab, libvirt_conn: Any) -> None:
    import libvirt
    spec = host_pool(lab)
    pool = libvirt_conn.storagePoolLookupByName(spec.object)
    assert pool.isActive(), (f"libvirt pool {spec.object} is inactive (`virsh pool-info {spec.object}`): "
                             f"it must be running again")
    err = None
    for _ in range(3):  # a target's one-off UNIT ATTENTION to a new login is not the student's doing
        try:
            if pool.isActive():
                pool.refresh(0)
            else:
                pool.create(0)
            err = None
            break
        except libvirt.libvirtError as exc:
            err = exc
            if "UNIT_ATTENTION" not in str(exc):
                break
    assert err is None, f"libvirt pool {spec.object} fails to refresh (a new login): {err}"
    vols = pool.listVolumes()
    want = len(planned(lab.plan).luns)
    assert len(vols) >= want, f"libvirt pool {spec.object} lists {len(vols)} volume(s), fewer than the {want} LUNs"
