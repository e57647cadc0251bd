"""Fault schedules drawn from a seed: which fault, on which node, when and for how long, with
bounded overlap and recovery gaps, deterministic from the seed alone (a `random.Random` of its
own, no global state). A schedule is written as JSON with its seed and the storlab version, so a
run can be replayed (`Schedule.from_json`) and shrunk (harness.chaos.shrink).

Times are on the schedule's clock: seconds from the first write. The lab step that applies a
schedule stops that clock while it waits for recovery (heals done, HEALTH_OK, sessions back), so a
slow recovery delays what follows instead of piling faults on a lab that has not healed."""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness import __version__
from harness.chaos.vocabulary import HOST, KINDS, FaultKind, LabShape, NodeShape, Target
from harness.errors import HarnessError

#: the schedule file's format; a newer one is refused
FORMAT = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(_Frozen):
    """One fault: ``kind`` on ``nodes`` (a partition: ``nodes`` cut from ``apart``) from ``at`` for ``duration`` s."""
    id: int = Field(ge=0)
    at: float = Field(ge=0)
    duration: float = Field(gt=0)
    kind: str
    nodes: tuple[str, ...]
    apart: tuple[str, ...] = ()
    daemon: str | None = None
    disk: str | None = None
    params: dict[str, float] = Field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.at + self.duration

    def touches(self) -> set[str]:
        return set(self.nodes) | set(self.apart)

    def target(self) -> str:
        """What it hits, e.g. "glusterd.service on gluster2", "host | gluster2,gluster3", "gluster1 delay_ms=40"."""
        what = f"{self.daemon} on " if self.daemon else f"{self.disk} of " if self.disk else ""
        where = f"{what}{','.join(self.nodes)}" + (f" | {','.join(self.apart)}" if self.apart else "")
        return where + "".join(f" {k}={v:g}" for k, v in self.params.items())

    def describe(self) -> str:
        """e.g. "e3 kill glusterd.service on gluster2 at +41.0s for 7.5s"."""
        return f"e{self.id} {self.kind} {self.target()} at +{self.at:.1f}s for {self.duration:.1f}s"


class Skipped(_Frozen):
    kind: str
    reason: str


class DrawOptions(_Frozen):
    #: seconds of writes before the first fault, and after the last one ends (the baseline, the tail)
    warmup: float = Field(default=10.0, ge=0)
    cooldown: float = Field(default=10.0, ge=0)
    #: seconds between the end of the faults active and the next one (on top of the recovery waits)
    gap: tuple[float, float] = (5.0, 20.0)
    #: at most this many faults at once, and how often a fault that may overlap starts inside another
    max_concurrent: int = Field(default=2, ge=1)
    overlap_chance: float = Field(default=0.3, ge=0, le=1)

    @model_validator(mode="after")
    def _gap(self) -> DrawOptions:
        if not 0 < self.gap[0] <= self.gap[1]:
            raise ValueError(f"gap {self.gap} is not 0 < low <= high")
        return self


class Schedule(_Frozen):
    format: int = FORMAT
    storlab: str = __version__
    seed: int
    duration: float = Field(gt=0)
    provider: str
    #: the kinds asked for, in order
    kinds: tuple[str, ...]
    options: DrawOptions = DrawOptions()
    events: tuple[Event, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "schedule") -> Schedule:
        """A schedule written by to_json (HarnessError: not one, or of a newer format)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{source}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("format"), int) and data["format"] > FORMAT:
            raise HarnessError(f"{source}: schedule format {data['format']} is newer than this storlab's "
                               f"({FORMAT}, storlab {__version__}); replay it with storlab {data.get('storlab', '?')}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise HarnessError(f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from None

    def version_note(self) -> str | None:
        """What to say when replaying a schedule another storlab drew (None: this one did)."""
        if self.storlab == __version__:
            return None
        return (f"schedule drawn by storlab {self.storlab}, replayed by {__version__}: the same events, "
                f"but the faults' verbs may differ")

    def only(self, ids: Collection[int]) -> Schedule:
        """This schedule with only the events ``ids``, each at its own time (for shrinking)."""
        keep = set(ids)
        return self.model_copy(update={"events": tuple(e for e in self.events if e.id in keep)})

    def problems(self, shape: LabShape, vocabulary: Mapping[str, FaultKind] = KINDS) -> list[str]:
        """Why this schedule cannot run on a lab of ``shape`` ([]: it can): unknown kinds, faults
        the provider cannot give, targets the lab does not have."""
        out = []
        for e in self.events:
            kind = vocabulary.get(e.kind)
            if kind is None:
                out.append(f"{e.describe()}: unknown fault kind")
                continue
            if (why := shape.why_not(kind)) is not None:
                out.append(f"{e.describe()}: {why}")
            out += [f"{e.describe()}: {p}" for p in _target_problems(e, kind, shape)]
        return out


def _target_problems(e: Event, kind: FaultKind, shape: LabShape) -> list[str]:
    if kind.target is Target.HOST:
        return [] if e.nodes == (HOST,) and not e.apart else ["a fault of the KVM host's clients names the host alone"]
    servers = {n.name for n in shape.candidates(kind)}
    if kind.target is Target.CLIENTS:
        out = [f"no client {n} in the lab" for n in e.nodes if n not in shape.clients]
    else:
        out = [f"no server {n} in the lab (of the kind's roles)" for n in e.nodes if n not in servers]
    out += [f"no server {n} in the lab (of the kind's roles)" for n in e.apart if n not in servers]
    node = shape.node(e.nodes[0]) if e.nodes else None
    if kind.target is Target.DAEMON and (node is None or e.daemon not in node.daemons):
        out.append(f"no daemon {e.daemon} on {e.nodes[0] if e.nodes else '(no node)'}")
    if kind.target is Target.DISK and (node is None or e.disk not in node.disks):
        out.append(f"no data disk {e.disk} on {e.nodes[0] if e.nodes else '(no node)'}")
    if not e.nodes or (kind.target in (Target.GROUPS, Target.CLIENTS) and not e.apart):
        out.append("a side without nodes")
    return out


# -- drawing ----------------------------------------------------------------------------------
def usable_kinds(kinds: Sequence[str] | None, shape: LabShape,
                 vocabulary: Mapping[str, FaultKind] = KINDS) -> tuple[list[FaultKind], list[Skipped]]:
    """The kinds a schedule for ``shape`` can draw from (``kinds``: those asked for; None: every one),
    and those skipped with the reason. An unknown kind name is refused (HarnessError)."""
    names = list(dict.fromkeys(kinds if kinds is not None else vocabulary))
    unknown = [n for n in names if n not in vocabulary]
    if unknown:
        raise HarnessError(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(vocabulary)}")
    usable, skipped = [], []
    for name in names:
        why = shape.why_not(vocabulary[name])
        if why is None:
            usable.append(vocabulary[name])
        else:
            skipped.append(Skipped(kind=name, reason=why))
    return usable, skipped


def _pick(kind: FaultKind, shape: LabShape, busy: set[str], rng: random.Random) -> dict[str, Any] | None:
    """The target fields of an event of ``kind`` away from the ``busy`` nodes (None: none free)."""
    if kind.target is Target.HOST:
        return None if HOST in busy else {"nodes": (HOST,)}
    free = [n for n in shape.candidates(kind) if n.name not in busy]
    if kind.target in (Target.NODE, Target.DAEMON, Target.DISK):
        if not free:
            return None
        node: NodeShape = rng.choice(free)
        out: dict[str, Any] = {"nodes": (node.name,)}
        if kind.target is Target.DAEMON:
            out["daemon"] = rng.choice(node.daemons)
        elif kind.target is Target.DISK:
            out["disk"] = rng.choice(node.disks)
        return out
    servers = [n.name for n in shape.candidates(kind)]
    if busy & set(servers):  # a partition or a backend's fault involves every server
        return None
    if kind.target is Target.BACKEND:
        return {"nodes": tuple(servers)}
    if kind.target is Target.GROUPS:  # a minority side (one node of two), cut from the rest
        side = sorted(rng.sample(servers, rng.randint(1, max(1, (len(servers) - 1) // 2))))
        return {"nodes": tuple(side), "apart": tuple(s for s in servers if s not in side)}
    clients = list(shape.clients)
    cut = sorted(rng.sample(clients, rng.randint(1, len(clients))))
    apart = sorted(rng.sample(servers, rng.randint(1, max(1, len(servers) - 1))))
    return {"nodes": tuple(cut), "apart": tuple(apart)}


def draw(seed: int, duration: float, kinds: Sequence[str] | None, shape: LabShape,
         options: DrawOptions | None = None, vocabulary: Mapping[str, FaultKind] = KINDS) -> Schedule:
    """A schedule of ``duration`` seconds for a lab of ``shape``, from ``kinds`` (None: every kind
    the lab can give), the same for the same arguments. Faults start after ``options.warmup`` and
    end ``options.cooldown`` before the end; at most ``options.max_concurrent`` run at once, only
    kinds that may overlap overlap, never two on one node; between faults a recovery gap."""
    opts = options or DrawOptions()
    usable, skipped = usable_kinds(kinds, shape, vocabulary)
    rng = random.Random(seed)
    events: list[Event] = []
    limit, t = duration - opts.cooldown, opts.warmup
    while usable:
        kind = rng.choice(usable)
        length = round(rng.uniform(*kind.duration), 1)
        active = [e for e in events if e.at <= t < e.end]
        if active and not (kind.overlap and len(active) < opts.max_concurrent
                           and all(vocabulary[e.kind].overlap for e in active)):
            t, active = _after(active, opts, rng), []
        if t + length > limit:
            if limit - t < kind.duration[0]:
                break
            length = round(limit - t, 1)
        target = _pick(kind, shape, {n for e in active for n in e.touches()}, rng)
        if target is None:  # every node it could take is in a fault (usable kinds have targets): after those end
            if not active:
                break
            t = _after(active, opts, rng)
            continue
        params = {name: round(rng.uniform(lo, hi), 1) for name, lo, hi in kind.params}
        event = Event(id=len(events), at=round(t, 1), duration=length, kind=kind.name, params=params, **target)
        events.append(event)
        if kind.overlap and len(active) + 1 < opts.max_concurrent and rng.random() < opts.overlap_chance:
            t = round(t + rng.uniform(1.0, max(1.0, length - 1.0)), 1)  # the next one starts inside this one
        else:
            t = _after([*active, event], opts, rng)
    return Schedule(seed=seed, duration=duration, provider=shape.provider,
                    kinds=tuple(kinds if kinds is not None else vocabulary), options=opts,
                    events=tuple(events), skipped=tuple(skipped))


def _after(active: Sequence[Event], opts: DrawOptions, rng: random.Random) -> float:
    """When the next fault may start: a recovery gap after every active one has ended."""
    return round(max(e.end for e in active) + rng.uniform(*opts.gap), 1)
