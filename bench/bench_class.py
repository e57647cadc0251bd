#!/usr/bin/env python3
"""A training class on one host: `storlab class up` of N students (gluster-3 by default), memory
per student and per node, snapshot, reset of one student and of the whole class beside what
reset replaces (down + up of that lab), and `class down`.

    python3 bench/bench_class.py [--students 3] [--topology topologies/gluster-3.yaml]
Run as root on a host prepared by `ci/setup-host.sh --class`. Prints seconds and ratios, then JSON.
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

from harness.classroom import Klass  # noqa: E402
from harness.lab import Lab  # noqa: E402

STORLAB = [sys.executable, "-m", "harness.cli"]
CLASS = "bcls"


def storlab(*args: str) -> tuple[float, str]:
    t = time.monotonic()
    r = subprocess.run([*STORLAB, *args], capture_output=True, text=True, check=False)
    took = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"storlab {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took, r.stdout


def node_rss_mib(lab: Lab) -> dict[str, float]:
    """Summed RSS of each container's processes (what the node costs the host)."""
    out = {}
    for node in lab.nodes.values():
        kib = node.succeed(["sh", "-c", "ps -eo rss= | awk '{s+=$1} END {print s}'"]).strip()
        out[node.name] = round(int(kib) / 1024, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=3)
    ap.add_argument("--topology", default=str(ROOT / "topologies" / "gluster-3.yaml"))
    args = ap.parse_args()
    res: dict[str, object] = {"students": args.students, "topology": args.topology}
    up_s, _ = storlab("class", "up", args.topology, "--count", str(args.students), "--name", CLASS, "--expire", "2h")
    res["class_up_s"] = round(up_s, 1)
    try:
        k = Klass.load(CLASS)
        labs = k.labs()
        time.sleep(5)  # boot-time activity settles before idle memory is read
        mem = {s: node_rss_mib(lab) for s, lab in labs.items()}
        per_student = [sum(m.values()) for m in mem.values()]
        res["memory_per_student_mib"] = round(sum(per_student) / len(per_student), 1)
        res["memory_per_node_mib"] = {n: v for m in list(mem.values())[:1] for n, v in m.items()}
        first = next(iter(labs))
        snap_s, _ = storlab("snapshot", f"{CLASS}-{first}", "bench")
        res["snapshot_one_s"] = round(snap_s, 2)
        reset_one, _ = storlab("reset", f"{CLASS}-{first}")
        res["reset_one_s"] = round(reset_one, 2)
        reset_all, _ = storlab("class", "reset", CLASS)
        res["reset_class_s"] = round(reset_all, 2)
        lab = labs[first]
        topo = lab.plan.topology
        down_s, _ = storlab("down", lab.name)
        up1_s, _ = storlab("up", topo, "--name", lab.name)
        res["down_plus_up_one_s"] = round(down_s + up1_s, 1)
        res["reset_vs_down_up"] = round(reset_one / (down_s + up1_s), 2)
        storlab("class", "handout", CLASS)  # the new lab's addresses into its handout and the jump keys
    finally:
        down_all, _ = storlab("class", "down", CLASS)
        res["class_down_s"] = round(down_all, 1)
    print(f"class of {args.students} x {Path(args.topology).name} on LXC")
    print(f"  class up            {res['class_up_s']:>7} s  (labs side by side)")
    print(f"  memory per student  {res['memory_per_student_mib']:>7} MiB summed RSS ({res['memory_per_node_mib']})")
    print(f"  snapshot, 1 lab     {res['snapshot_one_s']:>7} s")
    print(f"  reset, 1 lab        {res['reset_one_s']:>7} s  vs down + up {res['down_plus_up_one_s']} s: "
          f"ratio {res['reset_vs_down_up']}")
    print(f"  reset, whole class  {res['reset_class_s']:>7} s")
    print(f"  class down          {res['class_down_s']:>7} s")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
