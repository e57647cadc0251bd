"""The negative control of iSCSI chaos, on a VM (LIO, tests/lab/chaos/iscsi-writeback.yaml): the
target's fileio LUN caches writes (write-back, WCE=1), so with the KVM host's client at
cache=unsafe (no FUA, no flush) a crash of the target loses writes it had answered, and the
checker names them; the same crash with the client at cache=none loses nothing. Marked `vm` and
`slow`: `pytest tests/lab/test_chaos_iscsi_vm.py` (about 10 minutes under TCG)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos.runner import Outcome

pytestmark = [pytest.mark.topology("../tests/lab/chaos/iscsi-writeback.yaml"), pytest.mark.vm, pytest.mark.slow]

#: the target crashed 20 s into the run
CRASH = Path(__file__).parent / "chaos" / "iscsi-target-crash.json"


def test_chaos_iscsi_writeback_target_crash_loses_unflushed_writes_not_flushed_ones(
        chaos: Callable[..., Outcome]) -> None:
    unsafe = chaos(replay=CRASH, cache="unsafe")
    lost = [f for f in unsafe.verdict.findings if f.category in ("lost", "unreadable")]
    assert not unsafe.verdict.ok and lost, "\n".join(unsafe.verdict.lines())
    assert unsafe.verdict.seed == 3260
    safe = chaos(replay=CRASH, cache="none")
    assert safe.verdict.ok, "\n".join(safe.verdict.lines())
    assert safe.verdict.acked > 50 and safe.verdict.counts()["lost"] == 0
