"""What the node roles do on trixie's account: network-online waits for the lab's addresses, libvirt's host UUID
is the node's own, and a cluster filesystem is made once in a lab's life."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeLab

from harness.backends.clusterfs import plan as clusterfs_plan
from harness.backends.clusterfs import role
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.nodes.roles import base, hypervisor
from harness.plan.planner import load_plan
from harness.run import CommandResult

ROOT = Path(__file__).resolve().parents[2]


def test_online_unit_waits_for_each_lab_address_and_gives_up() -> None:
    unit = base.online_unit(["192.168.172.12", "192.168.161.12"])
    assert "Before=network-online.target" in unit and "WantedBy=network-online.target" in unit
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert start.startswith(f"ExecStart=/usr/bin/timeout {base.ONLINE_WAIT_S} /bin/sh -c '")
    assert '" 192.168.172.12/"' in start and '" 192.168.161.12/"' in start and "$" not in start


def test_online_unit_takes_only_addresses() -> None:
    with pytest.raises(ValueError):
        base.online_unit(["192.168.1.2/'; reboot; '"])


def test_online_unit_check_is_what_sh_runs() -> None:
    """The check, as the unit's shell runs it, against `ip -o addr show` output: done for the
    address that is there, not for a prefix of another (192.168.1.2 is not 192.168.1.20)."""
    start = next(line for line in base.online_unit(["192.168.1.2"]).splitlines() if line.startswith("ExecStart="))
    check = start.split("'until ", 1)[1].split("; do", 1)[0].replace("ip -o addr show", "printf '%s\\n' \"$ADDRS\"")
    def ok(addrs: str) -> bool:
        return subprocess.run(["sh", "-c", check], env={"ADDRS": addrs, "PATH": "/usr/bin:/bin"}, check=False).returncode == 0
    assert ok("3: eth1    inet 192.168.1.2/24 brd 192.168.1.255 scope global eth1")
    assert not ok("3: eth1    inet 192.168.1.20/24 brd 192.168.1.255 scope global eth1")


def test_hypervisor_takes_the_host_uuid_from_machine_id_once(tmp_path: Path) -> None:
    conf = tmp_path / "libvirtd.conf"
    conf.write_text('#host_uuid_source = "smbios"\n')
    script = hypervisor.HOST_UUID.replace("/etc/libvirt/libvirtd.conf", str(conf))
    for _ in range(2):
        subprocess.run(["sh", "-c", script], check=True)
    assert conf.read_text().splitlines() == ['#host_uuid_source = "smbios"', 'host_uuid_source = "machine-id"']


class Node:
    """A node whose blkid answers from a script of (rc, stdout); what else it runs is recorded."""

    def __init__(self, blkid: list[tuple[int, str]]) -> None:
        self.name, self.blkid = "hv1", blkid
        self.ran: list[str] = []

    def run(self, cmd: list[str], timeout: float = 0) -> CommandResult:
        rc, out = self.blkid.pop(0) if len(self.blkid) > 1 else self.blkid[0]
        return CommandResult(tuple(cmd), rc, out, "", 0.1)

    def succeed(self, cmd: list[str], timeout: float = 0) -> str:
        self.ran.append(cmd[0])
        return ""


@pytest.fixture
def shared() -> tuple[Any, Any, Any]:
    plan = load_plan(str(ROOT / "topologies" / "shared-lun.yaml"), PROFILES["kvm"], "vagrant")
    cfs = clusterfs_plan.of(plan)
    assert cfs is not None
    return FakeLab(plan, []), cfs, cfs.filesystems[0]


def test_the_cluster_filesystem_is_made_once_and_never_again(shared: tuple[Any, Any, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    lab, cfs, f = shared
    monkeypatch.setattr(role, "wait_until", lambda pred, **kw: pred() or pytest.fail(f"gave up: {kw['what']}"))
    empty: Any = Node([(2, "")])
    role.make_fs(lab, empty, cfs, f, "/dev/mapper/mpatha")
    assert empty.ran == ["mkfs.ocfs2"] and lab.owns(f"clusterfs {f.name} formatted")
    # after a crash the map reads as empty for a moment, then as the OCFS2 it is: waited for, not made
    settling: Any = Node([(2, ""), (0, "ocfs2\n")])
    monkeypatch.setattr(role, "wait_until", lambda pred, **kw: pred() or pred() or pytest.fail("gave up"))
    role.make_fs(lab, settling, cfs, f, "/dev/mapper/mpatha")
    assert settling.ran == []


def test_a_device_that_cannot_be_probed_or_holds_something_else_is_not_formatted(
        shared: tuple[Any, Any, Any]) -> None:
    lab, cfs, f = shared
    for answer, match in (((4, ""), "could not probe"), ((0, "xfs\n"), "holds a xfs filesystem")):
        node: Any = Node([answer])
        with pytest.raises(HarnessError, match=match):
            role.make_fs(lab, node, cfs, f, "/dev/mapper/mpatha")
        assert node.ran == []
