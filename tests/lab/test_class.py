"""A training class of three students on LXC, run as an instructor runs it, through the CLI:
up (capacity checked), handouts (each key reaches its own nodes through the jump account and
nothing else), an exercise that breaks every lab, grading (fails for everyone; after the model
solution, passes for that student only), reset to the state after up, a lease that expires and
is reaped while the others stay, and `class down` leaving nothing. An oversized class is refused
before anything is made."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.gluster.role import volume_whole
from harness.lab.lab import Lab, list_labs
from harness.run import wait_until
from harness.training import jump
from harness.training.klass import Klass, classes_dir

from .test_many_labs import TOPOLOGIES, storlab

CLASS = "tcls"
STUDENTS = ["ann", "ben", "cat"]
EXERCISE = "gluster-brick-down"


def ok(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    r = storlab(*args, timeout=timeout)
    assert r.returncode == 0, f"storlab {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def student_ssh(student: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """ssh exactly as the student would: from the unpacked handout, with its config and key."""
    hd = classes_dir() / CLASS / "handouts" / student
    return subprocess.run(["ssh", "-F", "ssh_config", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", *args],
                          cwd=hd, capture_output=True, text=True, timeout=timeout, check=False)


def class_leftovers(name: str) -> list[str]:
    left = [f"lab {lab}" for lab in list_labs() if lab.startswith(f"{name}-")]
    left += [f"class dir {classes_dir() / name}"] if (classes_dir() / name).exists() else []
    left += [f"jump keys {name}"] if (jump.jump_dir() / "keys" / f"slj-{name}").exists() else []
    try:
        pwd.getpwnam(f"slj-{name}")
        left.append(f"user slj-{name}")
    except KeyError:
        pass
    return left


@pytest.fixture(scope="module")
def klass() -> Iterator[Klass]:
    if os.geteuid() != 0:
        pytest.fail("class tests need root")
    if jump.sshd_pid() is None:
        pytest.fail("the jump sshd is not running: bash ci/setup-host.sh --class")
    try:
        t0 = time.monotonic()
        r = ok("class", "up", str(TOPOLOGIES / "gluster-3.yaml"), "--students", ",".join(STUDENTS), "--name", CLASS,
               "--trusted-students",  # gluster in containers: privileged (trust model: README)
               "--expire", "2h")
        print(f"class of {len(STUDENTS)} up in {time.monotonic() - t0:.1f}s\n{r.stdout}")
        yield Klass.load(CLASS)
    finally:
        if CLASS in os.listdir(classes_dir()) if classes_dir().exists() else False:
            r = storlab("class", "down", CLASS)
            print(r.stdout[-1500:], r.stderr[-1500:])
        assert not class_leftovers(CLASS), f"class down left: {class_leftovers(CLASS)}"


def test_class_oversized_class_is_refused_before_anything_is_made() -> None:
    r = storlab("class", "up", str(TOPOLOGIES / "ceph-5.yaml"), "--count", "99", "--name", "huge", "--trusted-students")
    assert r.returncode != 0
    err = r.stderr + r.stdout
    assert re.search(r"99 students x \d+ MiB memory", err) and re.search(r"\d+ students fit on this host", err), err
    assert "Nothing was created" in err
    assert not class_leftovers("huge"), class_leftovers("huge")


def test_class_status_shows_every_student_with_lease(klass: Klass) -> None:
    st = json.loads(ok("class", "status", CLASS, "--json").stdout)
    assert [s["student"] for s in st["students"]] == STUDENTS
    for s in st["students"]:
        assert s["state"] == "up" and s["lab"] == f"{CLASS}-{s['student']}", s
        assert s["expires_in"].endswith("left") and s["expires_in"].startswith(("1h", "2h")), s
    listed = json.loads(ok("class", "list", "--json").stdout)
    assert any(c["class"] == CLASS and c["labs_up"] == 3 for c in listed), listed


def test_class_handouts_reach_own_nodes_only(klass: Klass) -> None:
    labs = klass.labs()
    for s in STUDENTS:
        archive = classes_dir() / CLASS / "handouts" / f"{s}.tar.gz"
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
        assert {f"{s}/ssh_config", f"{s}/id_ed25519", f"{s}/HANDOUT.md", f"{s}/known_hosts"} <= names, names
        assert oct(archive.stat().st_mode & 0o777) == "0o600", "the archive holds a private key"
        for node in labs[s].nodes.values():
            r = student_ssh(s, node.name, "hostname")
            assert r.returncode == 0 and r.stdout.strip() == node.name, f"{s} -> own {node.name}: {r.stderr}"
        other = next(x for x in STUDENTS if x != s)
        target = next(iter(labs[other].nodes.values()))
        r = student_ssh(s, "-o", f"HostName={target.address}", next(iter(labs[s].nodes)), "hostname")
        assert r.returncode != 0 and "administratively prohibited" in r.stderr, \
            f"{s} reached {other}'s {target.name}: rc={r.returncode} {r.stdout} {r.stderr}"
        r = student_ssh(s, "jump", "id")
        assert "uid=" not in r.stdout and r.returncode != 0, f"{s} got a shell on the host: {r.stdout}"
        r = student_ssh(s, "-W", "127.0.0.1:22", "jump")
        assert r.returncode != 0 and "administratively prohibited" in r.stderr, f"{s} opened a channel to the host: {r}"


def test_class_exercise_fails_everyone_then_the_model_solution_passes_one(klass: Klass) -> None:
    ok("class", "exercise", CLASS, EXERCISE)
    for s in STUDENTS:
        text = (classes_dir() / CLASS / "handouts" / s / "HANDOUT.md").read_text()
        assert "Current exercise" in text and "brick" in text.lower(), "the handout does not show the exercise"
    r = storlab("class", "grade", CLASS)
    assert r.returncode == 1, r.stdout
    grades = Klass.load(CLASS).grades
    assert all(not grades[s]["passed"] for s in STUDENTS), grades
    ok("class", "solve", CLASS, EXERCISE, "--student", "ann")
    storlab("class", "grade", CLASS)
    grades = Klass.load(CLASS).grades
    assert grades["ann"]["passed"] and not grades["ben"]["passed"] and not grades["cat"]["passed"], grades
    for s in STUDENTS:
        junit = Path(grades[s]["junit"]).read_text()
        assert "<testcase" in junit and f"{CLASS}-{s}" in junit
    summary = (classes_dir() / CLASS / "grades" / "summary.md").read_text()
    assert re.search(r"\| ann \| gluster-brick-down \|( passed \|)+ PASSED \|", summary), summary
    assert re.search(r"\| ben \| gluster-brick-down \|.* FAILED \|", summary), summary
    assert "<table>" in (classes_dir() / CLASS / "grades" / "summary.html").read_text()


def test_class_reset_returns_every_lab_to_its_state_after_up(klass: Klass) -> None:
    labs = klass.labs()
    marks: dict[str, Any] = {}
    for s, lab in labs.items():
        mnt = str(next(p.path for p in lab.plan.host.pools if p.fuse_mount))

        def writable(m: str = mnt) -> bool:
            return os.access(m, os.W_OK)
        wait_until(writable, timeout=60, what=f"{mnt} writable")
        marker = Path(f"{mnt}/written-after-up-{s}")
        marker.write_text("gone after reset\n")
        lab.node("gluster1").succeed(["touch", "/root/written-after-up"])
        marks[s] = marker
    t0 = time.monotonic()
    r = ok("class", "reset", CLASS)
    print(f"class reset in {time.monotonic() - t0:.1f}s:\n{r.stdout}")
    for s, lab in Klass.load(CLASS).labs().items():
        assert not marks[s].exists(), f"{s}: {marks[s]} survived the reset"
        assert lab.node("gluster1").run(["test", "-e", "/root/written-after-up"]).rc == 1, f"{s}: root fs not reset"
        assert volume_whole(lab.node("gluster1"), "kvmgluster"), f"{s}: volume not healthy after reset"
        assert lab.state().exercise is None, "the exercise state of the lab survived the reset"
    # the broken labs (ben, cat) are healthy again: the checks pass for everyone
    storlab("class", "grade", CLASS, "--exercise", EXERCISE)
    grades = Klass.load(CLASS).grades
    assert all(grades[s]["passed"] for s in STUDENTS), grades


def test_class_expired_lab_is_reaped_and_the_others_stay(klass: Klass) -> None:
    ok("lease", f"{CLASS}-cat", "1s")
    wait_until(lambda: Lab.load(f"{CLASS}-cat").state().expired(), timeout=10, what="cat's lease to end")
    r = ok("reap")
    assert f"lab {CLASS}-cat (expired)" in r.stdout, r.stdout
    assert f"{CLASS}-cat" not in list_labs()
    assert {f"{CLASS}-ann", f"{CLASS}-ben"} <= set(list_labs())
    st = {s["student"]: s for s in json.loads(ok("class", "status", CLASS, "--json").stdout)["students"]}
    assert st["cat"]["state"].startswith("gone") and st["ann"]["state"] == "up", st
    keys = (jump.jump_dir() / "keys" / f"slj-{CLASS}").read_text()
    cat_pub = (classes_dir() / CLASS / "handouts" / "cat" / "id_ed25519.pub").read_text().split()[1]
    assert cat_pub not in keys, "an expired student's key still opens channels"
    r = student_ssh("ann", "gluster1", "hostname")
    assert r.returncode == 0, r.stderr

