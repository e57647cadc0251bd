"""Pools that need a kernel the KVM host may lack (NFS client), wired on a hypervisor node
of the lab (a VM running libvirtd) and reached over qemu+ssh:// with the lab's key.
Select with `pytest -k netfs` (VMs: marked `vm`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.hostpools import connect, node_uri

pytestmark = [pytest.mark.topology("nfs.yaml"), pytest.mark.vm]


@pytest.fixture(scope="module")
def hv(lab: Any) -> Any:
    host = next(p["host"] for p in lab.plan["host"]["pools"] if p["type"] == "netfs")
    conn = connect(node_uri(lab, host))
    yield lab.node(host), conn
    conn.close()


def test_netfs_pool_on_the_hypervisor_node(lab: Any, hv: Any, hosts: dict[str, Any]) -> None:
    node, conn = hv
    spec = next(p for p in lab.plan["host"]["pools"] if p["type"] == "netfs")
    pool = conn.storagePoolLookupByName(spec["name"])
    assert pool.isActive() and pool.autostart()
    xml = pool.XMLDesc(0)
    assert lab.plan["nfs"]["address"] in xml and spec["export"] in xml
    mount = hosts[node.name].mount_point(spec["path"])
    assert mount.exists and mount.filesystem.startswith("nfs"), mount.filesystem
    assert mount.device == f"{lab.plan['nfs']['address']}:{spec['export']}"


def test_netfs_sparse_and_preallocated_volumes(lab: Any, hv: Any) -> None:
    node, conn = hv
    pool_name = next(p["name"] for p in lab.plan["host"]["pools"] if p["type"] == "netfs")
    pool = conn.storagePoolLookupByName(pool_name)
    pool.refresh(0)
    for v in (v for v in lab.plan["host"]["volumes"] if v["pool"] == pool_name):
        vol = pool.storageVolLookupByName(v["name"])
        _, capacity, allocation = vol.info()
        assert capacity == v["size"], (v["name"], capacity)
        info = json.loads(node.succeed(["qemu-img", "info", "--output", "json", vol.path()]))
        assert info["format"] == v["format"] and info["virtual-size"] == v["size"]
        if v["allocation"] == "preallocated":
            assert allocation >= capacity * 0.99, f"{v['name']} not preallocated: {allocation} of {capacity}"
        else:
            assert allocation < capacity * 0.05, f"{v['name']} not sparse: {allocation} of {capacity}"
        # written through the export with root squashed: the server shows nobody as owner
        server = lab.node(lab.plan["nfs"]["server"])
        owner = server.succeed(["stat", "-c", "%u", f"{lab.plan['nfs']['exports'][0]['path']}/{v['name']}"]).strip()
        assert owner in ("65534", "107"), f"{v['name']} owned by {owner} on the server"


def test_netfs_volume_attaches_to_a_domain_definition(lab: Any, hv: Any) -> None:
    _, conn = hv
    pool_name = next(p["name"] for p in lab.plan["host"]["pools"] if p["type"] == "netfs")
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
