"""Snapshots of a lab: save every node's root file system and data disks under a name, revert to
one, and `reset` to the baseline `up` ends with (then the roles' health waits)."""

from __future__ import annotations

import json
import re
import shutil
import time

from harness import locks, log
from harness.errors import HarnessError, LabStateError
from harness.host import pools as hostpools
from harness.lab.core import LabCore
from harness.lab.state import SnapshotInfo
from harness.nodes.node import on_each
from harness.run import succeed

#: the snapshot `up` ends with, where the provider can snapshot: `reset` goes back to it
BASELINE = "up"
SNAPSHOT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def snapshot(lab: LabCore, name: str) -> float:
    """Save every node's root file system and data disks as ``name`` (replacing one of that
    name); the nodes keep running. Returns the seconds it took."""
    if not SNAPSHOT_RE.fullmatch(name):
        raise HarnessError(f"snapshot name {name!r}: 1-40 lower-case letters, digits, '-' and '_'")
    locks.hold(lab.name)
    root = lab.dir / "snapshots"
    tmp, dest = root / f".{name}.partial", root / name
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.monotonic()
    with log.step(f"lab {lab.name}: snapshot {name}"):
        listed = hostpools.listings(lab) if lab.pools_here() else {}
        lab.provider.snapshot(tmp)
        (tmp / "pools.json").write_text(json.dumps(listed))
        if dest.exists():
            lab.provider.drop_snapshot(dest)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    took = round(time.monotonic() - t0, 2)
    size = int(succeed(["du", "-s", "-B1", str(dest)], timeout=120).split()[0])
    info = SnapshotInfo(taken=time.time(), seconds=took, bytes=size)
    lab.store.update(lambda st: st.snapshots.update({name: info}))
    return took


def run_roles(lab: LabCore) -> None:
    """Every role step again (each is idempotent and waits for a healthy backend)."""
    for step, fn in lab.steps():
        if step.startswith("role "):
            with log.step(step):
                fn()


def converge(lab: LabCore) -> float:
    """Bring a running lab whose nodes were crashed or stopped (a fault a test left) back to what
    its plan says: power on and wait for the nodes that are down, then run the roles again (a
    node that rebooted logs in, connects and mounts again). Returns the seconds it took."""
    locks.hold(lab.name)
    t0 = time.monotonic()
    with log.step(f"lab {lab.name}: converge"):
        down = [n for n in lab.nodes.values() if not n.is_up()]
        on_each(down, lambda n: n.start(), "boot")
        run_roles(lab)
    return round(time.monotonic() - t0, 2)


def revert(lab: LabCore, name: str, converge: bool = False) -> float:
    """Put every node's root file system and data disks back as snapshot ``name`` saved them,
    boot the nodes and let the host's pools see the restored storage. With ``converge`` the
    roles run again too (idempotent; they wait for a healthy backend): what `reset` does."""
    if name not in lab.snapshots():
        raise LabStateError(f"lab {lab.name} has no snapshot {name!r} (snapshots: "
                            f"{', '.join(lab.snapshots()) or 'none'})")
    locks.hold(lab.name)
    t0 = time.monotonic()
    with log.step(f"lab {lab.name}: revert to {name}"):
        lab.access.close_connections(lab.nodes.values())
        lab.access.write_ssh_config()  # closing removed the connections' directory
        lab.provider.restore(lab.dir / "snapshots" / name)
        on_each(list(lab.nodes.values()), lambda n: n.wait_booted(), "boot")
        if converge:
            run_roles(lab)
        if lab.pools_here():
            saved = lab.dir / "snapshots" / name / "pools.json"
            with log.step("host pools"):  # active pools are refreshed: they list the restored volumes
                hostpools.wire(lab, json.loads(saved.read_text()) if saved.exists() else None)
    took = round(time.monotonic() - t0, 2)
    lab.save_state(status="up", reverted={"to": name, "at": time.time(), "seconds": took})
    return took


def reset(lab: LabCore) -> float:
    """Back to the state right after `up`: the baseline snapshot, then the roles' health waits."""
    if BASELINE not in lab.snapshots():
        raise LabStateError(f"lab {lab.name} has no baseline snapshot to reset to: take it right after up with "
                            f"`storlab snapshot {lab.name} {BASELINE}` (VM labs do not take it by themselves)")
    took = revert(lab, BASELINE, converge=True)
    lab.save_state(exercise=None)  # an exercise applied after up is undone with everything else
    return took
