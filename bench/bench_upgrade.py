#!/usr/bin/env python3
"""`storlab upgrade` timed: the bundle's first fetch (cold) and a cached one, a rolling restart of
gluster-3 (`--to` its own release: each server stopped and started in turn behind the gates), and
the offline upgrade to trixie, each while the host's writers write and the checker reads every
acknowledged write back. Per node: downtime and the gate's wait; per run: total seconds, writes
acknowledged and lost, the longest stall.

    python3 bench/bench_upgrade.py [--provider lxc|vagrant|incus] [--full]
--full: the offline upgrade takes each server's whole distribution (dist-upgrade, then a reboot).
Run as root on a set-up host (ci/setup-host.sh). Prints the figures, records them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log, paths  # noqa: E402
from harness.chaos import runner  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.upgrade import bundle, rolling  # noqa: E402

TOPO = str(ROOT / "topologies" / "gluster-3.yaml")


def timed_bundle(full: bool) -> dict[str, float]:
    out = {}
    for d in (paths.home() / "bundles").glob("trixie-*"):
        shutil.rmtree(d)
    for label in ("cold", "cached"):
        t = time.monotonic()
        b = bundle.make("bookworm", "trixie", ("glusterfs-server", "glusterfs-client"), full=full)
        out[f"bundle_{label}_s"] = round(time.monotonic() - t, 2)
    out["bundle_packages"] = len(b.debs)
    out["bundle_mib"] = round(b.tar.stat().st_size / 2**20, 1)
    return out


def under_writers(lab: Lab, to: str, offline: bool, run_dir: Path, full: bool = False) -> dict[str, object]:
    reports: list[rolling.Report] = []
    out = runner.during(lab, "upgrade", lambda: reports.append(rolling.upgrade(lab, to, offline=offline, full=full)),
                        run_dir)
    v = out.verdict
    r = reports[0]
    return {"seconds": r.seconds, "ok": v.ok, "acked": v.acked, "lost": len(v.findings),
            "longest_stall_s": round(v.availability.longest.length, 2) if v.availability.longest else 0.0,
            "per_node": {s.node: {"down_s": s.seconds, "gate_s": s.gate_s} for s in r.steps},
            "finished": r.finished}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--provider", default="lxc")
    ap.add_argument("--full", action="store_true", help="the offline upgrade takes the whole distribution")
    args = ap.parse_args()
    log.setup(verbose=False)
    res: dict[str, object] = {"provider": args.provider, "full": args.full, **timed_bundle(args.full)}
    lab = Lab.from_topology(TOPO, args.provider, name="bench-upgrade")
    try:
        t = time.monotonic()
        lab.up()
        res["up_s"] = round(time.monotonic() - t, 1)
        with tempfile.TemporaryDirectory() as tmp:
            res["rolling_restart"] = under_writers(lab, "bookworm", False, Path(tmp) / "restart")
            res["offline_to_trixie"] = under_writers(lab, "trixie", True, Path(tmp) / "offline", args.full)
    finally:
        lab.down()
    print(json.dumps(res, indent=1))
    where = record(f"bench_upgrade.py --provider {args.provider}{' --full' if args.full else ''} (gluster-3)",
                   as_lines(res))
    print(f"recorded in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
