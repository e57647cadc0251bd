#!/usr/bin/env python3
"""Chaos throughput and the checker's cost on a live lab: how many faults are applied and checked
per hour (each one undone, the lab awaited whole, every acknowledged write read back at the end),
and what the checking costs (locations read back per second, the checker's time, ledger bytes
per hour). For comparison: teuthology's thrashosds changes an OSD every 5 s by default (~720 per
hour) and checks the data once, at the end, as this does.

    python3 bench/bench_chaos.py [--lab gluster3] [--minutes 10] [--seed 1] [--fast]

--fast draws short faults (2-6 s) with short gaps (1-3 s): the most faults an hour can hold on this
lab, each still undone and followed by a recovery wait. Run as root on a set-up host with the lab
up (`storlab up topologies/gluster-3.yaml --provider lxc`). One lab at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log, paths  # noqa: E402
from harness.chaos import runner  # noqa: E402
from harness.chaos.schedule import DrawOptions, draw  # noqa: E402
from harness.chaos.vocabulary import KINDS  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab", default="gluster3")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fast", action="store_true", help="short faults and gaps: the most an hour holds")
    args = ap.parse_args()
    log.setup()
    lab = Lab.load(args.lab)
    shape = runner.shape(lab, runner.supports(lab))
    vocab = {k: dataclasses.replace(v, duration=(2.0, 6.0)) for k, v in KINDS.items()} if args.fast else KINDS
    opts = DrawOptions(warmup=5, cooldown=5, gap=(1.0, 3.0)) if args.fast else DrawOptions()
    sched = draw(args.seed, args.minutes * 60, None, shape, opts, vocab)
    out_dir = paths.private_dir(paths.home() / "chaos" / f"bench-{lab.name}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = runner.run(lab, sched, out_dir)
    hours = out.seconds / 3600
    v, c = out.verdict, out.costs
    figures = {
        "lab": f"{lab.name} ({lab.plan.provider})", "mode": "fast" if args.fast else "default",
        "schedule_s": sched.duration, "wall_s": round(out.seconds, 1), "recovery_wait_s": round(out.recovery_s, 1),
        "faults_applied": len(sched.events), "faults_per_hour": round(len(sched.events) / hours),
        "kinds": sorted({e.kind for e in sched.events}), "verdict": "PASS" if v.ok else "FAIL",
        "writes_acked": v.acked, "writes_per_s": round(v.acked / out.seconds, 1),
        "locations_read_back": int(c["locations"]), "read_back_s": c["read_back_s"],
        "reads_per_s": round(c["locations"] / c["read_back_s"]) if c["read_back_s"] else None,
        "check_s": c["check_s"], "ledger_mib": round(c["ledger_bytes"] / 2**20, 2),
        "ledger_mib_per_hour": round(c["ledger_bytes"] / 2**20 / hours, 1),
    }
    for line in as_lines(figures):
        print(line)
    print(f"run directory: {out.run_dir}")
    record(f"bench_chaos: {figures['lab']}, {figures['mode']} schedule of {args.minutes:g} min (seed {args.seed})",
           as_lines(figures))
    return 0 if v.ok else 3


if __name__ == "__main__":
    sys.exit(main())
