"""The node fault verbs on a real lab (three plain nodes, any provider: `--lab-provider lxc|incus|
vagrant`): a hang is silent and undone, pause stops a unit's processes, a one-way cut drops one
direction only, fill fills a data disk and unfill frees it; netem, clock skew and dm-flakey where
the provider gives them (a VM's own kernel, clock and disks)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.nodes.node import Node, partition
from harness.run import wait_until
from harness.testing.workload import read_direct, write_direct

pytestmark = pytest.mark.topology("nodes-3.yaml")

#: run on a node: connect to ADDR port 9 (nothing listens): "refused" (its kernel answered),
#: "silent" (nothing came back), "open"
PROBE = ("import socket, sys\ns = socket.socket()\ns.settimeout(3)\ntry:\n    s.connect((sys.argv[1], 9))\n"
         "    print('open')\nexcept ConnectionRefusedError:\n    print('refused')\nexcept OSError:\n    print('silent')\n")
#: run on a node: wait up to 8 s for one UDP datagram on port 5555 and print it
RECV = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5555))\n"
        "s.settimeout(8)\ntry:\n    print(s.recv(100).decode())\nexcept OSError:\n    print('nothing')\n")


def probe(src: Node, dst: Node) -> str:
    return src.succeed(["python3", "-c", PROBE, dst.address], timeout=30).strip()


def udp_arrives(src: Node, dst: Node) -> bool:
    """Whether a datagram ``src`` sends reaches ``dst`` (a receiver started there first)."""
    dst.succeed(["systemd-run", "--unit", "storlab-udp-recv", "--collect", "-p", "StandardOutput=truncate:/run/storlab-udp",
                 "python3", "-c", RECV], timeout=30)
    time.sleep(1)  # the receiver binds
    src.succeed(["python3", "-c", "import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 "s.sendto(b'hello', (sys.argv[1], 5555))\n", dst.address], timeout=30)
    dst.wait_until_succeeds(["sh", "-c", "! systemctl is-active --quiet storlab-udp-recv"], timeout=30)
    return dst.succeed(["cat", "/run/storlab-udp"]).strip() == "hello"


def test_a_hang_is_silent_and_undone(lab: Lab) -> None:
    n1, n2 = lab.node("node1"), lab.node("node2")
    assert probe(n2, n1) == "refused"
    t0 = time.monotonic()
    with n1.hung():
        took = time.monotonic() - t0
        assert probe(n2, n1) == "silent"  # no reset, no ARP answer: a hung machine
        assert probe(n2, lab.node("node3")) == "refused"  # the others are untouched
    print(f"hang of node1 on {lab.provider.name}: made in {took:.2f}s")
    n1.wait_until_succeeds(["true"], timeout=120)
    assert probe(n2, n1) == "refused"
    assert not [x for x in lab.provider.leftovers() if "nft table" in x]  # the silence is gone


def test_pause_stops_every_process_of_a_unit_and_resume_continues_it(lab: Lab) -> None:
    n = lab.node("node1")
    n.succeed(["systemd-run", "--unit", "storlab-sleeper", "--collect", "sh", "-c", "sleep 600 & sleep 600"])

    def states() -> set[str]:
        """The state letters of the unit's processes (its shell and its two sleeps)."""
        lines = n.succeed(["ps", "-eo", "stat=,args="]).splitlines()
        return {line.split()[0][0] for line in lines if "sleep 600" in line}
    try:
        with n.service_paused("storlab-sleeper.service"):
            assert states() == {"T"}
        assert states() == {"S"}
        with n.process_paused("sleep"):
            assert "T" in states()
        assert states() == {"S"}
    finally:
        n.run(["systemctl", "stop", "storlab-sleeper"], timeout=30)


def test_a_one_way_cut_drops_one_direction_only(lab: Lab) -> None:
    n1, n2 = lab.node("node1"), lab.node("node2")
    if not n1.run(["sh", "-c", "command -v nft"], timeout=30).ok:
        pytest.skip("the lab's image has no nft: `storlab image build` and a new lab (nftables is in its packages now)")
    with partition([n1], [n2], direction="out"):
        assert not udp_arrives(n1, n2)
        assert udp_arrives(n2, n1)
    with partition([n1], [n2], direction="in"):
        assert udp_arrives(n1, n2)
        assert not udp_arrives(n2, n1)
    assert udp_arrives(n1, n2) and udp_arrives(n2, n1)
    assert "storlab" not in n1.succeed(["nft", "list", "tables"])  # the undo took the table away


def test_fill_fills_the_data_disk_and_unfill_frees_it(lab: Lab) -> None:
    n = lab.node("node1")
    done = n.fill("/data")
    assert done.mount == "/data" and done.free < 4 << 20, done
    assert not n.run(["dd", "if=/dev/zero", "of=/data/more", "bs=1M", "count=8", "conv=fsync"], timeout=60).ok
    n.run(["rm", "-f", "/data/more"], timeout=30)
    n.unfill("/data")

    def freed() -> bool:
        return int(n.succeed(["df", "--output=avail", "-B1", "/data"]).split()[-1]) > 64 << 20
    wait_until(freed, timeout=30, what="the filled space freed")
    with pytest.raises(HarnessError, match="data disks"):
        n.fill("/var/tmp")


def test_flakey_fails_the_disk_and_dm_restore_brings_it_back(lab: Lab) -> None:
    """dm-flakey always down under node1's mounted /data: a flushed write fails; the linear table
    back, the filesystem (shut down by the errors, or not) is usable and what was acknowledged
    before is intact."""
    if not lab.provider.capabilities.disk_devices:
        pytest.skip(f"{lab.provider.name} nodes get filesystems, not disks: no device-mapper under them")
    n = lab.node("node1")
    before = bytes(range(256)) * 16 * 4
    write_direct(n, "/data/flakey-before", 0, before)
    with n.disk_flakey("data", up_s=0, down_s=600):
        assert not n.run(["sh", "-c", "dd if=/dev/zero of=/data/flakey-during bs=4k count=4 oflag=direct "
                          "conv=fsync status=none"], timeout=120).ok, "a write to the failed disk was acknowledged"
    write_direct(n, "/data/flakey-after", 0, before)
    assert read_direct(n, "/data/flakey-before", 0, 4) == before
    assert read_direct(n, "/data/flakey-after", 0, 4) == before


def test_a_daemon_that_died_of_the_disk_errors_is_started_again_with_the_disk(lab: Lab) -> None:
    """A daemon using a data disk that dies of its errors before the disk is back (Gluster's brick
    health check kills its brick so) holds nothing when dm_restore mounts the shut-down filesystem
    anew: the units noted as the fault went in are restarted with the ones still holding it."""
    if not lab.provider.capabilities.disk_devices:
        pytest.skip(f"{lab.provider.name} nodes get filesystems, not disks: no device-mapper under them")
    n, unit = lab.node("node3"), "storlab-disk-user.service"
    n.put(f"/etc/systemd/system/{unit}", "[Service]\nExecStart=/bin/sh -c 'cd /data && exec sleep infinity'\n")
    n.succeed(["systemctl", "daemon-reload"])
    n.succeed(["systemctl", "start", unit])
    try:
        n.flakey("data", 0, 600)
        try:
            n.succeed(["systemctl", "kill", "-s", "KILL", unit])  # it dies of the errors first
            n.succeed(["xfs_io", "-x", "-c", "shutdown", "/data"])  # and XFS shuts itself down
        finally:
            done = n.dm_restore("data")
        assert done.remounted, "the shut-down filesystem was not mounted anew"
        assert unit in done.units, f"restarted {done.units}: not the daemon that used the disk"
        n.wait_for_unit(unit, timeout=60)
        pid = n.succeed(["systemctl", "show", "-P", "MainPID", unit]).strip()
        assert n.succeed(["readlink", f"/proc/{pid}/cwd"]).strip() == "/data"
    finally:
        n.run(["sh", "-c", f"systemctl stop {unit}; rm -f /etc/systemd/system/{unit}; systemctl daemon-reload"])


def test_a_disk_that_drops_writes_loses_what_it_acknowledged(lab: Lab) -> None:
    """dm-flakey with drop_writes: an overwrite in place is acknowledged, and after the fault the
    old data is read back: the lying disk a write checker must catch."""
    if not lab.provider.capabilities.disk_devices:
        pytest.skip(f"{lab.provider.name} nodes get filesystems, not disks: no device-mapper under them")
    n = lab.node("node2")
    old, new = b"o" * 16384, b"n" * 16384
    write_direct(n, "/data/flakey-lie", 0, old)
    with n.disk_flakey("data", up_s=0, down_s=600, mode="drop_writes"):
        write_direct(n, "/data/flakey-lie", 0, new)  # acknowledged: O_DIRECT and fsync both returned
    assert read_direct(n, "/data/flakey-lie", 0, 4) == old


def test_netem_delays_where_the_kernel_has_it(lab: Lab) -> None:
    n1, n2 = lab.node("node1"), lab.node("node2")
    r = n1.run(["tc", "qdisc", "replace", "dev", "lo", "root", "netem", "delay", "1ms"], timeout=30)
    n1.run(["tc", "qdisc", "del", "dev", "lo", "root"], timeout=30)
    if not r.ok:
        pytest.skip(f"no sch_netem in node1's kernel ({lab.provider.name}): {r.stderr.strip()[:200]}")

    def rtt_ms() -> float:
        out = n2.succeed(["ping", "-c3", "-q", n1.address], timeout=60)
        return float(out.strip().splitlines()[-1].split("=")[1].split("/")[1])
    with n1.degraded(delay_ms=200):
        assert rtt_ms() > 180
    assert rtt_ms() < 150


def test_clock_skew_and_restore_where_the_node_has_its_own_clock(lab: Lab) -> None:
    if not lab.provider.capabilities.own_kernel:
        pytest.skip(f"{lab.provider.name} nodes share the host's clock")
    n = lab.node("node1")

    def offset() -> float:
        t0 = time.time()
        remote = float(n.succeed(["date", "+%s.%N"]))
        return remote - (t0 + time.time()) / 2
    before = offset()
    with n.clock_skewed(300):
        assert abs(offset() - before - 300) < 5
    assert abs(offset() - before) < 5


def test_clock_strobe_jumps_back_and_forth_where_the_node_has_its_own_clock(lab: Lab) -> None:
    if not lab.provider.capabilities.own_kernel:
        pytest.skip(f"{lab.provider.name} nodes share the host's clock")
    n = lab.node("node2")

    def offsets(k: int) -> list[float]:
        """``k`` readings of the node's clock against the host's, taken on the node in one command."""
        code = "import sys, time\nfor _ in range(int(sys.argv[1])):\n    print(time.time())\n    time.sleep(0.13)\n"
        out = n.succeed(["python3", "-c", code, str(k)])
        return [float(x) - time.time() for x in out.split()]
    before = offsets(1)[0]
    n.strobe_clock(60, 200)
    try:
        seen = [o - before for o in offsets(20)]
    finally:
        n.unstrobe_clock()
    assert any(abs(o) < 20 for o in seen) and any(o > 40 for o in seen), seen  # both sides of the jump
    assert abs(offsets(1)[0] - before) < 5  # stopped where the clock would have been
    assert not n.run(["systemctl", "is-active", "--quiet", "storlab-clock-strobe.service"]).ok


def test_hang_marks_the_timeline(lab: Lab, nodes: dict[str, Any]) -> None:
    with nodes["node3"].hung():
        pass
    events = [e for _, e in lab.timeline]
    assert "hang node3" in events and "unhang node3" in events
