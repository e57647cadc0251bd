"""The VM path end to end on one vagrant-libvirt node: up gives an ssh-reachable systemd node
with its static lab address and its data disk, the fault verbs reach the real domain, and
down leaves no domain, network or volume carrying the lab's name.

Slow under TCG (about two minutes on a host without usable KVM). Select with `-m vm`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.lab.lab import Lab
from harness.run import wait_until

pytestmark = [pytest.mark.lab, pytest.mark.vm]

TOPO = str(Path(__file__).resolve().parents[2] / "topologies" / "vm-smoke.yaml")
LAB = "vmsmoke"


def libvirt_traces(lab: str) -> list[str]:
    """Everything libvirt knows that carries the lab's name, looked up with virsh, not the provider."""
    out = []
    for what, argv in (("domain", ["virsh", "list", "--all", "--name"]), ("network", ["virsh", "net-list", "--all", "--name"])):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        out += [f"{what} {n}" for n in r.stdout.split() if paths.named_for(lab, n)]
    pools = subprocess.run(["virsh", "pool-list", "--all", "--name"], capture_output=True, text=True, timeout=30, check=False)
    for pool in pools.stdout.split():
        vols = subprocess.run(["virsh", "vol-list", pool], capture_output=True, text=True, timeout=60, check=False)
        out += [f"volume {pool}/{line.split()[0]}" for line in vols.stdout.splitlines()[2:]
                if paths.named_for(lab, line.strip())]
    return out


def port_open(addr: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((addr, 22), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def vmlab(request: pytest.FixtureRequest) -> Any:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed (ci/setup-host.sh --vm installs vagrant and vagrant-libvirt)")
    if os.geteuid() != 0:
        pytest.skip("VM lab tests need root (libvirt system instance, networks, pool)")
    if (paths.lab_dir(LAB) / "plan.json").exists():
        Lab.load(LAB).down()  # a leftover from an interrupted run: start clean
    lab = Lab.from_topology(TOPO, "vagrant", release=request.config.getoption("--lab-release"))
    timings: dict[str, float] = {}
    t = time.monotonic()
    try:
        lab.up(owner_pid=os.getpid())
        timings["up"] = time.monotonic() - t
        yield lab, timings
    finally:
        t = time.monotonic()
        rep = lab.down()
        timings["down"] = time.monotonic() - t
        print(f"\nvm-smoke timings: {', '.join(f'{k} {v:.1f}s' for k, v in timings.items())}")
        assert rep.ok, f"down failed: {rep.failed}"
        assert lab.leftovers() == []
        assert libvirt_traces(LAB) == []


def test_node_runs_systemd_with_static_address_and_data_disk(vmlab: tuple[Lab, dict[str, float]]) -> None:
    lab, _ = vmlab
    node = lab.node("node1")
    assert node.succeed(["systemctl", "is-system-running"]).strip() == "running", \
        node.run(["systemctl", "--failed", "--no-pager"]).stdout
    assert node.succeed(["hostname"]).strip() == "node1"
    addrs = {a["local"] for i in json.loads(node.succeed(["ip", "-j", "-4", "addr", "show"]))
             for a in i.get("addr_info", [])}
    assert node.address in addrs
    assert lab.plan.nodes[0].addresses["storage"] == node.address
    disks = {d["name"]: d for d in json.loads(node.succeed(["lsblk", "-J", "-b", "-o", "NAME,SIZE,MOUNTPOINT"]))["blockdevices"]}
    assert disks["vda"]["mountpoint"] == "/"
    # the data disk is mounted through a linear device-mapper device of its own (a fault may swap its table)
    assert int(disks["vdb"]["size"]) == 2**30 and not disks["vdb"]["mountpoint"]
    assert [(c["name"], c["mountpoint"]) for c in disks["vdb"].get("children", [])] == [("storlab-data", "/data")]
    assert node.succeed(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "/data"]).split() == ["/dev/mapper/storlab-data", "xfs"]
    assert node.succeed(["dmsetup", "table", "storlab-data"]).split()[2:4] == ["linear", "254:16"]  # /dev/vdb
    # the lab's own key is the only one: the box build key no longer opens the node
    keys = node.succeed(["cat", "/root/.ssh/authorized_keys"]).strip().splitlines()
    assert keys == [(lab.key.with_suffix(".pub")).read_text().strip()]
    # a VM has its own kernel: what the lxc provider cannot offer is there
    node.succeed(["modprobe", "nfsd"])
    node.succeed(["modprobe", "iscsi_tcp"])


def test_link_down_cuts_only_that_nic(vmlab: tuple[Lab, dict[str, float]]) -> None:
    lab, _ = vmlab
    node = lab.node("node1")
    with node.link_down("storage"):
        wait_until(lambda: not port_open(node.address), timeout=15, what="the lab address to go quiet")
    wait_until(lambda: port_open(node.address), timeout=30, what="the lab address to answer again")
    node.succeed(["true"])


def test_freeze_and_thaw(vmlab: tuple[Lab, dict[str, float]]) -> None:
    lab, _ = vmlab
    node = lab.node("node1")
    with node.frozen():
        assert node.is_up()  # paused counts as running, like a frozen container
        assert not port_open(node.address)
    wait_until(lambda: node.run(["true"], timeout=15).ok, timeout=60, what="ssh after thaw")


def test_crash_is_a_hard_power_off_and_the_node_comes_back(vmlab: tuple[Lab, dict[str, float]]) -> None:
    lab, timings = vmlab
    node = lab.node("node1")
    boot_id = node.succeed(["cat", "/proc/sys/kernel/random/boot_id"]).strip()
    t = time.monotonic()
    with node.crashed():
        assert not node.is_up()
    timings["crash+restart"] = time.monotonic() - t
    assert node.succeed(["cat", "/proc/sys/kernel/random/boot_id"]).strip() != boot_id
    # what the provisioner set up survives a reboot without vagrant
    assert node.succeed(["findmnt", "-n", "-o", "SOURCE", "/data"]).strip() == "/dev/mapper/storlab-data"
    assert node.succeed(["hostname"]).strip() == "node1"
