"""storlab upgrade's pure parts: the bundle's Packages index (from real .deb files made here with
dpkg-deb), its cache key, which backends and nodes an upgrade takes, and Gluster's gate, finish and
known-cause diagnosis on recorded gluster CLI output (the lab test runs them on real servers)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.backends.ceph.upgrade import release_names
from harness.backends.gluster.upgrade import GlusterUpgrade, op_version
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan.planner import load_plan
from harness.run import CommandResult
from harness.upgrade import bundle, rolling

ROOT = Path(__file__).resolve().parents[2]


def make_deb(where: Path, name: str, version: str) -> Path:
    root = where / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        f"Description: test package\n two lines of description\n")
    deb = where / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(deb)], check=True, capture_output=True)
    return deb


def test_packages_index_is_what_apt_reads_from_a_flat_repository(tmp_path: Path) -> None:
    debs = [make_deb(tmp_path, "glusterfs-server", "11.1-6"), make_deb(tmp_path, "libfoo1", "2.0")]
    index = bundle.packages_index(debs)
    stanzas = index.strip().split("\n\n")
    assert [s.splitlines()[0] for s in stanzas] == ["Package: glusterfs-server", "Package: libfoo1"]
    first = dict(line.split(": ", 1) for line in stanzas[0].splitlines() if not line.startswith(" "))
    assert first["Version"] == "11.1-6" and first["Filename"] == "./glusterfs-server_11.1-6_all.deb"
    assert first["Size"] == str(debs[0].stat().st_size)
    assert first["SHA256"] == hashlib.sha256(debs[0].read_bytes()).hexdigest()
    assert " two lines of description" in stanzas[0]  # a continuation line stays with its field


def test_bundle_key_changes_with_what_it_is_made_from() -> None:
    base = bundle.key_of(b"Package: a\n", "trixie", ("glusterfs-server",), ("http://m", "http://s"))
    assert base == bundle.key_of(b"Package: a\n", "trixie", ("glusterfs-server",), ("http://m", "http://s"))
    assert base != bundle.key_of(b"Package: b\n", "trixie", ("glusterfs-server",), ("http://m", "http://s"))
    assert base != bundle.key_of(b"Package: a\n", "bookworm", ("glusterfs-server",), ("http://m", "http://s"))
    assert base != bundle.key_of(b"Package: a\n", "trixie", ("glusterfs-server", "x"), ("http://m", "http://s"))
    assert base != bundle.key_of(b"Package: a\n", "trixie", ("glusterfs-server",), ("http://m", "http://s"), full=True)


def test_a_full_bundle_upgrades_the_distribution_before_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    node: Any = type("N", (), {"succeed": lambda self, cmd, timeout: ran.append(cmd)})()
    b = bundle.Bundle(Path("/b"), "k", "trixie", ("glusterfs-server",), {"glusterfs-server": "11.1-6"})
    rolling.install(node, b)
    rolling.install(node, dataclasses.replace(b, full=True))
    assert "dist-upgrade" not in ran[0] and ran[0].startswith(rolling.HOLD)
    dist, backend = ran[1].index(" dist-upgrade && "), ran[1].index(" install glusterfs-server")
    assert ran[1].startswith(rolling.HOLD) and ran[1].index(" update && ") < dist < backend
    rolling.install(node, dataclasses.replace(b, debs={}, full=True))  # nothing to replace: nothing runs
    assert len(ran) == 2


def test_bundle_refuses_what_is_not_a_package_name() -> None:
    with pytest.raises(HarnessError, match="not Debian package names"):
        bundle.make("bookworm", "trixie", ("glusterfs-server; rm -rf /",))


@dataclasses.dataclass
class FakeNode:
    name: str
    answers: dict[str, str]
    calls: list[str] = dataclasses.field(default_factory=list)

    def run(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        line = cmd if isinstance(cmd, str) else " ".join(cmd)
        self.calls.append(line)
        for key, out in self.answers.items():
            if line.startswith(key):
                return CommandResult((line,), 0, out, "", 0.0)
        return CommandResult((line,), 1, "", "no such thing", 0.0)

    def succeed(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> str:
        r = self.run(cmd)
        if not r.ok:
            raise HarnessError(f"{cmd} failed")
        return r.stdout


def peers(*states: tuple[str, str]) -> str:
    body = "".join(f"<peer><hostname>{h}</hostname><connected>1</connected><stateStr>{s}</stateStr></peer>"
                   for h, s in states)
    return f"<cliOutput><opRet>0</opRet><peerStatus>{body}</peerStatus></cliOutput>"


class FakeLab:
    def __init__(self, answers: dict[str, dict[str, str]]) -> None:
        self.plan = load_plan(str(ROOT / "topologies" / "gluster-3.yaml"), PROFILES["ci"], "lxc")
        self.name = "g3"
        self.nodes = {n: FakeNode(n, a) for n, a in answers.items()}

    def node(self, name: str) -> FakeNode:
        return self.nodes[name]


def test_gluster_gate_is_shut_while_a_peer_is_rejected_and_names_the_known_cause(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    rejected = {"gluster peer status": peers(("gluster2", "Peer Rejected"), ("gluster3", "Peer Rejected")),
                "grep -m1 Version of Cksums": "[..] E [MSGID: 106010] Version of Cksums kvmgluster differ.",
                "gluster volume info": "<cliOutput><opRet>0</opRet><volInfo><volumes><volume><name>kvmgluster</name>"
                                       "</volume></volumes></volInfo></cliOutput>"}
    lab: Any = FakeLab({"gluster1": rejected, "gluster2": {}, "gluster3": {}})
    up = GlusterUpgrade()
    assert "sees every peer in the cluster" in (up.ready(lab) or "")
    why = up.diagnose(lab, lab.node("gluster1")) or ""
    assert "gluster/glusterfs#4016" in why and "kvmgluster" in why and "--offline" in why
    # rejected for another reason (no checksum line): no known cause is claimed
    lab.node("gluster1").answers.pop("grep -m1 Version of Cksums")
    assert up.diagnose(lab, lab.node("gluster1")) is None


def test_gluster_finish_raises_op_version_to_what_every_server_supports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    vals = {"cluster.op-version": 100000, "cluster.max-op-version": 110000}

    class Node(FakeNode):
        def run(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> CommandResult:
            line = cmd if isinstance(cmd, str) else " ".join(cmd)
            self.calls.append(line)
            if line.startswith("gluster --mode=script volume set all cluster.op-version"):
                vals["cluster.op-version"] = int(line.split()[-1])
                return CommandResult((line,), 0, "volume set: success", "", 0.0)
            key = line.split()[-1]
            return CommandResult((line,), 0, f"Option Value\n------ -----\n{key} {vals[key]}\n", "", 0.0)
    lab: Any = FakeLab({"gluster1": {}, "gluster2": {}, "gluster3": {}})
    lab.nodes["gluster1"] = Node("gluster1", {})
    assert op_version(lab.node("gluster1"), "cluster.max-op-version") == 110000
    assert GlusterUpgrade().finish(lab) == ["cluster.op-version 100000 -> 110000"]
    assert vals["cluster.op-version"] == 110000
    assert GlusterUpgrade().finish(lab) == ["cluster.op-version 110000 (already the highest every server supports)"]


def test_upgrade_takes_the_backends_servers_in_order_and_refuses_what_it_cannot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))  # no lab of this host's may stand in the way
    lab: Any = FakeLab({"gluster1": {}, "gluster2": {}, "gluster3": {}})
    (name, sup), = rolling.supports(lab)
    assert name == "gluster" and rolling.order(lab, sup, None) == ["gluster1", "gluster2", "gluster3"]
    assert rolling.order(lab, sup, ["gluster3", "gluster1"]) == ["gluster3", "gluster1"]
    with pytest.raises(HarnessError, match=r"kvm1 run no backend to upgrade"):
        rolling.order(lab, sup, ["kvm1"])
    nvme: Any = FakeLab({})
    nvme.plan = load_plan(str(ROOT / "topologies" / "nvme.yaml"), PROFILES["kvm"], "vagrant")
    with pytest.raises(HarnessError, match="runs nvme, which `storlab upgrade` cannot upgrade yet"):
        rolling.supports(nvme)
    ceph: Any = FakeLab({})
    ceph.plan = load_plan(str(ROOT / "topologies" / "ceph-5.yaml"), PROFILES["ci"], "lxc")
    (name, sup), = rolling.supports(ceph)
    # monitors and managers before OSDs; the admin node (a client) is not upgraded
    assert rolling.order(ceph, sup, None) == ["ceph-monitor", "ceph-osd1", "ceph-osd2", "ceph-osd3"]
    with pytest.raises(HarnessError, match="--to sid: not a release"):
        rolling.upgrade(lab, "sid")
    newer: Any = FakeLab({})
    newer.plan = load_plan(str(ROOT / "topologies" / "gluster-3-mixed.yaml"), PROFILES["ci"], "lxc")
    with pytest.raises(HarnessError, match="gluster3 run a later release; storlab upgrades, it does not downgrade"):
        rolling.upgrade(newer, "bookworm")


def test_report_says_what_changed_per_node() -> None:
    step = rolling.NodeStep("gluster1", "gluster", {"debian": "12.11", "glusterfs-server": "10.3-5"},
                            {"debian": "12.11", "glusterfs-server": "11.1-6"}, 12.6, 3.7)
    r = rolling.Report("g3", "trixie", True, [step], ["gluster: cluster.op-version 100000 -> 110000"])
    assert r.lines() == ["gluster1 (gluster): glusterfs-server 10.3-5 -> 11.1-6; down 12.6s, gate 3.7s",
                         "gluster: cluster.op-version 100000 -> 110000"]


def test_ceph_release_names_from_ceph_versions() -> None:
    out = json.dumps({"mon": {"ceph version 18.2.7 (abc) reef (stable)": 1},
                      "osd": {"ceph version 16.2.15 (def) pacific (stable)": 2, "ceph version 18.2.7 (abc) reef (stable)": 1},
                      "overall": {"x": 4}})
    assert release_names(out) == {"mon": {"reef"}, "osd": {"pacific", "reef"}}


def test_ganesha_conf_follows_the_version_that_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """5.0+ stops at start in a container unless allow_set_io_flusher_fail (seen: 6.5 exit 2 after
    an upgrade); 4.x does not know the setting."""
    from harness.backends.nfs import ganesha
    from harness.backends.nfs.plan import of
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    assert [ganesha.major(v) for v in ("6.5", "4.3-2", "1:6.5-5", "")] == [6, 4, 6, 0]
    plan = load_plan(str(ROOT / "topologies" / "nfs-userspace.yaml"), PROFILES["ci"], "lxc")
    section = of(plan)
    assert section is not None
    assert "allow_set_io_flusher_fail" not in ganesha.conf(plan, section)  # bookworm: 4.3
    assert "allow_set_io_flusher_fail = true;" in ganesha.conf(plan, section, 6)
