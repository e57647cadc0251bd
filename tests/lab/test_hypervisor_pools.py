"""Pools that need a kernel the KVM host may lack (NFS client), wired on a hypervisor node
of the lab (a VM running libvirtd) and reached over qemu+ssh:// with the lab's key; and the
kernel NFS client of that node riding out an NFS server restart.
Select with `pytest -k netfs` or `-k nfs` (VMs: marked `vm`)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from harness.backends.nfs import planned
from harness.backends.nfs.plan import NfsPlan
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.plan.model import HostPoolPlan, need
from harness.run import wait_until
from harness.testing.workload import Writer, block, check_appends

pytestmark = [pytest.mark.topology("nfs.yaml"), pytest.mark.vm]


def nfs_plan(lab: Lab) -> NfsPlan:
    return planned(lab.plan)


def netfs_pool(lab: Lab) -> HostPoolPlan:
    return next(p for p in lab.plan.host.pools if p.type == "netfs")


@pytest.fixture(scope="module")
def hv(lab: Lab) -> Any:
    host = netfs_pool(lab).host
    conn = connect(node_uri(lab, host))
    yield lab.node(host), conn
    conn.close()


def test_netfs_pool_on_the_hypervisor_node(lab: Lab, hv: Any, hosts: dict[str, Any]) -> None:
    node, conn = hv
    spec = netfs_pool(lab)
    pool = conn.storagePoolLookupByName(spec.object)
    assert pool.isActive() and pool.autostart()
    xml = pool.XMLDesc(0)
    assert nfs_plan(lab).address in xml and spec.export in xml
    mount = hosts[node.name].mount_point(need(spec.path, "the netfs pool path"))
    assert mount.exists and mount.filesystem.startswith("nfs"), mount.filesystem
    assert mount.device == f"{nfs_plan(lab).address}:{spec.export}"


def test_netfs_sparse_and_preallocated_volumes(lab: Lab, hv: Any) -> None:
    node, conn = hv
    pool_name = netfs_pool(lab).name
    pool = conn.storagePoolLookupByName(pool_name)
    pool.refresh(0)
    for v in (v for v in lab.plan.host.volumes if v.pool == pool_name):
        vol = pool.storageVolLookupByName(v.name)
        _, capacity, allocation = vol.info()
        assert capacity == v.size, (v.name, capacity)
        info = json.loads(node.succeed(["qemu-img", "info", "--output", "json", vol.path()]))
        assert info["format"] == v.format and info["virtual-size"] == v.size
        if v.allocation == "preallocated":
            assert allocation >= capacity * 0.99, f"{v.name} not preallocated: {allocation} of {capacity}"
        else:
            assert allocation < capacity * 0.05, f"{v.name} not sparse: {allocation} of {capacity}"
        # written through the export with root squashed: the server shows nobody as owner
        server = lab.node(nfs_plan(lab).server)
        owner = server.succeed(["stat", "-c", "%u", f"{nfs_plan(lab).exports[0].path}/{v.name}"]).strip()
        assert owner in ("65534", "107"), f"{v.name} owned by {owner} on the server"


def test_netfs_volume_attaches_to_a_domain_definition(lab: Lab, hv: Any) -> None:
    _, conn = hv
    pool_name = netfs_pool(lab).name
    vol = conn.storagePoolLookupByName(pool_name).listAllVolumes(0)[0]
    dom_xml = f"""<domain type='qemu'><name>storlab-{lab.name}-probe</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64'>hvm</type></os>
      <devices><disk type='volume' device='disk'><driver name='qemu' type='{'qcow2' if vol.name().endswith('qcow2') else 'raw'}'/>
        <source pool='{pool_name}' volume='{vol.name()}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""
    dom = conn.defineXML(dom_xml)
    try:
        assert vol.name() in dom.XMLDesc(0) and pool_name in dom.XMLDesc(0)
    finally:
        dom.undefine()


def test_nfs_server_restart_while_kernel_client_writes(lab: Lab, hv: Any) -> None:
    """kvm1 appends to a file in the netfs pool's mount (the kernel client, a hard mount) while
    nfsd restarts: appends stall, none fails, they resume once the client has reclaimed its
    state within the grace period, and every acknowledged append is on the server, owned by
    nobody (root squashed)."""
    node, _ = hv
    spec = netfs_pool(lab)
    server = lab.node(nfs_plan(lab).server)
    grace = nfs_plan(lab).grace_period
    name = f"restart-{int(time.time())}.log"
    size = 8192

    def append(seq: int) -> None:  # dd's fsync returns only once the server has the data
        node.succeed(["sh", "-c", f"base64 -d | dd of={need(spec.path, 'the netfs pool path')}/{name} bs={size} iflag=fullblock "
                      "oflag=append conv=notrunc,fsync status=none"],
                     input=base64.b64encode(block(seq, size)).decode(), timeout=grace + 240)

    with Writer("nfs-kernel", append, interval=0.2) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=90, what="appends on the NFS mount running")
        with server.service_stopped("nfs-server.service"):
            t_down = time.monotonic()
            time.sleep(5)
            during = [s for t, s in w.log.acked if t > t_down + 2]
        t_up = time.monotonic()
        wait_until(lambda: w.log.first_ack_after(t_up), timeout=grace + 120, interval=1,
                   what="appends acknowledged again after the restart")
        resumed = (w.log.first_ack_after(t_up) or t_up) - t_up
        wait_until(lambda: len([1 for t, _ in w.log.acked if t > t_up]) > 5, timeout=60, what="appends flowing again")
    print(f"kernel NFS client: appends resumed {resumed:.1f}s after nfsd was back (grace {grace}s), "
          f"{len(w.log.acked)} acknowledged, {len(w.log.errors)} failed")
    assert not during, f"appends {during} were acknowledged while the server was stopped"
    assert not w.log.errors, f"a hard mount must not fail writes: {w.log.errors[:3]}"
    assert resumed <= grace + 30, f"appends resumed only {resumed:.1f}s after the restart (grace {grace}s)"
    path = f"{nfs_plan(lab).exports[0].path}/{name}"
    content = base64.b64decode(server.succeed(["base64", "-w0", path], timeout=60))
    problems = check_appends(content, [s for _, s in w.log.acked], w.seq, size)
    assert not problems, problems
    assert server.succeed(["stat", "-c", "%u:%g", path]).strip() == "65534:65534", "root was not squashed"
