"""Seeded chaos of the ceph lab on containers (ceph-5.yaml): its server(s) crashed, their daemons killed
or paused, partitioned, their data filesystem filled, while the KVM host writes through qemu's own
ceph client, and every acknowledged write is read back. Marked `slow` (CI runs it with
STORLAB_CI_FULL=1): `pytest tests/lab/test_chaos_ceph.py --lab-provider lxc`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos.runner import Outcome

pytestmark = [pytest.mark.topology("ceph-5.yaml"), pytest.mark.slow]

FAULTS = ["crash", "kill", "pause", "partition", "client-partition", "disk-full", "hang"]
SEED = 52


def test_chaos_ceph_seeded_schedule_loses_no_acknowledged_write(chaos: Callable[..., Outcome]) -> None:
    out = chaos(seed=SEED, duration=90, faults=FAULTS)
    kinds = {e.kind for e in out.schedule.events}
    assert {"crash", "kill", "pause"} <= kinds, f"seed {SEED} drew {sorted(kinds)}"
    assert out.verdict.ok, "\n".join(out.verdict.lines())
    assert out.verdict.acked > 100 and out.verdict.counts()["lost"] == 0


#: the KVM host's rbd client killed 20 s into the run (a hypervisor's qemu dying)
NEGATIVE = Path(__file__).parent / "chaos" / "ceph-client-crash.json"


def test_chaos_ceph_negative_control_librbd_write_back_cache_loses_writes_the_safe_client_keeps(
        chaos: Callable[..., Outcome]) -> None:
    """The checker must be able to fail on Ceph too: with librbd's write-back cache and no flush
    (--cache unsafe: the cache without its writethrough-until-flush guard) the writes it held are
    lost when the client dies; at --cache none the same schedule loses nothing."""
    unsafe = chaos(replay=NEGATIVE, cache="unsafe")
    lost = [f for f in unsafe.verdict.findings if f.category in ("lost", "unreadable")]
    assert not unsafe.verdict.ok and lost, "\n".join(unsafe.verdict.lines())
    assert unsafe.verdict.seed == 6789 and all(f.write.writer == "rbd" for f in lost)
    safe = chaos(replay=NEGATIVE, cache="none")
    assert safe.verdict.ok, "\n".join(safe.verdict.lines())
    assert safe.verdict.acked > 50 and safe.verdict.counts()["lost"] == 0
