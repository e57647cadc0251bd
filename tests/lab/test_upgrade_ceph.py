"""`storlab upgrade` of ceph-5 on LXC from pacific (16.2, bookworm) to reef (18.2, trixie) while the
KVM host's librbd (the host's own pacific client) writes to an RBD image: noout, the monitor and
manager first, the OSD hosts one at a time behind active+clean, then require-osd-release reef, noout
cleared and HEALTH_OK; the checker reads every acknowledged write back. Slow (its own CI phase with
STORLAB_CI_FULL=1): each host installs about 115 packages."""

from __future__ import annotations

from typing import Any

import pytest

from harness.backends.ceph.role import admin_node
from harness.backends.ceph.upgrade import release_names
from harness.chaos import runner
from harness.lab.lab import Lab
from harness.upgrade import rolling

from .upgrading import needs_bookworm

pytestmark = [pytest.mark.topology("ceph-5.yaml"), pytest.mark.slow]


def test_upgrade_ceph_pacific_to_reef_under_the_host_client(lab: Lab, host_side: Lab, tmp_path: Any) -> None:
    needs_bookworm(lab)
    admin = admin_node(lab)
    assert set().union(*release_names(admin.succeed(["ceph", "versions", "-f", "json"])).values()) == {"pacific"}
    reports: list[rolling.Report] = []
    out = runner.during(lab, "upgrade", lambda: reports.append(rolling.upgrade(lab, "trixie")), tmp_path / "run")
    print("\n".join(runner.summary(out) + reports[0].lines()))
    assert out.verdict.ok, "\n".join(runner.summary(out))
    assert [s.node for s in reports[0].steps] == ["ceph-monitor", "ceph-osd1", "ceph-osd2", "ceph-osd3"]
    assert release_names(admin.succeed(["ceph", "versions", "-f", "json"])) == {
        "mon": {"reef"}, "mgr": {"reef"}, "osd": {"reef"}}
    dump = admin.succeed(["ceph", "osd", "dump", "-f", "json"])
    assert '"require_osd_release":"reef"' in dump.replace(" ", "") and "noout" not in dump.split('"flags"')[1][:80]
