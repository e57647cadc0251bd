"""Classes without labs: leases, student lists, jump keys, handouts, grading summaries."""

from __future__ import annotations

import contextvars
import io
import logging
import os
import stat
import subprocess
import sys
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from harness import locks, log, paths
from harness.errors import HarnessError
from harness.lab import lease
from harness.providers.incus import students as incus_students
from harness.training import classroom, gate, handout, jump, students
from harness.training import exercise as training
from harness.training.klass import Klass, parse_students

REPO = Path(__file__).resolve().parents[2]


def test_durations_and_what_is_left() -> None:
    assert lease.parse_duration("4h") == 4 * 3600
    assert lease.parse_duration("1d12h") == 36 * 3600
    assert lease.parse_duration("90m") == 5400
    assert lease.parse_duration("never") is None
    for bad in ("4", "4x", "-1h", "h", "4h and then"):
        with pytest.raises(HarnessError):
            lease.parse_duration(bad)
    assert lease.remaining(None) == "never"
    assert lease.remaining(1000 + 2 * 3600 + 61, now=1000) == "2h01m left"
    assert lease.remaining(1000, now=1000 + 300) == "expired 5m ago"
    assert lease.remaining(1000 + 3 * 86400 + 7200, now=1000) == "3d2h left"


def test_students_from_a_list_a_file_or_a_count(tmp_path: Path) -> None:
    assert parse_students("alice, bob", None) == ["alice", "bob"]
    assert parse_students(None, 3) == ["s01", "s02", "s03"]
    f = tmp_path / "class.txt"
    f.write_text("# group A\nalice\n\nbob  # late\n")
    assert parse_students(str(f), None) == ["alice", "bob"]
    for bad in ("Alice", "a_b", "bob,bob", "x" * 17, ""):
        with pytest.raises(HarnessError):
            parse_students(bad, None)
    with pytest.raises(HarnessError):
        parse_students(None, 100)


def test_jump_key_line_opens_only_the_students_nodes() -> None:
    line = jump.key_line(jump.StudentAccess("alice", "ssh-ed25519 AAAAC3Nza alice@x\n",
                                                  ("192.168.1.11:22", "192.168.1.12:22")))
    opts, key = line.split(" ", 1)
    assert opts.startswith("restrict,port-forwarding,")  # restrict first: everything off, then one thing back on
    assert 'permitopen="192.168.1.11:22"' in opts and 'permitopen="192.168.1.12:22"' in opts
    assert 'command="/usr/sbin/nologin"' in opts and "pty" not in opts and "agent" not in opts
    assert key == "ssh-ed25519 AAAAC3Nza alice@x"


def test_jump_sshd_allows_keys_and_local_channels_only(tmp_path: Path) -> None:
    conf = jump.sshd_config_text(2222, tmp_path)
    for line in ("Port 2222", "PasswordAuthentication no", "PermitTTY no", "AllowTcpForwarding local",
                 "X11Forwarding no", "AllowAgentForwarding no", "PermitTunnel no", "GatewayPorts no",
                 "PermitRootLogin no", f"AllowGroups {jump.GROUP}", "PermitUserEnvironment no",
                 f"AuthorizedKeysFile {tmp_path / 'keys'}/%u"):
        assert line in conf.splitlines(), line
    # the command is forced per key (nologin, or the gate), so a global ForceCommand would override it
    assert "ForceCommand" not in conf


def test_gate_key_line_runs_only_the_gate_for_the_students_own_project(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    access = jump.StudentAccess("alice", "ssh-ed25519 AAAAC3Nza alice@x\n",
                                   gate=("storlab-cluster", "storlab-c1-alice", ("g1", "g2")))
    opts, key = jump.key_line(access).split(" ", 1)[0], jump.key_line(access).split('" ', 1)[1]
    assert opts.startswith("restrict,command=") and "port-forwarding" not in opts and "permitopen" not in opts
    assert f'command="{jump.gate_path()} storlab-cluster storlab-c1-alice g1 g2"' in jump.key_line(access)
    assert key == "ssh-ed25519 AAAAC3Nza alice@x"
    for bad in (("r;x", "storlab-c1-a", ("g1",)), ("r", "default", ("g1",)), ("r", "storlab-a", ("g1 x",)),
                ("r", "storlab-a", ()), ("r", 'storlab-a"', ("g1",))):
        with pytest.raises(HarnessError):
            jump.key_line(jump.StudentAccess("alice", "ssh-ed25519 AAAA", gate=bad))


def test_gate_starts_sshd_only_on_a_node_named_in_its_key_line(tmp_path: Path) -> None:
    import os
    import subprocess
    fake = tmp_path / "incus"
    fake.write_text('#!/bin/sh\necho "INCUS_CONF=$INCUS_CONF $*"\n')
    fake.chmod(0o755)
    script = tmp_path / "gate"
    script.write_text(incus_students.gate_text(str(fake), tmp_path / "incus-confs", "storlab-gate"))
    script.chmod(0o755)

    def ssh_asks(word: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": word}
        return subprocess.run([str(script), "storlab-cluster", "storlab-c1-alice", "g1", "g2"], env=env,
                              capture_output=True, text=True, timeout=10)
    ok = ssh_asks("g2")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert ok.returncode == 0 and ok.stdout.strip() == (
        f"INCUS_CONF={tmp_path}/incus-confs/{user} --project storlab-c1-alice exec storlab-cluster:g2 "
        "--force-noninteractive -- /usr/sbin/sshd -i")
    for word in ("g3", "", "g1 g2", "g1;id", "$(id)", "storlab-cluster:g1", "*"):
        no = ssh_asks(word)
        assert no.returncode == 2 and no.stdout == "" and "NODE one of: g1 g2" in no.stderr, word


def test_cert_fingerprint_is_incus_s(tmp_path: Path) -> None:
    import subprocess
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes",
                    "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c"), "-days", "1", "-subj", "/CN=t"],
                   check=True, capture_output=True)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(tmp_path / "c")],
                         check=True, capture_output=True, text=True).stdout
    assert incus_students.cert_fingerprint((tmp_path / "c").read_text()) == out.split("=", 1)[1].strip().replace(":", "").lower()


def test_student_ssh_config_goes_through_the_jump() -> None:
    text = handout.ssh_config("lab1", "10.0.0.5", 2222, {"gluster1": "192.168.1.11"})
    assert "Host jump\n  HostName 10.0.0.5\n  Port 2222\n  User slj-lab1" in text
    assert "Host gluster1\n  HostName 192.168.1.11\n  User root\n  ProxyJump jump" in text
    assert text.count("IdentityFile ./id_ed25519") == 2 and "IdentitiesOnly yes" in text
    gated = handout.ssh_config("c1", "10.0.0.5", 2222, {"g1": "10.80.0.11"}, lab="c1-alice")
    assert ("Host g1\n  HostName 10.80.0.11\n  User root\n  ProxyCommand ssh -F ssh_config jump g1\n"
            "  HostKeyAlias c1-alice-g1\n") in gated and "ProxyJump" not in gated


def test_handout_page_lists_nodes_pools_and_the_exercise() -> None:
    nodes = [{"name": "gluster1", "address": "192.168.1.11", "roles": "gluster"}]
    page = handout.handout_text("lab1", "alice", "lab1-alice", nodes, ["gluster"], ["storlab-lab1-alice-p (dir)"],
                                "A brick is down", "Find it.", "3h59m left")
    assert "| gluster1 | 192.168.1.11 | gluster |" in page and "storlab-lab1-alice-p (dir)" in page
    assert "**A brick is down**" in page and "Find it." in page and "3h59m left" in page
    empty = handout.handout_text("lab1", "bob", "lab1-bob", nodes, [], [], None, None, "never")
    assert "None yet" in empty and "- none" in empty


def test_account_names_are_bounded() -> None:
    assert jump.account_name("lab1") == "slj-lab1"
    with pytest.raises(HarnessError):
        jump.account_name("Bad Name")


JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="x">
<testcase classname="t" name="test_online" time="0.1"/>
<testcase classname="t" name="test_healed" time="0.1">
<failure message="AssertionError: 3 entries to heal&#10;assert 3 == 0">x</failure></testcase>
<testcase classname="t" name="test_skip" time="0"><skipped message="no"/></testcase>
</testsuite></testsuites>"""


def test_junit_outcomes_and_messages() -> None:
    full = training.parse_junit_full(JUNIT)
    assert full == {"test_online": ("passed", ""), "test_healed": ("failed", "3 entries to heal"),
                    "test_skip": ("skipped", "no")}


def test_summary_table_per_student(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    k = Klass(name="lab1", topology="/t.yaml", provider=None, students=["alice", "bob", "carol"])
    k.grades = {"alice": {"exercise": "ex", "passed": True, "when": 0, "checks": {"test_a": "passed", "test_b": "passed"}},
                "bob": {"exercise": "ex", "passed": False, "when": 0, "checks": {"test_a": "passed", "test_b": "failed"}}}
    head, rows = classroom.summary_rows(k)
    assert head == ["student", "exercise", "test_a", "test_b", "result", "when"]
    assert rows[0][:5] == ["alice", "ex", "passed", "passed", "PASSED"]
    assert rows[1][:5] == ["bob", "ex", "passed", "failed", "FAILED"]
    assert rows[2][:5] == ["carol", "-", "-", "-", "not graded"]
    md, html = classroom.write_summary(k)
    assert "| bob | ex | passed | failed | FAILED |" in md.read_text()
    assert "<table>" in html.read_text() and "carol" in html.read_text()


def test_jump_address_is_checked_before_anything_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    for bad in ("10.0.0.1\n  ProxyCommand sh", "host name", "-oProxyCommand=x"):
        with pytest.raises(HarnessError, match="jump-address"):
            classroom.up("/nonexistent.yaml", ["alice"], "lab1", jump_address=bad)
    assert not (tmp_path / "classes").exists()


def test_access_refresh_drops_key_lines_first_and_one_remote_away_stops_no_other_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`storlab down`/`reap` rewrite every class's jump keys: a class whose Incus remote does
    not answer still loses its removed labs' key lines, and the other classes are still done."""
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    calls: list[str] = []

    class Prov:
        def exec_route(self) -> tuple[str, str]:
            return ("storlab-cluster", "storlab-aa-s01")

    class FakeLab:
        def __init__(self) -> None:
            self.name, self.provider, self.nodes = "aa-s01", Prov(), {"g1": None}

    def away(klass: str, remote: str, projects: list[str]) -> str:
        calls.append(f"grant {klass}")
        raise HarnessError("Incus does not answer on remote storlab-cluster")

    for name in ("aa", "bb"):
        k = Klass(name=name, topology="t.yaml", provider="incus", students=["s01"], remote="storlab-cluster")
        k.save()
        (k.dir / "handouts" / "s01").mkdir(parents=True)
        (k.dir / "handouts" / "s01" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA s01\n")
        (jump.jump_dir() / "keys").mkdir(parents=True, exist_ok=True)
        (jump.jump_dir() / "keys" / jump.account_name(name)).write_text("stale\n")
    monkeypatch.setattr(Klass, "labs", lambda self: {"s01": FakeLab()})
    monkeypatch.setattr(jump, "write_keys", lambda klass, access: calls.append(f"keys {klass}"))
    monkeypatch.setattr(gate, "grant_remote", away)
    monkeypatch.setattr(handout, "write_handout", lambda k, s, lab: calls.append(f"handout {k.name}"))
    assert handout.refresh_all_access() == []
    assert calls == ["keys aa", "grant aa", "keys bb", "grant bb"], calls
    assert capsys.readouterr().err.count("access not brought up to date: Incus does not answer") == 2


# -- handouts and jump keys: private while written, locked, never through a planted link ------------
def _handout_dir(home: Path) -> Path:
    hd = home / "classes" / "c1" / "handouts" / "s01"
    hd.mkdir(parents=True)
    os.chmod(hd.parent, 0o755)  # as an older storlab (or a plain mkdir) left it
    os.chmod(hd, 0o700)
    (hd / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
    (hd / "HANDOUT.md").write_text("# Lab\n")
    return hd


def test_handout_archive_is_private_while_it_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hd = _handout_dir(tmp_path)
    seen: list[tuple[str, int]] = []
    add = tarfile.TarFile.add

    def watched(self: tarfile.TarFile, name: str, *args: object, **kwargs: object) -> None:
        seen.extend((p.name, stat.S_IMODE(p.lstat().st_mode)) for p in hd.parent.iterdir()
                    if p.is_file() and not p.is_symlink() and p.name != "s01")
        seen.append(("handouts/", stat.S_IMODE(hd.parent.stat().st_mode)))
        add(self, name, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(tarfile.TarFile, "add", watched)
    old = os.umask(0o022)
    try:
        out = handout.archive(hd)
    finally:
        os.umask(old)
    assert any(name != "handouts/" for name, _ in seen), seen
    assert all(mode in (0o600, 0o700) for _, mode in seen), seen  # the temp file 0600, handouts/ 0700
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(hd.parent.stat().st_mode) == 0o700
    outside = tmp_path / "outside"
    outside.write_text("not yours\n")
    (hd.parent / "s01.tar.tmp").symlink_to(outside)  # a link planted where the old code wrote its temp file
    handout.archive(hd)
    assert outside.read_text() == "not yours\n"
    with tarfile.open(out) as tar:
        assert "s01/id_ed25519" in tar.getnames()
    assert not [p for p in hd.parent.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_handouts_directory_is_made_private(tmp_path: Path) -> None:
    d = handout.handouts_dir(tmp_path / "classes" / "c1")
    assert d == tmp_path / "classes" / "c1" / "handouts" and stat.S_IMODE(d.stat().st_mode) == 0o700
    os.chmod(d, 0o755)
    assert stat.S_IMODE(handout.handouts_dir(tmp_path / "classes" / "c1").stat().st_mode) == 0o700


ALICE = jump.StudentAccess("alice", "ssh-ed25519 AAAAC3Nza alice@x", ("192.168.1.11:22",))
BOB = jump.StudentAccess("bob", "ssh-ed25519 AAAAC3Nzb bob@x", ("192.168.1.12:22",))


def test_jump_keys_never_follow_a_planted_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    keys = jump.jump_dir() / "keys"
    keys.mkdir(parents=True)
    victim, victim2 = tmp_path / "victim", tmp_path / "victim2"
    victim.write_text("root's own\n")
    victim2.write_text("root's too\n")
    (keys / "slj-c1.new").symlink_to(victim)  # the old code's temp name
    (keys / "slj-c1").symlink_to(victim2)     # the destination itself
    f = jump.write_keys("c1", [ALICE, BOB])
    assert victim.read_text() == "root's own\n" and victim2.read_text() == "root's too\n"
    assert not f.is_symlink() and f.read_text().count("\n") == 2 and stat.S_IMODE(f.stat().st_mode) == 0o644


def test_jump_keys_wait_for_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `class up`/`down` of one class at once: the second writer waits for the first, instead of
    both writing (and renaming) the same temporary file."""
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from harness import locks; from harness.training import jump\n"
         "with locks.exclusive(jump.keys_lock('c1')):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done = threading.Event()

        def write() -> None:
            jump.write_keys("c1", [ALICE])
            done.set()
        worker = threading.Thread(target=write)
        worker.start()
        assert not done.wait(0.6), "jump keys written while another process held their lock"
        assert not (jump.jump_dir() / "keys" / "slj-c1").exists()
    finally:
        holder.kill()
        holder.wait()
    assert done.wait(10)
    worker.join()
    assert "alice@x" in (jump.jump_dir() / "keys" / "slj-c1").read_text()


# -- class up: each student's lab by the library, side by side, each with its own log ---------------
class _UpLab:
    """A lab as Lab.from_topology makes it, recording what the class does to it."""
    calls: ClassVar[list[tuple[str, ...]]] = []
    barrier = threading.Barrier(2, timeout=10)

    def __init__(self, name: str) -> None:
        self.name, self.nodes, self.taken = name, {"n1": None}, False
        self.logfile = paths.home() / "labs" / name / "logs" / "storlab.log"
        self.plan = type("P", (), {"provider": "lxc"})()

    @classmethod
    def from_topology(cls, file: str, provider: str | None = None, name: str = "", remote: str | None = None,
                      budget: str | None = None, untrusted: bool = False, klass: str | None = None,
                      disk_budget: str | None = None) -> _UpLab:
        cls.calls.append(("from_topology", name, str(provider), str(remote), str(budget), str(untrusted), str(klass),
                          str(disk_budget)))
        return cls(name)

    def authorize(self, key: str) -> None:
        self.calls.append(("authorize", self.name, key.strip()))

    def up(self) -> None:
        locks.hold(self.name)
        log.add_logfile(self.logfile)  # as Lab.up does: must find the student's handler, not add one for all
        self.calls.append(("up", self.name))
        self.barrier.wait()  # both students' labs come up at once
        log.info(f"{self.name}: step on the lab")
        with ThreadPoolExecutor(1) as pool:  # a node thread, as node.on_each starts them
            pool.submit(contextvars.copy_context().run, log.info, f"{self.name}: step on a node").result()
        if self.name.endswith("bob"):
            raise HarnessError("gluster peer probe failed")

    def lease(self, seconds: float) -> None:
        self.calls.append(("lease", self.name, str(seconds)))

    def snapshots(self) -> dict[str, object]:
        return {}

    def snapshot(self, name: str) -> float:
        self.calls.append(("snapshot", self.name, name))
        return 0.1


def test_class_up_brings_labs_up_by_the_library_each_with_its_own_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    _UpLab.calls = []
    monkeypatch.setattr(students, "Lab", _UpLab)
    monkeypatch.setattr(jump, "sshd_pid", lambda: 1)
    monkeypatch.setattr(jump, "ensure_account", lambda klass: "slj-" + klass)
    monkeypatch.setattr(classroom, "check_capacity", lambda *a, **kw: type("F", (), {"explain": lambda self: "fits"})())
    monkeypatch.setattr(classroom, "refresh_access", lambda k: None)

    def key(k: Klass, student: str) -> Path:
        (k.dir / "handouts" / student).mkdir(parents=True, exist_ok=True)
        pub = k.dir / "handouts" / student / "id_ed25519.pub"
        pub.write_text(f"ssh-ed25519 AAAA {student}\n")
        return pub
    monkeypatch.setattr(students, "student_key", key)
    terminal = io.StringIO()
    term = logging.StreamHandler(terminal)
    log.log.addHandler(term)
    lines: list[str] = []
    try:
        k = classroom.up("/t.yaml", ["alice", "bob"], "c1", expire=7200, parallel=2, progress=lines.append)
    finally:
        log.log.removeHandler(term)
    assert k.failed == {"bob": k.failed["bob"]} and "gluster peer probe failed" in k.failed["bob"]
    assert "bob-up.log" in k.failed["bob"]
    assert any(ln.startswith("  alice: lab c1-alice up in") for ln in lines), lines
    assert any(ln.startswith("  bob: FAILED: up failed after") for ln in lines), lines
    alice = [c for c in _UpLab.calls if c[1] == "c1-alice"]
    assert [c[0] for c in alice] == ["from_topology", "authorize", "up", "lease", "snapshot"], alice
    assert alice[0] == ("from_topology", "c1-alice", "None", "None", "None", "True", k.id, "None")
    assert alice[1][2] == "ssh-ed25519 AAAA alice" and ("lease", "c1-alice", "7200") in alice
    assert not any(c[0] in ("lease", "snapshot") for c in _UpLab.calls if c[1] == "c1-bob")
    up_log = (k.dir / "logs" / "alice-up.log").read_text()
    lab_log = (tmp_path / "labs" / "c1-alice" / "logs" / "storlab.log").read_text()
    for text in (up_log, lab_log):
        assert "c1-alice: step on the lab" in text and "c1-alice: step on a node" in text and "c1-bob" not in text
    assert "gluster peer probe failed" in (k.dir / "logs" / "bob-up.log").read_text()
    assert "step on" not in terminal.getvalue()  # the terminal shows the class's progress lines only
    # a class with a disk budget gives it to every seat, and keeps it: a second up may not change it
    monkeypatch.setattr(_UpLab, "barrier", threading.Barrier(1))  # one student at a time now
    k2 = classroom.up("/t.yaml", ["carol"], "c2", disk_budget="1G", progress=lines.append)
    assert [c[-1] for c in _UpLab.calls if c[0] == "from_topology" and c[1] == "c2-carol"] == ["1G"]
    assert Klass.load("c2").disk_budget == "1G" == k2.disk_budget and not k2.failed
    with pytest.raises(HarnessError, match="exists with --disk-budget 1G"):
        classroom.up("/t.yaml", ["dave"], "c2", disk_budget="2G", progress=lines.append)
    assert not [h for h in log.log.handlers if isinstance(h, logging.FileHandler) and "c1-" in h.baseFilename]
    assert not locks.is_held_elsewhere("c1-alice") and "c1-alice" not in locks._held  # let go, as the child did
