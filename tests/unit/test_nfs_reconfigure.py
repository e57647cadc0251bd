"""A running lab taking new NFS client options (harness/backends/nfs/client.py reconfigure): matrix
cells that differ only in `host.pools[].nfs` share one lab; a netfs pool is defined again and
restarted with its new XML, a dir pool's mount units are replaced, and each new mount is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_nfs_client import MOUNTSTATS, REPO, FakeLab, _lab

from harness.backends.base import get
from harness.backends.nfs import client
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.matrix.spec import build_key
from harness.plan.model import Plan
from harness.plan.planner import make_plan
from harness.spec.validate import validate_text
from harness.spec.yamlload import load_text

TOPOLOGY = (REPO / "topologies" / "nfs-client.yaml").read_text()
#: the next cell: the netfs pool at nconnect=8, the v3 dir pool moved to NFSv4.0
CHANGED = TOPOLOGY.replace("nfs: {version: 4.2, nconnect: 4}", "nfs: {version: 4.2, nconnect: 8}").replace(
    "nfs: {version: 3, nconnect: 2}", "nfs: {version: 4.0, nconnect: 2}")
#: what the kernel then shows
MOUNTSTATS_CHANGED = MOUNTSTATS.replace("nconnect=4,", "nconnect=8,").replace(
    "dirv3 with fstype nfs statvers", "dirv3 with fstype nfs4 statvers").replace("vers=3,", "vers=4.0,")


def plan_of(text: str) -> Plan:
    topo, res = validate_text(text, PROFILES["kvm"], file=str(REPO / "topologies" / "nfs-client.yaml"))
    return make_plan(topo, res, "topologies/nfs-client.yaml", taken=set(), facts=PROFILES["kvm"])


class FakePool:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def isActive(self) -> bool:
        return True

    def destroy(self) -> None:
        self.log.append("destroy")

    def undefine(self) -> None:
        self.log.append("undefine")

    def create(self, flags: int) -> None:
        self.log.append("create")

    def setAutostart(self, on: int) -> None:
        self.log.append(f"autostart {on}")


class FakeConn:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.defined: list[str] = []

    def storagePoolLookupByName(self, name: str) -> FakePool:
        self.log.append(f"lookup {name}")
        return FakePool(self.log)

    def storagePoolDefineXML(self, xml: str, flags: int) -> FakePool:
        self.defined.append(xml)
        return FakePool(self.log)

    def close(self) -> None:
        self.log.append("close")


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> FakeConn:
    c = FakeConn()
    monkeypatch.setattr(client, "connect", lambda uri: c)
    monkeypatch.setattr(client, "node_uri", lambda lab, node: f"qemu+ssh://{node}/system")
    return c


def test_cells_differing_in_client_options_share_a_lab() -> None:
    assert "host.pools.*.nfs" in get("nfs").reconfigurable
    same, other = (load_text(t, "x.yaml").data for t in (TOPOLOGY, CHANGED))
    assert build_key(same) == build_key(other)
    moved = load_text(TOPOLOGY.replace("export: /srv/nfs/dir", "export: /srv/nfs/trunk"), "x.yaml").data
    assert build_key(moved) != build_key(same), "a pool on another export is another lab"


def test_changed_pools_are_remounted_and_checked(tmp_path: Path, conn: FakeConn) -> None:
    before, after = plan_of(TOPOLOGY), plan_of(CHANGED)
    lab: FakeLab = _lab(after, tmp_path, MOUNTSTATS_CHANGED)
    node = lab.the_node
    changes = client.reconfigure(lab, before)  # type: ignore[arg-type]
    assert changes == ["pool netfs42: NFS 4.2, nconnect 4 -> NFS 4.2, nconnect 8",
                       "pool dirv3: NFS 3, nconnect 2 -> NFS 4.0, nconnect 2"]
    # netfs: stopped (libvirt unmounts), undefined, defined from the new XML, started, autostarted
    assert conn.log == ["lookup netfs42", "destroy", "undefine", "create", "autostart 1", "close"]
    assert "<fs:option name='nconnect=8'/>" in conn.defined[0]
    # dir: the old unit stopped, disabled and removed; the new one written and enabled
    unit = "var-lib-libvirt-images-dirv3.mount"
    assert ["systemctl", "disable", "--now", unit] in node.commands
    assert ["rm", "-f", "--", f"/etc/systemd/system/{unit}"] in node.commands
    assert "Options=nosuid,nodev,noexec,vers=4.0,nconnect=2" in node.files[f"/etc/systemd/system/{unit}"]
    assert node.enabled == [[unit]]
    # the trunked pool did not change: nothing of it was touched
    assert not any("trunk41" in " ".join(c) for c in node.commands)


def test_nothing_changes_when_the_options_are_the_same(tmp_path: Path, conn: FakeConn) -> None:
    plan = plan_of(TOPOLOGY)
    lab: Any = _lab(plan, tmp_path)
    assert client.reconfigure(lab, plan) == [] and conn.log == [] and lab.the_node.commands == []


def test_a_mount_that_keeps_its_old_options_fails_the_cell(tmp_path: Path, conn: FakeConn) -> None:
    lab: Any = _lab(plan_of(CHANGED), tmp_path, MOUNTSTATS)  # the kernel still shows nconnect=4
    with pytest.raises(HarnessError, match="pool netfs42 on hv1: nconnect=4, not 8"):
        client.reconfigure(lab, plan_of(TOPOLOGY))
