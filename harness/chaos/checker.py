"""The checker: given a ledger and the blocks read back at every location it names, what happened
to the acknowledged writes. At each location (target, offset) the block read back must be the
last acknowledged write there, or a later write that was never acknowledged (in doubt: it may
have landed). Anything else is a finding, named by the write's identity (writer, sequence,
target, offset, when it was acknowledged):

- lost: nothing of ours there (zeros, a short file); unreadable (EIO, split-brain) counts as lost
- torn: a block of ours whose digest does not match its content (part old, part new, or damaged)
- corrupt: foreign data, or an intact block of another location or content (a misdirected write)
- stale: an intact older write of that location, where a newer one was acknowledged

Where in-doubt writes followed the last acknowledged one, a torn, zeroed or foreign block is not a
finding (such a write may tear what it overwrites) but is counted and noted. Availability (ops,
latency, stalls, fault windows) is harness.chaos.availability's."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.chaos.availability import Availability, Bounds, Window, availability
from harness.chaos.ledger import Records, decode_block
from harness.errors import HarnessError

#: what each finding category means, in the order a report lists them
CATEGORIES = {
    "lost": "acknowledged, and not there",
    "unreadable": "acknowledged, and its block cannot be read back (counted as lost)",
    "torn": "a block whose digest does not match its content",
    "corrupt": "foreign data, or another write's block, where an acknowledged write was",
    "stale": "an older write's block where a newer one was acknowledged",
}


@dataclass(frozen=True)
class Unreadable:
    """A location that could not be read back, and why (EIO, split-brain...)."""
    error: str


#: what was read back, by (target, offset): the block's bytes, or why it could not be read
ReadBack = Mapping[tuple[str, int], "bytes | Unreadable"]


@dataclass(frozen=True)
class Write:
    """One write as the ledger has it (all its attempts): ``acked`` is the monotonic time of its ack."""
    writer: str
    seq: int
    target: str
    offset: int
    size: int
    digest: str
    order: int  # its first intent's place in the ledger
    acked: float | None = None
    acked_wall: float | None = None

    def name(self) -> str:
        return f"writer {self.writer} seq {self.seq} at {self.target}+{self.offset}"


@dataclass(frozen=True)
class Finding:
    category: str
    write: Write
    detail: str

    def describe(self, start: float = 0.0) -> str:
        when = f", acknowledged {self.write.acked - start:.2f}s into the run" if self.write.acked is not None else ""
        return f"{self.category}: {self.write.name()}{when}: {self.detail}"


@dataclass
class Verdict:
    seed: int | None
    findings: list[Finding]
    availability: Availability
    acked: int
    in_doubt: int
    #: acknowledged writes overwritten by a later acknowledged one (nothing to read back of them)
    superseded: int
    #: damage at locations where an in-doubt write may have caused it
    notes: list[str] = field(default_factory=list)
    ledger_torn_lines: list[int] = field(default_factory=list)
    start: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings and not self.availability.slow()

    def counts(self) -> dict[str, int]:
        out = {c: sum(1 for f in self.findings if f.category == c) for c in CATEGORIES}
        out["lost"] += out["unreadable"]
        return out

    def lines(self, limit: int = 20) -> list[str]:
        """The verdict for a person: the counts, then the first ``limit`` findings and slow faults."""
        c = self.counts()
        head = (f"seed {self.seed}: {self.acked} writes acknowledged, {self.in_doubt} in doubt; "
                f"{c['lost']} lost ({c['unreadable']} unreadable), {c['torn']} torn, {c['corrupt']} corrupt, "
                f"{c['stale']} stale")
        out = [head, *(f.describe(self.start) for f in self.findings[:limit])]
        if len(self.findings) > limit:
            out.append(f"... and {len(self.findings) - limit} more")
        return out + self.availability.lines()

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "ok": self.ok, "acked": self.acked, "in_doubt": self.in_doubt,
                "superseded": self.superseded, "counts": self.counts(),
                "findings": [{"category": f.category, "writer": f.write.writer, "seq": f.write.seq,
                              "target": f.write.target, "offset": f.write.offset,
                              "acked_s": None if f.write.acked is None else round(f.write.acked - self.start, 3),
                              "acked_wall": f.write.acked_wall, "detail": f.detail} for f in self.findings],
                "notes": self.notes, "ledger_torn_lines": self.ledger_torn_lines,
                "availability": self.availability.to_dict()}


def writes(records: Records) -> dict[tuple[str, int], Write]:
    """Every write the ledger names, by (writer, seq), with its first ack."""
    out: dict[tuple[str, int], Write] = {}
    for order, r in enumerate(records.lines):
        key = (r.get("w"), r.get("seq"))
        if r["ev"] == "intent" and key not in out:
            out[(r["w"], r["seq"])] = Write(r["w"], r["seq"], r["target"], r["off"], r["len"], r["sum"], order)
        elif r["ev"] == "ack" and key in out and out[(r["w"], r["seq"])].acked is None:
            w = out[(r["w"], r["seq"])]
            out[(r["w"], r["seq"])] = Write(w.writer, w.seq, w.target, w.offset, w.size, w.digest, w.order,
                                            r["t"], r["wall"])
    return out


def locations(records: Records) -> list[tuple[str, int, int]]:
    """(target, offset, size) of every location the ledger wrote to: what the lab step reads back."""
    seen = {(w.target, w.offset): w.size for w in writes(records).values()}
    return [(t, o, s) for (t, o), s in sorted(seen.items())]


def _classify(data: bytes | Unreadable, last: Write, doubtful: Sequence[Write],
              older: Sequence[Write]) -> tuple[str, str] | None:
    """(category, detail) of what was read where ``last`` was the last acknowledged write; None: fine."""
    if isinstance(data, Unreadable):
        return "unreadable", data.error
    got = decode_block(data[:last.size])
    if got is None:
        if not any(data[:last.size]):
            return "lost", f"{len(data)} bytes read, all zero" if data else "nothing there (short file)"
        return "corrupt", "not a block of ours (foreign data)"
    who = f"writer {got.writer} seq {got.seq} (offset {got.offset})"
    if not got.intact:
        return "torn", f"the block says it is {who}, and its digest does not match its content"
    by_id = {(w.writer, w.seq): w for w in (last, *doubtful, *older)}
    mine = by_id.get((got.writer, got.seq))
    if mine is None or got.offset != last.offset or got.digest != mine.digest:
        return "corrupt", f"an intact block of {who}, which was never written here"
    if mine is last or mine in doubtful:
        return None
    return "stale", f"the older {who} is there instead"


def check(records: Records, reads: ReadBack, windows: Sequence[Window] | None = None,
          bounds: Bounds | None = None) -> Verdict:
    """The verdict on ``records`` given ``reads`` (every location of `locations`; HarnessError when
    one is missing: that is the harness's failure, not the storage's). Availability is measured
    over ``windows`` (default: the faults the ledger recorded) against ``bounds`` (kind -> seconds)."""
    all_writes = writes(records)
    by_loc: dict[tuple[str, int], list[Write]] = {}
    for w in sorted(all_writes.values(), key=lambda w: w.order):
        by_loc.setdefault((w.target, w.offset), []).append(w)
    missing = [loc for loc in by_loc if loc not in reads]
    if missing:
        raise HarnessError(f"the read-back lacks {len(missing)} of the ledger's {len(by_loc)} locations, "
                           f"first {missing[0][0]}+{missing[0][1]}")
    findings, notes, superseded = [], [], 0
    for loc, ws in by_loc.items():
        acked = [i for i, w in enumerate(ws) if w.acked is not None]
        if not acked:
            continue
        last = ws[acked[-1]]
        superseded += len(acked) - 1
        doubtful = ws[acked[-1] + 1:]
        verdict = _classify(reads[loc], last, doubtful, ws[:acked[-1]])
        if verdict is None:
            continue
        category, detail = verdict
        if doubtful and category != "stale":  # a write in doubt may have torn what it overwrote
            notes.append(f"{category} at {loc[0]}+{loc[1]} after {len(doubtful)} write(s) in doubt "
                         f"(last acknowledged: {last.name()}): {detail}")
            continue
        findings.append(Finding(category, last, detail))
    findings.sort(key=lambda f: (list(CATEGORIES).index(f.category), f.write.order))
    n_acked = sum(1 for w in all_writes.values() if w.acked is not None)
    header = records.header
    return Verdict(header.get("seed"), findings, availability(records, windows, bounds), n_acked,
                   len(all_writes) - n_acked, superseded, notes, list(records.torn), records.start)


def read_file_blocks(path: str, target: str, where: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], bytes | Unreadable]:
    """Read back the locations of ``target`` in the file ``path`` (a FUSE or NFS mount on the host,
    a device), one pread each, so an EIO costs one location, not the file."""
    out: dict[tuple[str, int], bytes | Unreadable] = {}
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return {(t, o): Unreadable(f"open {path}: {exc.strerror}") for t, o, _ in where if t == target}
    try:
        for t, offset, size in where:
            if t != target:
                continue
            try:
                out[(t, offset)] = os.pread(fd, size, offset)
            except OSError as exc:
                out[(t, offset)] = Unreadable(f"read {path} at {offset}: {exc.strerror}")
    finally:
        os.close(fd)
    return out
