"""A chaos run's timeline as plain data (JSON-ready), for the run directory and a later HTML
report: the fault bands, the per-second series of acknowledged writes, refusals and latency, and
the verdict. Seconds are from the run's start (the ledger's first record); nothing is plotted here."""

from __future__ import annotations

import json
from typing import Any

from harness.chaos.checker import Verdict
from harness.chaos.ledger import Records
from harness.chaos.schedule import Schedule

#: the timeline's format, for readers of saved runs
FORMAT = 1


def timeline(records: Records, verdict: Verdict, schedule: Schedule | None = None) -> dict[str, Any]:
    """{"format", "seed", "lab", "storlab", "started_wall", "seconds", "bands", "series", "verdict", "schedule"}:
    ``bands`` one per fault (id, kind, what, start, end, stall, bound, exceeded), ``series``
    columns of equal length (t, ops, errors, latency_mean, latency_max; None where no write was
    acknowledged in that second), ``verdict`` the checker's (Verdict.to_dict)."""
    av = verdict.availability
    secs = av.per_second
    header = records.header
    head = records.lines[0] if records.lines else {}
    return {
        "format": FORMAT,
        "seed": verdict.seed,
        "lab": header.get("lab"),
        "storlab": header.get("storlab"),
        "started_wall": head.get("wall"),
        "seconds": round(av.end - av.start, 3),
        "bands": av.to_dict()["faults"],
        "series": {
            "t": [s.t for s in secs],
            "ops": [s.ops for s in secs],
            "errors": [s.errors for s in secs],
            "latency_mean": [s.latency_mean for s in secs],
            "latency_max": [s.latency_max for s in secs],
        },
        "verdict": verdict.to_dict(),
        "schedule": None if schedule is None else schedule.model_dump(mode="json"),
    }


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, allow_nan=False) + "\n"
