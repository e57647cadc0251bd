"""Debian releases per lab and per node: the topology's `release:` (a node may override it),
validated against what the provider has images for, carried into the plan, and one golden image
per release whose key changes with the release (and not, for the default, from before releases)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.errors import TopologyError
from harness.host.facts import PROFILES
from harness.plan.model import need
from harness.plan.planner import make_plan
from harness.providers import image
from harness.spec import releases
from harness.spec.validate import validate_text

LAB = """
lab: rel
provider: {provider}
release: {release}
networks: [{{name: storage}}]
nodes:
  - {{name: n1}}
  - {{name: n2, release: bookworm}}
"""


def test_a_release_per_lab_and_per_node_reaches_the_plan() -> None:
    topo, res = validate_text(LAB.format(provider="lxc", release="trixie"), PROFILES["ci"])
    plan = make_plan(topo, res, "<test>.yaml", taken=set(), facts=PROFILES["ci"])
    assert [(n.name, n.release) for n in plan.nodes] == [("n1", "trixie"), ("n2", "bookworm")]
    topo, res = validate_text(LAB.format(provider="lxc", release="bookworm").replace("release: bookworm\n", "", 1),
                              PROFILES["ci"])
    assert topo.release == releases.DEFAULT


def test_a_release_that_is_no_release_or_that_the_provider_has_no_image_for_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TopologyError) as exc:
        validate_text(LAB.format(provider="lxc", release="sid"), PROFILES["ci"])
    assert "<test>.yaml:4:1: release: " in str(exc.value) and "one of" in str(exc.value)
    # a provider with images of one release only (as Incus and VMs were before trixie's)
    from harness.plugins import providers
    incus = providers()["incus"]
    monkeypatch.setattr(incus, "capabilities", dataclasses.replace(incus.capabilities, releases=("bookworm",)))
    with pytest.raises(TopologyError) as exc:
        validate_text(LAB.format(provider="incus", release="trixie"), PROFILES["ci"])
    text = str(exc.value)
    assert "<test>.yaml:4:1: release: the incus provider has no trixie image yet" in text, text  # file, line, field
    assert "fix: use release: bookworm, or provider: lxc" in text, text


def test_one_image_per_release() -> None:
    assert image.key_for("bookworm") != image.key_for("trixie")
    # the default release's key is what it was before releases (cached images stay valid)
    assert image.key_for("bookworm") == image.content_key()
    trixie = image.packages("trixie")
    assert "linux-image-6.12-amd64" not in trixie and "linux-image-amd64" in trixie  # trixie's own kernel is 6.12
    assert "linux-image-6.12-amd64" in image.packages("bookworm")
    # libvirt 11 ships its storage backends apart: a trixie hypervisor node's logical pool needs its own
    assert "libvirt-daemon-driver-storage-logical" in trixie
    assert "libvirt-daemon-driver-storage-logical" not in image.packages("bookworm")
    argv = image.mmdebstrap_argv(trixie, image.rootfs("k"), "http://m/debian", "http://m/debian-security", "trixie")
    assert "trixie" in argv and "deb http://m/debian-security trixie-security main" in argv


def test_versions_read_on_a_node() -> None:
    from harness.lab import versions
    assert versions.parse("glusterfs-server=11.1-6\nglusterfs-client=\nbad line\n") == {"glusterfs-server": "11.1-6"}
    # a node is untrusted: what it says reaches terminals and reports only if it looks like a version
    assert versions.parse("tgt=1:1.0.85-1.3\nceph-common=16.2\x1b[2J\nx=\u202eevil\n") == {"tgt": "1:1.0.85-1.3"}
    assert "glusterfs-server" in versions.packages_for(["gluster"]) and "ceph-mon" not in versions.packages_for(["gluster"])


def test_a_vm_node_boots_its_releases_kernel_and_may_name_only_one_its_release_carries() -> None:
    """trixie's image carries its own 6.12 only (bookworm's: 6.1, and 6.12 from bookworm-security):
    a trixie VM node boots 6.12 by default, and names no 6.1."""
    vm = LAB.format(provider="vagrant", release="trixie")
    topo, res = validate_text(vm, PROFILES["ci"])
    plan = make_plan(topo, res, "<test>.yaml", taken=set(), facts=PROFILES["ci"])
    assert [releases.kernel_of(n.kernel, n.release) for n in plan.nodes] == ["6.12", "6.1"]
    with pytest.raises(TopologyError) as exc:
        validate_text(vm.replace("{name: n1}", '{name: n1, kernel: "6.1"}'), PROFILES["ci"])
    text = str(exc.value)
    assert "nodes[0].kernel: trixie carries kernel 6.12, not 6.1" in text and 'use kernel: "6.12"' in text, text
    validate_text(vm.replace("{name: n2, release: bookworm}", '{name: n2, release: bookworm, kernel: "6.12"}'),
                  PROFILES["ci"])


def test_a_ceph_cluster_on_trixie_accepts_the_warning_its_packages_raise(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """trixie's reef mgr cannot load 13 modules (PyO3 in subinterpreters): the plan names the
    warning it accepts for that release only, so a bookworm cluster still has to be HEALTH_OK."""
    from harness.backends.ceph.plan import of
    from harness.plan.planner import load_topology, plan_for
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    topo = str(Path(__file__).parents[2] / "topologies" / "ceph-5.yaml")

    def accepted(release: str) -> tuple[str, ...]:
        plan = plan_for(load_topology(topo, PROFILES["ci"], "lxc", None, release), PROFILES["ci"])
        return need(of(plan), "ceph").accept_warnings
    assert "MGR_MODULE_DEPENDENCY" in accepted("trixie")
    assert "MGR_MODULE_DEPENDENCY" not in accepted("bookworm")


def test_a_node_without_backends_reports_its_release_not_every_package() -> None:
    """dpkg-query with no package names lists every installed package (a bench recorded ~300 of
    them for a plain node): a node whose roles install no backend is asked for its release only."""
    from types import SimpleNamespace

    from harness.lab import versions
    asked: list[list[str]] = []

    def run(argv: list[str], timeout: float) -> SimpleNamespace:
        asked.append(argv)
        return SimpleNamespace(stdout="13.8\n" + ("glusterfs-server=11.1-6\n" if "dpkg-query" in argv[2] else ""))
    assert versions.of_node(SimpleNamespace(roles=["client"], run=run)) == {"debian": "13.8"}  # type: ignore[arg-type]
    assert "dpkg-query" not in asked[-1][2] and asked[-1][4:] == []
    got = versions.of_node(SimpleNamespace(roles=["gluster"], run=run))  # type: ignore[arg-type]
    assert got == {"debian": "13.8", "glusterfs-server": "11.1-6"} and "dpkg-query" in asked[-1][2]
