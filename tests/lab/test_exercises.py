"""Every shipped exercise on a lab of the topology it was written for: the checks pass on a
healthy lab, fail once the exercise is applied, and pass again after the model solution."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.lab.lab import Lab
from harness.training import exercise as training

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture(params=training.available())
def exercise_lab(request: pytest.FixtureRequest) -> Iterator[tuple[training.Exercise, Lab]]:
    ex = training.load(request.param)
    assert ex.topology, f"exercise {ex.name} names no TOPOLOGY"
    lab = Lab.from_topology(str(TOPOLOGIES / ex.topology), "lxc", name=f"tex-{ex.name[:20]}")
    try:
        lab.up()
        yield ex, lab
    finally:
        rep = lab.down()
        assert not rep.failed and not lab.leftovers(), f"{lab.name}: {rep.failed} {lab.leftovers()}"


def test_exercise_fails_when_applied_and_passes_when_solved(exercise_lab: tuple[training.Exercise, Lab],
                                                            tmp_path: Path) -> None:
    ex, lab = exercise_lab
    assert training.grade(lab, ex, tmp_path / "healthy.xml").passed, "the checks fail on a healthy lab"
    ex.break_lab(lab)
    broken = training.grade(lab, ex, tmp_path / "broken.xml")
    assert broken.checks and all(v == "failed" for v in broken.checks.values()), broken.checks
    assert all(broken.messages.get(c) for c in broken.checks), f"a failed check says nothing: {broken.messages}"
    ex.solve(lab)
    solved = training.grade(lab, ex, tmp_path / "solved.xml")
    assert solved.passed, f"the model solution does not pass: {solved.checks} {solved.messages}"
