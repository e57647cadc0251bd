"""Shrinking a failing schedule: delta debugging (Zeller's ddmin) over its events, each candidate
run through ``fails(schedule)`` (in a lab: replay it and check), within a budget of seconds or
calls; the result is the smallest failing schedule found, 1-minimal when the budget sufficed
(removing any one of its events makes it pass). Events keep their times: a candidate is the
original schedule with events left out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.chaos.schedule import Schedule


@dataclass
class ShrinkResult:
    #: the smallest failing schedule found (the original when it did not fail)
    schedule: Schedule
    #: whether the original schedule failed when run first (False: nothing to shrink)
    reproduced: bool
    #: whether ddmin finished within the budget (the result is then 1-minimal)
    complete: bool
    calls: int
    seconds: float
    #: every candidate run, in order: (event ids, failed)
    tried: list[tuple[tuple[int, ...], bool]] = field(default_factory=list)

    def summary(self) -> str:
        if not self.reproduced:
            return f"the schedule (seed {self.schedule.seed}) did not fail again: nothing to shrink"
        ids = ", ".join(f"e{e.id}" for e in self.schedule.events) or "none"
        how = "1-minimal" if self.complete else "budget spent, smallest found so far"
        return (f"smallest failing schedule (seed {self.schedule.seed}): {len(self.schedule.events)} event(s) [{ids}] "
                f"({how}; {self.calls} runs, {self.seconds:.0f}s)")


class _OutOfBudget(Exception):
    pass


class _Runs:
    """Runs candidates once each (cached by event ids), within the budget, keeping the smallest that failed."""

    def __init__(self, schedule: Schedule, fails: Callable[[Schedule], bool], seconds: float | None,
                 calls: int | None, clock: Callable[[], float]) -> None:
        self.schedule, self.fails, self.clock = schedule, fails, clock
        self.max_calls, self.start = calls, clock()
        self.deadline = None if seconds is None else self.start + seconds
        self.cache: dict[tuple[int, ...], bool] = {}
        self.tried: list[tuple[tuple[int, ...], bool]] = []
        self.best = tuple(e.id for e in schedule.events)

    def __call__(self, ids: Sequence[int]) -> bool:
        key = tuple(sorted(ids))
        if key in self.cache:
            return self.cache[key]
        if (self.max_calls is not None and len(self.tried) >= self.max_calls) or \
                (self.deadline is not None and self.clock() >= self.deadline):
            raise _OutOfBudget
        failed = bool(self.fails(self.schedule.only(key)))
        self.cache[key] = failed
        self.tried.append((key, failed))
        if failed and len(key) < len(self.best):
            self.best = key
        return failed


def ddmin(items: Sequence[int], fails: Callable[[Sequence[int]], bool]) -> list[int]:
    """A 1-minimal failing subset of ``items`` (which fails): Zeller's ddmin, subsets then complements."""
    current, n = list(items), 2
    while len(current) >= 2:
        size = len(current)
        chunks = [current[i * size // n:(i + 1) * size // n] for i in range(n)]
        reduced = next((c for c in chunks if fails(c)), None)
        if reduced is not None:
            current, n = reduced, 2
            continue
        complements = [[x for x in current if x not in c] for c in chunks] if n > 2 else []
        reduced = next((c for c in complements if fails(c)), None)
        if reduced is not None:
            current, n = reduced, max(n - 1, 2)
            continue
        if n >= size:
            break
        n = min(2 * n, size)
    return current


def shrink(schedule: Schedule, fails: Callable[[Schedule], bool], *, seconds: float | None = None,
           calls: int | None = None, clock: Callable[[], float] = time.monotonic) -> ShrinkResult:
    """The smallest schedule made of ``schedule``'s events that ``fails``, within ``seconds`` of the
    clock and ``calls`` runs (None: no bound). The original runs first (a failure that does not come
    back is reported, not shrunk); a schedule without events is tried next (a failure without faults)."""
    runs = _Runs(schedule, fails, seconds, calls, clock)
    ids = [e.id for e in schedule.events]
    reproduced, complete = False, False
    try:
        reproduced = runs(ids)
        if reproduced and ids and not runs([]):
            ddmin(ids, runs)
        complete = reproduced
    except _OutOfBudget:
        pass
    return ShrinkResult(schedule.only(runs.best), reproduced, complete, len(runs.tried), clock() - runs.start, runs.tried)
