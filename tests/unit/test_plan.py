"""The plan: golden files for every shipped topology, plus the properties of subnet and address
allocation that golden files alone would not pin down.

Regenerate the golden files after an intended change with
    UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_plan.py
and review the diff before committing it.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import textwrap
import zlib
from pathlib import Path

import pytest

from harness.backends import gluster, nfs
from harness.backends.gluster.plan import GlusterHostPool
from harness.host.facts import PROFILES
from harness.plan import planner as planmod
from harness.plan.model import Plan
from harness.plan.planner import allocate_subnet, make_plan, render
from harness.spec.validate import validate_file, validate_text

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
TOPOLOGIES = sorted(p.stem for p in (REPO / "topologies").glob("*.yaml"))
CASES = [("kvm", stem) for stem in TOPOLOGIES] + [("ci", "gluster-3")]
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def build(profile: str, stem: str) -> tuple[Plan, dict[str, str]]:
    rel = f"topologies/{stem}.yaml"
    facts = PROFILES[profile]
    topo, res = validate_file(str(REPO / rel), facts)
    plan = make_plan(topo, res, rel, taken=set(), facts=facts)
    return plan, render(plan)


def normalised(plan: Plan, stem: str) -> str:
    assert plan.topology == str(REPO / "topologies" / f"{stem}.yaml")
    return plan.with_(topology=f"topologies/{stem}.yaml").to_json()


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_plan records the topology as an absolute path, resolved against the cwd."""
    monkeypatch.chdir(REPO)


# ---------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("profile", "stem"), CASES, ids=[f"{p}-{s}" for p, s in CASES])
def test_golden(profile: str, stem: str, in_repo: None) -> None:
    plan, files = build(profile, stem)
    got = {"plan.json": normalised(plan, stem)} | {f"files/{rel}": text for rel, text in files.items()}
    root = GOLDEN / profile / stem
    if UPDATE:
        shutil.rmtree(root, ignore_errors=True)
        for rel, text in got.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    assert root.is_dir(), f"no golden files in {root}; run with UPDATE_GOLDEN=1 and review them"
    want = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    assert sorted(got) == sorted(want), "set of rendered files changed"
    for rel in sorted(got):
        assert got[rel] == want[rel], f"{root / rel} differs (UPDATE_GOLDEN=1 to accept)"


def test_golden_covers_every_topology() -> None:
    assert sorted(p.name for p in (GOLDEN / "kvm").iterdir()) == TOPOLOGIES
    assert sorted(p.name for p in (GOLDEN / "ci").iterdir()) == ["gluster-3"]


def test_plan_is_deterministic(in_repo: None) -> None:
    for profile, stem in CASES:
        a, fa = build(profile, stem)
        b, fb = build(profile, stem)
        assert a == b and fa == fb, stem


def test_write_puts_plan_and_files_in_the_directory(tmp_path: Path, in_repo: None) -> None:
    plan, files = build("kvm", "nfs")
    written = planmod.write(plan, tmp_path / "lab")
    assert written == files
    assert Plan.load(tmp_path / "lab" / "plan.json") == plan
    for rel, text in files.items():
        assert (tmp_path / "lab" / "files" / rel).read_text() == text
    assert not (tmp_path / "lab" / "plan.json.tmp").exists()


# ---------------------------------------------------------------------------------------------
# What the golden files must say (checked independently of them)
# ---------------------------------------------------------------------------------------------

def test_nfs_exports_lab_network_rw_sync_root_squash(in_repo: None) -> None:
    plan, files = build("kvm", "nfs")
    cidr = plan.networks[0].cidr
    exports = files["nodes/nfs1/etc/exports"]
    assert f"/srv/nfs/kvm {cidr}(rw,sync,root_squash,no_subtree_check)" in exports
    assert "*(" not in exports
    assert nfs.planned(plan).implementation == "kernel"
    # the netfs pool lives on the hypervisor node and points at the NFS server's address
    nfs1 = next(n for n in plan.nodes if n.name == "nfs1")
    pool = files["nodes/kvm1/pools/nfs-pool.xml"]
    assert f"<host name='{nfs1.address}'/><dir path='/srv/nfs/kvm'/><format type='nfs'/>" in pool
    assert "host/pools/nfs-pool.xml" not in files
    # its volumes sit next to it, on kvm1
    assert "nodes/kvm1/volumes/nfs-pool/full.raw.xml" in files
    assert not any(f.startswith("host/volumes/nfs-pool/") for f in files)
    full = files["nodes/kvm1/volumes/nfs-pool/full.raw.xml"]
    assert "<capacity unit='bytes'>268435456</capacity>" in full
    assert "<allocation unit='bytes'>268435456</allocation>" in full  # preallocated


def test_rbd_pool_has_monitor_on_6789_and_auth_secret(in_repo: None) -> None:
    plan, files = build("kvm", "ceph-5")
    mon = next(n for n in plan.nodes if n.name == "ceph-monitor").address
    xml = files["host/pools/rbd-pool.xml"]
    uuid = plan.host.pools[0].secret_uuid
    assert f"<host name='{mon}' port='6789'/>" in xml
    assert "<name>KVMpool</name>" in xml
    assert "<auth type='ceph' username='KVMpool'>" in xml  # libvirt wants the id without 'client.'
    assert f"<secret uuid='{uuid}'/>" in xml
    secret = files["host/secrets/rbd-pool.xml"]
    assert f"<uuid>{uuid}</uuid>" in secret and "<usage type='ceph'>" in secret
    conf = files["nodes/ceph-osd1/etc/ceph/ceph.conf"]
    assert f"mon host = {mon}\n" in conf
    assert f"public network = {plan.networks[0].cidr}\n" in conf
    assert "osd pool default size = 2\n" in conf
    assert {f for f in files if f.endswith("ceph.conf")} == {
        f"nodes/{n}/etc/ceph/ceph.conf" for n in ("ceph-admin", "ceph-monitor", "ceph-osd1", "ceph-osd2", "ceph-osd3")}


def test_targetcli_has_three_luns_two_portals_and_chap_acl(in_repo: None) -> None:
    plan, files = build("kvm", "iscsi")
    iqn = "iqn.2019-12.com.packt:target1"
    script = files["nodes/iscsi1/root/storlab-targetcli.txt"].splitlines()
    assert [line for line in script if "/luns create" in line] == [
        f"/iscsi/{iqn}/tpg1/luns create /backstores/fileio/lun0",
        f"/iscsi/{iqn}/tpg1/luns create /backstores/block/lun1",
        f"/iscsi/{iqn}/tpg1/luns create /backstores/block/lun2",
    ]
    assert "/backstores/fileio create name=lun0 file_or_dev=/iscsi/lun0.img size=1073741824" in script
    assert "/backstores/block create name=lun1 dev=/dev/vdc" in script  # 2nd extra disk of iscsi1
    assert "/backstores/block create name=lun2 dev=/dev/vg_iscsi/lun2" in script
    target = next(n for n in plan.nodes if n.name == "iscsi1").addresses
    assert [line for line in script if "/portals create" in line] == [
        f"/iscsi/{iqn}/tpg1/portals create {target['storage']} 3260",
        f"/iscsi/{iqn}/tpg1/portals create {target['storage2']} 3260",
    ]
    assert f"/iscsi/{iqn}/tpg1/acls create iqn.2019-12.com.packt:PacktStratis01" in script
    assert any("set auth userid=packt password=<secret:chap-PacktStratis01>" in line for line in script)
    assert f"/iscsi/{iqn}/tpg1 set attribute authentication=1 generate_node_acls=0" in script
    assert script[-1] == "saveconfig"


def test_iscsi_pool_logs_in_with_chap_when_the_acl_demands_it(in_repo: None) -> None:
    plan, files = build("kvm", "iscsi")
    pool = next(p for p in plan.host.pools if p.name == "iscsi-direct-pool")
    xml = files["host/pools/iscsi-direct-pool.xml"]
    assert "<device path='iqn.2019-12.com.packt:target1'/>" in xml
    assert "<auth type='chap' username='packt'>" in xml
    assert f"<secret uuid='{pool.secret_uuid}'/>" in xml
    secret = files["host/secrets/iscsi-direct-pool.xml"]
    assert f"<uuid>{pool.secret_uuid}</uuid>" in secret and "<usage type='iscsi'>" in secret
    # full.yaml's ACL has no CHAP: no auth element, no secret
    plan, files = build("kvm", "full")
    assert "<auth" not in files["host/pools/iscsi-direct-pool.xml"]
    assert "host/secrets/iscsi-direct-pool.xml" not in files


def test_gluster_volume_replica_3_and_auth_allow(in_repo: None) -> None:
    for profile in ("kvm", "ci"):
        plan, files = build(profile, "gluster-3")
        vol = gluster.planned(plan).volumes[0]
        assert (vol.name, vol.replica, vol.nodes) == ("kvmgluster", 3, ("gluster1", "gluster2", "gluster3"))
        assert vol.bricks == tuple(f"gluster{i}:/gluster/bricks/1/brick" for i in (1, 2, 3))
        # the lab network, which includes the KVM host that mounts the volume
        net = ipaddress.IPv4Network(plan.networks[0].cidr)
        assert vol.options["auth.allow"] == ".".join(str(net.network_address).split(".")[:3]) + ".*"
        assert vol.options["network.ping-timeout"] == "5"
        native = files["host/pools/gluster-native.xml"]
        g1 = plan.nodes[0].address
        assert f"<host name='{g1}'/>" in native and "<name>kvmgluster</name>" in native
        fuse = plan.pool("glusterfs-pool", GlusterHostPool)
        assert (fuse.server, fuse.backup_servers) == (g1, tuple(n.address for n in plan.nodes[1:]))


def test_profiles_differ_only_where_they_should(in_repo: None) -> None:
    kvm, kfiles = build("kvm", "gluster-3")
    ci, cfiles = build("ci", "gluster-3")
    assert (kvm.provider, kvm.accel) == ("vagrant", "kvm")
    assert (ci.provider, ci.accel) == ("lxc", "tcg")
    assert [d.device for n in kvm.nodes for d in n.disks] == ["/dev/vdb"] * 3
    assert [d.device for n in ci.nodes for d in n.disks] == [None] * 3
    assert kfiles == cfiles


def test_etc_hosts_lists_every_node(in_repo: None) -> None:
    plan, files = build("kvm", "ceph-5")
    hosts = files["nodes/ceph-osd2/etc/hosts"].splitlines()
    assert "127.0.1.1 ceph-osd2" in hosts
    for n in plan.nodes:
        assert f"{n.address} {n.name}" in hosts


def test_full_topology_pools_are_placed_on_their_hosts(in_repo: None) -> None:
    _plan, files = build("kvm", "full")
    on_host = {f.split("/")[-1] for f in files if f.startswith("host/pools/")}
    on_kvm1 = {f.split("/")[-1] for f in files if f.startswith("nodes/kvm1/pools/")}
    assert on_host == {"local-dir.xml", "glusterfs-pool.xml", "gluster-native.xml", "rbd-pool.xml", "iscsi-direct-pool.xml"}
    assert on_kvm1 == {"nfs-pool.xml", "iscsi-pool.xml", "fs-pool.xml", "lvm-pool.xml"}
    assert "<target><path>/dev/disk/by-path</path></target>" in files["nodes/kvm1/pools/iscsi-pool.xml"]
    assert "<device path='/dev/vdb'/><format type='ext4'/>" in files["nodes/kvm1/pools/fs-pool.xml"]


# ---------------------------------------------------------------------------------------------
# Userspace servers (containers): not covered by the golden cases
# ---------------------------------------------------------------------------------------------

USERSPACE = """
    lab: us
    nodes:
      - {name: n1, roles: [nfs-server]}
      - name: t1
        roles: [iscsi-target]
        disks: [{name: lun1, size: 1G}]
    nfs:
      server: n1
      exports:
        - {path: /srv/a}
        - {path: /srv/b, clients: ['*'], options: [ro, sync, no_root_squash], allow_insecure: true}
    iscsi:
      target: t1
      iqn: iqn.2019-12.com.example:t1
      luns:
        - {kind: fileio, path: /iscsi/l0.img, size: 1G}
        - {kind: block, disk: lun1}
      acls: [{initiator: 'iqn.2019-12.com.example:i1'}]
    """


def test_ganesha_and_tgt_on_containers() -> None:
    topo, res = validate_text(textwrap.dedent(USERSPACE), PROFILES["ci"])
    assert (res.provider, res.implementation("nfs"), res.implementation("iscsi")) == ("lxc", "ganesha", "tgt")
    plan = make_plan(topo, res, "us.yaml", set(), PROFILES["ci"])
    files = render(plan)
    assert "nodes/n1/etc/exports" not in files and "nodes/t1/root/storlab-targetcli.txt" not in files
    ganesha = files["nodes/n1/etc/ganesha/ganesha.conf"]
    a, b = ganesha.split("EXPORT {")[1:]
    cidr = plan.networks[0].cidr
    assert 'Path = "/srv/a";' in a and "Access_Type = RW;" in a and "Squash = Root_Squash;" in a
    assert f"Clients = {cidr};" in a
    assert 'Path = "/srv/b";' in b and "Access_Type = RO;" in b and "Squash = No_Root_Squash;" in b
    assert "Clients = *;" in b
    tgt = files["nodes/t1/etc/tgt/conf.d/storlab.conf"]
    assert "<target iqn.2019-12.com.example:t1>" in tgt
    # LUN numbers follow the topology's order (tgt-admin would otherwise sort by path)
    assert "    <backing-store /iscsi/l0.img>\n        lun 1\n" in tgt
    assert "    <backing-store /dev/storlab/lun1>\n        lun 2\n" in tgt  # the node's raw disk
    assert "    initiator-address 192.0.2.1\n" in tgt  # no implicit ALL address ACL
    assert "    initiator-name iqn.2019-12.com.example:i1\n" in tgt


# ---------------------------------------------------------------------------------------------
# Subnet allocation
# ---------------------------------------------------------------------------------------------

def _colliding_labs() -> tuple[str, str]:
    """Two lab names whose 'storage' network hashes to the same first-choice subnet."""
    seen: dict[int, str] = {}
    for i in range(1000):
        lab = f"lab{i}"
        start = zlib.crc32(f"{lab}/storage".encode()) % 128
        if start in seen:
            return seen[start], lab
        seen[start] = lab
    raise AssertionError("no collision among 1000 names")


def test_allocate_subnet_is_deterministic_and_in_range() -> None:
    a = allocate_subnet("gluster3", "storage", set())
    assert a == allocate_subnet("gluster3", "storage", set())
    assert a.prefixlen == 24
    assert ipaddress.IPv4Network("192.168.100.0/24").network_address <= a.network_address
    assert a.network_address <= ipaddress.IPv4Network("192.168.227.0/24").network_address
    # different networks of one lab start elsewhere
    assert allocate_subnet("gluster3", "backend", set()) != a


def test_allocate_subnet_skips_taken() -> None:
    first = allocate_subnet("nfs", "storage", set())
    second = allocate_subnet("nfs", "storage", {first})
    assert second != first
    nxt = 100 + (first.network_address.packed[2] - 100 + 1) % 128
    assert second == ipaddress.IPv4Network(f"192.168.{nxt}.0/24")
    # a taken supernet knocks out every /24 inside it
    third = allocate_subnet("nfs", "storage", {ipaddress.IPv4Network(f"192.168.{first.network_address.packed[2]}.0/24"),
                                               ipaddress.IPv4Network("192.168.0.0/17")})
    assert not third.overlaps(ipaddress.IPv4Network("192.168.0.0/17")) and third != first


def test_two_labs_never_share_a_subnet() -> None:
    lab_a, lab_b = _colliding_labs()
    a = allocate_subnet(lab_a, "storage", set())
    assert allocate_subnet(lab_b, "storage", set()) == a  # same first choice...
    b = allocate_subnet(lab_b, "storage", {a})
    assert b != a and not b.overlaps(a)                   # ...but not once lab_a holds it


def test_allocate_subnet_exhausted() -> None:
    with pytest.raises(RuntimeError, match="no free /24"):
        allocate_subnet("x", "storage", {ipaddress.IPv4Network("192.168.0.0/16")})


def test_make_plan_avoids_taken_and_explicit_subnets() -> None:
    auto = allocate_subnet("t", "backend", set())
    text = f"""
        lab: t
        networks:
          - {{name: storage, cidr: {auto}}}
          - name: backend
        nodes: [{{name: a}}]
        """
    topo, res = validate_text(textwrap.dedent(text), PROFILES["kvm"])
    taken = {ipaddress.IPv4Network("10.0.0.0/8")}
    plan = make_plan(topo, res, "t.yaml", taken, PROFILES["kvm"])
    cidrs = [ipaddress.IPv4Network(n.cidr) for n in plan.networks]
    assert cidrs[0] == auto                              # explicit cidr kept
    assert cidrs[1] != auto and not cidrs[1].overlaps(cidrs[0])
    assert taken == {ipaddress.IPv4Network("10.0.0.0/8")}  # caller's set not modified
    plan2 = make_plan(topo, res, "t.yaml", {cidrs[1]}, PROFILES["kvm"])
    assert plan2.networks[1].cidr not in (str(cidrs[0]), str(cidrs[1]))


# ---------------------------------------------------------------------------------------------
# Address allocation
# ---------------------------------------------------------------------------------------------

def _plan(text: str) -> Plan:
    topo, res = validate_text(textwrap.dedent(text), PROFILES["kvm"])
    return make_plan(topo, res, "t.yaml", set(), PROFILES["kvm"])


def test_explicit_addresses_kept_and_auto_ones_avoid_them() -> None:
    plan = _plan("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
          - {name: backend, cidr: 192.168.70.0/24}
        nodes:
          - {name: a}
          - {name: b, address: 192.168.60.11, addresses: {backend: 192.168.70.13}}
          - {name: c}
          - {name: d, address: 192.168.60.14}
        """)
    got = {n.name: n.addresses for n in plan.nodes}
    assert got["b"] == {"storage": "192.168.60.11", "backend": "192.168.70.13"}
    assert got["d"]["storage"] == "192.168.60.14"
    # a would take .11 (node index 0) but b holds it; c would take .13 on backend but b holds that
    assert got["a"] == {"storage": "192.168.60.12", "backend": "192.168.70.11"}
    assert got["c"] == {"storage": "192.168.60.13", "backend": "192.168.70.14"}
    for net in ("storage", "backend"):
        addrs = [a[net] for a in got.values()]
        assert len(set(addrs)) == len(addrs)
    assert [n.address for n in plan.nodes] == [got[x]["storage"] for x in "abcd"]


def test_auto_addresses_follow_node_order() -> None:
    plan = _plan("lab: t\nnetworks: [{name: storage, cidr: 10.9.8.0/24}]\nnodes: [{name: a}, {name: b}, {name: c}]\n")
    assert [n.address for n in plan.nodes] == ["10.9.8.11", "10.9.8.12", "10.9.8.13"]


def test_explicit_address_on_first_network_via_addresses_is_kept() -> None:
    plan = _plan("""
        lab: t
        networks: [{name: storage, cidr: 192.168.60.0/24}]
        nodes:
          - {name: a, addresses: {storage: 192.168.60.50}}
          - {name: b}
        """)
    assert [n.address for n in plan.nodes] == ["192.168.60.50", "192.168.60.12"]


def test_auto_addresses_stay_inside_a_small_network() -> None:
    plan = _plan("""
        lab: t
        networks: [{name: storage, cidr: 192.168.60.16/28}]
        nodes: [{name: a}, {name: b}, {name: c, address: 192.168.60.18}, {name: d}, {name: e}]
        """)
    net = ipaddress.IPv4Network("192.168.60.16/28")
    addrs = [ipaddress.IPv4Address(n.address) for n in plan.nodes]
    assert len(set(addrs)) == len(addrs)
    for a in addrs:
        assert a in net and a not in (net.network_address, net.network_address + 1, net.broadcast_address)
    assert [str(a) for a in addrs] == ["192.168.60.27", "192.168.60.28", "192.168.60.18", "192.168.60.30", "192.168.60.19"]
    # the /29 case: 5 usable addresses, all below .11
    plan = _plan("lab: t\nnetworks: [{name: s, cidr: 192.168.60.8/29}]\nnodes: [{name: a}, {name: b}, {name: c}]\n")
    assert [n.address for n in plan.nodes] == ["192.168.60.10", "192.168.60.11", "192.168.60.12"]


def test_nodes_get_macs_and_disks() -> None:
    plan = _plan("""
        lab: t
        provider: vagrant
        networks: [{name: storage}, {name: backend}]
        nodes:
          - {name: a, disks: [{name: d1, size: 1G}, {name: d2, size: 2G, filesystem: xfs, mount: /data}]}
          - {name: b}
        """)
    a, _b = plan.nodes
    assert set(a.macs) == {"storage", "backend"}
    macs = [m for n in plan.nodes for m in n.macs.values()]
    assert len(set(macs)) == 4 and all(m.startswith("52:54:00:") for m in macs)
    assert [(d.name, d.size, d.device) for d in a.disks] == [("d1", 2**30, "/dev/vdb"), ("d2", 2**31, "/dev/vdc")]
    assert a.disks[1].mount == "/data" and a.object == "storlab-t_a"
    assert [n.bridge for n in plan.networks] == [f"slb{plan.tag}0", f"slb{plan.tag}1"]
