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
