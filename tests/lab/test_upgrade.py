"""`storlab upgrade` on a real gluster-3 lab (LXC: the packages come from the trixie bundle made on
this host): a rolling restart that must wait for heal before the next server, the 10.3 -> 11.1
rolling upgrade stopped by the gate with its known cause, and the offline upgrade to 11.1 while the
KVM host's FUSE client (the host's own 10.3) keeps writing: no acknowledged write lost, op-version
raised, the host pools still listing their volumes on the new servers."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.backends.gluster.upgrade import op_version
from harness.chaos import runner
from harness.errors import HarnessError
from harness.lab import versions
from harness.lab.lab import Lab
from harness.plan.model import need
from harness.upgrade import rolling

from .upgrading import needs_bookworm

pytestmark = pytest.mark.topology("gluster-3.yaml")

BRICK = "/gluster/bricks/1/brick"


def mountpoint(lab: Lab) -> str:
    return need(next(p.path for p in lab.plan.host.pools if p.fuse_mount), "the FUSE mount's path")


def pending(lab: Lab) -> dict[str, int]:
    """Entries each brick's index marks as needing heal, read on the nodes themselves."""
    out = {}
    for n in lab.nodes.values():
        names = n.succeed(["ls", "-1", f"{BRICK}/.glusterfs/indices/xattrop"], timeout=30).split()
        out[n.name] = sum(1 for x in names if not x.startswith("xattrop-"))
    return out


@pytest.fixture
def baseline(lab: Lab, host_side: Lab) -> Lab:
    """Each test starts from the lab as `up` left it (10.3 everywhere)."""
    lab.reset()
    return lab


def test_upgrade_rolling_restart_waits_for_heal_before_the_next_server(baseline: Lab, tmp_path: Any) -> None:
    """--to the lab's own release replaces nothing: each server is stopped and started in turn
    while the host writes, and the next one only once the last one's backlog healed. Without the
    heal wait, a server would be stopped while its peers still owe each other entries."""
    lab = baseline
    own = lab.plan.nodes[0].release
    seen: dict[str, dict[str, int]] = {}
    reports: list[rolling.Report] = []

    def look(node: str) -> None:
        seen[f"{node}{'' if node not in seen else ' (again)'}"] = pending(lab)

    def act() -> None:
        reports.append(rolling.upgrade(lab, own, pause_after="gluster2", before_stop=look))
        time.sleep(2)  # writes after the pause, before the rest
        reports.append(rolling.upgrade(lab, own, before_stop=look))
    # besides the checked writers: new files all along, so that each server comes back owing its
    # peers hundreds of entries, which take seconds to heal (two files' backlog heals on the
    # client's next write, before any gate could be caught opening early)
    stop = threading.Event()
    churn_dir = Path(mountpoint(lab)) / f"churn-{int(time.time())}"
    churn_dir.mkdir()
    made = [0]

    def churn() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # refused while quorum is short: not what is checked here
                (churn_dir / f"f{made[0]}").write_bytes(b"x" * 4096)
                made[0] += 1
            stop.wait(0.02)  # about 40 a second: a backlog of a hundred or so per server's restart
    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        out = runner.during(lab, "upgrade", act, tmp_path / "run")
    finally:
        stop.set()
        t.join(timeout=30)
    print(f"{made[0]} files made meanwhile")
    assert out.verdict.ok, "\n".join(runner.summary(out))
    assert reports[0].paused_after == "gluster2" and [s.node for s in reports[0].steps] == ["gluster1", "gluster2"]
    assert not reports[0].finished, "a paused upgrade must not finish the backend"
    assert [s.node for s in reports[1].steps] == ["gluster1", "gluster2", "gluster3"]
    print({k: v for k, v in seen.items()})
    assert all(sum(v.values()) == 0 for v in seen.values()), f"a server was stopped with entries left to heal: {seen}"


def test_upgrade_rolling_10_to_11_is_stopped_by_the_gate_with_its_known_cause(baseline: Lab) -> None:
    lab = baseline
    needs_bookworm(lab)
    t0 = time.monotonic()
    with pytest.raises(HarnessError) as err:
        rolling.upgrade(lab, "trixie", gate_timeout=300)
    took = time.monotonic() - t0
    print(f"stopped after {took:.0f}s: {str(err.value)[:300]}")
    assert "gluster/glusterfs#4016" in str(err.value) and "gluster1" in str(err.value)
    assert took < 120, "a known cause should end the gate's wait, not its timeout"
    now = versions.running(lab)
    assert now["gluster1"]["glusterfs-server"].startswith("11.1") and now["gluster2"]["glusterfs-server"].startswith("10.3")


def test_upgrade_offline_to_trixie_loses_no_acknowledged_write(baseline: Lab, libvirt_conn: Any, tmp_path: Any) -> None:
    lab = baseline
    needs_bookworm(lab)
    reports: list[rolling.Report] = []
    out = runner.during(lab, "upgrade", lambda: reports.append(rolling.upgrade(lab, "trixie", offline=True)),
                        tmp_path / "run")
    print("\n".join(runner.summary(out) + reports[0].lines()))
    assert out.verdict.ok, "\n".join(runner.summary(out))
    assert out.verdict.acked > 50
    for name, v in versions.running(lab).items():
        assert v["glusterfs-server"].startswith("11.1"), f"{name}: {v}"
    first = lab.node("gluster1")
    assert op_version(first, "cluster.op-version") == op_version(first, "cluster.max-op-version") >= 110000
    # the host's own (older) clients against the new servers: the FUSE mount's dir pool and the
    # native pool (libgfapi) list what is on the volume, and a new volume is made through each
    for pool_name in ("glusterfs-pool", "gluster-native"):
        pool = libvirt_conn.storagePoolLookupByName(lab.plan.pool(pool_name).object)
        pool.refresh(0)
        assert "vm1.qcow2" in pool.listVolumes(), f"{pool_name} lost its volume after the upgrade"
