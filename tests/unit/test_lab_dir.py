"""A new lab's directory appears whole or not at all: `up` writes its plan and files under a
staging directory and renames it into place, so an `up` killed before that leaves no lab
directory; `down LAB` and `reap` remove the staging directory it left (CI once found an empty
lab directory after an `up` killed 0.8 s in)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import locks, paths
from harness.cli.lab import cmd_down
from harness.host.facts import PROFILES
from harness.lab import lab as labmod
from harness.lab.lab import Lab, list_labs
from harness.lab.reap import reap
from harness.plan import planner as planmod

REPO = Path(__file__).resolve().parents[2]
NODES3 = str(REPO / "topologies" / "nodes-3.yaml")
FACTS = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "incus"}))


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the point it is raised at runs."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    locks.release("nodes3")


def killed_while_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = planmod.write

    def write_then_die(plan, directory):  # type: ignore[no-untyped-def]
        real(plan, directory)
        (directory / "plan.json").unlink()  # as if killed before the plan's rename
        raise Killed

    monkeypatch.setattr(planmod, "write", write_then_die)
    with pytest.raises(Killed):
        Lab.from_topology(NODES3, "lxc", facts=FACTS)
    monkeypatch.setattr(planmod, "write", real)
    locks.release("nodes3")


def test_an_up_killed_while_writing_its_plan_leaves_no_lab_directory(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed_while_writing(monkeypatch)
    assert not paths.lab_dir("nodes3").exists()
    assert paths.staging_dir("nodes3").is_dir()
    assert list_labs() == []
    # the next `up` starts again from nothing and makes the whole directory
    lab = Lab.from_topology(NODES3, "lxc", facts=FACTS)
    assert (lab.dir / "plan.json").is_file() and (lab.dir / "files").is_dir()
    assert not paths.staging_dir("nodes3").exists()
    assert list_labs() == ["nodes3"]


def test_down_removes_what_a_killed_up_began(home: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    killed_while_writing(monkeypatch)
    assert cmd_down(argparse.Namespace(lab="nodes3")) == 0
    assert "removed" in capsys.readouterr().out
    assert not paths.staging_dir("nodes3").exists() and not paths.lab_dir("nodes3").exists()


def test_reap_removes_a_staging_directory_nobody_holds(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed_while_writing(monkeypatch)
    monkeypatch.setattr("harness.lab.reap.run", lambda *a, **k: type("R", (), {"stdout": "[]", "ok": True})())
    monkeypatch.setattr("harness.providers.base.registered", lambda: {})
    rep = reap()
    assert any("staging directory of lab nodes3" in r for r in rep.removed)
    assert not paths.staging_dir("nodes3").exists()


def test_a_staging_link_is_not_followed(home: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    (home / "labs").mkdir(parents=True)
    paths.staging_dir("nodes3").symlink_to(victim)
    assert labmod.remove_staging("nodes3") is False
    assert (victim / "keep").exists()
