"""Seeded chaos of the iscsi lab on containers (iscsi-userspace.yaml): its server(s) crashed, their daemons killed
or paused, partitioned, their data filesystem filled, while the KVM host writes through qemu's own
iscsi client, and every acknowledged write is read back. Marked `slow` (CI runs it with
STORLAB_CI_FULL=1): `pytest tests/lab/test_chaos_iscsi.py --lab-provider lxc`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.chaos.runner import Outcome

pytestmark = [pytest.mark.topology("iscsi-userspace.yaml"), pytest.mark.slow]

FAULTS = ["crash", "kill", "pause", "partition", "client-partition", "disk-full", "hang"]
SEED = 29


def test_chaos_iscsi_seeded_schedule_loses_no_acknowledged_write(chaos: Callable[..., Outcome]) -> None:
    out = chaos(seed=SEED, duration=90, faults=FAULTS)
    kinds = {e.kind for e in out.schedule.events}
    assert {"crash", "disk-full", "client-partition"} <= kinds, f"seed {SEED} drew {sorted(kinds)}"
    assert out.verdict.ok, "\n".join(out.verdict.lines())
    assert out.verdict.acked > 100 and out.verdict.counts()["lost"] == 0
