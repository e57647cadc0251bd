"""Failure evidence of lab tests (harness/lab/evidence.py and the plugin's makereport hook), with
small fakes for labs, nodes and reports: no root, no lab."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, cast

import pytest

from harness import log
from harness.lab import evidence
from harness.run import CommandResult
from harness.testing import plugin as pytest_plugin

SECRET = "Chap-Secret-4711xyz"
CEPHX = "AQBzT2VhAAAAABAAq8JQ3i0QZ1/WQ3Zs2zB1vQ=="
FILE_SECRET = "from-the-secrets-dir-99"


class FakeNode:
    """A node answering with recorded output: ``outputs`` maps a command's first word to its stdout."""

    def __init__(self, name: str, roles: tuple[str, ...] = (), up: bool = True, answers: bool = True,
                 outputs: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.name, self.roles, self.up, self.answers = name, roles, up, answers
        self.outputs = outputs or {}
        self.delay = delay
        self.calls: list[tuple[list[str], float]] = []

    def is_up(self) -> bool:
        return self.up

    def run(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        argv = [cmd] if isinstance(cmd, str) else list(cmd)
        self.calls.append((argv, timeout))
        if argv == ["true"]:
            return CommandResult(("true",), 0 if self.answers else 255, "", "" if self.answers else "timed out", 0.0)
        time.sleep(min(self.delay, timeout))
        inner = argv[4:] if argv[:3] == ["timeout", "-k", "2"] else argv
        return CommandResult(tuple(argv), 0, self.outputs.get(inner[0], f"output of {inner[0]}\n"), "", self.delay)

    def commands(self) -> list[list[str]]:
        """What ran on the node, without the `timeout` wrapper and the probe."""
        return [c[4:] if c[:3] == ["timeout", "-k", "2"] else c for c, _ in self.calls if c != ["true"]]


class FakeProvider:
    def console_log(self, node: str) -> str:
        return f"console of {node}: kernel panic {SECRET}"


class FakeLab:
    def __init__(self, root: Path, nodes: list[FakeNode], name: str = "ev-gl") -> None:
        self.name = name
        self.nodes = {n.name: n for n in nodes}
        self.provider = FakeProvider()
        self.dir = root / "labs" / name
        self.logs.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(parents=True, exist_ok=True)

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    return tmp_path


def all_text(d: Path) -> str:
    return "\n".join(f.read_text() for f in sorted(d.iterdir()))


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "want"), [
    ("test_heal[ping5-quorum auto]", "test_heal_ping5-quorum_auto"),
    ("test_x[../../etc/passwd]", "test_x_.._.._etc_passwd"),
    ("../..", "unnamed"),
    ("", "unnamed"),
    (".hidden", "hidden"),
    ("tést/ünïcode", "t_st_n_code"),
])
def test_sanitize(name: str, want: str) -> None:
    assert evidence.sanitize(name) == want


def test_sanitized_names_are_plain_file_names() -> None:
    for name in ["a b", "x/y\\z", "..", "-rf", "n\nl", "a" * 500, "[]{}$`'\"", "\x00\x01"]:
        s = evidence.sanitize(name)
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", s), (name, s)
        assert s not in (".", "..") and not s.startswith((".", "-"))


def test_directory_name_and_a_second_failure_in_the_same_second(tmp_path: Path) -> None:
    when = time.mktime((2024, 5, 17, 13, 4, 5, 0, 0, -1))
    a = evidence.new_dir("ev-gluster3", "test_x[cell/1]", when, root=tmp_path)
    b = evidence.new_dir("ev-gluster3", "test_x[cell/1]", when, root=tmp_path)
    assert a.name == "ev-gluster3-test_x_cell_1-20240517-130405"
    assert b.name == a.name + "-2"
    assert a.parent == b.parent == tmp_path and a.is_dir() and b.is_dir()


def test_default_root_is_outside_the_lab(home: Path) -> None:
    d = evidence.new_dir("ev-nodes3", "test_y")
    assert d.parent == home / "evidence"
    assert not d.is_relative_to(home / "labs")


# -- what is collected ----------------------------------------------------------------------------
def test_collect_writes_one_file_per_node_and_the_lab_logs(home: Path) -> None:
    nodes = [FakeNode("node1", ("gluster",), outputs={"journalctl": "May 17 node1 glusterd[1]: brick died\n"}),
             FakeNode("node2", ("gluster",))]
    lab = FakeLab(home, nodes)
    (lab.logs / "faults.log").write_text("13:04:01 crash node2\n13:04:03 start node2\n")
    (lab.logs / "storlab.log").write_text("".join(f"line {i}\n" for i in range(5000)))
    started = time.time() - 30
    d = evidence.collect(lab, "test_heal[a b]", started, "test_heal failed (call)\nassert 'degraded' == 'healthy'\n")
    assert d.parent == home / "evidence" and d.name.startswith("ev-gl-test_heal_a_b-")
    assert sorted(f.name for f in d.iterdir()) == ["node1.txt", "node2.txt", "reason.txt", "storlab.log", "timeline.txt"]
    n1 = (d / "node1.txt").read_text()
    assert "brick died" in n1 and "systemctl --failed" in n1
    assert "gluster volume status" in n1 and "heal-count" in n1  # the gluster backend's own evidence
    assert "console of" not in n1  # an up node's console is not evidence of a test failure
    assert n1.index("systemctl --failed") < n1.index("gluster volume status") < n1.index("$ journalctl")  # journal last
    journal = next(c for c in nodes[0].commands() if c[0] == "journalctl")
    assert journal[journal.index("--since") + 1] == f"@{int(started) - evidence.JOURNAL_MARGIN}"
    assert journal[journal.index("-n") + 1] == str(evidence.JOURNAL_LINES)
    # every command is bounded on the node too, and by the ssh call
    for argv, timeout in nodes[0].calls:
        assert argv == ["true"] or argv[:3] == ["timeout", "-k", "2"]
        assert timeout <= evidence.COMMAND_TIMEOUT + 4
    assert "crash node2" in (d / "timeline.txt").read_text()
    log_lines = (d / "storlab.log").read_text().splitlines()
    assert len(log_lines) == evidence.LOG_LINES and log_lines[-1] == "line 4999"
    assert "assert 'degraded' == 'healthy'" in (d / "reason.txt").read_text()


def test_no_faults_marked_is_said(home: Path) -> None:
    d = evidence.collect(FakeLab(home, [FakeNode("n1")]), "t", time.time(), "r")
    assert "no faults marked" in (d / "timeline.txt").read_text()
    assert not (d / "storlab.log").exists()


def test_secrets_never_reach_evidence(home: Path) -> None:
    log.mask(SECRET)
    node = FakeNode("t1", ("iscsi-target",), outputs={
        "journalctl": f"tgtd: login with password {SECRET}\nceph: key = {CEPHX}\nother {FILE_SECRET}\n",
        "sh": f"Account: {SECRET}\n"})
    lab = FakeLab(home, [node, FakeNode("down1", up=False)])
    (lab.secrets_dir / "chap-t1").write_text(FILE_SECRET + "\n")  # a secret this process never read
    (lab.logs / "faults.log").write_text(f"13:00:00 set password {SECRET}\n")
    (lab.logs / "storlab.log").write_text(f"x {CEPHX} y\n")
    d = evidence.collect(lab, "test_chap", time.time(), f"assert {SECRET!r} == ''")
    text = all_text(d)
    for secret in (SECRET, CEPHX, FILE_SECRET):
        assert secret not in text
    assert "****" in (d / "t1.txt").read_text() and "****" in (d / "down1.txt").read_text()
    assert "login with password ****" in text


def test_a_down_node_gets_its_console_and_no_commands(home: Path) -> None:
    down, mute = FakeNode("n1", up=False), FakeNode("n2", answers=False)
    d = evidence.collect(FakeLab(home, [down, mute]), "t", time.time(), "r")
    t1, t2 = (d / "n1.txt").read_text(), (d / "n2.txt").read_text()
    assert "IS DOWN" in t1 and "console of n1" in t1 and down.calls == []
    assert "DOES NOT ANSWER" in t2 and "console of n2" in t2
    assert [c for c, _ in mute.calls] == [["true"]]
    assert mute.calls[0][1] == evidence.PROBE_TIMEOUT


def test_a_failing_node_does_not_cost_the_others_their_evidence(home: Path) -> None:
    class Broken(FakeNode):
        def is_up(self) -> bool:
            raise OSError("lxc-info exploded")
    d = evidence.collect(FakeLab(home, [Broken("n1"), FakeNode("n2")]), "t", time.time(), "r")
    assert "lxc-info exploded" in (d / "n1.txt").read_text()
    assert "output of journalctl" in (d / "n2.txt").read_text()


def test_time_is_bounded_per_node_and_nodes_are_read_side_by_side(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence, "NODE_BUDGET", 1.7)
    slow = [FakeNode(f"n{i}", ("gluster",), delay=0.5) for i in range(3)]
    t0 = time.monotonic()
    d = evidence.collect(FakeLab(home, slow), "t", time.time(), "r")
    took = time.monotonic() - t0
    assert took < 2.5, f"3 slow nodes took {took:.1f}s: not read side by side, or not bounded"
    text = (d / "n0.txt").read_text()
    assert "evidence budget is spent" in text  # the backend's commands (run last) did not fit
    ran = [c[0] for c in slow[0].commands()]
    assert ran == ["systemctl", "journalctl"], ran  # the journal is read before what may hang on other nodes


def test_up_evidence_keeps_the_console_of_up_nodes(tmp_path: Path) -> None:
    lab = FakeLab(tmp_path, [FakeNode("n1")])
    d = evidence.write(lab, tmp_path / "ev", "up failed", console=True)
    text = (d / "n1.txt").read_text()
    assert "console of n1" in text and "journalctl -b" in text


def test_backend_evidence_commands() -> None:
    from harness.backends.base import get
    gl = " ".join(" ".join(c) for c in get("gluster").evidence(("gluster",)))
    assert "volume status" in gl and "statistics heal-count" in gl and "heal all info" not in gl
    ceph = " ".join(" ".join(c) for c in get("ceph").evidence(("ceph-mon",)))
    assert "ceph -s" in ceph and "ceph health detail" in ceph
    nfs = " ".join(" ".join(c) for c in get("nfs").evidence(("nfs-server",)))
    assert "exportfs -v" in nfs and "ganesha.log" in nfs
    iscsi = " ".join(" ".join(c) for c in get("iscsi").evidence(("iscsi-target", "iscsi-initiator")))
    assert "targetcli ls" in iscsi and "tgtadm" in iscsi and "-m node" not in iscsi
    assert get("nfs").evidence(("client",)) == [] and get("iscsi").evidence(("client",)) == []


# -- the plugin's hook ------------------------------------------------------------------------------
def report(when: Literal["setup", "call", "teardown"] = "call",
           outcome: Literal["passed", "failed", "skipped"] = "failed", longrepr: Any = "AssertionError: boom",
           wasxfail: str | None = None) -> pytest.TestReport:
    rep = pytest.TestReport("t.py::test_x", ("t.py", 1, "test_x"), {}, outcome, longrepr, when)
    if wasxfail is not None:
        rep.wasxfail = wasxfail
    return rep


def test_which_reports_want_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORLAB_EVIDENCE", raising=False)
    assert pytest_plugin.wants_evidence(report("call"))
    assert pytest_plugin.wants_evidence(report("setup"))
    assert not pytest_plugin.wants_evidence(report("teardown"))
    assert not pytest_plugin.wants_evidence(report("call", "passed", None))
    assert not pytest_plugin.wants_evidence(report("call", "skipped", None, wasxfail="known bug"))  # xfailed
    assert not pytest_plugin.wants_evidence(report("call", "failed", "[XPASS(strict)] known bug"))
    monkeypatch.setenv("STORLAB_EVIDENCE", "off")
    assert not pytest_plugin.wants_evidence(report("call"))


class Hooked:
    """Drives the plugin's makereport wrapper with a fake item; records what would be collected."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lab: Any = "a lab") -> None:
        self.collected: list[tuple[Any, str, float | None, str]] = []
        self.lines: list[str] = []

        def collect(lab: Any, test: str, since: float | None, reason: str) -> Path:
            self.collected.append((lab, test, since, reason))
            return tmp_path / f"evidence-{len(self.collected)}"

        monkeypatch.setattr(evidence, "collect", collect)
        monkeypatch.delenv("STORLAB_EVIDENCE", raising=False)
        tr = SimpleNamespace(write_line=self.lines.append)
        config = SimpleNamespace(stash=pytest.Stash(), pluginmanager=SimpleNamespace(get_plugin=lambda name: tr))
        self.item = SimpleNamespace(nodeid="t.py::test_x[c1]", name="test_x[c1]", config=config, stash=pytest.Stash(),
                                    user_properties=[], funcargs={"lab": lab} if lab is not None else {})
        pytest_plugin.pytest_runtest_setup(cast(pytest.Item, self.item))

    def __call__(self, rep: pytest.TestReport, exc: BaseException | None = None) -> pytest.TestReport:
        call = SimpleNamespace(excinfo=SimpleNamespace(value=exc) if exc else None)
        gen = pytest_plugin.pytest_runtest_makereport(cast(pytest.Item, self.item), cast(Any, call))
        next(gen)
        try:
            gen.send(rep)
        except StopIteration as stop:
            return cast(pytest.TestReport, stop.value)
        raise AssertionError("the hook wrapper did not return")


def test_hook_collects_for_a_failed_lab_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hooked = Hooked(monkeypatch, tmp_path)
    rep = hooked(report("call"), AssertionError("boom"))
    assert len(hooked.collected) == 1
    lab, test, since, reason = hooked.collected[0]
    assert lab == "a lab" and test == "test_x[c1]" and since is not None and abs(since - time.time()) < 60
    assert "t.py::test_x[c1] failed (call)" in reason and "boom" in reason
    path = str(tmp_path / "evidence-1")
    assert ("storlab_evidence", path) in hooked.item.user_properties
    assert ("storlab_evidence", path) in rep.user_properties
    assert rep.sections[-1][0] == "storlab evidence" and path in rep.sections[-1][1]
    assert hooked.lines == [rep.sections[-1][1]] and hooked.lines[0].startswith(f"evidence for t.py::test_x[c1]: {path}")


def test_the_journal_starts_once_the_lab_is_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    the_lab = object()
    hooked = Hooked(monkeypatch, tmp_path, lab=the_lab)
    started = hooked.item.stash[pytest_plugin._STARTED]
    assert pytest_plugin.journal_since(cast(pytest.Item, hooked.item), the_lab) == started  # a lab up before the test
    time.sleep(0.01)
    # the lab's fixture runs during this test's setup (the module's first test brings the lab up)
    gen = pytest_plugin.pytest_fixture_setup(cast(Any, SimpleNamespace(argname="lab")),
                                             cast(Any, SimpleNamespace(config=hooked.item.config)))
    next(gen)
    with pytest.raises(StopIteration):
        gen.send(the_lab)
    since = pytest_plugin.journal_since(cast(pytest.Item, hooked.item), the_lab)
    assert since is not None and since > started
    hooked(report("call"), AssertionError("x"))
    assert hooked.collected[0][2] == since
    assert pytest_plugin.journal_since(cast(pytest.Item, hooked.item), object()) == started  # another lab


def test_hook_leaves_xfail_passes_and_lab_less_tests_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hooked = Hooked(monkeypatch, tmp_path)
    for rep in (report("call", "skipped", None, wasxfail="known"), report("call", "passed", None),
                report("teardown"), report("call", "failed", "[XPASS(strict)] known")):
        out = hooked(rep, AssertionError("x"))
        assert out is rep and not out.sections
    assert hooked.collected == [] and hooked.item.user_properties == [] and hooked.lines == []
    no_lab = Hooked(monkeypatch, tmp_path, lab=None)
    no_lab(report("call"), AssertionError("x"))
    assert no_lab.collected == []


def test_hook_collects_once_for_a_fixture_failure_repeated_by_every_setup(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    hooked = Hooked(monkeypatch, tmp_path)
    exc = RuntimeError("module fixture broke")
    first, second = hooked(report("setup"), exc), hooked(report("setup"), exc)
    assert len(hooked.collected) == 1
    assert "same failure" in second.sections[-1][1] and str(tmp_path / "evidence-1") in second.sections[-1][1]
    assert first.user_properties == second.user_properties


def test_hook_survives_a_collection_that_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hooked = Hooked(monkeypatch, tmp_path)

    def broken(*args: Any) -> Path:
        raise OSError("disk full")
    monkeypatch.setattr(evidence, "collect", broken)
    rep = hooked(report("call"), AssertionError("x"))
    assert rep.failed and "could not be collected: OSError: disk full" in rep.sections[-1][1]
    assert hooked.item.user_properties == []


# -- a whole pytest session, the lab fixture replaced by a fake ---------------------------------------
CONFTEST = '''
import pytest
from harness.run import CommandResult

class Node:
    def __init__(self, name):
        self.name, self.roles = name, ("client",)
    def is_up(self):
        return True
    def run(self, cmd, *, timeout=120, input=None):
        return CommandResult(tuple(cmd), 0, "journal of " + self.name + "\\n", "", 0.0)

class Provider:
    def console_log(self, node):
        return ""

class Lab:
    name = "ev-fake"
    def __init__(self, root):
        self.nodes = {n: Node(n) for n in ("node1", "node2")}
        self.provider = Provider()
        self.logs = root / "logs"
        self.secrets_dir = root / "secrets"

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return Lab(tmp_path_factory.mktemp("lab"))
'''

TESTS = '''
import pytest

def test_fails(lab):
    assert lab.name == "something else"

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure(lab):
    assert False

def test_passes(lab):
    assert lab.nodes

def test_fails_without_a_lab():
    assert False
'''


def test_a_session_names_the_evidence_in_its_output_and_junit(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(TESTS))
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "STORLAB_HOME": str(tmp_path / "home")}
    env.pop("STORLAB_EVIDENCE", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        "-c", os.devnull, str(tmp_path / "test_inner.py"), f"--junitxml={junit}"],
                       capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    dirs = sorted((tmp_path / "home" / "evidence").iterdir())
    assert [d.name.rsplit("-", 2)[0] for d in dirs] == ["ev-fake-test_fails"], dirs
    d = dirs[0]
    assert "journal of node1" in (d / "node1.txt").read_text() and (d / "node2.txt").exists()
    assert f"evidence for test_inner.py::test_fails: {d}" in r.stdout
    assert "storlab evidence" in r.stdout  # the report's section, in the failure's output
    props = {case.get("name"): [p.get("value") for p in case.iter("property") if p.get("name") == "storlab_evidence"]
             for case in ET.parse(junit).getroot().iter("testcase")}
    assert props == {"test_fails": [str(d)], "test_expected_failure": [], "test_passes": [],
                     "test_fails_without_a_lab": []}


def test_a_node_s_evidence_says_its_release_and_its_backends_versions() -> None:
    cmds = evidence.node_commands(("gluster",), None)
    assert ["cat", "/etc/debian_version"] in cmds
    assert ["dpkg-query", "-W", "glusterfs-server", "glusterfs-client"] in cmds
    assert not any(c[0] == "dpkg-query" for c in evidence.node_commands((), None))  # a plain node: no packages asked
