"""The flagship: a real 3-node replica-3 Gluster volume, the KVM host's FUSE mount and
libvirt pools on it, and what happens to writers when nodes crash, hang or go missing.

Select with `pytest -k gluster_failover`. Every wait is bounded and says what it waits for.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any

import pytest

from harness.backends.gluster import planned
from harness.backends.gluster.plan import GlusterVolumePlan
from harness.backends.gluster.role import (
    brick_killed,
    missing,
    parse_heal_info,
    parse_volume_info,
)
from harness.lab.lab import Lab
from harness.nodes.node import crashed
from harness.plan.model import need
from harness.run import wait_until
from harness.testing.workload import Writer, check_appends, file_appender, qcow2_writer

pytestmark = pytest.mark.topology("gluster-3.yaml")

VOL = "kvmgluster"
MARGIN = 10.0  # seconds allowed beyond network.ping-timeout for writes to resume
BRICK = "/gluster/bricks/1/brick"


def volume(lab: Lab) -> GlusterVolumePlan:
    return next(v for v in planned(lab.plan).volumes if v.name == VOL)


def ping_timeout(lab: Lab) -> float:
    return float(volume(lab).options.get("network.ping-timeout", 42))


def mountpoint(lab: Lab) -> str:
    return need(next(p.path for p in lab.plan.host.pools if p.fuse_mount), "the FUSE mount's path")


def any_up(lab: Lab, exclude: tuple[str, ...] = ()) -> Any:
    return next(n for n in lab.nodes.values() if n.name not in exclude and n.is_up())


def heal_counts(node: Any) -> dict[str, int | None]:
    return parse_heal_info(node.succeed(["gluster", "volume", "heal", VOL, "info", "--xml"], timeout=60))


def pending_heals(node: Any) -> int:
    """Entries the node's own brick has marked as needing heal: its index of pending changes
    (.glusterfs/indices/xattrop, what `heal info` and the self-heal daemon read), listed on the
    node itself. A cluster-wide query waits on the dead peer where a crash leaves no TCP reset
    (a VM powered off: `heal statistics heal-count` hung 60 s) or pays gfapi's 10 s (`heal info`)."""
    names = node.succeed(["ls", "-1", f"{BRICK}/.glusterfs/indices/xattrop"], timeout=30).split()
    return sum(1 for n in names if not n.startswith("xattrop-"))


def wait_healthy(lab: Lab, timeout: float = 240) -> None:
    """Every brick online, the KVM host's FUSE client connected to each again (it reconnects on its
    own timer; after a hang it first waits out network.ping-timeout: a test's fault starts from a
    whole client) and, with replicas, nothing to heal (without, the tests below show what that costs)."""
    node = any_up(lab)
    host = lab.plan.networks[0].host_address
    replica = parse_volume_info(node.succeed(["gluster", "volume", "info", VOL, "--xml"]))[VOL]["replica"]
    bricks = len(volume(lab).bricks)
    wait_until(lambda: missing(node, VOL, bricks=bricks, replica=replica, host=host) is None, timeout=timeout,
               interval=0.1, what=f"{VOL}: {bricks} bricks online, the host's client on each, 0 entries to heal")
    lab.mark("volume healthy")


def data_nodes(lab: Lab) -> list[str]:
    """Nodes whose bricks hold file data: an arbiter brick (the last of each replica set when the
    volume has `arbiter: 1`) keeps names and metadata only."""
    vol = volume(lab)
    keep = [b for i, b in enumerate(vol.bricks) if not (vol.arbiter and i % vol.replica == vol.replica - 1)]
    return list(dict.fromkeys(b.split(":")[0] for b in keep))


def brick_md5(lab: Lab, name: str) -> dict[str, str]:
    return {n: lab.node(n).succeed(["md5sum", f"{BRICK}/{name}"]).split()[0] for n in data_nodes(lab)}


def holders(lab: Lab, path: str) -> list[str]:
    """Nodes whose bricks hold ``path``, in brick order (from the client's pathinfo xattr)."""
    info = os.getxattr(path, "trusted.glusterfs.pathinfo").decode()
    by_host = {n.address: n.name for n in lab.nodes.values()} | {n.name: n.name for n in lab.nodes.values()}
    return [by_host[h] for h in re.findall(r"POSIX\([^)]*\):([^:]+):", info) if h in by_host]


def cmdlines() -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    out.append(fh.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return out


def host_md5(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def assert_log_intact(path: str, writer: Writer) -> None:
    """Every acknowledged append is there, in order; only failed attempts may add blocks."""
    with open(path, "rb") as fh:
        problems = check_appends(fh.read(), [s for _, s in writer.log.acked], writer.seq)
    assert not problems, f"{path}: {problems}"


@pytest.fixture
def healthy(lab: Lab, host_side: Lab) -> Any:
    """The lab with every brick online and the KVM host's FUSE client connected to all of them
    (every test here writes through that mount: skipped where the host cannot reach the lab)."""
    wait_healthy(lab)
    return lab


def test_gluster_failover_lab_is_built_as_specified(lab: Lab, hosts: dict[str, Any], libvirt_conn: Any) -> None:
    vol = volume(lab)
    for name, host in hosts.items():
        assert host.service("glusterd").is_running, f"glusterd not running on {name}"
        assert host.mount_point("/gluster/bricks/1").filesystem == "xfs", f"brick of {name} is not on XFS"
        assert host.file(BRICK).is_directory
        assert host.file(BRICK).uid == 107 and host.file(BRICK).gid == 107, "storage.owner-uid/gid 107 not applied"
    info = parse_volume_info(lab.node("gluster1").succeed(["gluster", "volume", "info", VOL, "--xml"]))[VOL]
    assert info["status"] == "Started"
    assert info["replica"] == 3
    assert len({b.split(":")[0] for b in info["bricks"]}) == 3, "replica set spread over fewer than 3 nodes"
    for key, want in vol.options.items():
        assert info["options"].get(key) == want, f"option {key}: {info['options'].get(key)!r} != {want!r}"
    assert info["options"]["auth.allow"].startswith(lab.plan.networks[0].cidr.rsplit(".", 1)[0])
    # host side: FUSE mount with backup volfile servers, pools active and listing volumes
    mnt = mountpoint(lab)
    with open("/proc/self/mounts") as fh:
        assert any(f" {mnt} fuse.glusterfs " in line for line in fh), f"{mnt} is not a glusterfs FUSE mount"
    client = [c for c in cmdlines() if "glusterfs" in c.split(" ")[0] and mnt in c]
    assert client and all(lab.node(n).address in client[0] for n in vol.nodes), f"backup volfile servers missing: {client}"
    for pool_name in ("glusterfs-pool", "gluster-native"):
        pool = libvirt_conn.storagePoolLookupByName(lab.plan.pool(pool_name).object)
        if pool_name == "glusterfs-pool":
            pool.refresh(0)
        # the native pool is not refreshed here (each gfapi listing costs 10 s in glfs_fini):
        # `up` starts it after vm1.qcow2 was made on the FUSE mount, so its start-time listing
        # shows the volume only if libgfapi really read the volume
        assert pool.isActive() and pool.autostart(), f"pool {pool_name} not active+autostart"
        assert "vm1.qcow2" in pool.listVolumes(), f"{pool_name} does not list vm1.qcow2"


def test_gluster_failover_crash_of_mount_server_keeps_writes_going(healthy: Any, libvirt_conn: Any,
                                                                   record_property: Any) -> None:
    lab = healthy
    mnt = mountpoint(lab)
    log_path = f"{mnt}/crash-{int(time.time())}.log"
    pool = libvirt_conn.storagePoolLookupByName(lab.plan.pool("glusterfs-pool").object)
    with Writer("log", file_appender(log_path)) as w, Writer("vm-disk", qcow2_writer(f"{mnt}/vm1.qcow2"), 0.2) as q:
        wait_until(lambda: len(w.log.acked) > 5 and len(q.log.acked) > 2, timeout=60, interval=0.1, what="writers running")
        victim = holders(lab, log_path)[0]  # gluster1, the volfile server of the mount, when replicated
        survivor = lab.node(next(n for n in lab.nodes if n != victim))
        t0 = time.monotonic()
        with lab.node(victim).crashed():
            wait_until(lambda: w.log.first_ack_after(t0 + ping_timeout(lab)) and q.log.first_ack_after(t0 + ping_timeout(lab)),
                       timeout=ping_timeout(lab) + MARGIN + 30, interval=0.1, what="both writers acknowledged after the crash")
            wait_until(lambda: pending_heals(survivor) > 0,
                       timeout=60, what=f"pending heal entries counted while {victim} is down")
            pool.refresh(0)
            assert pool.isActive() and "vm1.qcow2" in pool.listVolumes(), "pool lost its volume during the crash"
            t1 = time.monotonic()
    gap_w, gap_q = w.log.max_gap(t0, t1), q.log.max_gap(t0, t1)
    print(f"crash of {victim}: longest stall appender {gap_w:.2f}s, qcow2 writer {gap_q:.2f}s")
    record_property("stall_s", round(max(gap_w, gap_q), 2))
    assert not w.log.errors and not q.log.errors, f"write errors reached the application: {w.log.errors[:3]} {q.log.errors[:3]}"
    assert gap_w <= ping_timeout(lab) + MARGIN and gap_q <= ping_timeout(lab) + MARGIN
    wait_healthy(lab)
    name = os.path.basename(log_path)
    sums = brick_md5(lab, name)
    assert len(set(sums.values())) == 1, f"bricks differ after heal: {sums}"
    assert host_md5(log_path) == next(iter(sums.values())), "the client reads what is not on the bricks"
    assert_log_intact(log_path, w)
    assert lab.node(data_nodes(lab)[-1]).succeed(["qemu-img", "check", f"{BRICK}/vm1.qcow2"], timeout=60)


def test_gluster_failover_killed_brick_stalls_no_writes_and_heals(healthy: Any, record_property: Any) -> None:
    """A brick process that dies (its node and glusterd up) refuses connections at once: the client
    must carry on with the other replicas without waiting out network.ping-timeout, and the brick
    must heal after a force-start."""
    lab = healthy
    mnt = mountpoint(lab)
    log_path = f"{mnt}/brick-{int(time.time())}.log"
    with Writer("log", file_appender(log_path)) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=60, interval=0.1, what="writer running")
        victim = lab.node(holders(lab, log_path)[-1])
        survivor = lab.node(next(n for n in lab.nodes if n != victim.name))
        t0 = time.monotonic()
        with brick_killed(victim, VOL):
            acked = len(w.log.acked)
            wait_until(lambda: len(w.log.acked) > acked + 10, timeout=30, what="appends acknowledged with a brick killed")
            wait_until(lambda: pending_heals(survivor) > 0,
                       timeout=60, what=f"pending heal entries counted while {victim.name}'s brick is dead")
            t1 = time.monotonic()
    gap = w.log.max_gap(t0, t1)
    print(f"brick of {victim.name} killed: longest stall {gap:.2f}s (ping-timeout {ping_timeout(lab):.0f}s)")
    record_property("stall_s", round(gap, 2))
    assert not w.log.errors, f"write errors reached the application: {w.log.errors[:3]}"
    assert gap < min(ping_timeout(lab), MARGIN), "a dead brick stalled writes as long as a dead node"
    wait_healthy(lab)
    sums = brick_md5(lab, os.path.basename(log_path))
    assert len(set(sums.values())) == 1, f"bricks differ after heal: {sums}"
    assert_log_intact(log_path, w)


def test_gluster_failover_hung_node_stalls_at_most_ping_timeout(healthy: Any, record_property: Any) -> None:
    lab = healthy
    log_path = f"{mountpoint(lab)}/hang-{int(time.time())}.log"
    with Writer("log", file_appender(log_path)) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=60, interval=0.1, what="writer running")
        victim = holders(lab, log_path)[-1]  # gluster3 when replicated: not the mount's volfile server
        t0 = time.monotonic()
        with lab.node(victim).frozen():
            # an append acknowledged once ping-timeout passed: the client gave the hung brick up (a
            # half-second margin for the freeze to take hold)
            wait_until(lambda: w.log.first_ack_after(t0 + ping_timeout(lab) + 0.5), interval=0.1,
                       timeout=ping_timeout(lab) + MARGIN + 30,
                       what=f"writes acknowledged while {victim} hangs")
            t1 = time.monotonic()
    gap = w.log.max_gap(t0, t1)
    print(f"hung {victim}: longest stall {gap:.2f}s (ping-timeout {ping_timeout(lab):.0f}s)")
    record_property("stall_s", round(gap, 2))
    assert not w.log.errors, f"write errors reached the application: {w.log.errors[:3]}"
    assert gap <= ping_timeout(lab) + MARGIN
    wait_healthy(lab)
    sums = brick_md5(lab, os.path.basename(log_path))
    assert len(set(sums.values())) == 1, f"bricks differ after heal: {sums}"
    assert host_md5(log_path) == next(iter(sums.values()))
    assert_log_intact(log_path, w)


def test_gluster_failover_two_of_three_down_loses_quorum_not_data(healthy: Any, record_property: Any) -> None:
    lab = healthy
    log_path = f"{mountpoint(lab)}/quorum-{int(time.time())}.log"
    with Writer("log", file_appender(log_path)) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=60, interval=0.1, what="writer running")
        with crashed(lab.node("gluster2"), lab.node("gluster3")):
            t0 = time.monotonic()
            late = t0 + ping_timeout(lab) + MARGIN  # an append acknowledged after this: quorum is not enforced
            wait_until(lambda: w.log.errors or w.log.first_ack_after(late), timeout=ping_timeout(lab) + MARGIN + 30,
                       what="writes to be refused without client quorum")
            assert w.log.errors, (f"appends still acknowledged {late - t0:.0f}s after two of three nodes crashed "
                                  f"(cluster.quorum-type {volume(lab).options.get('cluster.quorum-type', 'auto')})")
            refused_at = w.log.errors[0][0]
            acked_during = [s for t, s in w.log.acked if t > refused_at + 1]
            print(f"quorum lost: first refusal {refused_at - t0:.2f}s after the second crash: {w.log.errors[0][1]}")
            record_property("refused_after_s", round(max(0.0, refused_at - t0), 2))  # 0: while the crash was made
            assert not acked_during, f"writes {acked_during[:5]} acknowledged without quorum"
            assert any("Read-only" in e or "not connected" in e.lower() for _, e in w.log.errors), w.log.errors[:3]
        errors_before = len(w.log.errors)
        seq_before = w.seq
        wait_until(lambda: w.seq > seq_before + 10, timeout=120, what="writes accepted again after both nodes returned")
        assert len(w.log.errors) - errors_before <= 120  # errors only while the bricks were reconnecting
    wait_healthy(lab)
    sums = brick_md5(lab, os.path.basename(log_path))
    assert len(set(sums.values())) == 1, f"bricks differ after heal: {sums}"
    assert host_md5(log_path) == next(iter(sums.values()))
    assert_log_intact(log_path, w)
