#!/usr/bin/env python3
"""Ceph benchmark: bring-up per step and time to HEALTH_OK, OSD-down detection (daemon
killed; node crashed), recovery back to HEALTH_OK, memory per daemon.

    python3 bench/bench_ceph.py [--provider lxc|vagrant]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log  # noqa: E402
from harness.backends.ceph import planned  # noqa: E402
from harness.backends.ceph.role import osd_stopped, parse_health, parse_osd_tree  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.plugins import provider_names  # noqa: E402
from harness.run import wait_until  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--provider", default="lxc", choices=provider_names())
    args = ap.parse_args()
    log.setup()
    out: dict[str, object] = {"provider": args.provider}
    lab = Lab.from_topology(str(ROOT / "topologies" / "ceph-5.yaml"), args.provider)
    t = time.monotonic()
    lab.up()
    out["up_s"] = round(time.monotonic() - t, 1)
    out["up_steps_s"] = lab.state().timings
    print(f"up to HEALTH_OK + rbd pool: {out['up_s']}s; steps {out['up_steps_s']}")
    admin = lab.node(planned(lab.plan).admin[0])

    def osd_status(host: str) -> str:
        tree = parse_osd_tree(admin.succeed(["ceph", "osd", "tree", "-f", "json"]))
        return str(next(o["status"] for o in tree.values() if o["host"] == host))

    def healthy() -> bool:
        return parse_health(admin.succeed(["ceph", "-s", "-f", "json"]), [])[0]

    try:
        victim = planned(lab.plan).osds[0]
        # 1. daemon killed (peers see connection refused)
        t0 = time.monotonic()
        with osd_stopped(lab.node(victim)):
            wait_until(lambda: osd_status(victim) == "down", timeout=120, interval=0.2, what="osd down")
            out["osd_kill_detected_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
        wait_until(healthy, timeout=300, interval=1, what="HEALTH_OK")
        out["recovery_after_kill_s"] = round(time.monotonic() - t0, 1)
        # 2. node crashed (no reset: heartbeat grace decides)
        t0 = time.monotonic()
        with lab.node(victim).crashed():
            wait_until(lambda: osd_status(victim) == "down", timeout=120, interval=0.5, what="osd down after crash")
            out["osd_node_crash_detected_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
        wait_until(healthy, timeout=300, interval=1, what="HEALTH_OK")
        out["recovery_after_crash_s"] = round(time.monotonic() - t0, 1)
        mem: dict[str, float] = {}
        for n in lab.nodes.values():
            for line in n.succeed(["ps", "-eo", "rss=,comm="]).splitlines():
                rss, comm = line.split(None, 1)
                if comm.startswith("ceph-"):
                    mem[f"{n.name}/{comm}"] = round(int(rss) / 1024, 1)
        out["daemon_rss_mib"] = mem
        print(f"OSD daemon killed: down after {out['osd_kill_detected_s']}s, "
              f"HEALTH_OK {out['recovery_after_kill_s']}s after restart")
        print(f"OSD node crashed: down after {out['osd_node_crash_detected_s']}s "
              f"(grace {planned(lab.plan).heartbeat_grace}s), HEALTH_OK {out['recovery_after_crash_s']}s after restart")
        print(f"daemon RSS (MiB): {mem}")
    finally:
        lab.down()
    print(json.dumps(out, indent=2))
    record(f"bench_ceph.py --provider {args.provider}", as_lines(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
