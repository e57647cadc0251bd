#!/usr/bin/env python3
"""A training class: `storlab class up` of N students (gluster-3 by default), memory and idle
CPU per student and per node, host CPU time to bring the class up, snapshot, reset of one
student and of the whole class beside what reset replaces (down + up of that lab), and
`class down`. These are the figures docs/scale.md sizes classes from.

    python3 bench/bench_class.py [--students 3] [--topology topologies/gluster-3.yaml] [--on incus[:REMOTE]]
                                 [--disk-budget 1G]
Run as root on a host prepared by `ci/setup-host.sh --class` (`--incus` for --on incus). Prints
seconds and ratios, then JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import paths  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.providers import hostdisks  # noqa: E402
from harness.training.klass import Klass, list_classes  # noqa: E402

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


def node_cpu_usec(lab: Lab) -> dict[str, int]:
    """Each node's CPU time so far, from its own cgroup seen from inside (a container's cgroup
    namespace makes its cgroup the root): cpu.stat usage_usec of the unified hierarchy, at the top
    on a cgroup v2 host, under unified/ on a hybrid one."""
    out = {}
    for node in lab.nodes.values():
        text = node.succeed(["sh", "-c", "cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/unified/cpu.stat"])
        out[node.name] = int(next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec")))
    return out


def real_mib(root: Path) -> float:
    """What the files under ``root`` really take of the host's disk (their allocated blocks: sparse
    images count what was written), on ``root``'s filesystem only (as `du -x`: not what is inside a
    mounted brick or budget filesystem, which the images holding them already count), links never
    followed."""
    dev, total = os.lstat(root).st_dev, 0
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if os.lstat(os.path.join(d, x)).st_dev == dev]
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
    return round(total / 2**20, 1)


def inotify_instances() -> str:
    """The inotify instances in use on this host (one per open inotify fd) against its limit."""
    used = 0
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            used += os.readlink(fd) == "anon_inode:inotify"
    limit = Path("/proc/sys/fs/inotify/max_user_instances").read_text().strip()
    return f"{used} in use, max_user_instances {limit}"


def host_cpu_seconds() -> float:
    """CPU seconds this host spent (all CPUs, not idle) since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / 100.0  # USER_HZ


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=3)
    ap.add_argument("--topology", default=str(ROOT / "topologies" / "gluster-3.yaml"))
    ap.add_argument("--on", help="where the labs run (class up --on): incus, incus:REMOTE; default the topology's")
    ap.add_argument("--untrusted", action="store_true",
                    help="students isolated from the host (no --trusted-students): incus unprivileged containers, "
                         "a topology without gluster or NFS-Ganesha (e.g. nodes-3, ceph-5)")
    ap.add_argument("--disk-budget", help="each student's disk budget (class up --disk-budget, lxc), e.g. 1G")
    args = ap.parse_args()
    res: dict[str, object] = {"students": args.students, "topology": args.topology, "on": args.on or "default",
                              "untrusted": args.untrusted, "disk_budget": args.disk_budget}
    placed = [*(["--on", args.on] if args.on else []), *([] if args.untrusted else ["--trusted-students"]),
              *(["--disk-budget", args.disk_budget] if args.disk_budget else [])]
    free0 = shutil.disk_usage(paths.home()).free
    cpu0 = host_cpu_seconds()
    try:  # a class that fails half-way is taken down too: nothing is left running
        up_s, _ = storlab("class", "up", args.topology, "--count", str(args.students), "--name", CLASS, "--expire", "2h",
                          *placed)
        res["class_up_s"] = round(up_s, 1)
        res["class_up_host_cpu_s"] = round(host_cpu_seconds() - cpu0, 1)
        res["host_disk_taken_mib"] = round((free0 - shutil.disk_usage(paths.home()).free) / 2**20)
        k = Klass.load(CLASS)
        labs = k.labs()
        time.sleep(5)  # boot-time activity settles before idle memory is read
        mem = {s: node_rss_mib(lab) for s, lab in labs.items()}
        per_student = [sum(m.values()) for m in mem.values()]
        res["memory_per_student_mib"] = round(sum(per_student) / len(per_student), 1)
        disk = [real_mib(lab.dir) for lab in labs.values()]  # what each seat's disks and files really take
        res["disk_per_student_mib"] = round(sum(disk) / len(disk), 1)
        used = [u[0] for lab in labs.values() if (u := hostdisks.budget_use(lab.dir)) is not None]
        res["budget_used_per_student_mib"] = round(sum(used) / len(used), 1) if used else None
        res["inotify_instances"] = inotify_instances()
        res["memory_per_node_mib"] = {n: v for m in list(mem.values())[:1] for n, v in m.items()}
        window = 20.0
        before = {s: node_cpu_usec(lab) for s, lab in labs.items()}
        time.sleep(window)
        after = {s: node_cpu_usec(lab) for s, lab in labs.items()}
        idle = {s: {n: (after[s][n] - before[s][n]) / 1e6 / window for n in before[s]} for s in labs}
        res["idle_cpu_per_student"] = round(sum(sum(v.values()) for v in idle.values()) / len(idle), 3)
        res["idle_cpu_per_node"] = {n: round(c, 3) for per in list(idle.values())[:1] for n, c in per.items()}
        res["where"] = sorted({lab.where() for lab in labs.values()})
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
        # the lab again through its class (a class never adopts a lab made by plain `storlab up`)
        up1_s, _ = storlab("class", "up", topo, "--students", first, "--name", CLASS, "--expire", "2h", *placed)
        res["down_plus_up_one_s"] = round(down_s + up1_s, 1)
        res["reset_vs_down_up"] = round(reset_one / (down_s + up1_s), 2)
        storlab("class", "handout", CLASS)  # the new lab's addresses into its handout and the jump keys
    finally:
        if CLASS in list_classes():
            down_all, _ = storlab("class", "down", CLASS)
            res["class_down_s"] = round(down_all, 1)
    print(f"class of {args.students} x {Path(args.topology).name} on {args.on or 'the default provider'} "
          f"({', '.join(res['where'])})")  # type: ignore[arg-type]
    print(f"  class up            {res['class_up_s']:>7} s  (labs side by side), {res['class_up_host_cpu_s']} host CPU-s")
    print(f"  memory per student  {res['memory_per_student_mib']:>7} MiB summed RSS ({res['memory_per_node_mib']})")
    print(f"  disk per student    {res['disk_per_student_mib']:>7} MiB of the host's disk; of its budget "
          f"({args.disk_budget or '-'}): {res['budget_used_per_student_mib'] or '-'} MiB used; host disk taken by the "
          f"class {res['host_disk_taken_mib']} MiB")
    print(f"  inotify instances   {res['inotify_instances']}")
    print(f"  idle CPU per student{res['idle_cpu_per_student']:>7} CPUs ({res['idle_cpu_per_node']})")
    print(f"  snapshot, 1 lab     {res['snapshot_one_s']:>7} s")
    print(f"  reset, 1 lab        {res['reset_one_s']:>7} s  vs down + up {res['down_plus_up_one_s']} s: "
          f"ratio {res['reset_vs_down_up']}")
    print(f"  reset, whole class  {res['reset_class_s']:>7} s")
    print(f"  class down          {res['class_down_s']:>7} s")
    print(json.dumps(res))
    record(f"bench_class.py --students {args.students} --topology {Path(args.topology).name}"
           f"{' --on ' + args.on if args.on else ''}{' --untrusted' if args.untrusted else ''}"
           f"{' --disk-budget ' + args.disk_budget if args.disk_budget else ''}", as_lines(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
