"""`storlab upgrade` of an iSCSI target (iscsi-userspace: tgt):
its restart on trixie's versions while the KVM host keeps writing to its LUN (libiscsi, as qemu's iscsi
driver does); the checker reads every acknowledged write back."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.iscsi.plan import of
from harness.chaos import runner
from harness.lab import versions
from harness.lab.lab import Lab
from harness.plan.model import need
from harness.upgrade import rolling

pytestmark = pytest.mark.topology("iscsi-userspace.yaml")


def test_upgrade_iscsi_target_to_trixie_under_the_host_initiator(lab: Lab, host_side: Lab, tmp_path: Any) -> None:
    before = versions.running(lab)
    reports: list[rolling.Report] = []
    out = runner.during(lab, "upgrade", lambda: reports.append(rolling.upgrade(lab, "trixie")), tmp_path / "run")
    print("\n".join(runner.summary(out) + reports[0].lines()))
    assert out.verdict.ok, "\n".join(runner.summary(out))
    assert out.verdict.acked > 20
    after = versions.running(lab)
    server = reports[0].steps[0].node
    impl = "tgt" if need(of(lab.plan), "iscsi section").implementation == "tgt" else "targetcli-fb"
    assert after[server][impl] != before[server][impl], f"{impl} not upgraded: {before[server]} -> {after[server]}"
