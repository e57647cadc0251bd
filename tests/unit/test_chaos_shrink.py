"""Shrinking a failing schedule with ddmin against planted predicates, within budgets."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from harness.chaos.schedule import Event, Schedule
from harness.chaos.shrink import ddmin, shrink


def schedule(n: int = 16) -> Schedule:
    events = tuple(Event(id=i, at=10 + 30 * i, duration=5 + i % 7, kind="crash", nodes=(f"n{i % 3}",)) for i in range(n))
    return Schedule(seed=1, duration=30 * n + 60, provider="test", kinds=("crash",), events=events)


def needs(*ids: int) -> Callable[[Schedule], bool]:
    return lambda s: set(ids) <= {e.id for e in s.events}


def test_two_faults_that_matter_together_are_found_exactly() -> None:
    s = schedule()
    r = shrink(s, needs(3, 11))
    assert [e.id for e in r.schedule.events] == [3, 11]
    assert r.reproduced and r.complete and r.calls == len(r.tried)
    assert r.schedule.events == (s.events[3], s.events[11])  # the same events at their own times
    assert "2 event(s) [e3, e11] (1-minimal" in r.summary()


def test_one_fault_alone() -> None:
    for x in (0, 7, 15):
        r = shrink(schedule(), needs(x))
        assert [e.id for e in r.schedule.events] == [x] and r.complete


def test_every_pair_in_a_small_schedule() -> None:
    for a, b in itertools.combinations(range(6), 2):
        assert [e.id for e in shrink(schedule(6), needs(a, b)).schedule.events] == [a, b]


def test_a_failure_that_does_not_come_back_is_not_shrunk() -> None:
    s = schedule()
    r = shrink(s, lambda _s: False)
    assert not r.reproduced and not r.complete and r.calls == 1 and r.schedule == s
    assert "did not fail again" in r.summary()


def test_a_failure_without_any_fault() -> None:
    r = shrink(schedule(), lambda _s: True)
    assert r.schedule.events == () and r.complete and r.calls == 2


def test_the_budget_bounds_the_runs_and_the_smallest_failure_so_far_is_returned() -> None:
    s = schedule()
    r = shrink(s, needs(3, 11), calls=11)
    assert r.calls == 11 and not r.complete and r.reproduced
    smallest = min(len(ids) for ids, failed in r.tried if failed)
    assert len(r.schedule.events) == smallest == 12
    assert {3, 11} <= {e.id for e in r.schedule.events} and "budget spent" in r.summary()

    now = [0.0]

    def slow(sch: Schedule) -> bool:  # each run takes 60 s of the (fake) clock
        now[0] += 60
        return needs(3, 11)(sch)
    r = shrink(s, slow, seconds=300, clock=lambda: now[0])
    assert r.calls == 5 and not r.complete and r.seconds == 300


def test_ddmin_runs_each_candidate_once() -> None:
    seen: list[tuple[int, ...]] = []

    def fails(ids: Sequence[int]) -> bool:
        key = tuple(sorted(ids))
        seen.append(key)
        return {2, 9} <= set(key)
    assert ddmin(list(range(12)), fails) == [2, 9]
    r = shrink(schedule(12), needs(2, 9))
    assert len({ids for ids, _ in r.tried}) == len(r.tried) <= len(seen) + 2
