"""Chaos on gluster-3 VMs, with what only a node's own kernel and clock allow: netem delay and
loss on a brick's interface, a clock skew, a hang that is a suspended VM, and a crash that is a
power-off (the page cache lost), while the KVM host writes through libgfapi and FUSE.

Marked `vm` (TCG makes it slow): `pytest tests/lab/test_chaos_vm.py --lab-provider vagrant`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.chaos.runner import Outcome

pytestmark = [pytest.mark.topology("gluster-3.yaml"), pytest.mark.vm]

KINDS = ["netem", "clock", "hang", "crash", "kill", "partition-oneway", "client-partition"]


def test_chaos_on_vms_with_netem_and_clock_skew_loses_no_acknowledged_write(chaos: Callable[..., Outcome]) -> None:
    out = chaos(seed=SEED, duration=180, faults=KINDS)
    kinds = {e.kind for e in out.schedule.events}
    assert {"netem", "clock"} <= kinds, f"seed {SEED} drew {sorted(kinds)}"
    assert out.verdict.ok, "\n".join(out.verdict.lines())
    assert out.verdict.acked > 200 and out.verdict.counts()["lost"] == 0


#: a seed whose 180 s schedule on gluster-3 VMs draws a clock skew, netem (38 ms +- 35 ms, 3.7 % loss),
#: a hang (a suspended VM), a client cut, a kill of glusterd and its bricks, and a crash
SEED = 15
