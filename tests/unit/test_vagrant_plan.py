"""Plan -> vagrant-libvirt data: the management network in the plan, the vagrant.json the
provider writes, the libvirt network XML, and the top-level Vagrantfile's use of it.
No root, no libvirt, no vagrant: pure functions only."""

from __future__ import annotations

import ipaddress
import json
import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan import planner as planmod
from harness.plan.model import DiskPlan, Plan, need
from harness.plan.planner import make_plan
from harness.providers import image
from harness.providers.vagrant import box
from harness.providers.vagrant import spec as vagrantspec
from harness.providers.vagrant.domains import net_key
from harness.providers.vagrant.provider import VagrantProvider
from harness.spec.validate import validate_text

REPO = Path(__file__).resolve().parents[2]
LABDIR = Path("/var/lib/storlab/labs/t")
BOX = box.Box(key="0123456789abcdef", name="storlab/debian12-0123456789abcdef-b1", dir=Path("/img/0123456789abcdef/box-1"))
BOXES = {"bookworm": BOX}

TWO_NODES = """
lab: t
provider: vagrant
networks: [{name: storage}, {name: backend}]
nodes:
  - {name: n1, roles: [client], cpus: 2, memory: 1536,
     disks: [{name: data, size: 1G, filesystem: xfs, mount: /data}, {name: raw, size: 1536M}]}
  - {name: n2, roles: [client]}
"""


def plan_of(text: str, accel: str = "tcg", preset: dict[str, str] | None = None,
            taken: set[ipaddress.IPv4Network] | None = None) -> Plan:
    topo, res = validate_text(textwrap.dedent(text), PROFILES["ci"])
    return make_plan(topo, res, "t.yaml", taken or set(), PROFILES["ci"], accel=accel, preset=preset)


@pytest.fixture
def plan() -> Plan:
    return plan_of(TWO_NODES)


@pytest.fixture
def spec(plan: Plan) -> dict[str, Any]:
    return vagrantspec.spec(plan, LABDIR, BOXES)


# -- the management network in the plan ------------------------------------------------------

def test_vagrant_plan_has_its_own_isolated_management_subnet(plan: Plan) -> None:
    mgmt = need(plan.mgmt, "mgmt")
    cidr = ipaddress.IPv4Network(mgmt.cidr)
    assert mgmt.libvirt_network == "storlab-t_mgmt"
    assert mgmt.host_address == str(cidr.network_address + 1)
    assert ipaddress.IPv4Address(mgmt.dhcp_start) in cidr and ipaddress.IPv4Address(mgmt.dhcp_end) in cidr
    assert mgmt.netmask == str(cidr.netmask)
    assert all(not cidr.overlaps(ipaddress.IPv4Network(n.cidr)) for n in plan.networks)
    assert mgmt.bridge not in {n.bridge for n in plan.networks} and len(mgmt.bridge) <= 15


def test_management_subnet_is_deterministic_and_avoids_taken_subnets(plan: Plan) -> None:
    assert plan_of(TWO_NODES).mgmt == plan.mgmt
    taken = {ipaddress.IPv4Network(need(plan.mgmt, "mgmt").cidr)}
    other = plan_of(TWO_NODES, taken=taken)
    assert need(other.mgmt, "mgmt").cidr != need(plan.mgmt, "mgmt").cidr


def test_resumed_lab_keeps_its_management_subnet(plan: Plan) -> None:
    again = plan_of(TWO_NODES, preset={"@mgmt": "10.77.0.0/24"})
    assert need(again.mgmt, "mgmt").cidr == "10.77.0.0/24"
    assert need(again.mgmt, "mgmt").host_address == "10.77.0.1"


def test_lxc_plans_have_no_management_network() -> None:
    assert plan_of(TWO_NODES.replace("provider: vagrant", "provider: lxc")).mgmt is None


def test_network_named_mgmt_is_reserved_on_vagrant() -> None:
    with pytest.raises(HarnessError, match="'mgmt' is reserved"):
        plan_of(TWO_NODES.replace("{name: backend}", "{name: mgmt}"))


def test_used_subnets_counts_libvirt_networks_but_not_the_labs_own(tmp_path: Path) -> None:
    (tmp_path / "default.xml").write_text(
        "<network><name>default</name><ip address='192.168.122.1' netmask='255.255.255.0'/></network>")
    (tmp_path / "own.xml").write_text(
        "<network><name>storlab-t_mgmt</name><ip address='192.168.150.1' prefix='24'/></network>")
    (tmp_path / "broken.xml").write_text("<network")
    got = planmod._libvirt_network_subnets("storlab-t_", (tmp_path,))
    assert got == {ipaddress.IPv4Network("192.168.122.0/24")}
    assert ipaddress.IPv4Network("192.168.150.0/24") in planmod._libvirt_network_subnets(None, (tmp_path,))


# -- vagrant.json -------------------------------------------------------------------------------

def test_domains_are_named_from_the_plan_objects(plan: Plan, spec: dict[str, Any]) -> None:
    for m, node in zip(spec["machines"], plan.nodes, strict=True):
        assert m["domain"] == node.object == f"storlab-t_{node.name}"
        assert m["domain_prefix"] + m["name"] == m["domain"]  # vagrant-libvirt: default_prefix + machine name


@pytest.mark.parametrize(("accel", "driver"), [("tcg", "qemu"), ("kvm", "kvm")])
def test_libvirt_driver_follows_the_accelerator(accel: str, driver: str) -> None:
    s = vagrantspec.spec(plan_of(TWO_NODES, accel=accel), LABDIR, BOXES)
    assert s["driver"] == driver
    assert s["boot_timeout"] > vagrantspec.boot_bound(plan_of(TWO_NODES, accel=accel))


def test_tcg_allows_longer_boots_than_kvm() -> None:
    assert vagrantspec.boot_bound(plan_of(TWO_NODES, accel="tcg")) > vagrantspec.boot_bound(plan_of(TWO_NODES, accel="kvm"))


def test_machine_resources_networks_and_disks(plan: Plan, spec: dict[str, Any]) -> None:
    m1, m2 = spec["machines"]
    n1 = plan.nodes[0]
    assert (m1["cpus"], m1["memory"]) == (2, 1536)
    assert m1["networks"] == [
        {"network_name": net.libvirt_network, "ip": n1.addresses[net.name], "mac": n1.macs[net.name],
         "netmask": str(ipaddress.IPv4Network(net.cidr).netmask)} for net in plan.networks]
    assert m1["disks"] == [{"device": "vdb", "size": "1024M", "volume": "storlab-t_n1-data.qcow2"},
                           {"device": "vdc", "size": "1536M", "volume": "storlab-t_n1-raw.qcow2"}]
    assert m2["disks"] == []
    assert m1["console_log"] == str(LABDIR / "logs" / "n1.console.log")


def test_management_addresses_are_fixed_and_inside_the_subnet(plan: Plan, spec: dict[str, Any]) -> None:
    cidr = ipaddress.IPv4Network(need(plan.mgmt, "mgmt").cidr)
    ips = [m["mgmt_ip"] for m in spec["machines"]]
    macs = [m["mgmt_mac"] for m in spec["machines"]]
    assert len(set(ips)) == len(ips) and len(set(macs)) == len(macs)
    assert all(ipaddress.IPv4Address(ip) in cidr for ip in ips)
    assert need(plan.mgmt, "mgmt").host_address not in ips
    assert spec["management"] == {"network_name": "storlab-t_mgmt", "address": need(plan.mgmt, "mgmt").cidr,
                                  "mode": "none", "guest_ipv6": "no"}


def test_lab_key_comes_first_and_the_box_key_second(spec: dict[str, Any]) -> None:
    assert spec["ssh_private_keys"] == [str(LABDIR / "id_ed25519"), str(BOX.build_key)]
    assert spec["authorized_keys"] == str(LABDIR / "authorized_keys")


def test_box_and_direct_kernel_boot(spec: dict[str, Any]) -> None:
    assert spec["box"] == BOX.name
    for m in spec["machines"]:  # no kernel: in the topology: the default one
        assert (m["kernel"], m["initrd"]) == (str(BOX.dir / "vmlinuz-6.1"), str(BOX.dir / "initrd.img-6.1"))
    assert spec["cmdline"].split() == ["root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0"]
    assert spec["storage_pool"] == box.STORAGE_POOL != "default"


def test_each_node_boots_the_kernel_its_topology_names() -> None:
    plan = plan_of(TWO_NODES.replace("- {name: n2, roles: [client]}", '- {name: n2, roles: [client], kernel: "6.12"}'))
    machines = {m["name"]: m for m in vagrantspec.spec(plan, LABDIR, BOXES)["machines"]}
    assert machines["n2"]["kernel"] == str(BOX.dir / "vmlinuz-6.12")
    assert machines["n2"]["initrd"] == str(BOX.dir / "initrd.img-6.12")
    assert machines["n1"]["kernel"] == str(BOX.dir / "vmlinuz-6.1")
    # the plan says it only where the topology picks one (older plans read the same)
    assert '"kernel": "6.12"' in plan.to_json() and plan.to_json().count('"kernel"') == 1


def test_the_box_finds_each_kernel_by_its_release(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    for release in ("6.1.0-9-amd64", "6.1.0-41-amd64", "6.12.118+deb12-amd64"):
        (boot / f"vmlinuz-{release}").write_text("k")
        (boot / f"initrd.img-{release}").write_text("i")
    assert box.kernel_files(tmp_path, "6.1")[0].name == "vmlinuz-6.1.0-41-amd64"  # the newest 6.1, not 6.12
    assert box.kernel_files(tmp_path, "6.12") == (boot / "vmlinuz-6.12.118+deb12-amd64",
                                                  boot / "initrd.img-6.12.118+deb12-amd64")
    (boot / "initrd.img-6.12.118+deb12-amd64").unlink()
    with pytest.raises(HarnessError, match="has no initrd"):
        box.kernel_files(tmp_path, "6.12")


def test_spec_is_json_and_deterministic(plan: Plan) -> None:
    a = json.dumps(vagrantspec.spec(plan, LABDIR, BOXES), sort_keys=True)
    assert a == json.dumps(vagrantspec.spec(plan_of(TWO_NODES), LABDIR, BOXES), sort_keys=True)


def test_spec_refuses_plans_for_other_providers() -> None:
    with pytest.raises(ValueError, match="not a vagrant plan"):
        vagrantspec.spec(plan_of(TWO_NODES.replace("provider: vagrant", "provider: lxc")), LABDIR, BOXES)


@pytest.mark.parametrize(("size", "want"), [(2**30, "1024M"), (1536 * 2**20, "1536M"), (2**20 + 1, "2M"), (1, "1M")])
def test_disk_sizes_are_explicit_mebibytes(size: int, want: str) -> None:
    # fog reads a bare number as GiB
    assert vagrantspec.disk_size(size) == want


def test_provision_script_sets_hostname_keeps_key_private_and_mounts_disks(spec: dict[str, Any]) -> None:
    s1, s2 = (m["provision"] for m in spec["machines"])
    lines = s1.splitlines()
    assert lines[0] == "set -eu"
    assert "chmod 0700 /root/.ssh && chmod 0600 /root/.ssh/authorized_keys" in lines
    assert "echo n1 > /etc/hostname" in lines and "hostname n1" in lines
    # the filesystem sits on a device-mapper device over the disk (Node.flakey swaps its table)
    assert "blkid /dev/mapper/storlab-data >/dev/null 2>&1 || mkfs.xfs -q -f /dev/mapper/storlab-data" in lines
    assert ("echo '/dev/mapper/storlab-data /data xfs defaults,nofail,x-systemd.requires=storlab-dm.service,"
            "x-systemd.before=local-fs.target 0 2' >> /etc/fstab") in s1
    assert "mountpoint -q /data || mount /data" in lines
    # enabled (the symlink `systemctl enable` makes, without its daemon-reload) and started
    assert "ln -sf /etc/systemd/system/storlab-dm.service /etc/systemd/system/local-fs-pre.target.wants/" in lines
    assert "systemctl start storlab-dm.service" in lines and "daemon-reload" not in s1
    assert "vdc" not in s1  # no filesystem: left raw, no device-mapper
    assert "mkfs" not in s2 and "storlab-dm" not in s2


def test_the_dm_script_makes_each_linear_device_once(tmp_path: Path) -> None:
    """Run with stand-ins for modprobe, blockdev and dmsetup that record what they are asked."""
    import subprocess
    disks = (DiskPlan(name="data", size=2**30, device="/dev/vdb", filesystem="xfs", mount="/data", image="i1"),
             DiskPlan(name="raw", size=2**30, device="/dev/vdc", filesystem="none", mount=None, image="i2"))
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "log"
    for tool, body in (("modprobe", ""), ("blockdev", "echo 2097152"), ("dmsetup", "")):
        (bin_ / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\n{body}\n")
        (bin_ / tool).chmod(0o755)
    script = tmp_path / "storlab-dm"
    script.write_text(vagrantspec.dm_script(disks))
    env = {"PATH": f"{bin_}:/usr/bin:/bin"}
    subprocess.run(["sh", str(script)], check=True, env=env)
    assert log.read_text().splitlines() == ["modprobe dm_mod", "blockdev --getsz /dev/vdb",
                                            "dmsetup create storlab-data --table 0 2097152 linear /dev/vdb 0"]


def test_provision_script_quotes_odd_mount_points() -> None:
    disk = DiskPlan(name="a", size=2**30, device="/dev/vdb", filesystem="ext4", mount="/srv/a b", image="storlab-t_n1-a")
    s = vagrantspec.provision_script("n1", (disk,))
    assert "mkdir -p '/srv/a b'" in s and "mkfs.ext4 -q -F /dev/mapper/storlab-a" in s


# -- libvirt networks ---------------------------------------------------------------------------

def test_networks_are_isolated_and_only_management_has_dhcp(plan: Plan, spec: dict[str, Any]) -> None:
    nets = vagrantspec.networks(plan, spec)
    assert list(nets) == ["storlab-t_mgmt", "storlab-t_storage", "storlab-t_backend"]
    for name, xml in nets.items():
        root = ET.fromstring(xml)
        assert root.findtext("name") == name
        assert root.find("forward") is None  # no forward element: isolated, nothing leaves the host
        assert root.find("dns").get("enable") == "no"  # type: ignore[union-attr]
        ip = root.find("ip")
        assert ip is not None and ip.get("netmask") and ip.get("prefix") is None  # vagrant-libvirt matches on netmask
    mgmt = ET.fromstring(nets["storlab-t_mgmt"])
    hosts = {(h.get("mac"), h.get("ip")) for h in mgmt.findall("./ip/dhcp/host")}
    assert hosts == {(m["mgmt_mac"], m["mgmt_ip"]) for m in spec["machines"]}
    assert mgmt.find("./ip").get("address") == need(plan.mgmt, "mgmt").host_address  # type: ignore[union-attr]
    for net in plan.networks:
        root = ET.fromstring(nets[net.libvirt_network])
        assert root.find("./ip/dhcp") is None
        assert root.find("./ip").get("address") == net.host_address  # type: ignore[union-attr]
        assert root.find("bridge").get("name") == net.bridge  # type: ignore[union-attr]
        assert root.findtext("uuid") == vagrantspec.network_uuid(net.libvirt_network, paths.home_id())  # the mark


def test_network_key_ignores_what_libvirt_adds(plan: Plan, spec: dict[str, Any]) -> None:
    xml = vagrantspec.networks(plan, spec)["storlab-t_mgmt"]
    dumped = xml.replace("<dns enable='no'/>", "<uuid>0717a97d-b6ad-4036-9a7d-51dcbff78524</uuid>"
                                                "<mac address='52:54:00:4e:5f:a2'/><dns enable='no'/>")
    assert net_key(ET.fromstring(dumped)) == net_key(ET.fromstring(xml))
    moved = xml.replace(need(plan.mgmt, "mgmt").host_address, "10.1.2.1")
    assert net_key(ET.fromstring(moved)) != net_key(ET.fromstring(xml))


# -- Vagrantfiles ---------------------------------------------------------------------------------

def test_lab_vagrantfile_sets_the_plan_and_loads_the_top_level_one() -> None:
    text = vagrantspec.lab_vagrantfile(REPO / "Vagrantfile")
    assert 'ENV["STORLAB_PLAN"] = File.expand_path("plan.json", __dir__)' in text
    assert f'load "{REPO / "Vagrantfile"}"' in text


def test_top_level_vagrantfile_reads_only_keys_the_spec_has(spec: dict[str, Any]) -> None:
    ruby = (REPO / "Vagrantfile").read_text()
    used = {scope: set(re.findall(rf'\b{scope}\["(\w+)"\]', ruby)) for scope in ("spec", "m", "n", "d")}
    machine = spec["machines"][0]
    assert used["spec"] and used["spec"] <= set(spec)
    assert used["m"] and used["m"] <= set(machine)
    assert used["n"] <= set(machine["networks"][0])
    assert used["d"] <= set(machine["disks"][0])
    assert set(re.findall(r'spec\["management"\]\["(\w+)"\]', ruby)) == set(spec["management"])
    # the settings LAB-FACTS found necessary offline
    for needle in ('synced_folder ".", "/vagrant", disabled: true', "insert_key = false", "management_network_keep = true",
                   "libvirt__always_destroy: false", 'libvirt__forward_mode: "none"', "libvirt__dhcp_enabled: false"):
        assert needle in ruby


# -- ownership and names --------------------------------------------------------------------------

class FakeDomain:
    def __init__(self, name: str, description: str | None, uuid: str = "u-1") -> None:
        self._name, self._desc, self._uuid = name, description, uuid

    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:
        return self._uuid

    def XMLDesc(self, flags: int) -> str:
        desc = f"<description>{self._desc}</description>" if self._desc is not None else ""
        return f"<domain><name>{self._name}</name>{desc}</domain>"


class FakeNetwork:
    def __init__(self, name: str, bridge: str) -> None:
        self._name, self._bridge = name, bridge

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int) -> str:
        return f"<network><name>{self._name}</name><bridge name='{self._bridge}'/></network>"


def test_teardown_takes_only_what_carries_this_labs_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name is not ownership: a domain needs the lab's description (or vagrant's own record of
    it), a network the lab's bridge, a volume one of the exact names vagrant-libvirt gives the
    lab's disks and a domain of the lab using it (or the lab's record of it, below). Lab 'a' never
    takes lab 'a-b''s objects, nor hand-made ones named like its own."""
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    plan = plan_of(TWO_NODES.replace("lab: t", "lab: a"))
    p = VagrantProvider(plan, paths.lab_dir("a"))
    node1 = plan.node("n1")
    assert p.libvirt.owned_domain(FakeDomain("storlab-a_n1", "storlab lab a node n1"))
    assert not p.libvirt.owned_domain(FakeDomain("storlab-a_n1", None))  # hand-made, same name
    assert not p.libvirt.owned_domain(FakeDomain("storlab-a_n1", "storlab lab a node n2"))
    assert not p.libvirt.owned_domain(FakeDomain("storlab-a-b_n1", "storlab lab a-b node n1"))
    ids = paths.lab_dir("a") / ".vagrant" / "machines" / "n1" / "libvirt"
    ids.mkdir(parents=True)
    (ids / "id").write_text("u-vagrant\n")
    assert p.libvirt.owned_domain(FakeDomain("storlab-a_n1", None, uuid="u-vagrant"))  # made by vagrant before the mark
    net = plan.networks[0]
    assert p.libvirt.owned_network(FakeNetwork(net.libvirt_network, net.bridge))
    assert not p.libvirt.owned_network(FakeNetwork(net.libvirt_network, "virbr9"))
    assert plan.mgmt and p.libvirt.owned_network(FakeNetwork(plan.mgmt.libvirt_network, plan.mgmt.bridge))
    vols = p.volumes.planned()
    assert vols.fullmatch(f"{node1.object}.img") and vols.fullmatch(f"{node1.disks[0].image}.qcow2")
    assert not vols.fullmatch("storlab-a-b_n1.img") and not vols.fullmatch("storlab-a_n1-other.qcow2")
    assert not vols.fullmatch(BOX.pool_volume_prefix + "0_1795621468_box.img")
    assert vagrantspec.machine(plan, node1, paths.lab_dir("a"))["description"] == \
        f"storlab lab a node n1 home {paths.home_id()}"


def test_box_names_follow_the_image_key_and_keep_their_releases_kernels() -> None:
    for release, debian, default in (("bookworm", "12", "6.1"), ("trixie", "13", "6.12")):
        b = box.ref(release)
        assert b.name == f"storlab/debian{debian}-{image.key_for(release)}-b{box.BOX_VERSION}"
        assert b.kernel().name == f"vmlinuz-{default}" and b.kernel().parent == b.initrd().parent == b.dir
    assert box.ref("bookworm").kernels == ("6.1", "6.12") and box.ref("trixie").kernels == ("6.12",)
    assert box.ref("bookworm").initrd("6.12").name == "initrd.img-6.12"
    # the name vagrant-libvirt 0.11.2 gave the uploaded volume, seen on this host
    old = box.Box("0fc2244a862ebbb3", "storlab/debian12-0fc2244a862ebbb3-b1", Path("/x"))
    assert ("storlab-VAGRANTSLASH-debian12-0fc2244a862ebbb3-b1_vagrant_box_image_0_1795621468_box.img"
            .startswith(old.pool_volume_prefix))
    assert old.build_key.parent == old.dir


def test_a_mixed_release_lab_gives_each_node_its_releases_box_and_kernel() -> None:
    """n2 on trixie, n1 on bookworm: each machine names its own box and boots its release's kernel;
    both boxes' build keys open nodes until the lab's key replaces them."""
    box13 = box.Box(key="fedcba9876543210", name="storlab/debian13-fedcba9876543210-b4",
                    dir=Path("/img/fedcba9876543210/box-4"), release="trixie")
    plan = plan_of(TWO_NODES.replace("{name: n2, roles: [client]}", "{name: n2, roles: [client], release: trixie}"))
    s = vagrantspec.spec(plan, LABDIR, {"bookworm": BOX, "trixie": box13})
    m = {x["name"]: x for x in s["machines"]}
    assert (m["n1"]["box"], m["n2"]["box"]) == (BOX.name, box13.name) and s["box"] == BOX.name
    assert m["n1"]["kernel"].endswith("box-1/vmlinuz-6.1") and m["n2"]["kernel"] == "/img/fedcba9876543210/box-4/vmlinuz-6.12"
    assert m["n2"]["initrd"] == "/img/fedcba9876543210/box-4/initrd.img-6.12"
    assert s["ssh_private_keys"] == [str(LABDIR / "id_ed25519"), str(BOX.build_key), str(box13.build_key)]


# -- vagrant output ---------------------------------------------------------------------------------

VAGRANT_FAILURE = """
===== 2026-11-25 15:50:00 vagrant up --parallel (node1)
==> node1: an older run that worked
===== 2026-11-25 15:56:12 vagrant up --parallel (node1)
Bringing machine 'node1' up with 'libvirt' provider...
==> node1: Creating domain with the following settings...
==> node1:  -- Name:              storlab-vmsmoke-node1
==> node1: Starting domain.
==> node1: Removing domain...
==> node1: Deleting the machine folder
/usr/lib/ruby/vendor_ruby/fog/libvirt/requests/compute/vm_action.rb:7:in `create': Call to virDomainCreateWithFlags \
failed: internal error: process exited while connecting to monitor: qemu-system-x86_64: error: failed to set MSR 0x10a \
to 0x69 (Libvirt::Error)
\tfrom /usr/lib/ruby/vendor_ruby/fog/libvirt/requests/compute/vm_action.rb:7:in `vm_action'
\tfrom /usr/share/rubygems-integration/all/gems/vagrant-2.3.4/lib/vagrant/action/warden.rb:48:in `call'
qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.
"""


def test_vagrant_error_keeps_the_message_and_drops_the_backtrace() -> None:
    from harness.providers.vagrant.process import vagrant_error
    got = vagrant_error(VAGRANT_FAILURE).splitlines()
    assert got[:3] == ["==> node1: Starting domain.", "==> node1: Removing domain...", "==> node1: Deleting the machine folder"]
    assert "failed to set MSR 0x10a" in got[3]
    assert got[-1].startswith("qemu-system-x86_64: ../../target/i386/kvm/kvm.c")
    assert not any("from /usr" in ln for ln in got) and "older run" not in "\n".join(got)


def test_vagrant_error_of_a_plain_vagrant_message() -> None:
    from harness.providers.vagrant.process import vagrant_error
    text = ("==> node1: Waiting for machine to boot.\n    node1: SSH address: 10.0.0.2:22\n"
            "Timed out while waiting for the machine to boot.\n")
    assert vagrant_error(text) == "==> node1: Waiting for machine to boot.\nTimed out while waiting for the machine to boot."


# -- boot bounds: declared by the provider, then derived from this lab's own measured boots ---------

def test_restart_bound_is_the_declared_floor_until_a_boot_was_measured(
        plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.lab.lab import BOOT_FACTOR, Lab
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    lab = Lab(plan)
    floor = vagrantspec.boot_bound(plan)
    assert lab.boot_bound("n1") == (floor, "provider vagrant's declared floor (no boot measured yet)")
    # a slow day: n1 took longer to boot than floor / factor, so its restarts may take factor x that
    lab.save_state(boot_seconds={"n1": floor, "n2": 30.0})
    bound, why = lab.boot_bound("n1")
    assert bound == BOOT_FACTOR * floor and f"{floor:.0f}s n1 took to boot" in why
    # a fast boot never lowers the bound below what the provider declares
    assert lab.boot_bound("n2")[0] == floor
    # a node whose boot was not measured is held to the slowest measured one
    lab.save_state(boot_seconds={"n1": floor})
    assert lab.boot_bound("n2")[0] == BOOT_FACTOR * floor


def test_lab_ssh_config_keeps_one_connection_per_node_inside_the_lab(
        plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.lab.lab import Lab
    monkeypatch.setenv("STORLAB_HOME", "/var/lib/storlab")
    lab = Lab(plan)
    text = lab.access.ssh_config_text()
    control = paths.ssh_control_dir("t")
    assert control == Path("/var/lib/storlab/labs/t/ssh")
    assert text.count("ControlMaster auto") == 2 and text.count(f"ControlPath {control}/%h") == 2
    # host keys are pinned per lab, never ignored
    assert "StrictHostKeyChecking no" not in text and "/dev/null" not in text
    assert text.count("StrictHostKeyChecking accept-new") == 2
    assert text.count("UserKnownHostsFile /var/lib/storlab/labs/t/known_hosts") == 2
    # a socket path must fit in sun_path (108 bytes) with ssh's 17-byte temporary suffix
    monkeypatch.setenv("STORLAB_HOME", "/" + "x" * 80)
    long_dir = paths.ssh_control_dir("a" * 31)
    assert len(f"{long_dir}/255.255.255.255") + 17 < 108
    assert long_dir != paths.ssh_control_dir("b" * 31)


def test_a_lab_loads_its_plan_back_typed(plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.lab.lab import Lab
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    planmod.write(plan, paths.lab_dir("t"))
    lab = Lab.load("t")
    assert lab.plan == plan and isinstance(lab.plan, Plan)
    assert lab.node("n1").spec == plan.node("n1")


class Vol:
    def __init__(self, name: str) -> None:
        self._name, self.deleted = name, False

    def name(self) -> str:
        return self._name

    def path(self) -> str:
        return f"/pool/{self._name}"

    def delete(self, flags: int) -> None:
        self.deleted = True


class Pool:
    def __init__(self, vols: list[Vol]) -> None:
        self.vols = vols

    def isActive(self) -> bool:
        return True

    def refresh(self, flags: int) -> None:
        pass

    def listAllVolumes(self, flags: int) -> list[Vol]:
        return [v for v in self.vols if not v.deleted]


class Dom(FakeDomain):
    def __init__(self, name: str, description: str | None, disks: list[str]) -> None:
        super().__init__(name, description)
        self.disks, self.undefined = disks, False

    def XMLDesc(self, flags: int) -> str:
        src = "".join(f"<disk><source file='{d}'/></disk>" for d in self.disks)
        return super().XMLDesc(flags).replace("</domain>", f"<devices>{src}</devices></domain>")

    def isActive(self) -> bool:
        return False

    def listAllSnapshots(self, flags: int) -> list[Any]:
        return []

    def isPersistent(self) -> bool:
        return True

    def undefineFlags(self, flags: int) -> None:
        self.undefined = True


class Conn:
    def __init__(self, doms: list[Dom], pool: Pool) -> None:
        self.doms, self.pool = doms, pool

    def listAllDomains(self, flags: int) -> list[Dom]:
        return [d for d in self.doms if not d.undefined]

    def lookupByName(self, name: str) -> Dom:
        import libvirt
        for d in self.listAllDomains(0):
            if d.name() == name:
                return d
        raise libvirt.libvirtError(f"no domain {name}")

    def listAllNetworks(self, flags: int) -> list[Any]:
        return []

    def networkLookupByName(self, name: str) -> Any:
        import libvirt
        raise libvirt.libvirtError(f"no network {name}")

    def storagePoolLookupByName(self, name: str) -> Pool:
        return self.pool


def _vagrant_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: Plan) -> tuple[VagrantProvider, list[Vol], Dom]:
    pytest.importorskip("libvirt")
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    n1, n2 = plan.nodes
    vols = [Vol(f"{n1.object}.img"), Vol(f"{n1.disks[0].image}.qcow2"), Vol(f"{n1.disks[1].image}.qcow2"),
            Vol(f"{n2.object}.img")]
    dom = Dom(n1.object, f"storlab lab {plan.lab} node n1", [v.path() for v in vols[:2]])
    p = VagrantProvider(plan, paths.lab_dir(plan.lab))
    p.labdir.mkdir(parents=True)
    p.libvirt._conn = Conn([dom], Pool(vols))
    return p, vols, dom


def test_teardown_removes_only_volumes_its_domains_use_or_it_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planned volume name is not ownership: lab n2's root image here was not made by this lab
    (no domain of the lab uses it, the lab never recorded it): it is a conflict, and it stays."""
    plan = plan_of(TWO_NODES.replace("lab: t", "lab: a"))
    p, vols, dom = _vagrant_lab(tmp_path, monkeypatch, plan)
    p.volumes.record_used()  # as `up` does once vagrant made the domains: n1's root and data disk
    dom.disks = dom.disks[:1]  # the data disk detached later: still recorded as the lab's
    assert {v.name() for v in p.volumes.all()} == {vols[0].name(), vols[1].name()}
    assert any(vols[3].name() in c for c in p.conflicts()), p.conflicts()
    rep = p.destroy()
    assert dom.undefined and [v.deleted for v in vols] == [True, True, False, False], rep
    assert p.leftovers() == []


def test_volumes_free_before_up_are_claimed_by_the_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names free when `up` starts are the lab's from then on (vagrant-libvirt makes a disk before
    the domain that would show it is the lab's): an `up` killed in between leaves nothing behind."""
    plan = plan_of(TWO_NODES.replace("lab: t", "lab: a"))
    p, vols, dom = _vagrant_lab(tmp_path, monkeypatch, plan)
    pool = p.libvirt.conn().storagePoolLookupByName(box.STORAGE_POOL)
    pool.vols = [vols[0]]  # only n1's root exists (and its domain uses it)
    p.volumes.claim()
    pool.vols = vols  # then vagrant made the rest, and was killed before n2's domain existed
    dom.disks = []
    p.libvirt.conn().doms = []
    assert {v.name() for v in p.volumes.all()} == {v.name() for v in vols[1:]}  # n1's root: neither claimed nor used


def test_a_lab_made_with_older_names_goes_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab planned by an older storlab keeps its plan (storlab-a-n1...): its marked domains and
    their volumes are still its own, and nothing named like them but unmarked is taken."""
    new = plan_of(TWO_NODES.replace("lab: t", "lab: a"))
    old = Plan.from_json(new.to_json().replace(paths.obj_name("a", ""), "storlab-a-"))
    assert old.nodes[0].object == "storlab-a-n1"
    p, vols, dom = _vagrant_lab(tmp_path, monkeypatch, old)
    stranger = Dom("storlab-a-n2", None, [vols[3].path()])  # hand-made, with n2's old name
    p.libvirt.conn().doms.append(stranger)
    rep = p.destroy()
    assert dom.undefined and not stranger.undefined
    assert [v.deleted for v in vols] == [True, True, False, False], rep
