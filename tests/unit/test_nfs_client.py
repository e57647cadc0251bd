"""The NFS client side of pools (harness/backends/nfs/client.py, mountstats.py, plan.py): the
parsers of /proc/self/mountstats and `ss -Htn` against recorded text (Debian 12, kernel 6.1, the
mounts of topologies/nfs-client.yaml), what a pool's options resolve to, the netfs XML libvirt
takes, the mount units of a dir pool on an NFS mount, and mounting one on a fake node."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import libvirt
import pytest

from harness.backends.nfs import client
from harness.backends.nfs.mountstats import NfsMount, Xprt, of_mount, parse_mountstats, parse_ss, to_server
from harness.backends.nfs.plan import NfsHostPool, of
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan.model import HostPoolPlan, Plan
from harness.plan.planner import _env as plan_templates
from harness.plan.planner import make_plan, render
from harness.run import CommandResult
from harness.spec.validate import validate_file

REPO = Path(__file__).resolve().parents[2]

# /proc/self/mountstats on hv1 of nfs-client.yaml (addresses as its plan gives them): the netfs
# pool (v4.2, nconnect=4), the dir pool on NFSv3 (nconnect=2) and the trunked NFSv4.1 dir pool
# with its second mount over storage2, between the mounts every system has
MOUNTSTATS = """\
device sysfs mounted on /sys with fstype sysfs
device proc mounted on /proc with fstype proc
device udev mounted on /dev with fstype devtmpfs
device /dev/vda1 mounted on / with fstype ext4
device rpc_pipefs mounted on /run/rpc_pipefs with fstype rpc_pipefs
device 192.168.172.11:/srv/nfs/netfs mounted on /var/lib/libvirt/images/netfs42 with fstype nfs4 statvers=1.1
\topts:\trw,vers=4.2,rsize=524288,wsize=524288,namlen=255,acregmin=3,acregmax=60,acdirmin=30,acdirmax=60,hard,\
proto=tcp,nconnect=4,timeo=600,retrans=2,sec=sys,clientaddr=192.168.172.12,local_lock=none
\tage:\t212
\timpl_id:\tname='',domain='',date='0,0'
\tcaps:\tcaps=0x3ffbffff,wtmult=512,dtsize=524288,bsize=0,namlen=255
\tnfsv4:\tbm0=0xfdffbfff,bm1=0x40fdbe3e,bm2=0x60803,acl=0x3,sessions,pnfs=not configured,lease_time=10,lease_expired=0
\tsec:\tflavor=1,pseudoflavor=1
\tevents:\t4 31 0 3 6 9 52 0 0 2 0 0 0 0 2 0 0 4 0 0 2 0 0 0 0 0 0
\tbytes:\t1048576 4194304 0 0 1048576 4194304 257 1025
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)
\txprt:\ttcp 719 0 1 0 12 38 38 0 38 0 2 0 0
\txprt:\ttcp 901 0 1 0 12 11 11 0 11 0 2 0 0
\txprt:\ttcp 842 0 1 0 12 10 10 0 10 0 2 0 0
\txprt:\ttcp 677 0 1 0 12 10 10 0 10 0 2 0 0
\tper-op statistics
\t        NULL: 1 1 0 44 24 0 0 0 0
\t        READ: 1 1 0 220 1048664 0 2 2 0
\t       WRITE: 4 4 0 4195164 704 0 25 26 0

device 192.168.172.11:/srv/nfs/dir mounted on /var/lib/libvirt/images/dirv3 with fstype nfs statvers=1.1
\topts:\trw,vers=3,rsize=524288,wsize=524288,namlen=255,acregmin=3,acregmax=60,acdirmin=30,acdirmax=60,hard,\
proto=tcp,nconnect=2,timeo=600,retrans=2,sec=sys,mountaddr=192.168.172.11,mountvers=3,mountport=53481,\
mountproto=udp,local_lock=none
\tage:\t230
\tcaps:\tcaps=0x20003fef,wtmult=512,dtsize=524288,bsize=0,namlen=255
\tsec:\tflavor=1,pseudoflavor=1
\tevents:\t3 40 0 2 7 6 61 0 0 1 0 0 0 0 1 0 0 3 0 0 1 0 0 0 0 0 0
\tbytes:\t0 2097152 0 0 0 2097152 0 513
\tRPC iostats version: 1.1  p/v: 100003/3 (nfs)
\txprt:\ttcp 964 1 1 0 3 45 45 0 45 0 2 0 0
\txprt:\ttcp 688 1 1 0 3 44 44 0 44 0 2 0 0
\tper-op statistics
\t        NULL: 2 2 0 88 48 0 0 0 0
\t     GETATTR: 12 12 0 1344 1344 0 3 3 0

device 192.168.172.11:/srv/nfs/trunk mounted on /var/lib/libvirt/images/trunk41 with fstype nfs4 statvers=1.1
\topts:\trw,vers=4.1,rsize=524288,wsize=524288,namlen=255,acregmin=3,acregmax=60,acdirmin=30,acdirmax=60,hard,\
proto=tcp,max_connect=2,timeo=600,retrans=2,sec=sys,clientaddr=192.168.172.12,local_lock=none
\tage:\t201
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)
\txprt:\ttcp 755 0 1 0 8 20 20 0 20 0 2 0 0
\txprt:\ttcp 1001 0 1 0 8 19 19 0 19 0 2 0 0
\tper-op statistics
device 192.168.161.11:/srv/nfs/trunk mounted on /run/storlab/nfstrunk/trunk41.1 with fstype nfs4 statvers=1.1
\topts:\trw,vers=4.1,rsize=524288,wsize=524288,namlen=255,acregmin=3,acregmax=60,acdirmin=30,acdirmax=60,hard,\
proto=tcp,max_connect=2,timeo=600,retrans=2,sec=sys,clientaddr=192.168.172.12,local_lock=none
\tage:\t199
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)
\txprt:\ttcp 755 0 1 0 8 20 20 0 20 0 2 0 0
\txprt:\ttcp 1001 0 1 0 8 19 19 0 19 0 2 0 0
\tper-op statistics
device tmpfs mounted on /run/user/0 with fstype tmpfs
device 10.0.0.5:/srv/with\\040space mounted on /mnt/a\\040b with fstype nfs4 statvers=1.1
\topts:\trw,vers=4.0,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.6,local_lock=none
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)
\txprt:\ttcp 0 0 0 0 0 0 0 0 0 0 2 0 0
"""

# `ss -Htn` on hv1 at the same time: ssh, the seven NFS transports, one socket of a trunk test
# that closed (TIME-WAIT), one connecting
SS = """\
ESTAB     0      0      192.168.121.35:22     192.168.121.1:51822
ESTAB     0      0      192.168.172.12:719    192.168.172.11:2049
ESTAB     0      0      192.168.172.12:901    192.168.172.11:2049
ESTAB     0      0      192.168.172.12:842    192.168.172.11:2049
ESTAB     0      0      192.168.172.12:677    192.168.172.11:2049
ESTAB     0      0      192.168.172.12:964    192.168.172.11:2049
ESTAB     0      0      192.168.172.12:688    192.168.172.11:2049
ESTAB     0      0      192.168.172.12:755    192.168.172.11:2049
ESTAB     0      0      192.168.161.12:1001   192.168.161.11:2049
TIME-WAIT 0      0      192.168.161.12:1000   192.168.161.11:2049
SYN-SENT  0      1      192.168.172.12:702    192.168.172.11:2049
ESTAB     0      0      [::ffff:192.168.172.12]:40000 [::ffff:192.168.172.11]:111
"""


def build(stem: str = "nfs-client") -> Plan:
    rel = f"topologies/{stem}.yaml"
    topo, res = validate_file(str(REPO / rel), PROFILES["kvm"])
    return make_plan(topo, res, rel, taken=set(), facts=PROFILES["kvm"])


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build()


def pool(plan: Plan, name: str) -> NfsHostPool:
    return plan.pool(name, NfsHostPool)


def by_path(text: str = MOUNTSTATS) -> dict[str, NfsMount]:
    return {m.mountpoint: m for m in parse_mountstats(text)}


# -- parsers ------------------------------------------------------------------------------------
def test_mountstats_gives_each_nfs_mount_its_version_nconnect_and_transports() -> None:
    got = by_path()
    assert list(got) == ["/var/lib/libvirt/images/netfs42", "/var/lib/libvirt/images/dirv3",
                         "/var/lib/libvirt/images/trunk41", "/run/storlab/nfstrunk/trunk41.1", "/mnt/a b"]
    netfs = got["/var/lib/libvirt/images/netfs42"]
    assert (netfs.device, netfs.server, netfs.fstype) == ("192.168.172.11:/srv/nfs/netfs", "192.168.172.11", "nfs4")
    assert (netfs.version, netfs.nconnect, netfs.max_connect) == ("4.2", 4, 1)
    assert netfs.xprts[0] == Xprt("tcp", 719, connects=1, sends=38)
    assert netfs.srcports == frozenset({719, 901, 842, 677})
    v3 = got["/var/lib/libvirt/images/dirv3"]
    assert (v3.fstype, v3.version, v3.nconnect, len(v3.xprts)) == ("nfs", "3", 2, 2)
    assert v3.opts["mountproto"] == "udp" and v3.opts["hard"] == ""
    trunk = got["/var/lib/libvirt/images/trunk41"]
    assert (trunk.version, trunk.nconnect, trunk.max_connect, trunk.srcports) == ("4.1", 1, 2, frozenset({755, 1001}))


def test_mountstats_unescapes_paths_and_a_transport_never_connected_has_no_port() -> None:
    odd = by_path()["/mnt/a b"]
    assert odd.device == "10.0.0.5:/srv/with space" and odd.version == "4.0"
    assert len(odd.xprts) == 1 and odd.srcports == frozenset()
    assert parse_mountstats("") == [] and parse_mountstats("device proc mounted on /proc with fstype proc\n") == []


def test_ss_and_the_connections_of_each_mount() -> None:
    conns = parse_ss(SS)
    assert len(conns) == 12 and conns[0].local == ("192.168.121.35", 22)
    assert conns[-1].peer == ("192.168.172.11", 111)  # an IPv4-mapped address reads as IPv4
    nfs = to_server(conns, ["192.168.172.11", "192.168.161.11"])
    assert len(nfs) == 8, "TIME-WAIT and SYN-SENT are not connections"
    mounts = by_path()
    assert len(of_mount(nfs, mounts["/var/lib/libvirt/images/netfs42"])) == 4
    assert len(of_mount(nfs, mounts["/var/lib/libvirt/images/dirv3"])) == 2
    trunked = of_mount(nfs, mounts["/var/lib/libvirt/images/trunk41"])
    assert sorted(c.peer[0] for c in trunked) == ["192.168.161.11", "192.168.172.11"]
    assert parse_ss("State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n") == []


# -- what a pool's options resolve to --------------------------------------------------------------
def test_client_options_resolve_per_pool_type(plan: Plan) -> None:
    netfs, v3, trunk = pool(plan, "netfs42"), pool(plan, "dirv3"), pool(plan, "trunk41")
    # libvirt mounts a netfs pool: it gets the version and the options in its XML
    assert (netfs.protocol_ver, netfs.mount_opts, netfs.connections) == ("4.2", ("nconnect=4",), 4)
    # storlab mounts a dir pool's export: the same options, in its mount unit
    assert (v3.protocol_ver, v3.mount_opts, v3.client_opts, v3.connections) == (None, (), ("nconnect=2",), 2)
    assert client.mount_options(v3) == ("nosuid", "nodev", "noexec", "vers=3", "nconnect=2")
    server = plan.node("nfs1")
    assert trunk.trunk == (server.addresses["storage2"],) and trunk.client_opts == ("max_connect=2",)
    assert trunk.server == server.address
    plain = next(p for p in build("nfs").host.pools if p.type == "netfs")
    assert isinstance(plain, NfsHostPool) and (plain.version, plain.client_opts, plain.mount_opts) == (None, (), ())


def test_lab_export_clients_are_every_lab_network(plan: Plan) -> None:
    nfs = of(plan)
    assert nfs is not None
    assert all(e.clients == tuple(n.cidr for n in plan.networks) for e in nfs.exports)


def test_libvirt_takes_the_netfs_pool_xml(plan: Plan) -> None:
    xml = render(plan)["nodes/hv1/pools/netfs42.xml"]
    root = ET.fromstring(xml)
    assert root.find("./source/protocol").get("ver") == "4.2"  # type: ignore[union-attr]
    fs = "{http://libvirt.org/schemas/storagepool/fs/1.0}"
    assert [o.get("name") for o in root.iterfind(f"./{fs}mount_opts/{fs}option")] == ["nconnect=4"]
    # libvirt 9.0's own parser (its test driver: no daemon) takes ver='4.2' as the text it is
    conn = libvirt.open("test:///default")
    try:
        defined = conn.storagePoolDefineXML(xml, 0)
        assert "<protocol ver='4.2'/>" in defined.XMLDesc(0)
    finally:
        conn.close()


def test_pool_xml_escapes_what_it_prints() -> None:
    p = HostPoolPlan(name="p", object="p", type="netfs", backend="local", path="/mnt/p", volume=None, fuse_mount=False,
                     export="/x", initiator=None, rbd_pool=None, client=None, secret=None, host="kvm", disk=None,
                     protocol_ver="4'2", mount_opts=("a<b&c'd",))
    text = plan_templates.get_template("pool.xml.j2").render(plan=None, pool=p.model_copy(update={"server": "s"}))
    root = ET.fromstring(text)  # still one well-formed document
    fs = "{http://libvirt.org/schemas/storagepool/fs/1.0}"
    assert root.find(f"./{fs}mount_opts/{fs}option").get("name") == "a<b&c'd"  # type: ignore[union-attr]
    assert root.find("./source/protocol").get("ver") == "4'2"  # type: ignore[union-attr]


# -- mount units --------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "unit"), [
    ("/var/lib/libvirt/images/dirv3", "var-lib-libvirt-images-dirv3.mount"),
    ("/var/lib/libvirt/images/nfs-dir_1+a@b.c", "var-lib-libvirt-images-nfs\\x2ddir_1\\x2ba\\x40b.c.mount"),
    ("/run/storlab/nfstrunk/trunk41.1", "run-storlab-nfstrunk-trunk41.1.mount"),
    ("/.hidden/x", "\\x2ehidden-x.mount"), ("/srv//a/", "srv-a.mount"), ("/", "-.mount")])
def test_unit_names_are_systemd_escape_s(path: str, unit: str) -> None:
    assert client.unit_name(path) == unit


def test_a_trunking_pool_has_a_unit_per_address_the_first_first(plan: Plan) -> None:
    trunk = pool(plan, "trunk41")
    units = client.units(plan.lab, trunk)
    first, second = list(units)
    assert first == "var-lib-libvirt-images-trunk41.mount" and second == "run-storlab-nfstrunk-trunk41.1.mount"
    lines = units[second].splitlines()
    assert f"What={trunk.trunk[0]}:/srv/nfs/trunk" in lines and "Where=/run/storlab/nfstrunk/trunk41.1" in lines
    assert f"Requires={first}" in lines and f"After=network-online.target {first}" in lines
    assert "Options=nosuid,nodev,noexec,vers=4.1,max_connect=2" in units[first].splitlines()
    assert "WantedBy=remote-fs.target" in lines and "Before=libvirtd.service" in lines
    assert "rpc-statd.service" not in units[first]
    v3 = client.units(plan.lab, pool(plan, "dirv3"))["var-lib-libvirt-images-dirv3.mount"]
    assert "After=network-online.target rpc-statd.service" in v3.splitlines()  # NFSv3 locks need statd
    rendered = render(plan)
    assert rendered[f"nodes/hv1/etc/systemd/system/{second}"] == units[second]


def test_a_unit_refuses_what_systemd_would_expand(plan: Plan) -> None:
    bad = pool(plan, "dirv3").model_copy(update={"server": "10.0.0.1%n"})
    with pytest.raises(HarnessError, match="systemd unit"):
        client.units(plan.lab, bad)


def test_mismatches_name_each_difference(plan: Plan) -> None:
    mounts = by_path()
    assert client.mismatches(mounts["/var/lib/libvirt/images/netfs42"], pool(plan, "netfs42")) == []
    assert client.mismatches(mounts["/var/lib/libvirt/images/trunk41"], pool(plan, "trunk41")) == []
    wrong = pool(plan, "netfs42").model_copy(update={"version": "3", "nconnect": 8, "export": "/srv/nfs/dir"})
    got = client.mismatches(mounts["/var/lib/libvirt/images/netfs42"], wrong)
    assert [w.split(",")[0].split(" ")[0] for w in got] == ["192.168.172.11:/srv/nfs/netfs", "NFS", "nconnect=4"]
    assert client.mismatches(None, wrong) == ["no NFS mount at /var/lib/libvirt/images/netfs42"]


# -- mounting a dir pool on a (fake) node --------------------------------------------------------
class FakeNode:
    def __init__(self, mountstats: str) -> None:
        self.name, self.mountstats = "hv1", mountstats
        self.files: dict[str, str] = {}
        self.commands: list[list[str]] = []
        self.enabled: list[list[str]] = []

    def run(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        argv = list(cmd) if not isinstance(cmd, str) else ["sh", "-c", cmd]
        self.commands.append(argv)
        out = self.mountstats if argv == ["cat", "/proc/self/mountstats"] else ""
        return CommandResult(tuple(argv), 0, out, "", 0.0)

    def succeed(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> str:
        return self.run(cmd, timeout=timeout).stdout

    def ensure_file(self, path: str, content: str, mode: str = "0644") -> bool:
        changed = self.files.get(path) != content
        self.files[path] = content
        return changed

    def enable_units(self, units: Sequence[str], **kw: Any) -> None:
        self.enabled.append(list(units))


class FakeLab:
    def __init__(self, plan: Plan, node: FakeNode, files: Path) -> None:
        self.plan, self.name, self.the_node, self.dir = plan, plan.lab, node, files

    def node(self, name: str) -> FakeNode:
        assert name == self.the_node.name
        return self.the_node

    def files(self, where: str) -> Path:
        return self.dir / "nodes" / where


def _lab(plan: Plan, tmp_path: Path, mountstats: str = MOUNTSTATS) -> FakeLab:
    for rel, text in render(plan).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return FakeLab(plan, FakeNode(mountstats), tmp_path)


def test_a_dir_pool_is_mounted_by_its_units_and_checked(plan: Plan, tmp_path: Path) -> None:
    lab = _lab(plan, tmp_path)
    node = lab.the_node
    client.mount_dir_pool(lab, pool(plan, "trunk41"))  # type: ignore[arg-type]
    names = ["var-lib-libvirt-images-trunk41.mount", "run-storlab-nfstrunk-trunk41.1.mount"]
    assert sorted(node.files) == sorted(f"/etc/systemd/system/{n}" for n in names)
    assert ["systemctl", "stop", *reversed(names)] in node.commands  # new units: whatever ran stops first
    assert node.enabled == [names]
    node.commands.clear()
    client.mount_dir_pool(lab, pool(plan, "trunk41"))  # type: ignore[arg-type]  # a resumed `up`
    assert not any(c[:2] == ["systemctl", "stop"] for c in node.commands), "unchanged units are not stopped"
    assert node.enabled == [names, names]


def test_a_mount_the_kernel_made_otherwise_fails_the_pool(plan: Plan, tmp_path: Path) -> None:
    lab = _lab(plan, tmp_path, MOUNTSTATS.replace("vers=3,", "vers=4.2,"))
    with pytest.raises(HarnessError, match=r"pool dirv3 on hv1: NFS version 4\.2, not 3"):
        client.mount_dir_pool(lab, pool(plan, "dirv3"))  # type: ignore[arg-type]
    lab = _lab(plan, tmp_path, "")
    with pytest.raises(HarnessError, match="no NFS mount at /var/lib/libvirt/images/dirv3"):
        client.mount_dir_pool(lab, pool(plan, "dirv3"))  # type: ignore[arg-type]
