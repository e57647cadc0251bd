#!/usr/bin/env python3
"""Node-layer benchmark: golden image build (cold with --cold, and cached), up and down of
1, 3 and 6 nodes per provider, memory per idle node. Prints seconds and ratios.

    python3 bench/bench_nodes.py [--provider lxc|vagrant] [--sizes 1,3,6] [--cold]
Run as root on a set-up host (ci/setup-host.sh). One lab at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import as_lines, record

from harness import log
from harness.lab.lab import Lab
from harness.plugins import provider_names
from harness.providers import image


def topology(n: int, provider: str) -> str:
    nodes = "\n".join(f"  - {{name: n{i}, memory: 512}}" for i in range(1, n + 1))
    text = f"lab: bench{n}\nprovider: {provider}\nnetworks: [{{name: storage}}]\nnodes:\n{nodes}\n"
    fd, path = tempfile.mkstemp(prefix=f"bench{n}-", suffix=".yaml")
    os.write(fd, text.encode())
    os.close(fd)
    return path


def container_memory_mib(lab: Lab) -> list[float]:
    """Per-node memory: summed RSS inside each container (lxc) or RSS of its qemu process (vagrant)."""
    out = []
    for node in lab.nodes.values():
        if not lab.provider.capabilities.own_kernel:  # a container: its processes are ours to sum
            # summed RSS of the container's processes (the cgroup v1 memory controller is absent here)
            summed = node.succeed(["sh", "-c", "ps -eo rss= | awk '{s+=$1} END {print s}'"]).strip()
            out.append(int(summed) / 1024)
        else:
            r = subprocess.run(["pgrep", "-f", f"guest={node.spec.object}"], capture_output=True, text=True, timeout=30)
            pid = r.stdout.split()[0] if r.stdout.split() else None
            rss = 0
            if pid:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) // 1024
            out.append(float(rss))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--provider", default="lxc", choices=provider_names())
    ap.add_argument("--sizes", default="1,3,6")
    ap.add_argument("--cold", action="store_true", help="also time a cold image build (several minutes)")
    args = ap.parse_args()
    log.setup(verbose=False)
    results: dict[str, object] = {"provider": args.provider}
    if args.cold:
        t = time.monotonic()
        image.build(force=True)
        results["image_build_cold_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    image.build()
    results["image_build_cached_s"] = round(time.monotonic() - t, 2)
    for n in [int(x) for x in args.sizes.split(",")]:
        path = topology(n, args.provider)
        lab = Lab.from_topology(path, args.provider)
        t = time.monotonic()
        lab.up()
        up = time.monotonic() - t
        time.sleep(10)  # let boot-time activity settle before measuring idle memory
        mem = container_memory_mib(lab)
        timings = lab.state().timings
        t = time.monotonic()
        rep = lab.down()
        down = time.monotonic() - t
        os.unlink(path)
        results[f"nodes_{n}"] = {"up_s": round(up, 1), "down_s": round(down, 2), "up_s_per_node": round(up / n, 2),
                                 "idle_mib_per_node": round(sum(mem) / len(mem), 1), "down_ok": rep.ok,
                                 "timings": timings}
        print(f"{args.provider}: {n} node(s): up {up:.1f}s ({up / n:.2f}s/node), down {down:.2f}s, "
              f"idle memory {sum(mem) / len(mem):.0f} MiB/node", flush=True)
    sizes = [int(x) for x in args.sizes.split(",")]
    if len(sizes) > 1:
        a, b = results[f"nodes_{sizes[0]}"], results[f"nodes_{sizes[-1]}"]
        ratio = b["up_s"] / a["up_s"]  # type: ignore[index]
        print(f"ratio up({sizes[-1]})/up({sizes[0]}) = {ratio:.2f} (node count ratio {sizes[-1] / sizes[0]:.0f})")
    print(json.dumps(results, indent=2))
    record(f"bench_nodes.py --provider {args.provider} --sizes {args.sizes}{' --cold' if args.cold else ''}", as_lines(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
