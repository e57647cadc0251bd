"""Availability from a ledger: acknowledged writes per second and their latency, the longest
stall (time without an acknowledgement, per writer) over the run and in each fault's window, and
which faults stalled writes longer than the backend promises. Times are the ledger's monotonic
clock; a fault's window is from its start to its undoing (as the ledger recorded them, or as a
schedule planned them from a start time)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from harness.chaos.ledger import Records
from harness.chaos.schedule import Schedule


@dataclass(frozen=True)
class Window:
    """A fault from ``start`` until it was undone at ``end`` (monotonic)."""
    id: int
    kind: str
    what: str
    start: float
    end: float


def windows_from(records: Records) -> list[Window]:
    """The faults the ledger recorded; one never undone (the run crashed) lasts to the ledger's end."""
    starts: dict[int, dict[str, Any]] = {}
    out = []
    for r in records.of("fault"):
        if r["phase"] == "start":
            starts[r["id"]] = r
        elif r["phase"] == "end" and r["id"] in starts:
            s = starts.pop(r["id"])
            out.append(Window(s["id"], s["kind"], s.get("what", ""), s["t"], r["t"]))
    out += [Window(s["id"], s["kind"], s.get("what", ""), s["t"], records.end) for s in starts.values()]
    return sorted(out, key=lambda w: (w.start, w.id))


def windows_planned(schedule: Schedule, t0: float) -> list[Window]:
    """The schedule's faults as windows, as planned from ``t0`` (no recovery waits)."""
    return [Window(e.id, e.kind, e.target(), t0 + e.at, t0 + e.end) for e in schedule.events]


def gaps(times: Sequence[float], start: float, end: float) -> list[tuple[float, float]]:
    """The intervals of [start, end] between consecutive ``times`` (sorted) inside it."""
    inside = [t for t in times if start <= t <= end]
    return list(pairwise([start, *inside, end]))


def longest_gap(times: Sequence[float], start: float, end: float) -> float:
    """Longest time without one of ``times`` (sorted) inside [start, end]."""
    return max(b - a for a, b in gaps(times, start, end))


@dataclass(frozen=True)
class Stall:
    writer: str
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class WindowStall:
    window: Window
    #: the longest stall of any writer in the window, from the fault's start (a stall another fault
    #: began is not this one's; one that outlasted the fault counts to its end)
    stall: Stall | None
    #: what the backend promises for this kind of fault (None: no promise given)
    bound: float | None = None

    @property
    def exceeded(self) -> bool:
        return self.bound is not None and self.stall is not None and self.stall.length > self.bound


@dataclass(frozen=True)
class Second:
    t: int  # seconds from the run's start
    ops: int
    errors: int
    latency_mean: float | None
    latency_max: float | None


@dataclass
class Availability:
    start: float
    end: float
    acked: int
    errors: int
    longest: Stall | None
    windows: list[WindowStall] = field(default_factory=list)
    per_second: list[Second] = field(default_factory=list)

    @property
    def ops_per_s(self) -> float:
        return self.acked / (self.end - self.start) if self.end > self.start else 0.0

    def slow(self) -> list[WindowStall]:
        return [w for w in self.windows if w.exceeded]

    def lines(self) -> list[str]:
        out = [f"{self.acked} acknowledged in {self.end - self.start:.1f}s ({self.ops_per_s:.1f}/s), {self.errors} refused"]
        if self.longest:
            out.append(f"longest stall {self.longest.length:.2f}s (writer {self.longest.writer}, "
                       f"from +{self.longest.start - self.start:.1f}s)")
        for w in self.windows:
            bound = f" (bound {w.bound:g}s{': EXCEEDED' if w.exceeded else ''})" if w.bound is not None else ""
            stall = f"{w.stall.length:.2f}s" if w.stall else "none"
            out.append(f"  {w.window.kind} {w.window.what} at +{w.window.start - self.start:.1f}s "
                       f"for {w.window.end - w.window.start:.1f}s: longest stall {stall}{bound}")
        return out

    def to_dict(self) -> dict[str, Any]:
        def rel(t: float) -> float:
            return round(t - self.start, 3)
        return {
            "seconds": round(self.end - self.start, 3), "acked": self.acked, "errors": self.errors,
            "ops_per_s": round(self.ops_per_s, 3),
            "longest_stall": None if self.longest is None else
            {"writer": self.longest.writer, "start": rel(self.longest.start), "seconds": round(self.longest.length, 3)},
            "faults": [{"id": w.window.id, "kind": w.window.kind, "what": w.window.what, "start": rel(w.window.start),
                        "end": rel(w.window.end), "stall": None if w.stall is None else round(w.stall.length, 3),
                        "stall_writer": None if w.stall is None else w.stall.writer, "bound": w.bound,
                        "exceeded": w.exceeded} for w in self.windows],
        }


def _stalls(records: Records) -> dict[str, list[Stall]]:
    """Every writer's stalls: the gaps between its acknowledgements, from the run's start to its end."""
    acks: dict[str, list[float]] = {}
    for r in records.lines:
        if r["ev"] == "intent":
            acks.setdefault(r["w"], [])
        elif r["ev"] == "ack":
            acks.setdefault(r["w"], []).append(r["t"])
    return {w: [Stall(w, a, b) for a, b in gaps(sorted(ts), records.start, records.end)] for w, ts in acks.items()}


def per_second(records: Records) -> list[Second]:
    """Acknowledgements, refusals and the latency (ack after its last intent) in each second of the run."""
    n = int(records.end - records.start) + 1 if records.lines else 0
    ops, errs = [0] * n, [0] * n
    lats: list[list[float]] = [[] for _ in range(n)]
    issued: dict[tuple[str, int], float] = {}
    for r in records.lines:
        i = min(n - 1, int(r["t"] - records.start))
        if r["ev"] == "intent":
            issued[(r["w"], r["seq"])] = r["t"]
        elif r["ev"] == "ack":
            ops[i] += 1
            if (t0 := issued.get((r["w"], r["seq"]))) is not None:
                lats[i].append(r["t"] - t0)
        elif r["ev"] == "error":
            errs[i] += 1
    return [Second(i, ops[i], errs[i], round(sum(ls) / len(ls), 6) if ls else None,
                   round(max(ls), 6) if ls else None) for i, ls in enumerate(lats)]


#: the longest stall the backend promises: by fault kind, or per window (None: no promise for it)
Bounds = Mapping[str, float] | Callable[[Window], float | None]


def availability(records: Records, windows: Sequence[Window] | None = None,
                 bounds: Bounds | None = None) -> Availability:
    """Availability of the run in ``records``, per fault in ``windows`` (default: the ledger's own)
    against ``bounds`` (fault kind -> the longest stall the backend promises, seconds; or a
    function of the window, for promises that depend on what the fault hit)."""
    stalls = _stalls(records)
    starts = {w: [s.start for s in ss] for w, ss in stalls.items()}
    longest = max((s for ss in stalls.values() for s in ss), key=lambda s: s.length, default=None)
    out = []
    for w in windows if windows is not None else windows_from(records):
        near = []
        for writer, ss in stalls.items():  # each writer's stalls tile the run: from the one w.start falls in
            i = max(0, bisect_right(starts[writer], w.start) - 1)
            while i < len(ss) and ss[i].start < w.end:
                if ss[i].end > w.start:
                    near.append(Stall(writer, max(ss[i].start, w.start), ss[i].end))
                i += 1
        bound = bounds(w) if callable(bounds) else (bounds or {}).get(w.kind)
        out.append(WindowStall(w, max(near, key=lambda s: s.length, default=None), bound))
    secs = per_second(records)
    return Availability(records.start, records.end, sum(s.ops for s in secs), sum(s.errors for s in secs),
                        longest, out, secs)
