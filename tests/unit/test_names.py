"""Lab-owned object names cannot collide between labs (storlab-LAB_NAME: lab names never hold
'_'), names are read back to their lab, and objects of labs made by an older storlab
(storlab-LAB-NAME) are still recognised where an ownership mark proves them the lab's."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.errors import CleanupReport
from harness.host.facts import PROFILES
from harness.plan.model import Plan
from harness.plan.planner import make_plan
from harness.providers.vagrant import reap as libvirt_reap
from harness.providers.vagrant.reap import network_owner
from harness.spec.validate import validate_text

NET = "<network><name>{}</name><bridge name='{}'/></network>"


def plan_of(lab: str, node: str, net: str, provider: str = "lxc") -> Plan:
    topo, res = validate_text(textwrap.dedent(f"""
        lab: {lab}
        provider: {provider}
        networks: [{{name: {net}}}]
        nodes: [{{name: {node}, roles: [client], disks: [{{name: d-1, size: 1G}}]}}]
        """), PROFILES["ci"])
    return make_plan(topo, res, f"{lab}.yaml", set(), PROFILES["ci"])


@pytest.mark.parametrize("provider", ["lxc", "vagrant"])
def test_two_labs_never_share_an_object_name(provider: str) -> None:
    """Lab `a` node `b-c` and lab `a-b` node `c` both were storlab-a-b-c (a container, a domain, its volumes)."""
    a, ab = plan_of("a", "b-c", "b-storage", provider), plan_of("a-b", "c", "storage", provider)
    names_a = {a.nodes[0].object, a.networks[0].libvirt_network, *(d.image for d in a.nodes[0].disks)}
    names_ab = {ab.nodes[0].object, ab.networks[0].libvirt_network, *(d.image for d in ab.nodes[0].disks)}
    assert not names_a & names_ab, names_a & names_ab
    assert {paths.lab_of(n) for n in names_a} == {"a"} and {paths.lab_of(n) for n in names_ab} == {"a-b"}
    assert not any(n.startswith(paths.obj_prefix("a")) for n in names_ab)  # lab a's prefix is lab a's only
    assert all(n.startswith(paths.obj_prefix("a-b")) for n in names_ab)


def test_names_read_back_to_their_lab() -> None:
    assert paths.obj_name("a-b", "c") == "storlab-a-b_c" and paths.lab_of("storlab-a-b_c") == "a-b"
    assert paths.lab_of("storlab-a_b-c") == "a"
    for other in ("storlab-a-b-c", "storlab-something", "default", "storlab-_x", "storlab-A_b",
                  "storlab-VAGRANTSLASH-debian12-0fc2244a862ebbb3-b1_vagrant_box_image_0_1795621468_box.img"):
        assert paths.lab_of(other) is None, other


def test_network_owner_reads_new_and_older_names() -> None:
    br = paths.bridge_name
    assert network_owner("storlab-a-b_storage", NET.format("storlab-a-b_storage", br("a-b", 1))) == "a-b"
    assert network_owner("storlab-a_b-storage", NET.format("storlab-a_b-storage", br("a", 0))) == "a"
    assert network_owner("storlab-a-b_storage", NET.format("storlab-a-b_storage", br("a", 0))) is None  # not a-b's bridge
    # older names: the bridge decides which lab of the ones the name could belong to
    assert network_owner("storlab-a-b-storage", NET.format("storlab-a-b-storage", br("a-b", 1))) == "a-b"
    assert network_owner("storlab-a-b-storage", NET.format("storlab-a-b-storage", br("a", 0))) == "a"
    assert network_owner("storlab-something", NET.format("storlab-something", "virbr3")) is None


class Vol:
    def __init__(self, name: str, pool: str = "storlab") -> None:
        self._name, self._pool, self.deleted = name, pool, False

    def name(self) -> str:
        return self._name

    def storagePoolLookupByVolume(self) -> Any:
        pool = self._pool

        class P:
            def name(self) -> str:
                return pool
        return P()

    def delete(self, flags: int) -> None:
        self.deleted = True


class Dom:
    def __init__(self, name: str, lab: str, node: str, disks: list[str], home: str | None = None) -> None:
        self._name, self.lab, self.node, self.disks, self.undefined = name, lab, node, disks, False
        self.home = home or paths.home_id()

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int) -> str:
        src = "".join(f"<disk><source file='{d}'/></disk>" for d in self.disks)
        return (f"<domain><name>{self._name}</name><description>storlab lab {self.lab} node {self.node} home "
                f"{self.home}</description><devices>{src}</devices></domain>")

    def isActive(self) -> bool:
        return False

    def isPersistent(self) -> bool:
        return True

    def undefineFlags(self, flags: int) -> None:
        self.undefined = True


class TransientDom(Dom):
    """A saved state's build (running, transient): destroy() removes it; libvirt refuses its undefine."""

    def isActive(self) -> bool:
        return not self.undefined

    def isPersistent(self) -> bool:
        return False

    def destroy(self) -> None:
        self.undefined = True

    def undefineFlags(self, flags: int) -> None:
        import libvirt
        raise libvirt.libvirtError("Domain not found: no domain with matching uuid")


class Net:
    def __init__(self, name: str, bridge: str, uuid: str) -> None:
        self._name, self.bridge, self.uuid, self.undefined = name, bridge, uuid, False

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int) -> str:
        return f"<network><name>{self._name}</name><bridge name='{self.bridge}'/></network>"

    def UUIDString(self) -> str:
        return self.uuid

    def isActive(self) -> bool:
        return False

    def undefine(self) -> None:
        self.undefined = True


class Conn:
    def __init__(self, doms: list[Dom], vols: dict[str, Vol], nets: list[Net] | None = None) -> None:
        self.doms, self.vols, self.nets = doms, vols, nets or []

    def listAllDomains(self, flags: int) -> list[Dom]:
        return self.doms

    def listAllNetworks(self, flags: int) -> list[Any]:
        return self.nets

    def storageVolLookupByPath(self, path: str) -> Vol:
        import libvirt
        if path not in self.vols:
            raise libvirt.libvirtError("no volume")
        return self.vols[path]

    def close(self) -> None:
        pass


def test_reaper_removes_an_orphan_domain_s_volumes_by_new_and_older_names(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    vols = {"/p/storlab-gone_n1.img": Vol("storlab-gone_n1.img"),
            "/p/storlab-gone_n1-d-1.qcow2": Vol("storlab-gone_n1-d-1.qcow2"),
            "/p/storlab-old-n1.img": Vol("storlab-old-n1.img"),
            "/p/storlab-other_n1.img": Vol("storlab-other_n1.img"),  # another lab's name on a gone lab's domain
            "/q/storlab-gone_n1-x.img": Vol("storlab-gone_n1-x.img", pool="default")}
    doms = [Dom("storlab-gone_n1", "gone", "n1", ["/p/storlab-gone_n1.img", "/p/storlab-gone_n1-d-1.qcow2",
                                                  "/p/storlab-other_n1.img", "/q/storlab-gone_n1-x.img"]),
            Dom("storlab-old-n1", "old", "n1", ["/p/storlab-old-n1.img"]),
            Dom("storlab-here_n1", "here", "n1", []),
            Dom("storlab-theirs_n1", "theirs", "n1", [], home="0123456789abcdef")]  # another home's lab
    monkeypatch.setattr(libvirt_reap, "connect", lambda *a: Conn(doms, vols))
    rep = CleanupReport()
    libvirt_reap.reap_orphans({"here"}, rep)
    assert [d.undefined for d in doms] == [True, True, False, False]
    assert {p for p, v in vols.items() if v.deleted} == {"/p/storlab-gone_n1.img", "/p/storlab-gone_n1-d-1.qcow2",
                                                         "/p/storlab-old-n1.img"}, rep



def test_reaper_removes_only_networks_this_home_made(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    from harness.providers.vagrant import spec as vagrantspec
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    name = paths.obj_name("gone", "storage")
    mine = Net(name, paths.bridge_name("gone", 0), vagrantspec.network_uuid(name, paths.home_id()))
    theirs = Net(paths.obj_name("elsewhere", "storage"), paths.bridge_name("elsewhere", 0),
                 vagrantspec.network_uuid(paths.obj_name("elsewhere", "storage"), "0123456789abcdef"))
    older = Net(paths.obj_name("old", "storage"), paths.bridge_name("old", 0), "6c2a5d1e-0000-4000-8000-000000000000")
    monkeypatch.setattr(libvirt_reap, "connect", lambda *a: Conn([], {}, [mine, theirs, older]))
    rep = CleanupReport()
    libvirt_reap.reap_orphans(set(), rep)
    assert [n.undefined for n in (mine, theirs, older)] == [True, False, False], rep


def test_reaper_removes_a_killed_state_build_of_a_gone_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    build = TransientDom("storlab-gone_state_abcd1234", "gone", "state-abcd1234", [])
    monkeypatch.setattr(libvirt_reap, "connect", lambda *a: Conn([build], {}))
    rep = CleanupReport()
    libvirt_reap.reap_orphans(set(), rep)
    assert build.undefined and not rep.failed, rep
