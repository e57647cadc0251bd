#!/usr/bin/env python3
"""Gluster flagship benchmark: cold `pytest -k gluster_failover` wall time, bring-up time
per step, failover resume time (crash and hang of a node under a writer), node memory.

    python3 bench/bench_gluster.py [--provider lxc|vagrant] [--skip-pytest]
Run as root on a set-up host (ci/setup-host.sh, --vm for vagrant). One lab at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log  # noqa: E402
from harness.backends.gluster import planned  # noqa: E402
from harness.backends.gluster.role import volume_whole  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.plugins import provider_names  # noqa: E402
from harness.run import wait_until  # noqa: E402
from harness.testing.workload import Writer, file_appender  # noqa: E402

TOPO = str(ROOT / "topologies" / "gluster-3.yaml")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--provider", default="lxc", choices=provider_names())
    ap.add_argument("--skip-pytest", action="store_true")
    args = ap.parse_args()
    log.setup()
    out: dict[str, object] = {"provider": args.provider}
    if not args.skip_pytest:
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "gluster_failover", "--lab-provider", args.provider,
                            str(ROOT / "tests" / "lab" / "test_gluster_failover.py")], cwd=ROOT, capture_output=True, text=True)
        out["pytest_gluster_failover_s"] = round(time.monotonic() - t, 1)
        out["pytest_result"] = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"rc={r.returncode}"
        print(f"cold pytest -k gluster_failover ({args.provider}): {out['pytest_gluster_failover_s']}s: {out['pytest_result']}")
    lab = Lab.from_topology(TOPO, args.provider)
    t = time.monotonic()
    lab.up()
    out["up_s"] = round(time.monotonic() - t, 1)
    out["up_steps_s"] = lab.state().timings
    print(f"up: {out['up_s']}s; steps: {out['up_steps_s']}")
    try:
        mnt = next(p.path for p in lab.plan.host.pools if p.fuse_mount)
        ping = float(planned(lab.plan).volumes[0].options.get("network.ping-timeout", 42))
        for fault in ("crash", "freeze"):
            victim = "gluster1" if fault == "crash" else "gluster3"
            wait_until(lambda: volume_whole(lab.node("gluster2"), "kvmgluster"), timeout=300, interval=2,
                       what="volume whole before the next fault")
            with Writer(fault, file_appender(f"{mnt}/bench-{fault}.log")) as w:
                wait_until(lambda: len(w.log.acked) > 10, timeout=60, what="writer")
                t0 = time.monotonic()
                if fault == "crash":
                    with lab.node(victim).crashed():
                        wait_until(lambda: w.log.first_ack_after(t0 + ping + 1), timeout=ping + 60,  # noqa: B023
                                   what="writes after crash")
                        t1 = time.monotonic()
                else:
                    with lab.node(victim).frozen():
                        wait_until(lambda: w.log.first_ack_after(t0 + ping + 1), timeout=ping + 60,  # noqa: B023
                                   what="writes during hang")
                        t1 = time.monotonic()
            gap = w.log.max_gap(t0, t1)
            out[f"{fault}_longest_stall_s"] = round(gap, 2)
            print(f"{fault} of {victim}: longest write stall {gap:.2f}s (ping-timeout {ping:.0f}s, ratio {gap / ping:.2f})")
        mem = {}
        for n in lab.nodes.values():
            rss = n.succeed(["sh", "-c", "ps -eo rss= | awk '{s+=$1} END {print s}'"]).strip()
            mem[n.name] = round(int(rss) / 1024, 1)
        out["node_rss_mib"] = mem
        print(f"summed RSS per node (MiB): {mem}")
    finally:
        t = time.monotonic()
        lab.down()
        out["down_s"] = round(time.monotonic() - t, 1)
    print(json.dumps(out, indent=2))
    record(f"bench_gluster.py --provider {args.provider}", as_lines(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
