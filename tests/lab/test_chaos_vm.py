"""Chaos on gluster-3 VMs, with what only a node's own kernel, clock and disks allow: netem delay
and loss on a brick's interface, a clock skew, a hang that is a suspended VM, a crash that is a
power-off (the page cache lost), and dm-flakey under a brick's filesystem (every I/O failing in
bursts: XFS shuts down, the brick dies, and the disk is put back and mounted anew), while the KVM
host writes through libgfapi and FUSE.

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


#: a seed whose 180 s schedule on gluster-3 VMs draws dm-flakey three times (a brick's disk failing
#: in bursts), netem, a clock skew twice and a hang
FLAKEY_SEED = 11


def test_chaos_on_vms_with_dm_flakey_loses_no_acknowledged_write(chaos: Callable[..., Outcome]) -> None:
    out = chaos(seed=FLAKEY_SEED, duration=180, faults=[*KINDS, "dm-flakey"])
    kinds = {e.kind for e in out.schedule.events}
    assert {"dm-flakey", "netem", "clock"} <= kinds, f"seed {FLAKEY_SEED} drew {sorted(kinds)}"
    assert out.verdict.ok, "\n".join(out.verdict.lines())
    assert out.verdict.acked > 200 and out.verdict.counts()["lost"] == 0
