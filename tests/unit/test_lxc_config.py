"""Plan -> LXC container config translation (no root: files only, no containers started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan.planner import make_plan, write
from harness.providers.image import role_services
from harness.providers.lxc.config import CONTAINER_MASKS
from harness.providers.lxc.provider import LxcProvider
from harness.providers.vagrant.reap import network_owner
from harness.providers.vagrant.spec import domain_mark
from harness.spec.validate import validate_text

TOPO = """
lab: cfgtest
provider: lxc
networks:
  - {name: storage, cidr: 192.168.150.0/24}
  - {name: backup, cidr: 192.168.151.0/24}
nodes:
  - {name: n1, address: 192.168.150.21}
  - {name: n2}
"""


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LxcProvider:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    topo, res = validate_text(TOPO, PROFILES["ci"])
    plan = make_plan(topo, res, "cfgtest.yaml", set(), PROFILES["ci"])
    labdir = paths.lab_dir("cfgtest")
    write(plan, labdir)
    return LxcProvider(plan, labdir)


def config(provider: LxcProvider, node: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (provider.lxcpath / provider.cname(node) / "config").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = (x.strip() for x in line.split("=", 1))
            out.setdefault(k, []).append(v)
    return out


def test_container_config_follows_the_plan(provider: LxcProvider, tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    provider._write_node(provider.plan.node("n1"), "ssh-ed25519 AAAA test\n", lower)
    cfg = config(provider, "n1")
    n1 = provider.plan.node("n1")
    assert cfg["lxc.uts.name"] == ["n1"]
    assert cfg["lxc.rootfs.path"] == [f"overlay:{lower}:{provider.nodesdir / 'n1' / 'upper'}"]
    assert cfg["lxc.net.0.ipv4.address"] == ["192.168.150.21/24"]
    assert cfg["lxc.net.1.ipv4.address"] == [f"{n1.addresses['backup']}/24"]
    assert cfg["lxc.net.0.hwaddr"] == [n1.macs["storage"]]
    assert cfg["lxc.net.0.link"] == [provider.plan.networks[0].bridge]
    assert cfg["lxc.net.1.link"] == [provider.plan.networks[1].bridge]
    assert all(len(v) <= 15 for v in cfg["lxc.net.0.veth.pair"] + cfg["lxc.net.1.veth.pair"])
    assert any(e.startswith("/dev/fuse dev/fuse") for e in cfg["lxc.mount.entry"])
    assert provider.cname("n1") == "storlab-cfgtest_n1"


def test_node_files_written_into_the_overlay(provider: LxcProvider, tmp_path: Path) -> None:
    provider._write_node(provider.plan.node("n2"), "ssh-ed25519 AAAA lab-key\n", tmp_path / "lower")
    upper = provider.nodesdir / "n2" / "upper"
    assert (upper / "root/.ssh/authorized_keys").read_text() == "ssh-ed25519 AAAA lab-key\n"
    assert oct((upper / "root/.ssh/authorized_keys").stat().st_mode & 0o777) == "0o600"
    assert (upper / "etc/hostname").read_text() == "n2\n"
    hosts = (upper / "etc/hosts").read_text()
    assert "192.168.150.21 n1" in hosts and f"{provider.plan.node('n2').address} n2" in hosts
    for unit in CONTAINER_MASKS + role_services():
        link = upper / "etc/systemd/system" / unit
        assert link.is_symlink() and str(link.readlink()) == "/dev/null", unit


def test_macs_and_veths_are_unique_per_node_and_network(provider: LxcProvider, tmp_path: Path) -> None:
    for n in ("n1", "n2"):
        provider._write_node(provider.plan.node(n), "k\n", tmp_path / "lower")
    macs = [m for n in ("n1", "n2") for m in config(provider, n)["lxc.net.0.hwaddr"] + config(provider, n)["lxc.net.1.hwaddr"]]
    veths = [m for n in ("n1", "n2")
             for m in config(provider, n)["lxc.net.0.veth.pair"] + config(provider, n)["lxc.net.1.veth.pair"]]
    assert len(set(macs)) == 4 and len(set(veths)) == 4


def test_leftovers_of_a_fresh_plan_are_empty(provider: LxcProvider) -> None:
    assert provider._containers_on_disk() == set()


def test_reaper_takes_only_objects_marked_as_a_lab_s() -> None:
    """A domain is a lab's by its storlab description, a network by the lab's bridge; a name
    alone (a hand-made `storlab-something`) is not enough, and lab `a` is not lab `a-b`."""
    assert domain_mark("<domain><name>storlab-gone-n1</name><description>storlab lab gone node n1</description></domain>") \
        == ("gone", "n1")
    assert domain_mark("<domain><name>storlab-gone-n1</name></domain>") is None
    assert domain_mark("<domain><name>storlab-x</name><description>my storlab lab notes</description></domain>") is None
    net = "<network><name>{}</name><bridge name='{}'/></network>"
    assert network_owner("storlab-a-b-storage", net.format("storlab-a-b-storage", paths.bridge_name("a-b", 1))) == "a-b"
    assert network_owner("storlab-a-b-storage", net.format("storlab-a-b-storage", paths.bridge_name("a", 0))) == "a"
    assert network_owner("storlab-something", net.format("storlab-something", "virbr3")) is None
    assert network_owner("default", net.format("default", "virbr0")) is None


def _lxc_provider(lab: str, nodes: str) -> LxcProvider:
    topo, res = validate_text(f"lab: {lab}\nprovider: lxc\nnodes: {nodes}\n", PROFILES["ci"])
    plan = make_plan(topo, res, f"{lab}.yaml", set(), PROFILES["ci"])
    return LxcProvider(plan, paths.lab_dir(lab))


def test_containers_are_owned_by_mark_not_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lab 'a' node 'b-n1' and lab 'a-b' node 'n1' were both storlab-a-b-n1 (now storlab-a_b-n1 and
    storlab-a-b_n1); a container carrying another lab's mark is refused, and `down a` counts only
    what is marked as lab a's."""
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    a, ab = _lxc_provider("a", "[{name: b-n1}, {name: x}]"), _lxc_provider("a-b", "[{name: n1}, {name: n2}]")
    lower = tmp_path / "lower"
    a._write_node(a.plan.node("x"), "key\n", lower)
    ab._write_node(ab.plan.node("n2"), "key\n", lower)
    assert a._containers_on_disk() == {"x"} and ab._containers_on_disk() == {"n2"}
    a._write_node(a.plan.node("b-n1"), "key\n", lower)
    ab._write_node(ab.plan.node("n1"), "key\n", lower)
    assert a._containers_on_disk() == {"x", "b-n1"} and ab._containers_on_disk() == {"n1", "n2"}
    planted = a.lxcpath / paths.obj_name("a-b", "n3")
    planted.mkdir()
    (planted / "storlab-lab").write_text("a\n")
    with pytest.raises(HarnessError, match=f"container {planted.name} belongs to lab a"):
        ab3 = _lxc_provider("a-b", "[{name: n3}]")
        ab3._write_node(ab3.plan.node("n3"), "key\n", lower)
    # a directory storlab did not make is not taken over either
    (a.lxcpath / paths.obj_name("a", "y")).mkdir()
    (a.lxcpath / paths.obj_name("a", "y") / "config").write_text("# someone else's\n")
    y = _lxc_provider("a", "[{name: y}]")
    with pytest.raises(HarnessError, match="was not made by storlab"):
        y._write_node(y.plan.node("y"), "key\n", lower)
    assert "y" not in a._containers_on_disk()


def test_containers_from_before_the_mark_are_owned_by_their_config_header(tmp_path: Path) -> None:
    from harness.providers.lxc.reap import owner_of
    old = tmp_path / "storlab-a-b-n1"
    old.mkdir()
    (old / "config").write_text("# storlab lab a-b, node n1\nlxc.arch = linux64\n")
    assert owner_of(old) == "a-b"
    (old / "config").write_text("# storlab lab a-b, node n1; lxc.hook = x\n")  # not what storlab writes
    assert owner_of(old) is None
    (old / "config").write_text("lxc.arch = linux64\n")
    assert owner_of(old) is None


def test_node_size_becomes_cgroup_limits_v1_and_v2() -> None:
    from harness.providers.lxc.config import limits
    assert limits(1536, 2, unified=True) == ["lxc.cgroup2.memory.max = 1536M", "lxc.cgroup2.cpu.max = 200000 100000",
                                             "lxc.cgroup2.pids.max = 4096"]
    assert limits(1024, 1, unified=False) == ["lxc.cgroup.memory.limit_in_bytes = 1024M",
                                              "lxc.cgroup.cpu.cfs_period_us = 100000",
                                              "lxc.cgroup.cpu.cfs_quota_us = 100000", "lxc.cgroup.pids.max = 4096"]


def test_every_container_config_carries_its_limits(provider: LxcProvider, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.providers.lxc.provider.lxcpath", lambda: tmp_path / "lxc")
    provider.lxcpath = tmp_path / "lxc"
    provider._write_node(provider.plan.node("n1"), "ssh-ed25519 AAAA test", tmp_path / "lower")
    text = (tmp_path / "lxc" / provider.cname("n1") / "config").read_text()
    assert "memory" in text and "1024M" in text and "cpu" in text
