#!/usr/bin/env python3
"""Bring-up against its floor: gluster-3 `up` (cached image) beside a floor that does the same
Gluster work by hand on the same kind of nodes in the same run, and N instances of gluster-3
brought up at once beside one.

The floor: the provider's nodes to ready (storlab's own node step: containers or VMs to ssh;
nothing faster is at hand), then, by hand over ssh, what a person would type: start glusterd on
every node at once, probe the peers, create and start the replica-3 volume, FUSE-mount it on the
host; then, as a second figure, the two libvirt pools by hand too (`virsh pool-create-as`: a dir
pool on the mount and a native gluster pool), which is the same work `up` does. No checks.

    python3 bench/bench_bringup.py [--provider lxc|vagrant] [--instances 4] [--rounds 2]
Run as root on a set-up host (ci/setup-host.sh). Prints seconds and ratios, then JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import as_lines, record  # noqa: E402

from harness import log  # noqa: E402
from harness.backends.gluster import planned  # noqa: E402
from harness.backends.gluster.role import NO_GSYNCD  # noqa: E402
from harness.lab.lab import Lab  # noqa: E402
from harness.nodes.node import Node, on_each  # noqa: E402
from harness.plugins import provider_names  # noqa: E402
from harness.run import succeed, wait_until  # noqa: E402

TOPO = str(ROOT / "topologies" / "gluster-3.yaml")
STORLAB = [sys.executable, "-m", "harness.cli"]


def storlab_up(provider: str, name: str) -> tuple[float, dict[str, float]]:
    lab = Lab.from_topology(TOPO, provider, name=name)
    t = time.monotonic()
    lab.up()
    took = time.monotonic() - t
    timings = dict(lab.state().timings)
    lab.down()
    return took, timings


def floor(provider: str, name: str) -> tuple[float, float, float]:
    """(nodes to ready, the Gluster work by hand, the two libvirt pools by hand) for gluster-3."""
    lab = Lab.from_topology(TOPO, provider, name=name)
    vol = planned(lab.plan).volumes[0]
    mnt = Path(f"/run/storlab-bench-{name}")
    try:
        t = time.monotonic()
        for step, fn in lab.steps():
            if step in ("image", "nodes", "ready"):
                fn()
        nodes_s = time.monotonic() - t
        t = time.monotonic()
        members = [lab.node(n) for n in vol.nodes]

        def glusterd(node: Node) -> None:
            bricks = [b.split(":", 1)[1] for b in vol.bricks if b.split(":", 1)[0] == node.name]
            for d in node.spec.disks:  # a brick disk the provider did not mount: format and mount it
                if d.device and d.mount:
                    node.succeed(["sh", "-c", f"mountpoint -q {d.mount} || (mkfs.xfs -q -f {d.device} && "
                                              f"mkdir -p {d.mount} && mount {d.device} {d.mount})"])
            # the same glusterd as the role's: without geo-replication's helper (gluster.role.NO_GSYNCD)
            node.succeed(["sh", "-c", NO_GSYNCD + " && systemctl unmask -q glusterd && systemctl start glusterd && "
                                      "mkdir -p " + " ".join(bricks)])
        on_each(members, glusterd, "glusterd by hand")
        first = members[0]
        for other in members[1:]:
            first.succeed(["gluster", "peer", "probe", other.address])
        wait_until(lambda: first.succeed(["gluster", "peer", "status"]).count("(Connected)") == len(members) - 1,
                   timeout=60, interval=0.1, what="peers connected")
        bricks = [f"{lab.node(b.split(':', 1)[0]).address}:{b.split(':', 1)[1]}" for b in vol.bricks]
        first.succeed(["gluster", "--mode=script", "volume", "create", vol.name, "replica", str(vol.replica), *bricks],
                      timeout=120)
        first.succeed(["gluster", "--mode=script", "volume", "start", vol.name], timeout=120)
        mnt.mkdir(exist_ok=True)
        succeed(["mount", "-t", "glusterfs", "-o", f"log-file={mnt}.log", f"{first.address}:/{vol.name}", str(mnt)],
                timeout=60)
        hand_s = time.monotonic() - t
        # the same two libvirt pools by hand: a dir pool on the mount and a native gluster pool
        # (whose start lists the volume through gfapi: glfs_fini waits 10 s on glusterfs 10)
        t = time.monotonic()
        succeed(["virsh", "pool-create-as", f"{name}-dir", "dir", "--target", str(mnt)], timeout=60)
        succeed(["virsh", "pool-create-as", f"{name}-native", "gluster", "--source-host", first.address,
                 "--source-name", vol.name, "--source-path", "/"], timeout=120)
        pools_s = time.monotonic() - t
        for pool in (f"{name}-native", f"{name}-dir"):
            subprocess.run(["virsh", "pool-destroy", pool], capture_output=True, timeout=60, check=False)
        succeed(["umount", str(mnt)], timeout=60)
        return nodes_s, hand_s, pools_s
    finally:
        for pool in (f"{name}-native", f"{name}-dir"):
            subprocess.run(["virsh", "pool-destroy", pool], capture_output=True, timeout=60, check=False)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60, check=False)
        if mnt.is_dir():
            mnt.rmdir()
        Path(f"{mnt}.log").unlink(missing_ok=True)
        lab.down()


def many(provider: str, n: int) -> float:
    names = [f"bbm{i}" for i in range(n)]
    t = time.monotonic()
    with ThreadPoolExecutor(n) as ex:
        results = list(ex.map(lambda name: subprocess.run([*STORLAB, "up", TOPO, "--provider", provider, "--name", name],
                                                        capture_output=True, text=True, timeout=3600, check=False), names))
    took = time.monotonic() - t
    for name in names:
        subprocess.run([*STORLAB, "down", name], capture_output=True, timeout=600, check=False)
    bad = [r.stderr[-500:] for r in results if r.returncode]
    if bad:
        raise SystemExit(f"{len(bad)} of {n} instances failed: {bad[0]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--provider", default="lxc", choices=provider_names())
    ap.add_argument("--instances", type=int, default=4, help="instances of gluster-3 brought up at once (0: skip)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each figure (the median is reported)")
    args = ap.parse_args()
    log.setup(verbose=False)
    out: dict[str, object] = {"provider": args.provider}
    ups, hands, nodes, pools, steps = [], [], [], [], []
    for r in range(args.rounds):
        up, timings = storlab_up(args.provider, f"bbu{r}")
        n, h, p = floor(args.provider, f"bbf{r}")
        ups.append(up)
        nodes.append(n)
        hands.append(h)
        pools.append(p)
        steps.append(timings)
    up, n, h, p = (statistics.median(ups), statistics.median(nodes), statistics.median(hands), statistics.median(pools))
    out.update(up_s=round(up, 1), floor_s=round(n + h, 1), floor_nodes_s=round(n, 1), floor_gluster_by_hand_s=round(h, 1),
               ratio=round(up / (n + h), 2), floor_with_pools_s=round(n + h + p, 1), floor_pools_by_hand_s=round(p, 1),
               ratio_same_work=round(up / (n + h + p), 2), up_runs_s=[round(x, 1) for x in ups], steps_s=steps[-1])
    print(f"gluster-3 up ({args.provider}, cached image): {up:.1f}s; floor {n + h:.1f}s "
          f"(nodes {n:.1f}s + gluster by hand {h:.1f}s); ratio {up / (n + h):.2f}")
    print(f"  the same work by hand, the two libvirt pools included ({p:.1f}s: the native gluster pool's gfapi "
          f"listing): {n + h + p:.1f}s; ratio {up / (n + h + p):.2f}")
    print("  storlab steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps[-1].items()))
    if args.instances:
        t = many(args.provider, args.instances)
        out.update(instances=args.instances, instances_up_s=round(t, 1), instances_ratio=round(t / up, 2))
        print(f"{args.instances} instances of gluster-3 up at once: {t:.1f}s = {t / up:.2f}x one lab")
    print(json.dumps(out, indent=2))
    record(f"bench_bringup.py --provider {args.provider} --instances {args.instances} --rounds {args.rounds}",
           as_lines(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
