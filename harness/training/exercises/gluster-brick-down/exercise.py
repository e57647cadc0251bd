"""A brick process of the replicated volume has died (its node and glusterd are up) while the
KVM host kept writing: the volume still serves, on fewer replicas, and entries wait for a heal."""

from __future__ import annotations

import os

from harness.backends.gluster import planned
from harness.backends.gluster.plan import GlusterVolumePlan
from harness.backends.gluster.role import parse_heal_count, parse_volume_status
from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import HostPoolPlan, need
from harness.run import wait_until

TITLE = "A Gluster brick is down and writes made during the outage wait for a heal"
BACKEND = "gluster"
TOPOLOGY = "gluster-3.yaml"  # the topology it was written for (topologies/)

OUTAGE_DIR = "training-brick-down"  # on the volume: the files written while the brick was down
FILES = 5
FILE_SIZE = 256 * 1024


def fuse_pool(lab: Lab) -> HostPoolPlan:
    """The host pool on the volume's FUSE mount (where the KVM host writes)."""
    for pool in lab.plan.host.pools:
        if pool.backend == "gluster" and pool.fuse_mount and pool.path and pool.host == "kvm":
            return pool
    raise HarnessError(f"lab {lab.name}: no host pool on a FUSE mount of a gluster volume (fuse_mount: true)")


def volume(lab: Lab) -> GlusterVolumePlan:
    """The volume the FUSE mount serves."""
    name = fuse_pool(lab).volume
    return next(v for v in planned(lab.plan).volumes if v.name == name)


def mountpoint(lab: Lab) -> str:
    return need(fuse_pool(lab).path, "the FUSE mount's path")


#: where a node mounts the volume when the KVM host cannot reach the lab (a lab on an Incus remote)
NODE_MOUNT = "/mnt/storlab-training"


def node_client(lab: Lab) -> Node:
    """The volume FUSE-mounted on the survivor node: the client that writes when the host's own
    mount is not there (its pools are skipped for a lab whose networks are not on this host)."""
    node, vol = survivor(lab), volume(lab).name
    if not node.run(["mountpoint", "-q", NODE_MOUNT], timeout=15).ok:
        node.succeed(["mkdir", "-p", NODE_MOUNT], timeout=15)
        node.succeed(["mount", "-t", "glusterfs", f"localhost:/{vol}", NODE_MOUNT], timeout=60)
    return node


def victim(lab: Lab) -> Node:
    """The node whose brick dies: the last of the volume's nodes (not the mount's volfile server)."""
    return lab.node(volume(lab).nodes[-1])


def survivor(lab: Lab) -> Node:
    return lab.node(volume(lab).nodes[0])


def brick_status(node: Node, vol: str) -> list[dict[str, object]]:
    return parse_volume_status(node.succeed(["gluster", "volume", "status", vol, "--xml"], timeout=30))


def heal_counts(node: Node, vol: str) -> dict[str, int | None]:
    """Pending entries per brick from the self-heal daemons (quick even with a brick down)."""
    return parse_heal_count(node.succeed(["gluster", "volume", "heal", vol, "statistics", "heal-count"], timeout=60))


def break_lab(lab: Lab) -> None:
    vol = volume(lab).name
    dead, alive = victim(lab), survivor(lab)
    pids = [str(b["pid"]) for b in brick_status(alive, vol)
            if b["host"] in (dead.name, dead.address) and b["online"] and b["pid"]]
    if pids:  # a second apply finds the brick already dead
        lab.mark(f"training: kill brick(s) of {vol} on {dead.name} (pid {', '.join(pids)})")
        dead.succeed(["kill", "-KILL", *pids])

    def brick_offline() -> bool:
        return not any(b["online"] for b in brick_status(alive, vol) if b["host"] in (dead.name, dead.address))
    wait_until(brick_offline, timeout=30, what=f"the brick of {vol} on {dead.name} reported offline")
    if lab.pools_here():  # the KVM host's FUSE mount writes, as a hypervisor would
        outage = os.path.join(mountpoint(lab), OUTAGE_DIR)
        os.makedirs(outage, exist_ok=True)
        for i in range(FILES):
            with open(os.path.join(outage, f"written-during-outage-{i}.dat"), "wb") as fh:
                fh.write(os.urandom(FILE_SIZE))
                fh.flush()
                os.fsync(fh.fileno())
    else:
        client = node_client(lab)
        outage = os.path.join(NODE_MOUNT, OUTAGE_DIR)
        client.succeed(["mkdir", "-p", outage], timeout=30)
        for i in range(FILES):
            client.succeed(["dd", "if=/dev/urandom", f"of={outage}/written-during-outage-{i}.dat", f"bs={FILE_SIZE}",
                            "count=1", "conv=fsync", "status=none"], timeout=60)
    wait_until(lambda: any((c or 0) > 0 for c in heal_counts(alive, vol).values()), timeout=60,
               what=f"entries of {vol} pending heal while the brick on {dead.name} is down")


def solve(lab: Lab) -> None:
    vol = volume(lab)
    node = survivor(lab)
    node.succeed(["gluster", "--mode=script", "volume", "start", vol.name, "force"], timeout=120)

    def online() -> bool:
        st = brick_status(node, vol.name)
        return len(st) == len(vol.bricks) and all(b["online"] for b in st)
    wait_until(online, timeout=90, what=f"all {len(vol.bricks)} bricks of {vol.name} online")

    def healed() -> bool:
        node.run(["gluster", "volume", "heal", vol.name], timeout=30)  # index heal now, not at the next crawl
        counts = heal_counts(node, vol.name)
        return len(counts) == len(vol.bricks) and all(c == 0 for c in counts.values())
    wait_until(healed, timeout=180, interval=2, what=f"no entries of {vol.name} left to heal")
