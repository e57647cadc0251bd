"""The libvirt pool types on an iSCSI target that a hypervisor node logs in to itself (the iscsi
backend on topologies/iscsi-pools.yaml, VMs: LIO and a kernel initiator with dm-multipath):
`logical` (a volume group on LUN 0's map, named lun-lvm after its pool), `disk` (a GPT on LUN 1's
map lun-gpt, its volumes partitions), `scsi` (the SCSI host of kvm1's session over the first
portal: every LUN, one path each) and `mpath` (every multipath map of kvm1, two live paths each).
Through a volume of each, random blocks are written (O_DIRECT, fsync) on kvm1 and read back.
LUN 2 belongs to no pool: the scsi and mpath tests write on it (at different offsets). Select
with `pytest -k iscsi_pools` (marked `vm`)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.iscsi import initiator, planned
from harness.backends.iscsi import pools as lunpools
from harness.backends.iscsi.plan import IscsiHostPool, IscsiPlan
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import need
from harness.testing.workload import read_direct, write_direct

pytestmark = [pytest.mark.topology("iscsi-pools.yaml"), pytest.mark.vm]

SIZE = 4096
BLOCKS = 8
SCRATCH_LUN = 2  # the LUN no pool takes: the scsi and mpath pools' tests write on it
#: a path of a map in `multipath -ll`: "3:0:0:2 sde 8:64 active ready running"
PATH_LINE = re.compile(r"(\d+):\d+:\d+:(\d+)\s+(sd[a-z]+)\s+\d+:\d+\s+active\s+ready\s+running")


def section(lab: Lab) -> IscsiPlan:
    return planned(lab.plan)


def spec(lab: Lab, kind: str) -> IscsiHostPool:
    """The topology's pool of type ``kind`` (one of each)."""
    return lab.plan.pool(next(p.name for p in lab.plan.host.pools if p.type == kind), IscsiHostPool)


@pytest.fixture(scope="module")
def hv(lab: Lab) -> Iterator[tuple[Node, Any]]:
    """kvm1 (where the four pools live) and a libvirt connection to it."""
    host = spec(lab, "scsi").host
    conn = connect(node_uri(lab, host))
    yield lab.node(host), conn
    conn.close()


def running(conn: Any, p: IscsiHostPool) -> Any:
    pool = conn.storagePoolLookupByName(p.object)
    assert pool.isActive() and pool.autostart(), f"pool {p.name} is not running with autostart"
    pool.refresh(0)
    return pool


def round_trip(node: Node, path: str, first: int = 0) -> bytes:
    """Random blocks written at ``first`` read back the same (random: no earlier run's data passes)."""
    data = os.urandom(BLOCKS * SIZE)
    write_direct(node, path, first, data, SIZE)
    back = read_direct(node, path, first, BLOCKS, SIZE)
    assert back == data, f"{path}: blocks {first}..{first + BLOCKS - 1} read back differ from what was written"
    return data


def live_paths(node: Node, device: str) -> list[tuple[int, int, str]]:
    """(SCSI host, LUN, sd device) of each path of a map that `multipath -ll` shows active and ready."""
    out = node.succeed(["multipath", "-ll", device], timeout=60)
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in PATH_LINE.finditer(out)]


def source_device(pool: Any) -> str | None:
    dev = ET.fromstring(pool.XMLDesc(0)).find("source/device")
    return None if dev is None else dev.get("path")


def test_iscsi_pools_logical_volume_group_on_a_luns_map(lab: Lab, hv: tuple[Node, Any]) -> None:
    node, conn = hv
    p = spec(lab, "logical")
    pool = running(conn, p)
    assert source_device(pool) == p.device == "/dev/mapper/lun-lvm"
    # the map named after the pool is LUN 0's (attach finds the LUN's map through its by-path link)
    assert initiator.attach(lab, node, need(p.lun, "lun")) == p.device
    pvs = node.succeed(["pvs", "--noheadings", "-o", "pv_name,vg_name"])
    assert [p.device, "vg_lun"] in [line.split() for line in pvs.splitlines()], f"{p.device} is not vg_lun's PV: {pvs}"
    assert "lv1" in pool.listVolumes(), "the volume of the topology (host.volumes) was not made"
    if "io-test" not in pool.listVolumes():
        pool.createXML(f"<volume><name>io-test</name><capacity unit='bytes'>{64 * 2**20}</capacity></volume>", 0)
    vol = pool.storageVolLookupByName("io-test")
    try:
        assert vol.path() == "/dev/vg_lun/io-test"
        devices = node.succeed(["lvs", "--noheadings", "-o", "devices", "vg_lun/io-test"])
        assert p.device in devices, f"io-test is not on the LUN's map: {devices}"
        round_trip(node, vol.path())
    finally:
        vol.delete(0)


def test_iscsi_pools_disk_partitions_of_a_luns_map(lab: Lab, hv: tuple[Node, Any]) -> None:
    node, conn = hv
    p = spec(lab, "disk")
    pool = running(conn, p)
    assert source_device(pool) == p.device == "/dev/mapper/lun-gpt"
    assert initiator.attach(lab, node, need(p.lun, "lun")) == p.device
    table = node.succeed(["parted", "-s", need(p.device, "device"), "print"], timeout=60)
    assert "Partition Table: gpt" in table, table
    # partition 1 was made by `up` (host.volumes), partition 2 is made here: both named as parted names them
    if "lun-gpt2" not in pool.listVolumes():
        pool.createXML(f"<volume><name>lun-gpt2</name><capacity unit='bytes'>{64 * 2**20}</capacity></volume>", 0)
    assert {"lun-gpt1", "lun-gpt2"} <= set(pool.listVolumes())
    for name in ("lun-gpt1", "lun-gpt2"):
        path = pool.storageVolLookupByName(name).path()
        assert path == f"/dev/mapper/{name}"
        round_trip(node, path)
    # kpartx left the map to parted (skip_kpartx): no second set of partition maps named lun-gpt-partN
    assert not node.run(["test", "-e", "/dev/mapper/lun-gpt-part1"]).ok


def test_iscsi_pools_scsi_lists_the_luns_of_the_first_portals_session(lab: Lab, hv: tuple[Node, Any]) -> None:
    node, conn = hv
    p, iscsi = spec(lab, "scsi"), section(lab)
    pool = running(conn, p)
    sessions = lunpools.parse_sessions(node.succeed(["iscsiadm", "-m", "session", "-P", "3"], timeout=30))
    assert {s.portal for s in sessions if s.target == iscsi.iqn} == {f"{a}:3260" for a in iscsi.portal_addresses}
    adapter = lunpools.scsi_host(sessions, iscsi.iqn, f"{iscsi.portal_addresses[0]}:3260")
    found = ET.fromstring(pool.XMLDesc(0)).find("source/adapter")
    assert found is not None and found.get("name") == adapter
    numbers = [initiator.lun_number(iscsi, i) for i in range(len(iscsi.luns))]
    assert sorted(pool.listVolumes()) == sorted(f"unit:0:0:{n}" for n in numbers), "one volume per LUN"
    for i, n in enumerate(numbers):  # each the LUN over the first portal (its by-path link)
        assert pool.storageVolLookupByName(f"unit:0:0:{n}").path() == initiator.by_path(iscsi, iscsi.portal_addresses[0], i)
    scratch = pool.storageVolLookupByName(f"unit:0:0:{numbers[SCRATCH_LUN]}").path()
    data = round_trip(node, scratch, first=0)
    # the same LUN through its multipath map: what went down one path is there
    assert read_direct(node, initiator.attach(lab, node, SCRATCH_LUN), 0, BLOCKS, SIZE) == data


def test_iscsi_pools_mpath_lists_every_map_with_two_live_paths(lab: Lab, hv: tuple[Node, Any]) -> None:
    node, conn = hv
    p, iscsi = spec(lab, "mpath"), section(lab)
    pool = running(conn, p)
    maps = [initiator.attach(lab, node, i) for i in range(len(iscsi.luns))]
    assert maps[:2] == [spec(lab, "logical").device, spec(lab, "disk").device], maps  # named after their pools
    volumes = {pool.storageVolLookupByName(v).path(): v for v in pool.listVolumes()}
    assert set(volumes) == set(maps), "the mpath pool lists the node's multipath maps, one per LUN (no partition or LV)"
    for i, device in enumerate(maps):
        live = live_paths(node, device)
        assert len(live) == 2, f"{device} (LUN {i}) has {len(live)} live paths, not 2: {live}"
        assert len({host for host, _, _ in live}) == 2, f"{device}: both paths over one session: {live}"
        assert {lun for _, lun, _ in live} == {initiator.lun_number(iscsi, i)}, live
    scratch = pool.storageVolLookupByName(volumes[maps[SCRATCH_LUN]])
    assert scratch.path() == maps[SCRATCH_LUN]
    round_trip(node, scratch.path(), first=64)  # past the scsi test's blocks
