#!/usr/bin/env python3
"""Dated sections appended to bench/RESULTS.md by the runs that measured them (each bench script at
its end; ci/test.sh's phase timings when STORLAB_RECORD_RESULTS=1), each with the date, the git
commit and the host's facts, so the file is a record of runs and never edited by hand.

    python3 bench/results.py TITLE [LINE...]       (what ci/test.sh calls)
STORLAB_RESULTS_FILE writes elsewhere (a scratch copy, a test).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (ci/test.sh) as well as imported by the bench scripts
    sys.path.insert(0, str(ROOT))

from harness.host.facts import HostFacts  # noqa: E402
from harness.run import run  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADER = """# Measured results

Dated figures from runs on this project's machines. The README says what to expect; this file says
what was seen, when, on which commit and which host. Sections are appended by the runs themselves
(`bench/results.py`: every `bench/bench_*.py` at its end, and `STORLAB_RECORD_RESULTS=1 bash ci/test.sh`
with its phase timings), oldest first; do not edit them by hand.
"""


def commit(root: Path = ROOT) -> str:
    """The short commit of ``root``'s checkout, noting uncommitted changes to tracked files;
    'unknown' outside a git checkout."""
    head = run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], timeout=10)
    if not head.ok:
        return "unknown"
    changed = run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], timeout=30)
    return head.stdout.strip() + (" + local changes" if changed.ok and changed.stdout.strip() else "")


def host() -> str:
    """What the figures depend on: CPUs, memory, kernel, and whether VMs get KVM or run under TCG."""
    facts = HostFacts.detect()
    accel = "kvm" if facts.kvm_usable else f"tcg ({facts.kvm_reason})"
    return f"{os.cpu_count()} CPUs, {facts.mem_mib / 1024:.1f} GiB, kernel {platform.release()}, VMs: {accel}"


def as_lines(figures: Mapping[str, object]) -> list[str]:
    """A bench's JSON summary as one `key: value` line per figure (nested values as compact JSON)."""
    return [f"{key}: {value if isinstance(value, str | int | float) else json.dumps(value)}"
            for key, value in figures.items()]


def section(title: str, lines: Sequence[str], *, when: dt.datetime, rev: str, facts: str) -> str:
    """The markdown of one recorded run."""
    body = "".join(f"- {line}\n" for line in lines)
    return f"\n## {when:%Y-%m-%d %H:%M} UTC: {title}\n\nCommit {rev}; host: {facts}.\n\n{body}"


def record(title: str, lines: Sequence[str], *, path: Path | None = None, when: dt.datetime | None = None) -> Path:
    """Append a dated section (``title``, the commit, the host, one list item per line) to
    bench/RESULTS.md, or ``path``, or $STORLAB_RESULTS_FILE; a missing file starts with the header."""
    target = path or Path(os.environ.get("STORLAB_RESULTS_FILE") or RESULTS)
    text = section(title, lines, when=when or dt.datetime.now(dt.UTC), rev=commit(), facts=host())
    if not target.exists():
        text = HEADER + text
    with target.open("a", encoding="utf-8") as fh:  # one write: a section is never interleaved
        fh.write(text)
    print(f"recorded in {target}: {title}")
    return target


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    record(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
