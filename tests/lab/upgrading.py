"""What the single-server upgrade tests share (NFS, iSCSI): the server upgraded to trixie while the
KVM host's writers write, every acknowledged write read back, and its package's version moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos import runner
from harness.lab import versions
from harness.lab.lab import Lab
from harness.upgrade import rolling


def needs_bookworm(lab: Lab) -> None:
    """The upgrades to trixie start from bookworm (`--lab-release trixie` leaves nothing to upgrade)."""
    if any(n.release != "bookworm" for n in lab.plan.nodes):
        pytest.skip("upgrades a bookworm lab to trixie; this lab runs trixie already")


def upgrade_under_writers(lab: Lab, run_dir: Path, package: str) -> rolling.Report:
    needs_bookworm(lab)
    before = versions.running(lab)
    reports: list[rolling.Report] = []
    out = runner.during(lab, "upgrade", lambda: reports.append(rolling.upgrade(lab, "trixie")), run_dir)
    print("\n".join(runner.summary(out) + reports[0].lines()))
    assert out.verdict.ok, "\n".join(runner.summary(out))
    assert out.verdict.acked > 20
    server = reports[0].steps[0].node
    after = versions.running(lab)
    assert after[server][package] != before[server][package], f"{package} not upgraded: {before[server]} -> {after[server]}"
    return reports[0]
