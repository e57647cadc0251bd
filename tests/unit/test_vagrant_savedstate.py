"""Saved states and restored VM nodes, the pure parts: the libvirt save image header (a real one,
recorded from libvirt 9.0.0 saving a state of the box: tests/unit/data/libvirt-9.0-save-header.bin.gz),
the XML of the state's domain and of a node restored from it, the hot-plugged devices and volumes,
the identity script, and which domains a lab owns. No root, no libvirt."""

from __future__ import annotations

import gzip
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan.model import DiskPlan
from harness.plan.planner import make_plan
from harness.providers.vagrant import restored, savedstate
from harness.providers.vagrant.box import CMDLINE, Box
from harness.providers.vagrant.domains import LabLibvirt
from harness.spec.validate import validate_text

HEADER = gzip.decompress((Path(__file__).parent / "data" / "libvirt-9.0-save-header.bin.gz").read_bytes())
BOX = Box(key="0123456789abcdef", name="storlab/debian12-0123456789abcdef-b3", dir=Path("/img/0123456789abcdef/box-3"))
SHAPE = savedstate.Shape(kernel="6.1", memory=1024, cpus=1, driver="qemu")


def test_the_recorded_header_reads_as_libvirt_wrote_it() -> None:
    fields, xml, cookie = savedstate.read_header(HEADER)
    assert fields[0] == 2 and len(HEADER) == savedstate.HEADER.size + fields[1]
    assert ET.fromstring(xml).findtext("name") == "storlab-vmsmoke_state_3ddaedb0"
    assert cookie.startswith(b"<cookie>") and cookie.rstrip().endswith(b"</cookie>")


def test_a_rewritten_header_has_the_same_length_the_new_xml_and_the_old_cookie() -> None:
    saved = savedstate.read_header(HEADER)[1]
    xml, _ = savedstate.node_xml(saved, "storlab-lab_n1", "storlab lab lab node n1 home 0123456789abcdef",
                                 "/pool/storlab-lab_n1.img", "/labs/lab/logs/n1.console.log")
    new = savedstate.header_with(HEADER, xml)
    assert len(new) == len(HEADER)  # written over the old one: the migration stream after it stays put
    fields, got, cookie = savedstate.read_header(new)
    assert got == xml and cookie == savedstate.read_header(HEADER)[2]
    assert fields[:4] == savedstate.read_header(HEADER)[0][:4]  # version, length, running, not compressed


def test_an_xml_too_long_for_the_header_or_a_foreign_file_is_refused() -> None:
    with pytest.raises(HarnessError, match="does not fit"):
        savedstate.header_with(HEADER, "<domain>" + "x" * len(HEADER) + "</domain>")
    with pytest.raises(HarnessError, match="not a libvirt save image"):
        savedstate.read_header(b"QEVM" + HEADER[4:])
    with pytest.raises(HarnessError, match="too short"):
        savedstate.read_header(HEADER[:40])


def test_a_restored_node_has_its_own_name_uuid_disk_console_and_a_new_generation_id() -> None:
    saved = savedstate.read_header(HEADER)[1]
    xml, uid = savedstate.node_xml(saved, "storlab-lab_n1", "storlab lab lab node n1 home 0123456789abcdef",
                                   "/pool/storlab-lab_n1.img", "/labs/lab/logs/n1.console.log")
    d, old = ET.fromstring(xml), ET.fromstring(saved)
    assert d.findtext("name") == "storlab-lab_n1" and d.findtext("uuid") == uid != old.findtext("uuid")
    assert d.findtext("description") == "storlab lab lab node n1 home 0123456789abcdef"
    assert old.findtext("genid") and not d.findtext("genid")  # empty: libvirt makes a new one, the guest reseeds
    assert [s.get("file") for s in d.iterfind("./devices/disk/source")] == ["/pool/storlab-lab_n1.img"]
    assert {s.get("path") for s in d.iterfind("./devices/*/source[@path]")} == {"/labs/lab/logs/n1.console.log"}
    # the rest is the state's: memory, vCPUs, machine, CPU model (what the restore cannot change)
    for path in ("memory", "vcpu", "os/type", "cpu/model"):
        mine, theirs = d.find(path), old.find(path)
        assert mine is not None and theirs is not None and ET.tostring(mine) == ET.tostring(theirs), path
    assert uid != savedstate.node_xml(saved, "a", "b", "c", "d")[1]


def test_a_state_with_a_nic_left_is_refused() -> None:
    saved = ET.fromstring(savedstate.read_header(HEADER)[1])
    devices = saved.find("devices")
    assert devices is not None
    devices.append(ET.fromstring(savedstate.nic_xml("net", "52:54:00:00:00:01")))
    with pytest.raises(HarnessError, match="still has a NIC"):
        savedstate.node_xml(ET.tostring(saved, encoding="unicode"), "n", "d", "/r", "/c")


def test_the_state_key_follows_the_box_the_shape_and_the_host_versions() -> None:
    st = savedstate.state_for(BOX, SHAPE, "QEMU 7.2 / libvirtd 9.0.0")
    assert st.dir == BOX.dir / "states" / f"6.1-1024m-1c-qemu-{st.key}"
    assert st == savedstate.state_for(BOX, SHAPE, "QEMU 7.2 / libvirtd 9.0.0")
    others = [savedstate.state_for(BOX, savedstate.Shape("6.1", 2048, 1, "qemu"), "QEMU 7.2 / libvirtd 9.0.0"),
              savedstate.state_for(BOX, savedstate.Shape("6.1", 1024, 1, "kvm"), "QEMU 7.2 / libvirtd 9.0.0"),
              savedstate.state_for(BOX, SHAPE, "QEMU 8.2 / libvirtd 9.0.0"),
              savedstate.state_for(Box(key="f" * 16, name="storlab/x", dir=BOX.dir), SHAPE, "QEMU 7.2 / libvirtd 9.0.0")]
    assert len({o.key for o in others} | {st.key}) == 5


def test_the_state_domain_boots_the_box_kernel_with_one_nic_and_a_generation_id() -> None:
    xml = ET.fromstring(savedstate.golden_xml("storlab-lab_state_abcd", "storlab lab lab node state-abcd home h",
                                              BOX, SHAPE, Path("/s/disk.qcow2"), Path("/l/c.log"), "storlab-lab_mgmt",
                                              "52:54:00:12:34:56"))
    assert xml.get("type") == "qemu" and xml.find("genid") is not None
    # the CPU a booted node gets from vagrant-libvirt: TCG's bare default (qemu64) lacks what Ceph uses
    assert xml.find("cpu") is not None and xml.find("cpu").get("mode") == "host-model"  # type: ignore[union-attr]
    assert xml.findtext("os/kernel") == str(BOX.kernel("6.1")) and xml.findtext("os/cmdline") == CMDLINE
    assert [m.get("address") for m in xml.iterfind("./devices/interface/mac")] == ["52:54:00:12:34:56"]
    assert xml.find("./devices/rng") is not None
    assert xml.findtext("features/tcg/tb-cache") == str(savedstate.TB_CACHE_MIB)  # not TCG's 1 GiB default
    kvm = ET.fromstring(savedstate.golden_xml("n", "d", BOX, savedstate.Shape("6.1", 1024, 1, "kvm"), Path("/d"),
                                              Path("/c"), "net", "52:54:00:12:34:56"))
    assert kvm.get("type") == "kvm" and kvm.find("cpu").get("mode") == "host-model"  # type: ignore[union-attr]
    assert kvm.find("features/tcg") is None


def test_hot_plugged_disks_carry_a_serial_and_volumes_their_backing() -> None:
    disk = ET.fromstring(savedstate.disk_xml("/pool/d.qcow2", "vdb"))
    assert disk.findtext("serial") == "storlab-vdb" and disk.find("target").get("dev") == "vdb"  # type: ignore[union-attr]
    vol = ET.fromstring(restored.volume_xml("storlab-lab_n1.img", 8 << 30, Path("/s/disk.qcow2")))
    assert vol.findtext("backingStore/path") == "/s/disk.qcow2" and vol.findtext("capacity") == str(8 << 30)
    assert ET.fromstring(restored.volume_xml("d.qcow2", 1 << 30)).find("backingStore") is None
    # a value is text, never markup
    assert ET.fromstring(restored.volume_xml("a<b>&'\"", 1)).findtext("name") == "a<b>&'\""


DISKS = (DiskPlan(name="data", size=2**30, device="/dev/vdb", filesystem="xfs", mount="/data", image="i1"),)


def test_the_identity_script_gives_the_node_its_own_key_id_host_key_addresses_and_clock() -> None:
    uid = str(uuid.uuid4())
    s = restored.identity_script("n1", uid, "ssh-ed25519 AAAA lab-key\n", [("52:54:00:aa:bb:cc", "192.168.5.11/24")],
                                 DISKS)
    lines = s.splitlines()
    assert "printf '%s\\n' 'ssh-ed25519 AAAA lab-key' > /root/.ssh/authorized_keys" in lines  # the build key goes
    assert f"echo {uuid.UUID(uid).hex} > /etc/machine-id" in lines
    keygen = 'ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
    assert lines.index("rm -f /etc/ssh/ssh_host_*") < lines.index(keygen) < lines.index("systemctl reload ssh.service")
    assert "MACAddress=52:54:00:aa:bb:cc" in s and "Address=192.168.5.11/24" in s
    assert "echo n1 > /etc/hostname" in lines and "mountpoint -q /data || mount /data" in lines
    # the lab's key goes in last (a node the build key no longer opens has everything), then the
    # clock is stepped, to the time the host gives when asked
    assert lines[-5] == "printf '%s\\n' 'ssh-ed25519 AAAA lab-key' > /root/.ssh/authorized_keys"
    assert lines[-4:] == [f"echo {restored.CLOCK_REQUEST}", "read -r T", 'date -u -s "@$T" >/dev/null',
                          f"echo {restored.DONE}"]


def test_the_identity_script_refuses_a_disk_that_got_another_name(tmp_path: Path) -> None:
    """The disk check, run with a by-id link pointing elsewhere (as a reordered hot-plug would)."""
    s = restored.identity_script("n1", str(uuid.uuid4()), "k", [], DISKS)
    check = next(line for line in s.splitlines() if "virtio-storlab-vdb" in line)
    byid = tmp_path / "virtio-storlab-vdb"
    byid.symlink_to("/dev/vdc")
    r = subprocess.run(["bash", "-c", check.replace("/dev/disk/by-id/virtio-storlab-vdb", str(byid))],
                       capture_output=True, text=True, timeout=10, check=False)
    assert r.returncode == 3 and "disk data: hot-plugged as /dev/vdc, not /dev/vdb" in r.stderr


class FakeDomain:
    def __init__(self, name: str, description: str) -> None:
        self._name, self._desc = name, description

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int) -> str:
        return f"<domain><name>{self._name}</name><description>{self._desc}</description></domain>"

    def UUIDString(self) -> str:
        return "0" * 32


def test_the_lab_owns_its_state_build_domain_and_no_other_labs(tmp_path: Path) -> None:
    topo, res = validate_text("lab: t\nprovider: vagrant\nnetworks: [{name: s}]\nnodes: [{name: n1}]\n",
                              PROFILES["ci"])
    plan = make_plan(topo, res, "t.yaml", set(), PROFILES["ci"], accel="tcg")
    virt = LabLibvirt(plan, tmp_path)
    home = paths.home_id()
    assert virt.owned_domain(FakeDomain("storlab-t_state_abcd1234", f"storlab lab t node state-abcd1234 home {home}"))
    assert not virt.owned_domain(FakeDomain("storlab-u_state_abcd1234", f"storlab lab u node state-abcd1234 home {home}"))
    assert not virt.owned_domain(FakeDomain("storlab-t_state_abcd1234", "hand-made"))
    assert not virt.owned_domain(FakeDomain("storlab-t_state-abcd1234", f"storlab lab t node state-abcd1234 home {home}"))


class GoneDomain(FakeDomain):
    """A domain another lab's `down` removed between listAllDomains and XMLDesc."""

    def XMLDesc(self, flags: int) -> str:
        import libvirt
        raise libvirt.libvirtError("Domain not found: no domain with matching uuid")


def test_a_domain_gone_since_it_was_listed_is_not_the_labs_and_raises_nothing(tmp_path: Path) -> None:
    topo, res = validate_text("lab: t\nprovider: vagrant\nnetworks: [{name: s}]\nnodes: [{name: n1}]\n", PROFILES["ci"])
    virt = LabLibvirt(make_plan(topo, res, "t.yaml", set(), PROFILES["ci"], accel="tcg"), tmp_path)
    # another lab's node (class down removes labs side by side), and this lab's state build
    assert not virt.owned_domain(GoneDomain("storlab-u_n1", ""))
    assert not virt.owned_domain(GoneDomain("storlab-t_state_abcd1234", ""))


class GoneNetwork:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int) -> str:
        import libvirt
        raise libvirt.libvirtError("Network not found: no network with matching uuid")


def test_a_network_gone_since_it_was_listed_is_not_the_labs_and_raises_nothing(tmp_path: Path) -> None:
    topo, res = validate_text("lab: t\nprovider: vagrant\nnetworks: [{name: s}]\nnodes: [{name: n1}]\n", PROFILES["ci"])
    virt = LabLibvirt(make_plan(topo, res, "t.yaml", set(), PROFILES["ci"], accel="tcg"), tmp_path)
    assert not virt.owned_network(GoneNetwork("storlab-u_s"))  # another lab's, going away
    assert not virt.owned_network(GoneNetwork("storlab-t_s"))
