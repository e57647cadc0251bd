"""Capacity arithmetic for classes: per-node needs from measured figures, and how many fit."""

from __future__ import annotations

from pathlib import Path

from harness.providers.lxc.config import BASE_MIB as LXC_BASE_MIB
from harness.providers.lxc.config import ROLE_MIB as LXC_ROLE_MIB
from harness.training import capacity
from harness.training.capacity import NodeNeed, fit, node_need


def gluster_student() -> list[NodeNeed]:
    return [node_need(f"gluster{i}", ["gluster"], 1024, 2048, "lxc") for i in (1, 2, 3)]


def test_lxc_node_needs_its_measured_roles_not_its_limit() -> None:
    n = node_need("g1", ["gluster"], 1024, 2048, "lxc")
    assert n.memory_mib == LXC_BASE_MIB + LXC_ROLE_MIB["gluster"]
    assert n.limit_mib == 1024 and n.disk_mib > 2048


def test_vm_needs_its_size_and_the_emulator() -> None:
    tcg, kvm = node_need("v", [], 1024, 0, "vagrant", "tcg"), node_need("v", [], 1024, 0, "vagrant", "kvm")
    assert tcg.memory_mib > kvm.memory_mib > 1024


def test_a_class_that_fits() -> None:
    f = fit(3, gluster_student(), free_mib=20000, free_disk_mib=70000, cpus=2)
    assert f.ok and f.fits >= 3 and "fit on this host" not in f.explain()


def test_an_oversized_class_is_refused_with_the_numbers_and_how_many_fit() -> None:
    f = fit(30, gluster_student(), free_mib=20000, free_disk_mib=70000, cpus=2)
    assert not f.ok
    assert f.fits == 70000 // f.per_student_disk_mib  # disk binds first: 3 x 2 GiB bricks per student
    text = f.explain()
    assert "30 students" in text and f"{f.fits} students fit" in text and "MiB" in text


def test_memory_binds_when_disks_are_small() -> None:
    nodes = [node_need("c", ["ceph-mon", "ceph-mgr"], 1536, 0, "lxc")]
    f = fit(100, nodes, free_mib=1024 + 10 * nodes[0].memory_mib, free_disk_mib=10**7)
    assert f.fits == 10 and not f.ok


def test_the_host_reserve_is_kept() -> None:
    assert fit(1, gluster_student(), free_mib=1000, free_disk_mib=10**6).fits == 0


def test_inotify_room_refuses_containers_beyond_the_hosts_instances(tmp_path: Path) -> None:
    """A class of 10 gluster-3 seats on LXC came up 4 of 10 at the host's 128 instances: refused
    before anything is made, with the number and the fix; the same class fits at 8192."""
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    why = capacity.inotify_room(30, str(limit), in_use=12)
    assert why is not None and "360 inotify instances" in why and "12 of this host's 128" in why
    assert "sysctl -w fs.inotify.max_user_instances=8192" in why
    assert capacity.inotify_room(9, str(limit), in_use=12) is None  # 12 + 108 <= 128
    limit.write_text("8192\n")
    assert capacity.inotify_room(30, str(limit), in_use=12) is None
    assert capacity.inotify_room(30, str(tmp_path / "missing")) is None  # no such knob: nothing to check
