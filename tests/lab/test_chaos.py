"""Chaos on the flagship lab: a seeded schedule of every fault kind this provider can give, while
the KVM host writes through qemu's gluster driver and the FUSE mount, and the checker reads back
every acknowledged write; and the negative control that shows the checker catches real loss.

Select with `pytest -k chaos`. Run directories (schedule, ledger, verdict, report.html) are under
STORLAB_HOME/chaos."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos.ledger import read
from harness.chaos.runner import Outcome

pytestmark = pytest.mark.topology("gluster-3.yaml")

#: a seed whose 60 s schedule on gluster-3 (LXC) draws a faithful hang, a kill -9 of glusterd and
#: its bricks, and a pause (SIGSTOP) of them, one at a time: each held to ping-timeout + 10 s
SEED = 146
#: the host cut from 2 of 3 bricks for 16 s, its qemu client killed inside the cut
NEGATIVE = Path(__file__).parent / "chaos" / "gluster-host-cut-client-crash.json"


def faults_applied(out: Outcome) -> list[tuple[int, str]]:
    """(id, kind) of each fault the ledger says was applied and undone."""
    recs = list(read(out.run_dir / "ledger.jsonl").of("fault"))
    started = {(r["id"], r["kind"]) for r in recs if r["phase"] == "start"}
    return sorted(started & {(r["id"], r["kind"]) for r in recs if r["phase"] == "end"})


def test_chaos_seeded_schedule_loses_no_acknowledged_write(chaos: Callable[..., Outcome]) -> None:
    out = chaos(seed=SEED, duration=60, warmup=6)
    v = out.verdict
    assert v.ok, "\n".join(v.lines())
    assert len(out.schedule.events) >= 3 and faults_applied(out) == sorted((e.id, e.kind) for e in out.schedule.events)
    assert v.acked > 500 and v.counts()["lost"] == 0
    assert all(w.bound is not None for w in v.availability.windows)  # none overlapped: every promise checked
    # each writer wrote through the whole run, and every location was read back and checked
    assert {f["writer"] for f in json.loads((out.run_dir / "verdict.json").read_text())["findings"]} == set()
    assert (out.run_dir / "report.html").read_text().count("<svg") >= 1


def test_chaos_gluster_error_gen_refuses_writes_in_its_window_and_loses_none(chaos: Callable[..., Outcome]) -> None:
    """Gluster's own error injection is a real fault: writes and fsyncs are refused while it is on,
    only then, and no acknowledged write is lost."""
    out = chaos(seed=3, duration=45, faults=["gluster-error-gen"], warmup=6)
    v = out.verdict
    assert v.ok, "\n".join(v.lines())
    recs = read(out.run_dir / "ledger.jsonl")
    start, end = (next(r["t"] for r in recs.of("fault") if r["phase"] == phase) for phase in ("start", "end"))
    refused = list(recs.of("error"))
    assert v.availability.errors == len(refused) >= 5, f"{len(refused)} writes refused"
    assert all(start <= r["t"] <= end + 15 for r in refused)  # a restarted client's first tries at most
    assert {r["w"] for r in refused} == {"gfapi", "fuse"}
    # both fops fail, each with its own errors: ENOSPC, ENAMETOOLONG, EISDIR, EFAULT or a short
    # write only from a write, EIO or EROFS only from an fsync (measured: a fop list glusterd took
    # but the translator did not, "writev,fsync", failed the fsyncs alone)
    fuse = " ".join(r["err"] for r in refused if r["w"] == "fuse")
    assert re.search(r"No space left|File name too long|Is a directory|Bad address|short write", fuse), fuse
    assert re.search(r"Input/output error|Read-only file system", fuse), fuse


def test_chaos_negative_control_cache_unsafe_loses_writes_the_safe_cache_keeps(chaos: Callable[..., Outcome]) -> None:
    """The checker must be able to fail: writes acknowledged before they were flushed (cache=unsafe)
    are lost when the client dies while the volume cannot take them (quorum lost); the same
    schedule with cache=none loses nothing (those writes are refused, not acknowledged)."""
    unsafe = chaos(replay=NEGATIVE, cache="unsafe")
    lost = [f for f in unsafe.verdict.findings if f.category in ("lost", "unreadable")]
    assert not unsafe.verdict.ok and lost, "\n".join(unsafe.verdict.lines())
    # the killed client's cache (gfapi); the FUSE client, alive, has lost a few too (its write-behind)
    assert unsafe.verdict.seed == 4242 and any(f.write.writer == "gfapi" for f in lost)
    assert "writer gfapi seq" in (unsafe.run_dir / "summary.txt").read_text()
    safe = chaos(replay=NEGATIVE, cache="none")
    assert safe.verdict.ok, "\n".join(safe.verdict.lines())
    assert safe.verdict.availability.errors > 0  # refused while quorum was gone: not acknowledged, not lost
