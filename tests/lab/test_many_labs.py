"""Many labs on one host, as a class or a config matrix runs them: two instances of gluster-3
(`storlab up --name`) and an nfs-userspace lab brought up at the same time by three processes,
each gluster lab with its own nodes, networks, volume, FUSE mount and libvirt pools on the shared
KVM host; a lab's nodes cannot reach another lab's; `down` of one leaves the others whole. Objects made by hand
with a lab's names stop its `up` before it makes anything, and survive its `down`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.backends.gluster.role import volume_whole
from harness.host.facts import mount_at
from harness.host.virt import connect
from harness.lab.lab import Lab

from .test_lifecycle import host_traces

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
TOPO = str(TOPOLOGIES / "gluster-3.yaml")
STORLAB = [sys.executable, "-m", "harness.cli"]
NAMES = ("mla", "mlb")  # instances of gluster-3
NFS = "mln"  # an instance of nfs-userspace, up at the same time
HANDMADE, VMHANDMADE, PREFIXED = "mlh", "mlv", ("mlx", "mlx-b")


def storlab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STORLAB, *args], capture_output=True, text=True, timeout=timeout, check=False)


def pool_names(conn: Any) -> set[str]:
    return {p.name() for p in conn.listAllStoragePools(0)}


@pytest.fixture(scope="module", autouse=True)
def clean_slate() -> Any:
    def clean() -> None:
        for name in (*NAMES, NFS, HANDMADE, VMHANDMADE, *PREFIXED):
            if (paths.lab_dir(name) / "plan.json").exists():
                storlab("down", name)
    clean()
    yield
    clean()


def nfs_exporting(lab: Lab) -> bool:
    r = lab.node("nfs1").run(["showmount", "-e", "--no-headers", "127.0.0.1"], timeout=30)
    return r.ok and "/srv/nfs/kvm" in r.stdout


@pytest.fixture(scope="module")
def labs() -> dict[str, Lab]:
    t0 = time.monotonic()
    jobs = [(TOPO, n) for n in NAMES] + [(str(TOPOLOGIES / "nfs-userspace.yaml"), NFS)]
    with ThreadPoolExecutor(len(jobs)) as ex:  # three `storlab up` processes at once
        results = list(ex.map(lambda job: storlab("up", job[0], "--provider", "lxc", "--name", job[1]), jobs))
    for (_, name), r in zip(jobs, results, strict=True):
        assert r.returncode == 0, f"up --name {name}: {r.stderr[-3000:]}"
    print(f"two gluster-3 instances and nfs-userspace up at once: {time.monotonic() - t0:.0f}s")
    return {n: Lab.load(n) for n in (*NAMES, NFS)}


def test_many_labs_instances_come_up_together_each_whole_and_its_own(labs: dict[str, Lab]) -> None:
    subnets = {lab.plan.networks[0].cidr for lab in labs.values()}
    assert len(subnets) == len(labs), f"labs share a subnet: {subnets}"
    assert nfs_exporting(labs[NFS]), "nfs-userspace does not export /srv/nfs/kvm"
    conn = connect("qemu:///system")
    try:
        have = pool_names(conn)
        for name, lab in ((n, labs[n]) for n in NAMES):
            assert lab.plan.instance_of == "gluster3"
            fuse = lab.plan.pool("glusterfs-pool")
            assert fuse.object == paths.obj_name(name, "glusterfs-pool") and fuse.object in have
            assert fuse.path == f"/var/lib/libvirt/images/GlusterFS-{name}"
            m = mount_at(fuse.path)
            assert m is not None and m[0].split(":")[0] in {n.address for n in lab.nodes.values()}, \
                f"{fuse.path} is not mounted from lab {name}'s own servers: {m}"
            assert volume_whole(lab.node("gluster1"), "kvmgluster")
    finally:
        conn.close()


def test_many_labs_nodes_cannot_reach_another_labs_nodes(labs: dict[str, Lab]) -> None:
    a = labs[NAMES[0]]
    node = a.node("gluster1")
    assert node.run(["ping", "-c1", "-W2", a.node("gluster2").address], timeout=15).ok
    for b in (labs[NAMES[1]], labs[NFS]):
        for other in b.nodes.values():
            assert not node.run(["ping", "-c1", "-W2", other.address], timeout=15).ok, \
                f"lab {a.name}'s gluster1 reaches lab {b.name}'s {other.name} ({other.address})"


def test_many_labs_down_of_one_leaves_the_others_whole(labs: dict[str, Lab]) -> None:
    gone, kept = NAMES
    r = storlab("down", gone)
    assert r.returncode == 0, r.stderr[-2000:]
    assert host_traces(gone) == []
    conn = connect("qemu:///system")
    try:
        have = pool_names(conn)
        assert not any(p.startswith(paths.obj_prefix(gone)) for p in have)
        lab = labs[kept]
        fuse = lab.plan.pool("glusterfs-pool")
        assert fuse.object in have and conn.storagePoolLookupByName(fuse.object).isActive()
        assert mount_at(fuse.path or "") is not None, f"{kept}'s FUSE mount went with lab {gone}"
        assert all(n.is_up() for n in lab.nodes.values())
        assert volume_whole(lab.node("gluster2"), "kvmgluster")
        assert nfs_exporting(labs[NFS]), f"nfs-userspace stopped exporting with lab {gone}"
    finally:
        conn.close()
    for name in (kept, NFS):
        assert storlab("down", name).returncode == 0
        assert host_traces(name) == []


def test_many_labs_hand_made_objects_stop_up_before_it_makes_anything_and_survive_down() -> None:
    """A pool made by hand with the name the lab's pool would take: `up` refuses, naming it, before
    any node exists; the pool is untouched by the failed `up` and by `down`."""
    name = paths.obj_name(HANDMADE, "glusterfs-pool")
    conn = connect("qemu:///system")
    target = Path(f"/var/lib/storlab-test-{HANDMADE}")
    try:
        target.mkdir(exist_ok=True)
        pool = conn.storagePoolDefineXML(f"<pool type='dir'><name>{name}</name><target><path>{target}</path>"
                                         f"</target></pool>", 0)
        try:
            r = storlab("up", TOPO, "--provider", "lxc", "--name", HANDMADE)
            assert r.returncode != 0
            assert name in r.stderr and "not this lab's" in r.stderr, r.stderr[-2000:]
            assert host_traces(HANDMADE) == [], "the refused up left something behind"
            assert conn.storagePoolLookupByName(name).UUIDString() == pool.UUIDString()
            if (paths.lab_dir(HANDMADE) / "plan.json").exists():
                storlab("down", HANDMADE)
            assert conn.storagePoolLookupByName(name).UUIDString() == pool.UUIDString(), "down removed a hand-made pool"
        finally:
            pool.undefine()
    finally:
        conn.close()
        target.rmdir()


def test_many_labs_a_and_a_b_coexist_and_down_a_leaves_a_b() -> None:
    """Lab names where one extends the other (container storlab-mlx-b-node1 could be lab mlx's node
    b-node1 by its name): ownership goes by marks, so `down mlx` takes none of mlx-b's."""
    a, ab = PREFIXED
    nodes3 = str(TOPOLOGIES / "nodes-3.yaml")
    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(lambda n: storlab("up", nodes3, "--provider", "lxc", "--name", n), PREFIXED))
    assert all(r.returncode == 0 for r in results), [r.stderr[-1500:] for r in results]
    assert storlab("down", a).returncode == 0
    lab_ab = Lab.load(ab)
    assert all(n.is_up() for n in lab_ab.nodes.values()), f"down {a} stopped a node of {ab}"
    assert all(lab_ab.node(n).run(["true"], timeout=30).ok for n in lab_ab.nodes)
    left_of_a = [t for t in host_traces(a) if paths.obj_prefix(ab) not in t and f"/labs/{ab}/" not in t
                 and not t.startswith(f"link slb{paths.tag(ab)}")]
    assert left_of_a == [], left_of_a
    assert storlab("down", ab).returncode == 0
    assert host_traces(ab) == []


def test_many_labs_hand_made_domain_and_network_stop_a_vm_lab_and_survive_down_and_reap() -> None:
    """A domain and a network made by hand with the names a vagrant lab would use, and a domain
    and network named storlab-something: `up` refuses before vagrant makes anything (no VM is
    booted here), and neither `down` nor `reap` touches them."""
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed (ci/setup-host.sh --vm)")
    conn = connect("qemu:///system")
    made: list[Any] = []
    try:
        for name in (paths.obj_name(VMHANDMADE, "node1"), "storlab-something"):
            made.append(conn.defineXML(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
                                       "<os><type arch='x86_64'>hvm</type></os></domain>"))
        for name, bridge in ((paths.obj_name(VMHANDMADE, "storage"), "slbhand0"), ("storlab-something", "slbhand1")):
            made.append(conn.networkDefineXML(f"<network><name>{name}</name><bridge name='{bridge}'/></network>"))
        r = storlab("up", str(TOPOLOGIES / "vm-smoke.yaml"), "--provider", "vagrant", "--name", VMHANDMADE)
        assert r.returncode != 0
        dom, net = paths.obj_name(VMHANDMADE, "node1"), paths.obj_name(VMHANDMADE, "storage")
        assert f"domain {dom}" in r.stderr and f"network {net}" in r.stderr, \
            r.stderr[-2000:]
        if (paths.lab_dir(VMHANDMADE) / "plan.json").exists():
            storlab("down", VMHANDMADE)
        assert storlab("reap").returncode == 0
        domains = {d.name() for d in conn.listAllDomains(0)}
        networks = {n.name() for n in conn.listAllNetworks(0)}
        assert {paths.obj_name(VMHANDMADE, "node1"), "storlab-something"} <= domains, "down or reap removed a hand-made domain"
        assert {paths.obj_name(VMHANDMADE, "storage"), "storlab-something"} <= networks, \
            "down or reap removed a hand-made network"
        assert not any(d.startswith(paths.obj_prefix(VMHANDMADE)) and d != paths.obj_name(VMHANDMADE, "node1") for d in domains)
    finally:
        for obj in made:
            obj.undefine()
        conn.close()
