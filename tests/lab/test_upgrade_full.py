"""`storlab upgrade --full`: a server's whole distribution taken from bookworm to trixie (dist-upgrade from
an offline bundle, then a clean reboot) while the KVM host keeps writing to it; every acknowledged write
is read back. Marked slow (a few minutes on LXC: about 500 packages); STORLAB_CI_FULL=1 or `-m slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos import runner
from harness.lab import versions
from harness.lab.lab import Lab
from harness.upgrade import rolling

from .upgrading import needs_bookworm

pytestmark = [pytest.mark.topology("nfs-userspace.yaml"), pytest.mark.slow]


def test_full_upgrade_of_the_nfs_server_under_the_host_client(lab: Lab, host_side: Lab, tmp_path: Path) -> None:
    needs_bookworm(lab)
    before = versions.running(lab)
    reports: list[rolling.Report] = []
    out = runner.during(lab, "upgrade", lambda: reports.append(rolling.upgrade(lab, "trixie", full=True)),
                        tmp_path / "run")
    report = reports[0]
    print("\n".join(runner.summary(out) + report.lines()))
    assert out.verdict.ok, "\n".join(runner.summary(out))
    assert out.verdict.acked > 20
    server = lab.node(report.steps[0].node)
    after = versions.running(lab)[server.name]
    assert before[server.name]["debian"].startswith("12.") and after["debian"].startswith("13."), after
    assert after["nfs-ganesha"] != before[server.name]["nfs-ganesha"]
    # it rebooted into the new distribution: PID 1 started during the upgrade and is trixie's systemd
    assert int(server.succeed(["ps", "-o", "etimes=", "-p", "1"]).strip()) < report.seconds
    running = server.succeed(["systemctl", "--version"]).split()[1]
    installed = server.succeed(["dpkg-query", "-W", "-f", "${Version}", "systemd"])
    assert installed.startswith(running + "."), f"systemd {running} runs, {installed} is installed"
