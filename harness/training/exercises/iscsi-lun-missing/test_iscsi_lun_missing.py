"""Checks of iscsi-lun-missing: the target serves every planned LUN under its number now, its config
file brings every LUN back after a restart, and a new login as the KVM host's initiator sees them."""

from __future__ import annotations

import re

from harness.backends.iscsi import planned
from harness.backends.iscsi.chaos import host_sees
from harness.lab.lab import Lab
from harness.nodes.node import Node

TGT_CONF = "/etc/tgt/conf.d/storlab.conf"


def target(lab: Lab) -> Node:
    return lab.node(planned(lab.plan).target)


def wanted(lab: Lab) -> dict[int, str]:
    """LUN number -> backing store, as the role configures them (tgt.conf.j2: numbered from 1)."""
    out = {}
    for i, lun in enumerate(planned(lab.plan).luns, start=1):
        out[i] = str(lun.path if lun.kind == "fileio" else lun.device if lun.kind == "block" else f"/dev/{lun.vg}/{lun.lv}")
    return out


def test_the_target_serves_every_lun(lab: Lab) -> None:
    iqn = planned(lab.plan).iqn
    show = target(lab).succeed(["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"], timeout=30)
    luns: dict[int, str] = {}
    lun, mine = None, False
    for line in show.splitlines():
        if m := re.match(r"Target \d+: (\S+)", line):
            mine = m.group(1) == iqn
        elif mine and (m := re.match(r"\s+LUN: (\d+)", line)):
            lun = int(m.group(1))
        elif mine and lun and (m := re.match(r"\s+Backing store path: (\S+)", line)):
            luns[lun] = m.group(1)
    assert luns == wanted(lab), (f"target {iqn} serves LUNs {luns}, not {wanted(lab)} "
                                 "(`tgtadm --lld iscsi --mode target --op show`)")


def test_the_config_file_brings_every_lun_back_after_a_restart(lab: Lab) -> None:
    text = target(lab).succeed(["cat", TGT_CONF], timeout=30)
    found = {int(n): p for p, n in re.findall(r"<backing-store (\S+)>\s*lun (\d+)\s*</backing-store>", text)}
    assert found == wanted(lab), (f"{TGT_CONF} gives LUNs {found}, not {wanted(lab)}: a restart of tgt would serve "
                                  "what the file says")


def test_a_new_login_as_the_host_initiator_sees_every_lun(lab: Lab) -> None:
    iscsi = planned(lab.plan)
    seen = host_sees(lab, iscsi)  # libiscsi's iscsi-ls as the host's pool's IQN, CHAP in its environment
    assert seen == set(wanted(lab)), (f"a new login to {iscsi.portal_addresses[0]} as the KVM host's initiator "
                                      f"sees disk LUNs {sorted(seen)}, not {sorted(wanted(lab))}")
