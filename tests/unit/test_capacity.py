"""Capacity arithmetic for classes: per-node needs from measured figures, and how many fit."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.plan.model import DiskPlan
from harness.plan.placement import BUDGET_MARGIN_MIB, FS_FOOTPRINT_MIB, check_disk_budget, disk_budget_mib, disk_floor_mib, place
from harness.plan.planner import load_plan
from harness.providers import hostdisks
from harness.providers.lxc.config import BASE_MIB as LXC_BASE_MIB
from harness.providers.lxc.config import ROLE_MIB as LXC_ROLE_MIB
from harness.training import capacity, classroom
from harness.training.capacity import NodeNeed, fit, node_need

ROOT = Path(__file__).resolve().parents[2]


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


# -- a disk budget (thin provisioning) ------------------------------------------------------------
def test_a_disk_budget_is_counted_instead_of_the_disks_full_size() -> None:
    """30 gluster-3 seats on this host's 46 GB free: refused at full size (6 GiB of bricks each),
    they fit with a 1 GiB budget each (a seat wrote ~250 MiB in a class); the nodes' own files count still."""
    full = fit(30, gluster_student(), free_mib=24000, free_disk_mib=46000, cpus=2)
    thin = fit(30, gluster_student(), free_mib=24000, free_disk_mib=46000, cpus=2, disk_budget_mib=1024)
    assert not full.ok and full.fits == 46000 // full.per_student_disk_mib
    assert thin.per_student_disk_mib == 1024 + sum(n.files_mib for n in gluster_student())
    assert thin.fits == min(46000 // thin.per_student_disk_mib,
                            (24000 - capacity.HOST_RESERVE_MIB) // thin.per_student_mib) > full.fits


def test_disk_budget_sizes_and_refusals() -> None:
    assert [disk_budget_mib(t) for t in ("2G", "2GiB", "512M", "512MiB", " 3G ")] == [2048, 2048, 512, 512, 3072]
    for bad in ("2", "2T", "0G", "-1G", "2 G B", ""):
        with pytest.raises(HarnessError, match=r"--disk-budget .*expected a size"):
            disk_budget_mib(bad)
    nodes = [_Node([_Disk(2 * 2**30), _Disk(2 * 2**30)]), _Node([])]
    floor = disk_floor_mib(nodes)
    assert floor == 2 * FS_FOOTPRINT_MIB + BUDGET_MARGIN_MIB
    assert check_disk_budget("lxc", "g", nodes, "1G") == 1024
    assert check_disk_budget("lxc", "g", nodes, "64G") == 4096  # no more than the disks' full size
    with pytest.raises(HarnessError, match=rf"needs at least {floor} MiB .* give --disk-budget 1G or more"):
        check_disk_budget("lxc", "g", nodes, "200M")
    with pytest.raises(HarnessError, match=r"only lxc labs take a disk budget.*provider is vagrant"):
        check_disk_budget("vagrant", "g", nodes, "1G")
    with pytest.raises(HarnessError, match="no data disks"):
        check_disk_budget("lxc", "g", [_Node([])], "1G")


class _Disk:
    def __init__(self, size: int) -> None:
        self.size, self.filesystem = size, "xfs"


class _Node:
    def __init__(self, disks: list[_Disk]) -> None:
        self.disks = disks


def test_hold_in_budget_makes_a_filesystem_of_the_budget_and_mounts_it_on_the_disk_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def succeed(argv: list[str], timeout: float = 0) -> str:
        calls.append(list(argv))
        return ""
    monkeypatch.setattr(hostdisks, "succeed", succeed)
    mounted: set[str] = set()
    monkeypatch.setattr(os.path, "ismount", lambda p: str(p) in mounted)
    lab, disks = tmp_path / "lab", tmp_path / "lab" / "disks"
    lab.mkdir()
    hostdisks.hold_in_budget(lab, disks, 300)
    img = lab / "disks.budget"
    assert img.stat().st_size == 300 * 2**20 and img.stat().st_blocks == 0  # sparse: nothing taken yet
    assert calls == [["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-J", "size=4", "-L", "storlab-budget",
                      str(img) + ".part"],
                     ["mount", "-o", "loop,nosuid,nodev,noexec", str(img), str(disks)]]
    assert oct(disks.stat().st_mode & 0o777) == "0o700"
    mounted.add(str(disks))
    hostdisks.hold_in_budget(lab, disks, 300)  # made once, mounted once
    assert len(calls) == 2
    other = tmp_path / "old"
    (other / "disks").mkdir(parents=True)
    (other / "disks" / "n1-d.img").write_bytes(b"")
    with pytest.raises(HarnessError, match="holds disks made without a budget"):
        hostdisks.hold_in_budget(other, other / "disks", 300)


def test_a_disk_image_whose_making_was_interrupted_is_made_again_not_mounted_unformatted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `up` killed while mkfs ran (CI saw it: the next `up` failed with `mount: wrong fs type`)."""
    calls: list[list[str]] = []

    def killed(argv: list[str], timeout: float = 0) -> str:
        raise KeyboardInterrupt  # what the process sees of the kill, as far as files go: it stops here

    def succeed(argv: list[str], timeout: float = 0) -> str:
        calls.append(list(argv))
        return ""
    disk = DiskPlan(name="data", size=2**30, filesystem="xfs", mount="/data", device=None, image="")
    node = SimpleNamespace(name="n1")  # only its name is read
    img = hostdisks.image(tmp_path, node, disk)  # type: ignore[arg-type]
    monkeypatch.setattr(hostdisks, "succeed", killed)
    with pytest.raises(KeyboardInterrupt):
        hostdisks.prepare(tmp_path, node, disk)  # type: ignore[arg-type]
    assert not img.exists()
    monkeypatch.setattr(hostdisks, "succeed", succeed)
    monkeypatch.setattr(os.path, "ismount", lambda p: False)
    hostdisks.prepare(tmp_path, node, disk)  # type: ignore[arg-type]
    assert calls[0] == ["mkfs.xfs", "-q", "-f", f"{img}.part"] and calls[1][0] == "mount"
    assert img.exists() and not img.with_name(img.name + ".part").exists()


def test_place_records_the_disk_budget_and_an_existing_lab_keeps_its_own(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    facts = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "vagrant"}))
    plan = load_plan(str(ROOT / "topologies" / "gluster-3.yaml"), facts, "lxc")
    placed = place(plan, None, None, disk_budget="1G")
    assert placed.disk_budget_mib == 1024 and '"disk_budget_mib": 1024' in placed.to_json()
    assert "disk_budget_mib" not in place(plan, None, None).to_json()  # plans without one read as before
    with pytest.raises(HarnessError, match="only lxc labs"):
        place(load_plan(str(ROOT / "topologies" / "gluster-3.yaml"), facts, "vagrant"), None, None, disk_budget="1G")
    d = paths.lab_dir(plan.lab)
    d.mkdir(parents=True)
    (d / "plan.json").write_text(placed.to_json())
    with pytest.raises(HarnessError, match="exists with disk_budget_mib 1024"):
        place(plan, None, None, disk_budget="2G")
    assert place(plan, None, None).disk_budget_mib == 1024  # a resumed `up` keeps it


def test_check_capacity_counts_a_seats_budget_and_its_baseline_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 gluster-3 seats on 46 GB free: refused at full size, fit with --disk-budget 1G, each seat
    counted as its budget, its baseline snapshot's copy of the disks and its nodes' files."""
    monkeypatch.setattr(capacity, "host_free", lambda path: (24000, 46000))
    monkeypatch.setattr(capacity, "inotify_room", lambda containers: None)
    topo = str(ROOT / "topologies" / "gluster-3.yaml")
    with pytest.raises(HarnessError, match="class of 30 does not fit on this host"):
        classroom.check_capacity(topo, "lxc", 30)
    f = classroom.check_capacity(topo, "lxc", 30, disk_budget="1G")
    files = f.per_student_disk_mib - 1024 - (3 * FS_FOOTPRINT_MIB + BUDGET_MARGIN_MIB)
    assert f.ok and 0 < files < 1024, f.explain()
    with pytest.raises(HarnessError, match="needs at least 326 MiB"):
        classroom.check_capacity(topo, "lxc", 3, disk_budget="300M")
