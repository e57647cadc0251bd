"""The negative control of NFS chaos, on a VM (kernel nfsd, tests/lab/chaos/nfs-async.yaml): with
the export `async`, a crash of the server loses writes the KVM host's client had been told were
stable, and the checker names them; the same crash with the export `sync` loses nothing. Marked
`vm` and `slow`: `pytest tests/lab/test_chaos_nfs_vm.py` (about 10 minutes under TCG)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos.runner import Outcome
from harness.lab.lab import Lab

pytestmark = [pytest.mark.topology("../tests/lab/chaos/nfs-async.yaml"), pytest.mark.vm, pytest.mark.slow]

#: the server crashed 20 s into the run (within the 30 s its kernel keeps dirty data unwritten)
CRASH = Path(__file__).parent / "chaos" / "nfs-server-crash.json"


def test_chaos_nfs_async_export_loses_acknowledged_writes_a_sync_one_keeps(chaos: Callable[..., Outcome],
                                                                           lab: Lab) -> None:
    lost_run = chaos(replay=CRASH)
    lost = [f for f in lost_run.verdict.findings if f.category in ("lost", "unreadable")]
    assert not lost_run.verdict.ok and lost, "\n".join(lost_run.verdict.lines())
    # the same server with its export sync (the file, so the rebooted server reads it too)
    server = lab.node("nfs1")
    server.succeed(["sed", "-i", "s/,async,/,sync,/", "/etc/exports"])
    server.succeed(["exportfs", "-ra"])
    served = server.succeed(["exportfs", "-v"])
    assert "async" not in served and "sync" in served, served
    kept = chaos(replay=CRASH)
    assert kept.verdict.ok, "\n".join(kept.verdict.lines())
    assert kept.verdict.acked > 50 and kept.verdict.counts()["lost"] == 0
