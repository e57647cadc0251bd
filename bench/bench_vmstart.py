#!/usr/bin/env python3
"""VM nodes restored from a saved state beside the same lab booted cold (`--cold-boot`), in one run:
for each topology, `up` both ways (the node step, to every node ssh-ready with its identity, and
the whole `up`), then a snapshot and a `reset` of the restored lab. The saved states a topology
needs are built first and timed on their own (once per host and box; cached after).

    python3 bench/bench_vmstart.py [--topology nodes3|FILE ...] [--skip-cold] [--no-reset]
nodes3: three plain 1 GiB nodes with a 1 GiB data disk each (the default, with gluster-3 and
ceph-5). Run as root on a host set up with ci/setup-host.sh --vm; one lab at a time. Under TCG
the cold runs take minutes each (gluster-3 ~3 min, ceph-5 ~6 min). Prints seconds and ratios,
then JSON, and records them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.providers.vagrant import box, savedstate  # noqa: E402
from harness.providers.vagrant.spec import driver  # noqa: E402
from harness.spec import releases  # noqa: E402

NODES3 = """lab: vmstart
description: three plain VM nodes with a data disk each
provider: vagrant
networks: [{name: storage}]
nodes:
""" + "".join(f"  - {{name: n{i}, memory: 1024, disks: [{{name: data, size: 1G, filesystem: xfs, mount: /data}}]}}\n"
              for i in (1, 2, 3))


def topology_file(name: str) -> str:
    if name != "nodes3":
        return str(Path(name).resolve()) if Path(name).exists() else str(ROOT / "topologies" / f"{name}.yaml")
    fd, path = tempfile.mkstemp(prefix="vmstart-", suffix=".yaml")
    os.write(fd, NODES3.encode())
    os.close(fd)
    return path


def missing_states(lab: Lab) -> list[savedstate.State]:
    versions = savedstate.versions()
    out = []
    for n in lab.plan.nodes:
        st = savedstate.state_for(box.ref(n.release), savedstate.Shape(releases.kernel_of(n.kernel, n.release), n.memory,
                                                                       n.cpus, driver(lab.plan)), versions)
        if not st.complete and st not in out:
            out.append(st)
    return out


def one(path: str, tag: str, cold: bool, reset: bool) -> dict[str, Any]:
    lab = Lab.from_topology(path, "vagrant", name=f"vmstart-{tag}", cold_boot=cold)
    out: dict[str, Any] = {}
    try:
        if not cold:  # a state the lab lacks is built inside its up (on the lab's own network)
            out["states_to_build"] = [st.dir.name for st in missing_states(lab)]
        t = time.monotonic()
        lab.up(owner_pid=os.getpid())
        out["up_s"] = round(time.monotonic() - t, 1)
        timings = lab.state().timings
        out["nodes_s"] = timings.get("nodes")
        out["steps"] = timings
        if reset:
            out["snapshot_s"] = round(lab.snapshot("bench"), 1)
            t = time.monotonic()
            lab.revert("bench")
            out["reset_s"] = round(time.monotonic() - t, 1)
    finally:
        t = time.monotonic()
        rep = lab.down()
        out["down_s"] = round(time.monotonic() - t, 1)
        out["down_ok"] = rep.ok
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", action="append", help="nodes3 (default with gluster-3 and ceph-5), a name in "
                    "topologies/, or a file; repeat for several")
    ap.add_argument("--skip-cold", action="store_true", help="only the restored runs")
    ap.add_argument("--no-reset", action="store_true", help="no snapshot and reset of the restored lab")
    args = ap.parse_args()
    log.setup(verbose=False)
    results: dict[str, Any] = {}
    for name in args.topology or ["nodes3", "gluster-3", "ceph-5"]:
        path = topology_file(name)
        fig: dict[str, Any] = {}
        # a state this topology lacks is built by a first restored up, timed apart
        probe = Lab.from_topology(path, "vagrant", name="vmstart-probe")  # a plan only: nothing is made
        todo = missing_states(probe)
        probe.down()
        if todo:
            first = one(path, "warm", cold=False, reset=False)
            fig["first_restored_up_with_state_build_s"] = first["up_s"]
            fig["states_built"] = first["states_to_build"]
        fig["restored"] = one(path, "warm", cold=False, reset=not args.no_reset)
        if not args.skip_cold:
            fig["cold"] = one(path, "cold", cold=True, reset=False)
            for k in ("nodes_s", "up_s"):
                c, r = fig["cold"].get(k), fig["restored"].get(k)
                if c and r:
                    fig[f"ratio_{k}"] = round(c / r, 2)
        results[name] = fig
        cold = fig.get("cold", {})
        print(f"{name}: restored: nodes {fig['restored'].get('nodes_s')}s, up {fig['restored']['up_s']}s"
              + (f", reset {fig['restored'].get('reset_s')}s" if "reset_s" in fig["restored"] else "")
              + (f" | cold: nodes {cold.get('nodes_s')}s, up {cold.get('up_s')}s | ratio up "
                 f"{fig.get('ratio_up_s')}, nodes {fig.get('ratio_nodes_s')}" if cold else ""), flush=True)
        if name == "nodes3":
            os.unlink(path)
    print(json.dumps(results, indent=2))
    record(f"bench_vmstart.py{''.join(' --topology ' + t for t in args.topology or [])}"
           f"{' --skip-cold' if args.skip_cold else ''}", as_lines(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
