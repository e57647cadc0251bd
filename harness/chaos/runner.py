"""A chaos run on a live lab: the backends' writers start on the KVM host, the schedule's faults
are applied and undone at their times (the schedule's clock stops while the lab recovers after
each quiet point: heals done, clients back), then the writers stop, the lab is awaited whole,
every location the ledger names is read back and the checker gives its verdict.

A run directory holds what a person or a replay needs: schedule.json, ledger.jsonl,
verdict.json, timeline.json, summary.txt, report.html, clients/ (the writers' client logs) and,
when the verdict is a failure, evidence/ (the lab's collector)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import log, paths
from harness.backends.base import ChaosSupport, LabContext, backends
from harness.chaos import html, report, verbs
from harness.chaos.availability import Window, windows_from
from harness.chaos.checker import Unreadable, Verdict, check, locations
from harness.chaos.ledger import Ledger, Records, read
from harness.chaos.schedule import DrawOptions, Event, Schedule, draw
from harness.chaos.support import WriteTarget
from harness.chaos.vocabulary import KINDS, UNDRAWN, LabShape, is_client, shape_of
from harness.errors import HarnessError, WaitTimeout
from harness.host.facts import loaded_modules
from harness.lab import evidence
from harness.lab.lab import Lab
from harness.providers.capabilities import available
from harness.run import wait_until
from harness.testing.workload import Writer


@dataclass
class Settings:
    #: seconds between one writer's writes (each write waits for its ack first)
    interval: float = 0.05
    #: the longest wait for the lab to be whole again after faults (s)
    recovery: float = 600.0
    #: False: writes acknowledged when the client took them, never flushed (cache=unsafe)
    sync: bool = True

    def span(self, seconds: float, block: int = 4096) -> int:
        """The bytes each writer cycles over: room for a run of ``seconds`` at full speed and half
        again (a write overwritten later is checked no more, so a fault's writes must stay), at
        most 64 MiB (longer runs wrap: what is overwritten then shows stale blocks instead)."""
        blocks = int(seconds * 1.5 / max(self.interval, 0.02)) + 256
        return min(blocks, 16384) * block


@dataclass
class Outcome:
    run_dir: Path
    schedule: Schedule
    verdict: Verdict
    #: seconds the schedule's clock was stopped for recovery waits, and the run's wall time
    recovery_s: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: what the checking cost: read_back_s, locations, check_s, ledger_bytes
    costs: dict[str, float] = field(default_factory=dict)


def supports(lab: Lab) -> list[ChaosSupport]:
    """The chaos support of each backend the lab has (HarnessError: none of them offers it)."""
    out = [s for b in backends() if b.planned(lab.plan) is not None and (s := b.chaos()) is not None]
    if not out:
        have = ", ".join(b.name for b in backends() if b.planned(lab.plan) is not None) or "none"
        raise HarnessError(f"lab {lab.name}: none of its backends ({have}) offers chaos runs yet; "
                           f"gluster, ceph, nfs and iscsi do (topologies/gluster-3.yaml, ceph-5.yaml, "
                           f"nfs-userspace.yaml, iscsi-userspace.yaml)")
    return out


def shape(lab: Lab, sup: list[ChaosSupport]) -> LabShape:
    """The lab's shape for drawing schedules: its nodes, their daemons, what its provider can give here."""
    daemons: dict[str, tuple[str, ...]] = {}
    for s in sup:
        for node, units in s.daemons(lab).items():
            daemons[node] = tuple(dict.fromkeys((*daemons.get(node, ()), *units)))
    caps = available()[lab.plan.provider]
    return shape_of(lab.plan.nodes, caps, daemons, loaded_modules(), backend_faults=own_faults(sup))


def own_faults(sup: Sequence[ChaosSupport]) -> dict[str, Callable[[LabContext, Event], verbs.Undo]]:
    """The backends' own fault kinds (Gluster's error injection, ...) and their verbs."""
    return {kind: verb for s in sup for kind, verb in s.faults().items()}


def draw_for(lab: Lab, seed: int, duration: float, kinds: Sequence[str] | None = None,
             warmup: float = 10.0) -> Schedule:
    """A schedule for ``lab`` drawn from ``seed`` (kinds None: every one it can be given here);
    HarnessError when no fault fits."""
    sched = draw(seed, duration, kinds, shape(lab, supports(lab)), DrawOptions(warmup=warmup, cooldown=warmup))
    for s in sched.skipped:
        log.info(f"chaos: fault kind {s.kind} skipped: {s.reason}")
    if not sched.events:
        raise HarnessError(f"seed {seed}: no fault could be drawn for lab {lab.name} in {duration:g}s (kinds skipped: "
                           f"{', '.join(s.kind for s in sched.skipped) or 'none'}); give a longer duration or other kinds")
    return sched


def load_schedule(where: str | os.PathLike[str]) -> Schedule:
    """The schedule of a run directory, or a schedule.json (HarnessError: unreadable, not one)."""
    f = Path(where) / "schedule.json" if Path(where).is_dir() else Path(where)
    try:
        text = f.read_text()
    except OSError as exc:
        raise HarnessError(f"replay {where}: cannot read {f}: {exc.strerror}") from None
    sched = Schedule.from_json(text, str(f))
    if note := sched.version_note():
        log.info(f"chaos: {note}")
    return sched


def run_dir_for(lab: str, seed: int, root: Path | None = None, suffix: str = "") -> Path:
    """A new private run directory: ROOT/LAB-seedN-YYYYmmdd-HHMMSS[suffix] (ROOT: STORLAB_HOME/chaos)."""
    d = (root or paths.home() / "chaos") / f"{lab}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"
    return paths.private_dir(d)


def wait_whole(lab: Lab, sup: list[ChaosSupport], timeout: float) -> float:
    """Wait until every backend says the lab is whole; the seconds it took."""
    t0, last = time.monotonic(), [""]

    def whole() -> bool:
        why = next((w for s in sup if (w := s.health(lab)) is not None), None)
        if why and why != last[0]:
            log.info(f"chaos: waiting for {why}")
            last[0] = why
        return why is None
    try:
        wait_until(whole, timeout=timeout, interval=1.0, what="the lab to be whole again")
    except WaitTimeout:
        raise HarnessError(f"lab {lab.name} not whole {timeout:g}s after the faults: still waiting for {last[0]}") from None
    return time.monotonic() - t0


class _Clock:
    """The schedule's clock: seconds since the start, without the recovery waits."""

    def __init__(self) -> None:
        self.t0, self.paused = time.monotonic(), 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0 - self.paused

    def sleep_until(self, at: float, writers: list[Writer]) -> None:
        while (left := at - self.now()) > 0:
            broken = next((w for w in writers if w.broken is not None), None)
            if broken is not None:
                raise HarnessError(f"writer {broken.name}'s ledger failed: {broken.broken}")
            time.sleep(min(left, 0.5))


def drive(lab: Lab, schedule: Schedule, ledger: Ledger, sup: list[ChaosSupport], writers: list[Writer],
          settings: Settings, crashers: Sequence[Callable[[], None]] = (),
          extra: Mapping[str, Callable[[Event], verbs.Undo]] | None = None) -> float:
    """Apply ``schedule`` (times on its own clock), undoing each fault at its end; returns the
    seconds spent waiting for recovery. Every fault still in effect is undone on the way out."""
    clock = _Clock()
    own: dict[str, Callable[[Event], verbs.Undo]] = {kind: functools.partial(verb, lab)
                                                      for kind, verb in own_faults(sup).items()}
    own.update(extra or {})
    pending = sorted(schedule.events, key=lambda e: (e.at, e.id))
    active: dict[int, tuple[Event, verbs.Undo]] = {}
    try:
        while pending or active:
            ends = min((e.end for e, _ in active.values()), default=float("inf"))
            if pending and pending[0].at < ends:
                e = pending.pop(0)
                clock.sleep_until(e.at, writers)
                log.info(f"chaos: +{clock.now():.1f}s {e.describe()} ({len(schedule.events) - len(pending)}"
                         f"/{len(schedule.events)})")
                ledger.fault(e.id, e.kind, "start", e.target())
                active[e.id] = (e, verbs.apply(lab, e, crashers, own))
                continue
            e, undo = active.pop(min(active, key=lambda i: active[i][0].end))
            clock.sleep_until(e.end, writers)
            t_undo = time.monotonic()
            _end(ledger, e, undo)
            clock.paused += time.monotonic() - t_undo  # a node's boot is recovery, not the schedule's time
            if not active:
                clock.paused += wait_whole(lab, sup, settings.recovery)
        clock.sleep_until(schedule.duration, writers)
    finally:
        for e, undo in reversed(list(active.values())):
            with contextlib.suppress(Exception):
                _end(ledger, e, undo)
    return clock.paused


def _end(ledger: Ledger, e: Event, undo: verbs.Undo) -> None:
    undo()
    ledger.fault(e.id, e.kind, "end", e.target())
    log.info(f"chaos: e{e.id} {e.kind} undone")


@contextlib.contextmanager
def writing(targets: list[WriteTarget], ledger: Ledger, settings: Settings) -> Iterator[list[Writer]]:
    """The targets' writers running on threads; stopped on the way out (a hung one is an error)."""
    writers = [Writer(t.name, t.op, settings.interval, ledger) for t in targets]
    for w in writers:
        w.__enter__()
    try:
        yield writers
    finally:
        problems = []
        for w in writers:
            try:
                w.stop(timeout=180)
            except (AssertionError, HarnessError) as exc:
                problems.append(str(exc))
        if problems:
            raise HarnessError("; ".join(problems))


def run(lab: Lab, schedule: Schedule, run_dir: Path, settings: Settings | None = None,
        extra: Mapping[str, Callable[[Event], verbs.Undo]] | None = None) -> Outcome:
    """Run ``schedule`` on ``lab``, write the run directory, return the outcome (HarnessError:
    the harness could not carry it out; a verdict that fails is an outcome, not an error).
    ``extra``: the verbs of kinds never drawn (vocabulary.UNDRAWN) the schedule names."""
    settings = settings or Settings()
    sup = supports(lab)
    lab_shape = shape(lab, sup)
    lab_shape = dataclasses.replace(lab_shape, backend_faults=lab_shape.backend_faults | set(extra or ()))
    problems = schedule.problems(lab_shape, {**KINDS, **{k: UNDRAWN[k] for k in extra or () if k in UNDRAWN}})
    if problems:
        raise HarnessError(f"schedule (seed {schedule.seed}) cannot run on lab {lab.name}: " + "; ".join(problems[:5]))
    (run_dir / "clients").mkdir(parents=True, exist_ok=True)
    (run_dir / "schedule.json").write_text(schedule.to_json())
    run_id = f"s{schedule.seed}-{int(time.time())}"
    t0 = time.monotonic()
    log.info(f"chaos: lab {lab.name}, seed {schedule.seed}: {len(schedule.events)} faults over {schedule.duration:g}s; "
             f"waiting for the lab to be whole")
    wait_whole(lab, sup, settings.recovery)
    span = settings.span(schedule.duration + 60)
    targets = [t for s in sup for t in s.targets(lab, run_dir, run_id, settings.sync, span)]
    try:
        ledger = Ledger.open(run_dir / "ledger.jsonl", seed=schedule.seed, lab=lab.name, provider=lab.plan.provider,
                             writers={t.name: t.what for t in targets},
                             cache="none" if settings.sync else "unsafe")
        with ledger, writing(targets, ledger, settings) as writers:
            paused = drive(lab, schedule, ledger, sup, writers, settings, [t.crash for t in targets if t.crash], extra)
        paused += wait_whole(lab, sup, settings.recovery)
        costs: dict[str, float] = {}
        records = read(run_dir / "ledger.jsonl")
        verdict = _verdict(lab, sup, targets, records, schedule, costs)
    finally:
        for t in targets:
            with contextlib.suppress(Exception):
                t.close()
    for s in sup:
        s.remove(lab, run_id)
    out = Outcome(run_dir, schedule, verdict, paused, time.monotonic() - t0, costs=costs)
    write(out, lab, records)
    return out


def during(lab: Lab, kind: str, action: Callable[[], object], run_dir: Path, settings: Settings | None = None,
           before: float = 5.0, after: float = 5.0) -> Outcome:
    """``action`` done to the live lab while its writers write, checked as a fault of ``kind``
    (one of vocabulary.UNDRAWN, e.g. "reconfigure"): ``before`` s of writes, the action, the lab
    awaited whole, ``after`` s more, then the read-back and the verdict, as for a schedule."""
    event = Event(id=0, at=before, duration=0.1, kind=kind,
                  nodes=tuple(n.name for n in lab.plan.nodes if not is_client(n)))  # every server (shape_of's)
    sched = Schedule(seed=0, duration=before + 0.1 + after, provider=lab.plan.provider, kinds=(kind,),
                     options=DrawOptions(warmup=before, cooldown=after), events=(event,))

    def apply(e: Event) -> verbs.Undo:
        action()
        return lambda: None
    return run(lab, sched, run_dir, settings, extra={kind: apply})


def _verdict(lab: Lab, sup: list[ChaosSupport], targets: list[WriteTarget], records: Records,
             schedule: Schedule, costs: dict[str, float]) -> Verdict:
    where = locations(records)
    reads: dict[tuple[str, int], bytes | Unreadable] = {}
    t0 = time.monotonic()
    for t in targets:
        reads.update(t.read_back(where))
    costs.update(read_back_s=round(time.monotonic() - t0, 3), locations=len(where),
                 ledger_bytes=Path(records.path).stat().st_size)
    t0 = time.monotonic()
    by_id = {e.id: e for e in schedule.events}
    windows = windows_from(records)

    def bound(w: Window) -> float | None:
        """A fault's promise holds for it alone: none while another fault overlapped it."""
        e = by_id.get(w.id)
        if e is None or any(o.id != w.id and o.start < w.end and w.start < o.end for o in windows):
            return None
        found = [b for s in sup if (b := s.bound(lab, e)) is not None]
        return min(found) if found else None
    verdict = check(records, reads, windows, bound)
    costs["check_s"] = round(time.monotonic() - t0, 3)
    return verdict


def write(out: Outcome, lab: Lab, records: Records) -> None:
    """verdict.json, timeline.json, summary.txt and report.html in the run directory (``records``:
    its ledger, as the checker read it), and the lab's evidence when the verdict fails."""
    d = out.run_dir
    data = report.timeline(records, out.verdict, out.schedule)
    (d / "verdict.json").write_text(json.dumps(out.verdict.to_dict(), indent=1) + "\n")
    (d / "timeline.json").write_text(report.to_json(data))
    (d / "summary.txt").write_text("\n".join(summary(out)) + "\n")
    html.write(d, data)
    if not out.verdict.ok:
        evidence.write(lab, d / "evidence", "\n".join(out.verdict.lines()))


def summary(out: Outcome) -> list[str]:
    v = out.verdict
    head = "PASS" if v.ok else "FAIL"
    return [f"{head}: seed {out.schedule.seed}, {len(out.schedule.events)} faults, {out.seconds:.0f}s "
            f"({out.recovery_s:.0f}s of it waiting for recovery)", *v.lines(),
            f"run directory: {out.run_dir}"]
