"""Checks of gluster-brick-down: every brick serving, nothing left to heal, and the files written
while a brick was down are the same on every brick that should hold them."""

from __future__ import annotations

import hashlib
import os

from harness.backends.gluster import planned
from harness.backends.gluster.plan import GlusterVolumePlan
from harness.backends.gluster.role import parse_heal_count, parse_volume_status
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import need
from harness.run import wait_until

OUTAGE_DIR = "training-brick-down"  # as in exercise.py
NODE_MOUNT = "/mnt/storlab-training"  # as in exercise.py
HEAL_GRACE = 30  # seconds a heal already under way may take to finish


def volume(lab: Lab) -> GlusterVolumePlan:
    pool = next(p for p in lab.plan.host.pools if p.backend == "gluster" and p.fuse_mount and p.path)
    return next(v for v in planned(lab.plan).volumes if v.name == pool.volume)


def mountpoint(lab: Lab) -> str:
    pool = next(p for p in lab.plan.host.pools if p.backend == "gluster" and p.fuse_mount and p.path)
    return need(pool.path, "the FUSE mount's path")


def any_node(lab: Lab, vol: GlusterVolumePlan) -> Node:
    return next(n for n in (lab.node(x) for x in vol.nodes) if n.run(["true"], timeout=15).ok)


def brick_names(lab: Lab, vol: GlusterVolumePlan) -> dict[str, str]:
    """address:/path (as gluster names a brick) -> node:/path (as the topology does)."""
    out = {}
    for b in vol.bricks:
        node, path = b.split(":", 1)
        out[f"{lab.node(node).address}:{path}"] = b
    return out


def test_every_brick_is_online(lab: Lab) -> None:
    vol = volume(lab)
    st = parse_volume_status(any_node(lab, vol).succeed(["gluster", "volume", "status", vol.name, "--xml"], timeout=30))
    names = brick_names(lab, vol)
    online = {names.get(f"{b['host']}:{b['path']}", f"{b['host']}:{b['path']}") for b in st if b["online"]}
    offline = [b for b in vol.bricks if b not in online]
    assert not offline, (f"volume {vol.name}: brick(s) {', '.join(offline)} not online "
                         f"(`gluster volume status {vol.name}` shows N under Online and no PID)")


def test_nothing_left_to_heal(lab: Lab) -> None:
    vol = volume(lab)
    node = any_node(lab, vol)
    names = brick_names(lab, vol)

    def counts() -> dict[str, int | None]:
        got = parse_heal_count(node.succeed(["gluster", "volume", "heal", vol.name, "statistics", "heal-count"], timeout=60))
        return {names.get(k, k): v for k, v in got.items()}
    first = counts()
    unanswered = [b for b in vol.bricks if first.get(b) is None]
    assert not unanswered, (f"volume {vol.name}: no heal count for brick(s) {', '.join(unanswered)}: a brick that is "
                            f"not running can neither be healed nor report ({first})")
    if any(first.values()):  # every brick answers: give a heal under way a short while to finish
        try:
            wait_until(lambda: not any(counts().values()), timeout=HEAL_GRACE, interval=1, what="no pending heals")
        except Exception:
            left = {b: c for b, c in counts().items() if c}
            raise AssertionError(f"volume {vol.name}: entries still pending heal after {HEAL_GRACE}s: {left} "
                                 f"(see `gluster volume heal {vol.name} info`; a heal can be started with "
                                 f"`gluster volume heal {vol.name}`)") from None


def md5_on_brick(lab: Lab, brick: str, rel: str) -> str | None:
    node, path = brick.split(":", 1)
    r = lab.node(node).run(["md5sum", "--", os.path.join(path, rel)], timeout=30)
    return r.stdout.split()[0] if r.ok else None


def client_files(lab: Lab) -> dict[str, str]:
    """What a client reads in the outage directory: file name -> md5 (the KVM host's FUSE mount, or
    the mount on a node where the host cannot reach the lab; none on a lab never broken)."""
    if lab.pools_here():
        outage = os.path.join(mountpoint(lab), OUTAGE_DIR)
        names = sorted(os.listdir(outage)) if os.path.isdir(outage) else []
        out = {}
        for name in names:
            with open(os.path.join(outage, name), "rb") as fh:
                out[name] = hashlib.md5(fh.read()).hexdigest()
        return out
    vol = volume(lab)
    node = lab.node(vol.nodes[0])
    if not node.run(["mountpoint", "-q", NODE_MOUNT], timeout=15).ok:
        return {}  # the exercise mounts it there when it writes
    r = node.run(["sh", "-c", f"cd {NODE_MOUNT}/{OUTAGE_DIR} 2>/dev/null && md5sum -- *"], timeout=60)
    return {line.split(None, 1)[1].strip(): line.split()[0] for line in r.stdout.splitlines() if r.ok and line.strip()}


def test_files_written_during_outage_are_on_every_brick(lab: Lab) -> None:
    vol = volume(lab)
    replica_sets = [vol.bricks[i:i + vol.replica] for i in range(0, len(vol.bricks), vol.replica)]
    problems = []
    for name, want in sorted(client_files(lab).items()):
        rel = os.path.join(OUTAGE_DIR, name)
        for bricks in replica_sets:
            sums = {b: md5_on_brick(lab, b, rel) for b in bricks}
            if all(s is None for s in sums.values()):
                continue  # a distributed volume puts the file on another replica set
            for b, s in sums.items():
                if s is None:
                    problems.append(f"{rel} missing on brick {b}")
                elif s != want:
                    problems.append(f"{rel} on brick {b} differs from what clients read")
    assert not problems, (f"volume {vol.name}: the replicas of the files written while a brick was down are not "
                          f"all there yet: {'; '.join(problems[:6])}{' ...' if len(problems) > 6 else ''}")
