"""Labs placed across an Incus cluster: a two-member cluster on this one machine (each member
in its own network and mount namespace, ci/incus-cluster.sh, as Incus's own clustering tests
do), reached as the remote `storlab-cluster`. A class of three small labs lands on more than
one member with each lab's nodes together, each lab works, each lab's project carries its
limits (and Incus enforces them), each student reaches their own nodes from the handout (through
the class host's jump and Incus), and `class down` leaves nothing on any member."""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import paths
from harness.backends.gluster import planned
from harness.backends.gluster.role import parse_volume_status
from harness.lab.lab import Lab
from harness.providers import image

REPO = Path(__file__).resolve().parents[2]
GLUSTER3 = str(REPO / "topologies" / "gluster-3.yaml")
NODES3 = str(REPO / "topologies" / "nodes-3.yaml")
STORLAB = [sys.executable, "-m", "harness.cli"]
REMOTE = "storlab-cluster"
CLASS = "icl"

pytestmark = pytest.mark.lab


def sh(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def storlab(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return sh(*STORLAB, *args, timeout=timeout)


def cluster_json(*argv: str) -> Any:
    r = sh("incus", *argv, "-f", "json", timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def storlab_objects() -> list[str]:
    """Everything on the cluster that is storlab's, read with the incus client: projects marked as a
    lab's, every instance outside the default project, networks and custom volumes marked."""
    out = [f"project {p['name']}" for p in cluster_json("project", "list", f"{REMOTE}:")
           if (p.get("config") or {}).get("user.storlab.lab")]
    out += [f"instance {i['project']}/{i['name']}" for i in cluster_json("list", f"{REMOTE}:", "--all-projects")
            if i["project"] != "default"]
    out += [f"network {n['name']}" for n in cluster_json("network", "list", f"{REMOTE}:")
            if (n.get("config") or {}).get("user.storlab.lab")]
    out += [f"volume {v['project']}/{v['name']}" for v in cluster_json("storage", "volume", "list", f"{REMOTE}:storlab",
                                                                       "--all-projects") if v.get("type") == "custom"]
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    t0 = time.monotonic()
    r = sh("bash", str(REPO / "ci" / "incus-cluster.sh"), "up", "2")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    print(f"two-member cluster up in {time.monotonic() - t0:.1f}s")
    yield
    if (paths.home() / "classes" / CLASS / "class.json").exists():
        storlab("class", "down", CLASS)
    r = sh("bash", str(REPO / "ci" / "incus-cluster.sh"), "down")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_a_lab_over_its_budget_is_refused_before_anything_is_made(cluster: None) -> None:
    r = storlab("up", NODES3, "--on", f"incus:{REMOTE}", "--budget", "instances=2,memory=256MiB")
    assert r.returncode == 1
    assert "instances: the lab needs 3, its project allows 2" in r.stderr
    assert "its project allows 256 MiB" in r.stderr
    assert not (paths.lab_dir("nodes3") / "plan.json").exists()
    assert storlab_objects() == []


def test_a_class_spreads_over_members_each_lab_whole_and_working(cluster: None) -> None:
    t0 = time.monotonic()
    r = storlab("class", "up", GLUSTER3, "--count", "3", "--name", CLASS, "--on", f"incus:{REMOTE}",
                "--trusted-students")  # gluster bricks need a privileged container (README: trust model)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"class of 3 x gluster-3 on the cluster: {time.monotonic() - t0:.1f}s\n{r.stdout[-600:]}")

    # placement: Incus put the labs on more than one member, and all of one lab's nodes on one
    by_project: dict[str, set[str]] = {}
    for inst in cluster_json("list", f"{REMOTE}:", "--all-projects"):
        by_project.setdefault(inst["project"], set()).add(inst["location"])
    labs = {f"{CLASS}-s0{i}": Lab.load(f"{CLASS}-s0{i}") for i in (1, 2, 3)}
    assert set(by_project) == {f"storlab-{name}" for name in labs}, by_project
    for name, lab in labs.items():
        members = by_project[f"storlab-{name}"]
        assert len(members) == 1, f"lab {name} is split over members {members}"
        assert lab.where() == f"{REMOTE}:{next(iter(members))}"  # what status and the class list show
    assert len({m for ms in by_project.values() for m in ms}) > 1, f"every lab on one member: {by_project}"
    status = json.loads(storlab("class", "status", CLASS, "--json").stdout)
    assert {s["where"] for s in status["students"]} == {lab.where() for lab in labs.values()}

    for name, lab in labs.items():
        # the project's limits are the lab's need, and Incus itself refuses one instance more
        q = sh("incus", "query", f"{REMOTE}:/1.0/projects/storlab-{name}")
        proj = json.loads(q.stdout)
        assert proj["config"]["limits.instances"] == "3" and proj["config"]["user.storlab.lab"] == name
        extra = sh("incus", "init", f"{REMOTE}:storlab-golden-{_image_key(lab)}", f"{REMOTE}:extra", "--project",
                   f"storlab-{name}", "--no-profiles", "-s", "storlab", "-c", "limits.memory=64MiB", "-c", "limits.cpu=1")
        assert extra.returncode != 0 and "maximum number of instances" in extra.stderr, extra.stderr
        # the host cannot reach the member's lab networks: its libvirt pools are skipped, not half-made
        assert not lab.pools_here()
        # each lab works: every brick online, and a file written through a FUSE client is on all three
        volume = planned(lab.plan).volumes[0]
        vol = volume.name
        g1 = lab.node(volume.nodes[0])
        st = parse_volume_status(g1.succeed(["gluster", "volume", "status", vol, "--xml"], timeout=60))
        assert len(st) == 3 and all(b["online"] for b in st), st
        g1.succeed(["mkdir", "-p", "/mnt/check"])
        g1.succeed(["mount", "-t", "glusterfs", f"localhost:/{vol}", "/mnt/check"], timeout=60)
        try:
            g1.succeed(["dd", "if=/dev/urandom", "of=/mnt/check/placed.dat", "bs=64k", "count=4", "conv=fsync",
                        "status=none"], timeout=60)
            want = g1.succeed(["md5sum", "/mnt/check/placed.dat"]).split()[0]
        finally:
            g1.run(["umount", "/mnt/check"], timeout=60)
        for brick in volume.bricks:
            node, path = brick.split(":", 1)
            got = lab.node(node).succeed(["md5sum", f"{path}/placed.dat"]).split()[0]
            assert got == want, f"lab {name}: brick {brick} holds another placed.dat"

    # students reach their own nodes from their handout, through the class host's jump: its gate
    # runs the node's sshd with `incus exec`, on a certificate the remote restricts to the class
    for name, lab in labs.items():
        lab.node("gluster2").succeed(["sh", "-c", f"echo {name} > /root/whose-lab"])
    certs = [c for c in cluster_json("config", "trust", "list", f"{REMOTE}:") if c["name"] == f"storlab-class-{CLASS}"]
    assert len(certs) == 1 and certs[0]["restricted"], certs
    assert sorted(certs[0]["projects"]) == sorted(f"storlab-{name}" for name in labs), certs
    conf = paths.home() / "jump" / "incus" / f"slj-{CLASS}"  # the gate's client: the class account's only
    for f, mode in ((conf, 0o700), (conf / "client.key", 0o600)):
        fs = f.stat()
        assert (pwd.getpwuid(fs.st_uid).pw_name, fs.st_mode & 0o777) == (f"slj-{CLASS}", mode), f
    for name in labs:
        student = name.removeprefix(f"{CLASS}-")
        r = student_ssh(student, "gluster2", "cat /root/whose-lab; hostname")
        assert r.returncode == 0 and r.stdout.split() == [name, "gluster2"], f"{student}: {r.stdout} {r.stderr}"
        assert "Could not chdir" not in r.stderr, r.stderr  # the gate account's home exists
        r = student_ssh(student, "jump", "gluster9")  # a node that is not in the student's lab
        assert r.returncode != 0 and "NODE one of: gluster1 gluster2 gluster3" in r.stderr, r.stderr
        r = student_ssh(student, "jump", "id")
        assert "uid=" not in r.stdout and r.returncode != 0, f"{student} got a shell on the host: {r.stdout}"
        assert "Incus remote" in (paths.home() / "classes" / CLASS / "handouts" / student / "HANDOUT.md").read_text()

    t0 = time.monotonic()
    r = storlab("class", "down", CLASS)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    print(f"class down: {time.monotonic() - t0:.1f}s")
    assert storlab_objects() == []
    assert not any((paths.lab_dir(name)).exists() for name in labs)
    assert [c for c in cluster_json("config", "trust", "list", f"{REMOTE}:") if c["name"].startswith("storlab-class-")] == []
    assert not (paths.home() / "jump" / "incus" / f"slj-{CLASS}").exists()


def student_ssh(student: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """ssh exactly as the student would: from the unpacked handout, with its config and key."""
    hd = paths.home() / "classes" / CLASS / "handouts" / student
    return subprocess.run(["ssh", "-F", "ssh_config", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", *args],
                          cwd=hd, capture_output=True, text=True, timeout=timeout, check=False)


def _image_key(lab: Lab) -> str:
    """The golden image the lab's nodes were made from (its release's: --lab-release may change it)."""
    return image.key_for(lab.plan.nodes[0].release)
