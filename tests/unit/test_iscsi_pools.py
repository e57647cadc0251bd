"""Pools on an iSCSI target wired on a hypervisor node (harness/backends/iscsi/pools.py and the
core's pool_xml): the rendered pool and volume XML, the parsers of what the node says, a LUN's
map named after its pool, the scsi pool's adapter found on the node, and `up` defining,
building and filling the four pools.

The command outputs below were WRITTEN from open-iscsi's session printer (iscsiadm -m session
-P 3: "Current Portal", "Host Number", "scsiN Channel .. Lun: L", "Attached scsi disk sdX"),
matching outputs published for open-iscsi 2.0.874-2.1.x, and from dmsetup's uuid of a
multipath map (mpath-WWID, LIO's WWIDs start 36001405): not captured from this lab; replace them
with captured ones when the lab test has run."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import get
from harness.backends.iscsi import initiator, pools
from harness.backends.iscsi.plan import IscsiHostPool, IscsiPlan
from harness.errors import HarnessError
from harness.host import pools as hostpools
from harness.host.facts import PROFILES
from harness.plan.model import Plan
from harness.plan.planner import make_plan, render
from harness.run import CommandResult
from harness.spec.validate import validate_file

REPO = Path(__file__).resolve().parents[2]
A, B = "192.168.123.11", "192.168.226.11"  # the two portals of topologies/iscsi-pools.yaml
IQN = "iqn.2024-12.lab.storlab:pools"
WWID = "36001405d1e0a93f0b4a4e3b8c2f6a7d1"


def session(sid: int, portal: str, host: int, disks: list[tuple[int, str | None]]) -> str:
    luns = "".join(f"\t\tscsi{host} Channel 00 Id 0 Lun: {lun}\n" + (f"\t\t\tAttached scsi disk {d}\t\tState: running\n"
                                                                     if d else "") for lun, d in disks)
    return (f"\tCurrent Portal: {portal}:3260,1\n\tPersistent Portal: {portal}:3260,1\n"
            "\t\t**********\n\t\tInterface:\n\t\t**********\n\t\tIface Name: default\n\t\tIface Transport: tcp\n"
            f"\t\tIface Initiatorname: iqn.2024-12.lab.storlab:kvm1\n\t\tSID: {sid}\n"
            "\t\tiSCSI Connection State: LOGGED IN\n\t\tiSCSI Session State: LOGGED_IN\n"
            "\t\t*****\n\t\tCHAP:\n\t\t*****\n\t\tusername: kvm1\n\t\tpassword: ********\n"
            "\t\t************************\n\t\tAttached SCSI devices:\n\t\t************************\n"
            f"\t\tHost Number: {host}\tState: running\n{luns}")


#: kvm1 logged in over both portals: SCSI hosts 3 and 4, LUNs 0-2 on each
SESSIONS = ("iSCSI Transport Class version 2.0-870\nversion 2.1.8\n"
            f"Target: {IQN} (non-flash)\n"
            + session(1, A, 3, [(0, "sda"), (1, "sdc"), (2, "sde")])
            + session(2, B, 4, [(0, "sdb"), (1, "sdd"), (2, "sdf")]))


def planned() -> tuple[Plan, dict[str, str]]:
    rel = "topologies/iscsi-pools.yaml"
    topo, res = validate_file(str(REPO / rel), PROFILES["kvm"])
    plan = make_plan(topo, res, rel, taken=set(), facts=PROFILES["kvm"])
    return plan, render(plan)


def spec(plan: Plan, name: str) -> IscsiHostPool:
    return plan.pool(name, IscsiHostPool)


# -- what the plan renders -------------------------------------------------------------------------
def test_each_pool_renders_what_libvirt_takes() -> None:
    plan, files = planned()
    section = plan.section("iscsi", IscsiPlan)
    assert section is not None and section.portal_addresses == (A, B)
    lvm = ET.fromstring(files["nodes/kvm1/pools/lun-lvm.xml"])
    assert (lvm.get("type"), lvm.findtext("source/name"), lvm.find("source/device").get("path")) == (  # type: ignore[union-attr]
        "logical", "vg_lun", "/dev/mapper/lun-lvm")
    disk = ET.fromstring(files["nodes/kvm1/pools/lun-gpt.xml"])
    dev = disk.find("source/device")
    assert dev is not None and dev.attrib == {"path": "/dev/mapper/lun-gpt", "part_separator": "no"}
    assert disk.find("source/format").get("type") == "gpt" and disk.findtext("target/path") == "/dev"  # type: ignore[union-attr]
    scsi = ET.fromstring(files["nodes/kvm1/pools/lun-scsi.xml"])
    assert scsi.find("source/adapter").attrib == {"type": "scsi_host"}  # type: ignore[union-attr]
    assert scsi.findtext("target/path") == "/dev/disk/by-path"
    mpath = ET.fromstring(files["nodes/kvm1/pools/lun-mpath.xml"])
    assert mpath.find("source") is None and mpath.findtext("target/path") == "/dev/mapper"
    # a partition takes no volume format (libvirt reads qcow2 there as an unknown partition type)
    part = ET.fromstring(files["nodes/kvm1/volumes/lun-gpt/lun-gpt1.xml"])
    assert part.findtext("name") == "lun-gpt1" and part.find("target") is None
    assert (spec(plan, "lun-lvm").lun, spec(plan, "lun-gpt").lun, spec(plan, "lun-scsi").lun) == (0, 1, None)
    assert not any(f.startswith("host/") for f in files)  # all four live on kvm1


def test_pool_xml_values_are_escaped() -> None:
    """Values are allow-listed before they reach the plan; the templates escape them all the same."""
    plan, _ = planned()
    planted = spec(plan, "lun-gpt").model_copy(update={"device": "/dev/x'/><evil a='&"})
    hostile = plan.with_(host=plan.host.model_copy(update={"pools": (planted,), "volumes": ()}))
    xml = render(hostile)["nodes/kvm1/pools/lun-gpt.xml"]
    root = ET.fromstring(xml)
    assert root.find(".//evil") is None and root.find("source/device").get("path") == "/dev/x'/><evil a='&"  # type: ignore[union-attr]


def test_partition_names_follow_parted() -> None:
    assert [pools.partition_name("lun-gpt", n) for n in (1, 2)] == ["lun-gpt1", "lun-gpt2"]
    assert pools.partition_name("gpt2", 1) == "gpt2p1"


# -- parsers ---------------------------------------------------------------------------------------
def test_sessions_are_parsed_with_their_hosts_and_disks() -> None:
    found = pools.parse_sessions(SESSIONS)
    assert [(s.target, s.portal, s.host) for s in found] == [(IQN, f"{A}:3260", 3), (IQN, f"{B}:3260", 4)]
    assert found[0].disks == {0: "sda", 1: "sdc", 2: "sde"} and found[1].disks == {0: "sdb", 1: "sdd", 2: "sdf"}


def test_a_lun_without_a_disk_is_no_disk() -> None:
    """tgt's LUN 0 is its controller: listed, with no disk attached."""
    tgt = f"Target: {IQN} (non-flash)\n" + session(1, A, 7, [(0, None), (1, "sdb")])
    (s,) = pools.parse_sessions(tgt)
    assert (s.host, s.disks) == (7, {1: "sdb"})


def test_the_scsi_host_is_the_sessions_over_the_pools_portal() -> None:
    found = pools.parse_sessions(SESSIONS)
    assert pools.scsi_host(found, IQN, f"{A}:3260") == "host3"
    assert pools.scsi_host(found, IQN, f"{B}:3260") == "host4"
    with pytest.raises(HarnessError, match=r"0 sessions with iqn\.2024-12\.lab\.storlab:other"):
        pools.scsi_host(found, "iqn.2024-12.lab.storlab:other", f"{A}:3260")
    with pytest.raises(HarnessError, match="sessions: none"):
        pools.scsi_host([], IQN, f"{A}:3260")


def test_a_maps_wwid_is_read_from_its_dm_uuid() -> None:
    assert pools.map_wwid(f"mpath-{WWID}\n") == WWID
    for planted in ("LVM-abc", f"part1-mpath-{WWID}", "mpath-", "mpath-36001405 x", f"{WWID}"):
        with pytest.raises(HarnessError, match="not the dm uuid of a multipath map"):
            pools.map_wwid(planted)


def test_the_alias_conf_names_the_map_after_the_pool_without_kpartx() -> None:
    plan, _ = planned()
    section = plan.section("iscsi", IscsiPlan)
    assert section is not None
    conf = pools.alias_conf(section, spec(plan, "lun-gpt"), WWID)
    body = [line.strip() for line in conf.splitlines() if not line.startswith("#")]
    assert body == ["multipaths {", "multipath {", f"wwid {WWID}", "alias lun-gpt", "skip_kpartx yes", "}", "}"]
    assert pools.conf_path(spec(plan, "lun-gpt")) == "/etc/multipath/conf.d/storlab-lun-gpt.conf"
    with pytest.raises(HarnessError, match="not one storlab writes"):
        pools.alias_conf(section, spec(plan, "lun-gpt"), f"{WWID}\n}}\nblacklist {{ devnode .* }}")


# -- on the node (recorded outputs, no lab) ----------------------------------------------------------
class FakeNode:
    """A node answering commands from a script: argv -> stdout (missing: the command fails)."""

    def __init__(self, answers: dict[tuple[str, ...], str], files: dict[str, str] | None = None) -> None:
        self.name, self.address = "kvm1", "192.0.2.12"
        self.answers, self.files, self.calls = answers, files or {}, []  # type: ignore[var-annotated]

    def run(self, cmd: Any, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        self.calls.append(tuple(cmd))
        out = self.answers.get(tuple(cmd))
        return CommandResult(tuple(cmd), 0 if out is not None else 1, out or "", "" if out is not None else "no", 0.0)

    def succeed(self, cmd: Any, *, timeout: float = 120, input: str | None = None) -> str:
        r = self.run(cmd, timeout=timeout)
        if not r.ok:
            raise HarnessError(f"{cmd} failed")
        return r.stdout

    def ensure_file(self, path: str, content: str, mode: str = "0644") -> bool:
        changed = self.files.get(path) != content
        self.files[path] = content
        return changed


class FakeLab:
    def __init__(self, plan: Plan, node: FakeNode) -> None:
        self.plan, self.name, self._node = plan, plan.lab, node

    def node(self, name: str) -> FakeNode:
        assert name == "kvm1"
        return self._node


def uuid_of(name: str) -> tuple[str, ...]:
    return ("dmsetup", "info", "-c", "--noheadings", "-o", "uuid", "--", name)


def udev_made(name: str) -> tuple[str, ...]:
    """The wait for udev's /dev/mapper/NAME after the rename."""
    return ("sh", "-c", 'udevadm settle --timeout=10; test -b "$1"', "sh", f"/dev/mapper/{name}")


def test_a_luns_map_is_named_after_its_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, _ = planned()
    monkeypatch.setattr(initiator, "attach", lambda lab, node, index: "/dev/mapper/mpathb" if index == 1 else "")
    node = FakeNode({uuid_of("mpathb"): f"mpath-{WWID}\n", ("multipathd", "reconfigure", "all"): "ok\n",
                     udev_made("lun-gpt"): ""})

    def renamed(cmd: Any, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        if tuple(cmd) == ("multipathd", "reconfigure", "all"):  # multipathd renames the map
            node.answers[uuid_of("lun-gpt")] = f"mpath-{WWID}\n"
        return FakeNode.run(node, cmd, timeout=timeout)
    monkeypatch.setattr(node, "run", renamed)
    pools.prepare(FakeLab(plan, node), spec(plan, "lun-gpt"))  # type: ignore[arg-type]
    conf = node.files["/etc/multipath/conf.d/storlab-lun-gpt.conf"]
    assert f"wwid {WWID}" in conf and "alias lun-gpt" in conf
    assert node.calls.index(("multipathd", "reconfigure", "all")) < node.calls.index(uuid_of("lun-gpt"))
    assert node.calls.index(uuid_of("lun-gpt")) < node.calls.index(udev_made("lun-gpt")), "libvirt gets the map " \
        "before udev made its /dev/mapper node"
    # a resumed `up`: the map has its name already, nothing is reloaded
    monkeypatch.setattr(initiator, "attach", lambda lab, node, index: "/dev/mapper/lun-gpt")
    node.calls.clear()
    pools.prepare(FakeLab(plan, node), spec(plan, "lun-gpt"))  # type: ignore[arg-type]
    assert ("multipathd", "reconfigure", "all") not in node.calls


def test_a_lun_pool_needs_a_multipath_map(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, _ = planned()
    monkeypatch.setattr(initiator, "attach", lambda lab, node, index: "/dev/sdc")
    node = FakeNode({})
    with pytest.raises(HarnessError, match="not a multipath map: a logical pool on a LUN needs multipathd"):
        pools.prepare(FakeLab(plan, node), spec(plan, "lun-lvm"))  # type: ignore[arg-type]
    assert node.files == {}


def test_reconfigure_falls_back_where_there_is_no_reconfigure_all() -> None:
    node = FakeNode({("multipathd", "reconfigure", "all"): "fail\n", ("multipathd", "reconfigure"): "ok\n"})
    pools.reconfigure(node)  # type: ignore[arg-type]
    assert node.calls[-1] == ("multipathd", "reconfigure")


def test_scsi_and_mpath_pools_wait_for_every_luns_map(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, _ = planned()
    attached: list[int] = []

    def attach(lab: object, node: object, index: int) -> str:
        attached.append(index)
        return "/dev/mapper/x"
    monkeypatch.setattr(initiator, "attach", attach)
    for name in ("lun-scsi", "lun-mpath"):
        attached.clear()
        pools.prepare(FakeLab(plan, FakeNode({})), spec(plan, name))  # type: ignore[arg-type]
        assert attached == [0, 1, 2], name


def test_the_scsi_adapter_is_found_on_the_node() -> None:
    plan, _ = planned()
    asked: list[list[str]] = []

    def sh(argv: list[str], **_: object) -> str:
        asked.append(argv)
        return SESSIONS
    assert get("iscsi").pool_adapter(None, spec(plan, "lun-scsi"), sh) == "host3"  # type: ignore[arg-type]
    assert asked == [["iscsiadm", "-m", "session", "-P", "3"]]
    assert get("iscsi").pool_adapter(None, spec(plan, "lun-mpath"), sh) is None  # type: ignore[arg-type]


def test_the_adapter_reaches_the_xml_only_as_a_scsi_host(tmp_path: Path) -> None:
    plan, files = planned()
    (tmp_path / "pools").mkdir()
    (tmp_path / "pools" / "lun-scsi.xml").write_text(files["nodes/kvm1/pools/lun-scsi.xml"])
    p = spec(plan, "lun-scsi")
    xml = hostpools.pool_xml(p, tmp_path, lambda *a, **k: "", "host3")
    assert ET.fromstring(xml).find("source/adapter").attrib == {"type": "scsi_host", "name": "host3"}  # type: ignore[union-attr]
    for planted in ("host3' parent='x", "host", "../host3", "host3\n", "scsi_host3", None):
        with pytest.raises(HarnessError, match="not a name storlab expects"):
            hostpools.pool_xml(p, tmp_path, lambda *a, **k: "", planted)


# -- `up` on the node: define (with the adapter), build, start, fill ----------------------------------
class DefinedPool:
    def __init__(self, xml: str) -> None:
        self.xml, self.built, self.active, self.volumes = xml, [], False, []  # type: ignore[var-annotated]

    def build(self, flags: int) -> None:
        self.built.append(flags)

    def isActive(self) -> bool:
        return self.active

    def create(self, flags: int) -> None:
        self.active = True

    def setAutostart(self, on: int) -> None:
        pass

    def listVolumes(self) -> list[str]:
        return list(self.volumes)

    def createXML(self, xml: str, flags: int) -> None:
        self.volumes.append(ET.fromstring(xml).findtext("name"))


class NodeConn:
    def __init__(self) -> None:
        self.defined: dict[str, DefinedPool] = {}

    def storagePoolLookupByName(self, name: str) -> DefinedPool:
        import libvirt
        if name not in self.defined:
            raise libvirt.libvirtError(f"no pool {name}")
        return self.defined[name]

    def storagePoolDefineXML(self, xml: str, flags: int) -> DefinedPool:
        pool = DefinedPool(xml)
        self.defined[str(ET.fromstring(xml).findtext("name"))] = pool
        return pool

    def close(self) -> None:
        pass


class WireLab(FakeLab):
    def __init__(self, plan: Plan, node: FakeNode, files: Path) -> None:
        super().__init__(plan, node)
        self.dir, self.key, self.owned = files, Path("/nonexistent/key"), []  # type: ignore[var-annotated]

    def files(self, where: str) -> Path:
        return self.dir / "nodes" / where

    def owns(self, thing: str) -> bool:
        return thing in self.owned

    def claim(self, thing: str) -> None:
        self.owned.append(thing)


def test_up_defines_builds_and_fills_the_four_pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import libvirt
    plan, files = planned()
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    prepared: list[str] = []
    monkeypatch.setattr(pools, "prepare", lambda lab, pool: prepared.append(pool.name))
    conn = NodeConn()
    monkeypatch.setattr(hostpools, "connect", lambda uri: conn)
    node = FakeNode({("iscsiadm", "-m", "session", "-P", "3"): SESSIONS})
    hostpools.wire(WireLab(plan, node, tmp_path))  # type: ignore[arg-type]
    assert prepared == ["lun-lvm", "lun-gpt", "lun-scsi", "lun-mpath"]
    d = conn.defined
    assert ET.fromstring(d["lun-scsi"].xml).find("source/adapter").get("name") == "host3"  # type: ignore[union-attr]
    assert d["lun-lvm"].built == [libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE]  # a VG made on the fresh LUN
    assert d["lun-gpt"].built == [libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE]  # a GPT, never over a table
    assert d["lun-scsi"].built == [] and d["lun-mpath"].built == []
    assert all(p.active for p in d.values())
    assert (d["lun-lvm"].volumes, d["lun-gpt"].volumes) == (["lv1"], ["lun-gpt1"])
