"""Lab and allocation locks between real processes (flock): a second holder fails at once with
the first one's pid, a dead holder's lock is free again, and a process may retake its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import locks

REPO = Path(__file__).resolve().parents[2]
HOLDER = "import sys, time; from harness import locks; locks.hold(sys.argv[1]); print('held', flush=True); time.sleep(60)"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    return tmp_path


def start_holder(lab: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, lab], stdout=subprocess.PIPE, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_a_second_holder_fails_at_once_naming_the_first(home: Path) -> None:
    p = start_holder("g3")
    try:
        t = time.monotonic()
        with pytest.raises(locks.LabBusy, match=rf"lab g3 is busy: pid {p.pid} "):
            locks.hold("g3")
        assert time.monotonic() - t < 1.0
        assert locks.is_held_elsewhere("g3")
        locks.hold("other")  # other labs are not affected
        locks.release("other")
    finally:
        p.kill()
        p.wait()
    # the kernel dropped the dead holder's lock
    assert not locks.is_held_elsewhere("g3")
    locks.hold("g3")
    locks.hold("g3")  # again in the same process: a no-op
    locks.release("g3")


def test_allocation_waits_its_turn(home: Path) -> None:
    with locks.allocation():
        held = subprocess.run([sys.executable, "-c",
                               "from harness import locks\nwith locks.allocation(timeout=0.5): pass"],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
        assert held.returncode != 0 and "allocation lock" in held.stderr
    with locks.allocation(timeout=1):
        pass


def test_lab_state_survives_writers_on_many_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes restarted side by side record their boots from threads at once (CI run 7 lost one)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.host.facts import PROFILES
    from harness.lab.lab import Lab
    from harness.plan.planner import make_plan
    from harness.spec.validate import validate_text
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    topo, res = validate_text("lab: st\nprovider: lxc\nnetworks: [{name: n}]\nnodes: [{name: a}]\n", PROFILES["ci"])
    lab = Lab(make_plan(topo, res, "st.yaml", set(), PROFILES["ci"]))
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: lab.booted(f"n{i}", float(i)), range(64)))
    assert lab.state().boot_seconds == {f"n{i}": float(i) for i in range(64)}


def test_lab_state_keeps_every_kind_of_write_from_many_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Boots, ownership claims, snapshots' records and plain field writes side by side: the typed
    state goes through the same lock, so none overwrites another."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.host.facts import PROFILES
    from harness.lab.lab import Lab
    from harness.lab.state import SnapshotInfo
    from harness.plan.planner import make_plan
    from harness.spec.validate import validate_text
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    topo, res = validate_text("lab: st\nprovider: lxc\nnetworks: [{name: n}]\nnodes: [{name: a}]\n", PROFILES["ci"])
    lab = Lab(make_plan(topo, res, "st.yaml", set(), PROFILES["ci"]))

    def write(i: int) -> None:
        if i % 4 == 0:
            lab.booted(f"n{i}", float(i))
        elif i % 4 == 1:
            lab.claim(f"pool p{i}")
        elif i % 4 == 2:
            lab.store.update(lambda st: st.snapshots.update({f"s{i}": SnapshotInfo(bytes=i)}))
        else:
            lab.save_state(exercise=f"e{i}")
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(write, range(64)))
    st = lab.state()
    assert st.boot_seconds == {f"n{i}": float(i) for i in range(0, 64, 4)}
    assert sorted(st.owned) == sorted(f"pool p{i}" for i in range(1, 64, 4))
    assert sorted(st.snapshots) == sorted(f"s{i}" for i in range(2, 64, 4))
    assert st.exercise in {f"e{i}" for i in range(3, 64, 4)}
    assert not list(lab.dir.glob(".state.*.tmp"))  # every writer renamed its file over state.json


def test_exclusive_is_reentrant_in_its_thread_and_excludes_other_threads(home: Path) -> None:
    import threading
    got: list[str] = []
    with locks.exclusive("k"):
        with locks.exclusive("k", timeout=0.5):  # the holder calls a function that takes it again
            pass

        def other() -> None:
            with locks.exclusive("k", timeout=5):
                got.append("in")
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        assert got == []
    t.join(5)
    assert got == ["in"]
