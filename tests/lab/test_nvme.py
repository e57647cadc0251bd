"""NVMe over TCP (the nvme backend on topologies/nvme.yaml, VMs: the kernel target and host):
I/O through the logical pool on namespace `pool` from the hypervisor node kvm1; a host NQN the
subsystem does not admit sees and reaches nothing; one port's network cut while a writer runs
(native multipath carries on over the other port, nothing acknowledged is lost); the target
restarted (its nvmet config removed and made again) while a writer runs (writes stall, then
resume, nothing lost). Select with `pytest -k nvme` (marked `vm`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.nvme import host as nvmehost
from harness.backends.nvme import target as nvmetarget
from harness.backends.nvme.plan import HOSTNQN_PREFIX, NvmeHostPool, NvmePlan, of
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import need
from harness.run import wait_until
from harness.testing.workload import Writer, block, read_direct, write_direct

pytestmark = [pytest.mark.topology("nvme.yaml"), pytest.mark.vm]

SIZE = 4096
VOLUME = "io-test"
#: a write may wait out a lost path (keep-alive 5 s + reconnect) or the whole target restart
OP_TIMEOUT = 300.0
MARGIN = 30.0  # TCG: ssh and the kernel's timers run slowly


def nvme_plan(lab: Lab) -> NvmePlan:
    return need(of(lab.plan), "nvme section")


def pool_spec(lab: Lab) -> NvmeHostPool:
    return next(p for p in lab.plan.host.pools if isinstance(p, NvmeHostPool))


@pytest.fixture(scope="module")
def hv(lab: Lab) -> Iterator[tuple[Node, Any]]:
    spec = pool_spec(lab)
    conn = connect(node_uri(lab, spec.host))
    yield lab.node(spec.host), conn
    conn.close()


@pytest.fixture(scope="module")
def volume(lab: Lab, hv: tuple[Node, Any]) -> Iterator[str]:
    yield from make_volume(lab, hv)


def make_volume(lab: Lab, hv: tuple[Node, Any]) -> Iterator[str]:
    """A raw 64 MiB volume (an LV) in the logical pool on the namespace; its device path on kvm1
    (also test_nvme_auth's)."""
    _, conn = hv
    pool = conn.storagePoolLookupByName(pool_spec(lab).object)
    pool.refresh(0)
    if VOLUME not in pool.listVolumes():
        pool.createXML(f"<volume><name>{VOLUME}</name><capacity unit='bytes'>{64 * 2**20}</capacity></volume>", 0)
    vol = pool.storageVolLookupByName(VOLUME)
    yield vol.path()
    vol.delete(0)


def write_block(node: Node, path: str, seq: int, timeout: float = OP_TIMEOUT) -> None:
    """Block ``seq`` at offset seq*4k, written through (O_DIRECT) and flushed: acknowledged = on the target."""
    write_direct(node, path, seq, block(seq, SIZE), SIZE, timeout)


def lost(node: Node, path: str, acked: list[int]) -> list[int]:
    """Acknowledged blocks that do not read back as written."""
    if not acked:
        return []
    content = read_direct(node, path, 0, max(acked) + 1, SIZE)
    return [s for s in acked if content[s * SIZE:(s + 1) * SIZE] != block(s, SIZE)]


def test_nvme_pool_io_through_the_namespace(lab: Lab, hv: tuple[Node, Any], volume: str) -> None:
    node, conn = hv
    spec = pool_spec(lab)
    pool = conn.storagePoolLookupByName(spec.object)
    assert pool.isActive() and pool.autostart()
    # the by-id link is the multipath head of namespace `pool`: one block device, both paths live;
    # the pool names that device (libvirt matches PVs by the name pvs prints, not by a link)
    dev = node.succeed(["readlink", "-f", need(spec.device, "device")]).strip()
    assert f"<device path='{dev}'/>" in pool.XMLDesc(0)
    paths = nvmehost.paths(node)[need(spec.subsystem, "subsystem")]
    assert sorted(p["state"] for p in paths) == ["live", "live"], paths
    assert node.succeed(["cat", nvmehost.MULTIPATH]).strip() == "Y"
    assert dev in node.succeed(["pvs", "--noheadings", "-o", "pv_name"]), f"{dev} is not the pool's PV"
    for seq in range(8):
        write_block(node, volume, seq, timeout=60)
    assert lost(node, volume, list(range(8))) == []


def test_nvme_host_not_admitted_sees_nothing(lab: Lab, hv: tuple[Node, Any]) -> None:
    node, _ = hv
    nvme = nvme_plan(lab)
    sub = nvme.subsystems[0]
    stranger = HOSTNQN_PREFIX + str(uuid.uuid4())
    for pid in sub.ports:
        port = nvme.port(pid)
        offered = {r["subnqn"] for r in nvmehost.discover(node, port, stranger)}
        assert sub.nqn not in offered, f"discovery on {port.address} offers {sub.nqn} to a host it does not admit"
        r = node.run(["nvme", "connect", "-t", "tcp", "-a", port.address, "-s", str(port.port), "-n", sub.nqn,
                      f"--hostnqn={stranger}", f"--hostid={stranger.rsplit(':', 1)[-1]}"], timeout=60)
        assert not r.ok, f"{stranger} connected to {sub.nqn} through {port.address}"
    hosts = node.run(["nvme", "list-subsys", "-o", "json"], timeout=60).stdout
    assert stranger not in hosts, "a controller for the stranger's host NQN exists"


def _writer(node: Node, volume: str, name: str) -> Writer:
    return Writer(name, lambda seq: write_block(node, volume, seq), interval=0.1)


def test_nvme_one_port_down_while_writing(lab: Lab, hv: tuple[Node, Any], volume: str) -> None:
    """The target's link on the second port's network is cut for 30 s: native multipath sends the
    writes over the first port; none fails, none acknowledged is lost."""
    node, _ = hv
    nvme = nvme_plan(lab)
    sub = nvme.subsystems[0]
    cut = nvme.port(sub.ports[-1])
    tnode = lab.node(nvme.target)
    with _writer(node, volume, "nvme-path") as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=120, what="writes on the NVMe volume running")
        with tnode.link_down(cut.network):
            t_down = time.monotonic()
            wait_until(lambda: len([1 for t, _ in w.log.acked if t > t_down + 15]) > 5, timeout=120 + MARGIN,
                       interval=1, what=f"writes acknowledged with {cut.network} cut")
        wait_until(lambda: all(p["state"] == "live" for p in nvmehost.paths(node).get(sub.nqn, [])) and
                   len(nvmehost.paths(node).get(sub.nqn, [])) == len(sub.ports), timeout=120, interval=2,
                   what=f"the path over {cut.network} live again")
    acked = [s for _, s in w.log.acked]
    print(f"NVMe path loss: {len(acked)} writes acknowledged, {len(w.log.errors)} failed")
    assert not w.log.errors, f"writes failed while one path was left: {w.log.errors[:3]}"
    assert lost(node, volume, acked) == []


def test_nvme_target_restart_while_writing(lab: Lab, hv: tuple[Node, Any], volume: str) -> None:
    """The target's nvmet config removed (every path lost) for 15 s and made again: writes stall
    (queued by the host while it reconnects), resume, and none acknowledged is lost."""
    node, _ = hv
    with _writer(node, volume, "nvme-restart") as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=120, what="writes on the NVMe volume running")
        nvmetarget.stop(lab)
        t_down = time.monotonic()
        time.sleep(15)  # the outage under test
        during = [s for t, s in w.log.acked if t > t_down + 5]
        nvmetarget.start(lab)
        t_up = time.monotonic()
        w.wait_acked(t_up, 60 + MARGIN, "writes did not resume after the target came back")
        resumed = (w.log.first_ack_after(t_up) or t_up) - t_up
    acked = [s for _, s in w.log.acked]
    print(f"NVMe target restart: writes resumed {resumed:.1f}s after it was back, {len(acked)} acknowledged, "
          f"{len(w.log.errors)} failed")
    assert not during, f"writes {during} were acknowledged while the target had no subsystem"
    assert not w.log.errors, f"queued writes must not fail within ctrl-loss-tmo: {w.log.errors[:3]}"
    assert lost(node, volume, acked) == []
