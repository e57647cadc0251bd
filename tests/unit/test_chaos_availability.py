"""Availability from a ledger (ops and latency per second, stalls overall and per fault window,
bounds) and the timeline a report draws, from a synthetic ledger with known times."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.chaos.availability import Window, availability, longest_gap, windows_from, windows_planned
from harness.chaos.checker import check
from harness.chaos.ledger import Records
from harness.chaos.report import timeline, to_json
from harness.chaos.schedule import Event, Schedule
from harness.testing.workload import WriteLog

T0 = 1000.0


def ledger() -> Records:
    """10 s of one writer: a write every 0.1 s (latency 0.02 s), none acknowledged from +3.0 to
    +6.5 (a crash from +2.5 to +5.0; the write issued at +3.0 takes 3.5 s), two refused; a
    second fault (+8.0 to +8.5) that costs nothing."""
    lines: list[dict[str, Any]] = [{"ev": "run", "t": T0, "wall": 5e8, "seed": 11, "storlab": "0.1.0"}]
    seq = 0

    def write(t: float, took: float = 0.02) -> None:
        nonlocal seq
        lines.append({"ev": "intent", "t": t, "wall": 0, "w": "w1", "seq": seq, "target": "v", "off": 0,
                      "len": 512, "sum": "00"})
        lines.append({"ev": "ack", "t": t + took, "wall": 0, "w": "w1", "seq": seq})
        seq += 1
    for i in range(1, 30):
        write(T0 + i / 10)
    lines.append({"ev": "fault", "t": T0 + 2.5, "wall": 0, "id": 0, "kind": "crash", "phase": "start", "what": "gluster2"})
    for t in (3.1, 3.2):
        lines.append({"ev": "error", "t": T0 + t, "wall": 0, "w": "w1", "seq": seq, "err": "EIO"})
    write(T0 + 3.0, took=3.5 - 0.02)  # acknowledged at +6.48
    lines.append({"ev": "fault", "t": T0 + 5.0, "wall": 0, "id": 0, "kind": "crash", "phase": "end"})
    lines.append({"ev": "fault", "t": T0 + 8.0, "wall": 0, "id": 1, "kind": "link", "phase": "start", "what": "gluster3"})
    lines.append({"ev": "fault", "t": T0 + 8.5, "wall": 0, "id": 1, "kind": "link", "phase": "end"})
    for i in range(66, 100):
        write(T0 + i / 10)
    lines.append({"ev": "end", "t": T0 + 10.0, "wall": 0})
    return Records("synthetic", sorted(lines, key=lambda r: r["t"]))


def test_stalls_overall_and_per_fault_window_against_bounds() -> None:
    records = ledger()
    wins = windows_from(records)
    assert [(w.id, w.kind, w.what, w.start - T0, w.end - T0) for w in wins] == \
        [(0, "crash", "gluster2", 2.5, 5.0), (1, "link", "gluster3", 8.0, 8.5)]
    av = availability(records, bounds={"crash": 2.0})
    assert av.longest is not None and av.longest.writer == "w1"
    assert av.longest.start - T0 == pytest.approx(2.92) and av.longest.length == pytest.approx(3.56)
    crash, link = av.windows
    assert crash.stall is not None and crash.stall.length == pytest.approx(3.56) and crash.bound == 2.0 and crash.exceeded
    assert link.stall is not None and link.stall.length == pytest.approx(0.1) and link.bound is None and not link.exceeded
    assert av.slow() == [crash] and av.errors == 2 and av.acked == 64
    assert av.ops_per_s == pytest.approx(6.4)
    text = "\n".join(av.lines())
    assert "longest stall 3.56s (writer w1, from +2.9s)" in text and "bound 2s: EXCEEDED" in text


def test_per_second_ops_and_latency() -> None:
    secs = availability(ledger()).per_second
    assert [s.t for s in secs] == list(range(11))
    assert [s.ops for s in secs] == [9, 10, 10, 0, 0, 0, 5, 10, 10, 10, 0]  # acks at +0.12 .. +2.92, +6.48 .. +9.92
    assert secs[3].errors == 2 and secs[4].latency_mean is None
    assert secs[6].latency_max == pytest.approx(3.48) and secs[1].latency_mean == pytest.approx(0.02)


def test_a_checker_verdict_fails_on_a_stall_beyond_the_bound_and_the_timeline_is_plain_data() -> None:
    records = ledger()
    v = check(records, {("v", 0): b""}, bounds={"crash": 2.0})  # the block's content is beside the point here
    assert v.seed == 11 and not v.ok and v.availability.slow()
    data = timeline(records, v, None)
    back = json.loads(to_json(data))
    assert back == data and back["seed"] == 11 and back["storlab"] == "0.1.0" and back["started_wall"] == 5e8
    series = back["series"]
    assert len({len(col) for col in series.values()}) == 1 and series["ops"][3] == 0
    assert back["bands"][0] == {"id": 0, "kind": "crash", "what": "gluster2", "start": 2.5, "end": 5.0, "stall": 3.56,
                                "stall_writer": "w1", "bound": 2.0, "exceeded": True}
    assert back["verdict"]["availability"]["longest_stall"]["seconds"] == 3.56


def test_planned_windows_and_a_fault_never_undone() -> None:
    s = Schedule(seed=1, duration=60, provider="t", kinds=("crash",),
                 events=(Event(id=4, at=10, duration=5, kind="crash", nodes=("n1",)),))
    assert windows_planned(s, 100.0) == [Window(4, "crash", "n1", 110.0, 115.0)]
    records = ledger()
    records.lines = [r for r in records.lines if not (r["ev"] == "fault" and r["id"] == 1 and r["phase"] == "end")]
    assert windows_from(records)[-1].end == records.end  # the run died mid-fault: it lasts to the end


def test_write_log_gaps_are_the_checkers() -> None:
    log = WriteLog(acked=[(1.0, 0), (1.5, 1), (4.0, 2)])
    assert log.max_gap(1.0, 5.0) == longest_gap([1.0, 1.5, 4.0], 1.0, 5.0) == 2.5


def test_a_stall_another_fault_began_counts_from_this_faults_start() -> None:
    """A fault applied while writes already stalled (the one before took quorum away) is held to
    its bound from its own start: the stall before it is not its doing (measured: a 1-3 s gap
    between faults let a 15 s stall of a quorum loss 'exceed' the next crash's bound)."""
    records = ledger()
    late = Window(7, "crash", "gluster3", T0 + 4.0, T0 + 4.5)  # inside the stall from +2.92 to +6.48
    av = availability(records, [late], bounds={"crash": 3.0})
    (w,) = av.windows
    assert w.stall is not None and w.stall.start - T0 == pytest.approx(4.0) and w.stall.length == pytest.approx(2.48)
    assert not w.exceeded
