"""A disk budget (`--disk-budget`, thin provisioning for classes): an LXC lab's sparse data disks
live in a filesystem of the budget's size, so a lab that writes more than its budget gets errors
on its own disks while the host's disk keeps its free space, and `down` leaves nothing of it.

    pytest tests/lab/test_disk_budget.py        # LXC, about 1 min
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.lab.lab import Lab
from harness.providers import hostdisks

from .test_lifecycle import host_traces

TOPO = str(Path(__file__).resolve().parents[2] / "topologies" / "gluster-3.yaml")
STORLAB = [sys.executable, "-m", "harness.cli"]
NAME = "dbud"
BUDGET_MIB = 400  # gluster-3's floor is 3 x 66 + 128 = 326 MiB


def storlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STORLAB, *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def budgeted() -> Iterator[Lab]:
    if (paths.lab_dir(NAME) / "plan.json").exists():
        storlab("down", NAME)
    r = storlab("up", TOPO, "--provider", "lxc", "--name", NAME, "--disk-budget", f"{BUDGET_MIB}M")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    try:
        yield Lab.load(NAME)
    finally:
        storlab("down", NAME)


def test_a_budget_below_the_labs_floor_is_refused_before_anything_is_made() -> None:
    r = storlab("up", TOPO, "--provider", "lxc", "--name", "dbsmall", "--disk-budget", "200M")
    assert r.returncode != 0 and "needs at least 326 MiB" in r.stdout + r.stderr
    assert host_traces("dbsmall") == []


def test_the_labs_disks_live_in_a_filesystem_of_its_budget(budgeted: Lab) -> None:
    disks = budgeted.dir / "disks"
    with open("/proc/self/mounts") as fh:
        mounts = {line.split()[1]: line.split() for line in fh}
    assert mounts[str(disks)][2] == "ext4" and "nosuid" in mounts[str(disks)][3]
    used, size = hostdisks.budget_use(budgeted.dir) or (0, 0)
    assert 0 < used < size <= BUDGET_MIB and abs(size - BUDGET_MIB) < 32
    assert f"disk budget: {used}" in storlab("status", NAME).stdout


def test_writing_past_the_budget_fails_on_the_labs_own_disk_not_the_hosts(budgeted: Lab) -> None:
    free0 = shutil.disk_usage(paths.home()).free
    node = budgeted.node("gluster1")
    # 600 MiB, direct and synced, onto a brick filesystem whose image can grow only to the budget
    r = node.run(["dd", "if=/dev/urandom", "of=/gluster/bricks/1/fill", "bs=1M", "count=600", "oflag=direct",
                  "conv=fsync"], timeout=300)
    assert not r.ok and ("No space left" in r.stderr or "Input/output error" in r.stderr), r
    used, size = hostdisks.budget_use(budgeted.dir) or (0, 0)
    assert size - used < 16, f"budget not used up: {used} of {size} MiB"
    taken = (free0 - shutil.disk_usage(paths.home()).free) / 2**20
    assert taken < BUDGET_MIB, f"the host lost {taken:.0f} MiB to a lab with a {BUDGET_MIB} MiB budget"


def test_down_leaves_nothing_of_the_budget(budgeted: Lab) -> None:
    r = storlab("down", NAME)
    assert r.returncode == 0, r.stdout[-2000:]
    assert host_traces(NAME) == []
