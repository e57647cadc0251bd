"""The node fault verbs with a recording node and provider: each verb issues the expected argv (on
the node, or on the host for a hang), its undo the reverse, and hostile input (unit and process
names, paths, addresses, interface names a node answers with, numbers) is refused before any
command runs."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.host import silence
from harness.host.facts import PROFILES
from harness.nodes.diskfaults import NOTE_PY, RECOVER_PY, USERS_DIR, Recovered
from harness.nodes.netfaults import cut_script, ifnames_by_mac, netem_args, uncut_command
from harness.nodes.node import Node, partition
from harness.nodes.sysfaults import CLOCK_PY, FILL_NAME, FILL_PY, STROBE_PY, parse_filled
from harness.plan.model import Plan
from harness.plan.planner import load_plan
from harness.providers.incus.provider import IncusProvider
from harness.providers.lxc.provider import LxcProvider
from harness.providers.vagrant.provider import VagrantProvider
from harness.run import CommandResult

REPO = Path(__file__).resolve().parents[2]
NODES3 = str(REPO / "topologies" / "nodes-3.yaml")
FACTS = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "incus", "vagrant"}))
Answer = Callable[[str], tuple[int, str]]
FILLED = json.dumps({"mount": "/data", "fstype": "xfs", "size": 1 << 30, "free": 0, "avail": 0})


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def plan(provider: str = "lxc") -> Plan:
    return load_plan(NODES3, FACTS, provider)


class Timeline:
    def __init__(self) -> None:
        self.events: list[str] = []

    def mark(self, event: str) -> None:
        self.events.append(event)

    def boot_bound(self, node: str) -> tuple[float, str]:
        return 60.0, "test"

    def booted(self, node: str, seconds: float) -> None:
        return None


class Provider:
    """Records the provider verbs a node calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __getattr__(self, verb: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((verb, *map(str, args)))


class Recorded(Node):
    """A Node whose commands are recorded, not run: ``answer(command)`` gives (rc, stdout)."""

    def __init__(self, name: str = "node1", answer: Answer | None = None, the_plan: Plan | None = None) -> None:
        super().__init__((the_plan or plan()).node(name), Path("/nonexistent/ssh_config"), Provider(),  # type: ignore[arg-type]
                         Timeline())
        self.cmds: list[Sequence[str] | str] = []
        self.inputs: list[str | None] = []
        self.answer = answer or (lambda cmd: (0, "active\n" if "is-active" in cmd else ""))

    def run(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        self.cmds.append(cmd)
        self.inputs.append(input)
        rc, out = self.answer(cmd if isinstance(cmd, str) else " ".join(cmd))
        return CommandResult(("ssh", self.name), rc, out, "" if rc == 0 else "failed", 0.0)

    @property
    def marks(self) -> list[str]:
        assert isinstance(self.timeline, Timeline)
        return self.timeline.events


def refused(node: Recorded, fn: Callable[[], object]) -> None:
    """``fn`` raises HarnessError and nothing ran on the node."""
    before = len(node.cmds)
    with pytest.raises(HarnessError):
        fn()
    assert len(node.cmds) == before


# -- services and processes ------------------------------------------------------------------------------
def test_pause_and_resume_signal_every_process_of_the_unit() -> None:
    n = Recorded()
    with n.service_paused("glusterd.service"):
        assert n.cmds == [["systemctl", "kill", "--kill-whom=all", "-s", "SIGSTOP", "glusterd.service"]]
    assert n.cmds[1] == ["systemctl", "kill", "--kill-whom=all", "-s", "SIGCONT", "glusterd.service"]
    assert n.marks == ["pause glusterd.service on node1", "resume glusterd.service on node1"]
    n.pause_service("ceph-osd@0")  # a bare name is a service, as systemctl reads it
    assert n.cmds[-1][-1] == "ceph-osd@0.service"


@pytest.mark.parametrize("unit", ["x.service; rm -rf /", "-x.service", "--help", "../x.service", "x.socket",
                                  "x.service\n", "", "a b.service", "$(reboot).service", "ssh.service", "sshd"])
def test_hostile_or_control_units_are_refused(unit: str) -> None:
    n = Recorded()
    refused(n, lambda: n.pause_service(unit))
    refused(n, lambda: n.resume_service(unit))
    if unit not in ("ssh.service", "sshd"):  # stopping sshd is allowed (the session in use survives it)
        refused(n, lambda: n.stop_service(unit, kill=True))
        refused(n, lambda: n.start_service(unit))


def test_stop_kill_and_start_service_unchanged() -> None:
    n = Recorded()
    with n.service_stopped("nfs-server.service", kill=True):
        assert n.cmds == [["systemctl", "kill", "-s", "KILL", "nfs-server.service"]]
    assert n.cmds[1] == ["systemctl", "start", "nfs-server.service"]
    assert n.cmds[2] == ["systemctl", "is-active", "nfs-server.service"]  # waited for


def test_process_verbs_match_the_exact_name() -> None:
    n = Recorded()
    with n.process_paused("glusterfsd"):
        assert n.cmds == [["pkill", "-STOP", "-x", "--", "glusterfsd"]]
    assert n.cmds[1] == ["pkill", "-CONT", "-x", "--", "glusterfsd"]
    n.kill_process("ceph-osd")
    assert n.cmds[2] == ["pkill", "-KILL", "-x", "--", "ceph-osd"]
    none = Recorded(answer=lambda cmd: (1, ""))  # pkill: nothing matched
    with pytest.raises(HarnessError):
        none.pause_process("glusterfsd")
    none.resume_process("glusterfsd")  # one that died meanwhile: no error


@pytest.mark.parametrize("name", ["glusterfsd; reboot", "-9", "x" * 16, "a/b", "", "sshd", "systemd", "a b"])
def test_hostile_process_names_are_refused(name: str) -> None:
    n = Recorded()
    for verb in (n.pause_process, n.resume_process, n.kill_process):
        refused(n, lambda verb=verb: verb(name))  # type: ignore[misc]


# -- hang ---------------------------------------------------------------------------------------------------
def test_hang_goes_through_the_provider_and_is_undone() -> None:
    n = Recorded()
    with n.hung():
        pass
    assert isinstance(n.provider, Provider) and n.provider.calls == [("hang", "node1"), ("unhang", "node1")]
    assert n.marks == ["hang node1", "unhang node1"] and n.cmds == []  # nothing through the hung node's ssh


class HostNft:
    """The host's nft, recorded; ``fail`` makes `nft -f` fail, ``tables`` are there."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False, tables: Sequence[str] = ()) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.fail, self.tables = fail, set(tables)
        monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/sbin/{tool}")
        monkeypatch.setattr(silence, "run", self.run)

    def run(self, argv: Sequence[str], *, timeout: float = 120, input: str | None = None) -> CommandResult:
        a = tuple(argv)
        self.calls.append((a, input))
        rc = 0
        if a[:2] == ("nft", "-f"):
            rc = 1 if self.fail else 0
        elif a[:3] == ("nft", "list", "table"):
            rc = 0 if a[-1] in self.tables else 1
        elif a[:3] == ("nft", "-j", "list"):
            items = [{"table": {"family": "bridge", "name": t}} for t in sorted(self.tables)]
            return CommandResult(a, 0, json.dumps({"nftables": items}), "", 0.0)
        return CommandResult(a, rc, "", "" if rc == 0 else "nft failed", 0.0)


def record_power(p: Any, log: list[str]) -> None:
    p.freeze = lambda node: log.append(f"freeze {node}")
    p.thaw = lambda node: log.append(f"thaw {node}")


def test_lxc_hang_freezes_then_silences_the_nodes_ports_and_unhang_reverses(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    pl = plan("lxc")
    p = LxcProvider(pl, tmp_path / "lab")
    order: list[str] = []
    record_power(p, order)
    nft = HostNft(monkeypatch)
    p.hang("node2")
    table = silence.table(pl.lab, pl.node("node2").index)
    (argv, script), = nft.calls
    assert order == ["freeze node2"] and argv == ("nft", "-f", "-") and script is not None
    port = p.hang_ports("node2")[0]
    assert port.startswith("slv") and f'iifname {{ "{port}" }} counter drop' in script
    assert f'oifname {{ "{port}" }} counter drop' in script and f"table bridge {table} {{" in script
    nft.tables.add(table)
    p.unhang("node2")
    assert [c[0] for c in nft.calls[1:]] == [("nft", "list", "table", "bridge", table),
                                             ("nft", "delete", "table", "bridge", table)]
    assert order == ["freeze node2", "thaw node2"]


def test_a_hang_that_cannot_be_made_silent_is_undone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = LxcProvider(plan("lxc"), tmp_path / "lab")
    order: list[str] = []
    record_power(p, order)
    HostNft(monkeypatch, fail=True)
    with pytest.raises(HarnessError, match="could not silence"):
        p.hang("node1")
    assert order == ["freeze node1", "thaw node1"]  # never left half hung


def test_incus_hang_ports_are_checked_against_the_instance_state(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    pl = plan("incus")
    p = IncusProvider(pl, tmp_path / "lab")
    state = json.loads((Path(__file__).parent / "data" / "incus" / "state.json").read_text())
    monkeypatch.setattr(p.api, "query", lambda path, **kw: state)
    assert p.hang_ports("node1") == ["slvc40da9000"]  # the recorded node1 of lab nodes3
    with pytest.raises(HarnessError, match="storlab gave"):
        p.hang_ports("node2")  # Incus says slvc40da9000, storlab gave node2 another name
    remote = IncusProvider(pl.model_copy(update={"remote": "cluster1"}), tmp_path / "lab2")
    with pytest.raises(HarnessError, match="not on this host"):
        remote.hang_ports("node1")


def test_a_vm_hangs_by_suspending(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = VagrantProvider(plan("vagrant"), tmp_path / "lab")
    order: list[str] = []
    record_power(p, order)
    nft = HostNft(monkeypatch)
    p.hang("node1")
    p.unhang("node1")
    assert order == ["freeze node1", "thaw node1"]
    assert all(c[0][:3] == ("nft", "list", "table") for c in nft.calls)  # no table made, none deleted


def test_the_silence_rules_take_only_lab_ports_and_table_names() -> None:
    t = silence.table("nodes3", 2)
    assert t == f"storlab_hang_{t.split('_')[2]}_2" and silence.TABLE_RE.fullmatch(t)
    text = silence.ruleset(t, ["slvc40da9020", "slvc40da9021"])
    assert 'iifname { "slvc40da9020", "slvc40da9021" }' in text and text.startswith(f"table bridge {t} {{}}\n")
    for bad in (["eth0"], ['slvc40da9020"; flush ruleset; "'], [], ["slvc40da9020 "], ["vethXYZ"]):
        with pytest.raises(HarnessError):
            silence.ruleset(t, bad)
    with pytest.raises(HarnessError):
        silence.ruleset("storlab; flush ruleset", ["slvc40da9020"])
    with pytest.raises(HarnessError):
        silence.unsilence("inet storlab")
    listed = json.dumps({"nftables": [{"metainfo": {}}, {"table": {"family": "bridge", "name": t}},
                                      {"table": {"family": "bridge", "name": "storlab_hang_000000_1"}},
                                      {"table": {"family": "bridge", "name": "other"}}]})
    assert silence.tables_in(listed, "nodes3") == [t] and silence.tables_in("not json", "nodes3") == []


# -- partitions ------------------------------------------------------------------------------------------
def test_block_both_ways_keeps_the_blackhole_routes() -> None:
    n = Recorded()
    with n.blocked(["10.0.0.2", "10.0.0.2", "10.0.0.3"]):
        assert n.cmds == [["ip", "route", "replace", "blackhole", "10.0.0.2/32"],
                          ["ip", "route", "replace", "blackhole", "10.0.0.3/32"]]
    assert n.cmds[2:] == [["ip", "route", "del", "blackhole", "10.0.0.2/32"],
                          ["ip", "route", "del", "blackhole", "10.0.0.3/32"]]


@pytest.mark.parametrize(("direction", "nft_set"), [("out", "cut_out"), ("in", "cut_in")])
def test_one_way_block_is_an_nft_set_and_undo_empties_it(direction: str, nft_set: str) -> None:
    n = Recorded()
    n.block(["10.0.0.2", "10.0.0.3"], direction=direction)
    assert n.cmds == [["nft", "-f", "-"]] and n.inputs[0] == cut_script(direction, ["10.0.0.2", "10.0.0.3"])
    assert f"add element inet storlab {nft_set} {{ 10.0.0.2, 10.0.0.3 }}" in str(n.inputs[0])
    n.block(["10.0.0.2", "10.0.0.3"], on=False, direction=direction)
    undo = n.cmds[1]
    assert isinstance(undo, str) and undo == uncut_command(direction, ["10.0.0.2", "10.0.0.3"])
    assert f"nft delete element inet storlab {nft_set} '{{ 10.0.0.2 }}'" in undo
    assert "nft delete table inet storlab" in undo
    assert n.marks[0].startswith("block node1 " + ("->" if direction == "out" else "<-"))


def test_one_way_block_on_an_image_without_nft_says_so() -> None:
    n = Recorded(answer=lambda cmd: (127, ""))
    with pytest.raises(HarnessError, match="storlab image build"):
        n.block(["10.0.0.2"], direction="out")


@pytest.mark.parametrize("addresses", [["10.0.0.1; reboot"], ["10.0.0.256"], ["::1"], ["10.0.0.0/24"], ["-1"],
                                       ["10.0.0.1 "], ["010.0.0.1"], "10.0.0.1"])
def test_hostile_addresses_are_refused(addresses: list[str]) -> None:
    n = Recorded()
    for direction in ("both", "out", "in"):
        refused(n, lambda direction=direction: n.block(addresses, direction=direction))  # type: ignore[misc]
        refused(n, lambda direction=direction: n.block(addresses, on=False, direction=direction))  # type: ignore[misc]
    refused(n, lambda: n.block(["10.0.0.1"], direction="sideways"))


def test_one_way_partition_drops_where_the_packets_arrive() -> None:
    """A drop in the sender's output hook hands it EPERM (measured on LXC): not a lossy network."""
    pl = plan()
    a, b, c = (Recorded(name, the_plan=pl) for name in ("node1", "node2", "node3"))
    with partition([a], [b, c], direction="out"):  # what a sends is lost: b and c drop it
        assert a.cmds == [] and b.cmds == [["nft", "-f", "-"]] and c.cmds == [["nft", "-f", "-"]]
        assert f"cut_in {{ {a.spec.address} }}" in str(b.inputs[0])
    assert isinstance(b.cmds[1], str) and "delete element inet storlab cut_in" in b.cmds[1]
    a2, b2 = (Recorded(name, the_plan=pl) for name in ("node1", "node2"))
    with partition([a2], [b2], direction="in"):  # what a2 receives is lost: a2 drops it
        assert b2.cmds == [] and f"cut_in {{ {b2.spec.address} }}" in str(a2.inputs[0])
    a3, b3 = (Recorded(name, the_plan=pl) for name in ("node1", "node2"))
    with partition([a3], [b3]):  # both ways: both sides, routes
        assert b3.cmds == [["ip", "route", "replace", "blackhole", f"{a3.spec.address}/32"]]


# -- netem ------------------------------------------------------------------------------------------------
def links_answer(plan_: Plan, node: str, name: str = "eth1") -> Answer:
    mac = next(iter(plan_.node(node).macs.values()))
    links = [{"ifname": "lo", "address": "00:00:00:00:00:00"}, {"ifname": "eth0", "address": "52:54:00:00:00:01"},
             {"ifname": name, "address": mac.upper()}]
    return lambda cmd: (0, json.dumps(links) if cmd.startswith("ip -j link") else "")


def test_netem_finds_the_interface_by_mac_and_writes_the_numbers() -> None:
    pl = plan()
    n = Recorded(answer=links_answer(pl, "node1"), the_plan=pl)
    with n.degraded(delay_ms=100, jitter_ms=12.5, loss_pct=1.25):
        assert n.cmds[0] == ["ip", "-j", "link", "show"]
        assert n.cmds[1] == ("tc qdisc replace dev eth1 root netem delay 100ms 12.5ms loss 1.25%")
    assert n.cmds[3] == "tc qdisc del dev eth1 root netem 2>/dev/null"
    assert n.marks[0] == "netem node1 (all): delay 100ms 12.5ms loss 1.25%"
    assert netem_args(delay_ms=5, reorder_pct=25, rate_kbit=1000) == ["delay", "5ms", "reorder", "25%",
                                                                      "rate", "1000kbit"]


@pytest.mark.parametrize("name", ["eth1;reboot", "-x", "eth1 up", "a" * 16, "", "eth1/../x"])
def test_a_hostile_interface_name_from_the_node_is_refused(name: str) -> None:
    pl = plan()
    n = Recorded(answer=links_answer(pl, "node1", name), the_plan=pl)
    with pytest.raises(HarnessError):
        n.netem(delay_ms=10)
    assert len(n.cmds) == 1  # only the lookup ran


@pytest.mark.parametrize("kwargs", [{"delay_ms": math.nan}, {"delay_ms": -1}, {"loss_pct": 101},
                                    {"loss_pct": "10; reboot"}, {"delay_ms": True}, {"jitter_ms": math.inf},
                                    {"reorder_pct": 10}, {}, {"rate_kbit": 0.5}])
def test_netem_numbers_are_checked(kwargs: dict[str, Any]) -> None:
    pl = plan()
    n = Recorded(answer=links_answer(pl, "node1"), the_plan=pl)
    refused(n, lambda: n.netem(**kwargs))
    with pytest.raises(HarnessError, match="no network"):
        n.netem("nowhere", delay_ms=1)
    assert ifnames_by_mac('[{"ifname": "eth0", "address": "AA:BB:cc:dd:ee:ff"}]') == {"aa:bb:cc:dd:ee:ff": "eth0"}
    with pytest.raises(HarnessError):
        ifnames_by_mac("<html>")


# -- disk-full ------------------------------------------------------------------------------------------------
def test_fill_runs_the_script_with_the_path_in_argv_and_unfill_removes_it() -> None:
    n = Recorded(answer=lambda cmd: (0, FILLED + "\n"))
    with n.disk_filled("/data/brick1", leave=4096) as node:  # nodes-3: a data disk mounted at /data
        assert node.cmds == [["python3", "-", "fill", "/data", "4096"]] and node.inputs == [FILL_PY]
    assert n.cmds[1] == ["python3", "-", "unfill", "/data", "0"]
    assert n.marks[1] == f"filled /data (xfs) on node1: {1 << 30} B written, 0 B free to root, 0 B to others"
    assert f"os.path.join(mnt, {FILL_NAME!r})" in FILL_PY
    compile(FILL_PY, "fill", "exec")


@pytest.mark.parametrize("path", ["/../etc", "relative/path", "/a/../b", "/a b", "/a;rm -rf /", "/a//b", "/a/",
                                  "/a/./b", "/$(reboot)", "-rf", "/a\nb", "", "/data/../etc", "/data/.",
                                  "/", "/var/lib/x", "/database", "/dat"])
def test_hostile_paths_and_paths_off_the_data_disks_are_refused(path: str) -> None:
    n = Recorded(answer=lambda cmd: (0, FILLED))
    refused(n, lambda: n.fill(path))
    refused(n, lambda: n.unfill(path))


@pytest.mark.parametrize("leave", [-1, 1.5, True, "0; reboot"])
def test_fill_leave_is_a_whole_number_of_bytes(leave: Any) -> None:
    n = Recorded(answer=lambda cmd: (0, FILLED))
    refused(n, lambda: n.fill("/data", leave))


def test_the_fill_answer_is_parsed_or_refused() -> None:
    assert parse_filled("noise\n" + FILLED).mount == "/data"
    for bad in ("", "{}", "[1]", '{"mount": "/x"}'):
        with pytest.raises(HarnessError):
            parse_filled(bad)


# -- clock ----------------------------------------------------------------------------------------------------
def test_skew_stops_time_sync_and_shifts_and_restore_shifts_back() -> None:
    n = Recorded()
    with n.clock_skewed(-300):
        (cmd,) = n.cmds
        assert isinstance(cmd, str) and "systemctl stop" in cmd and "systemd-timesyncd.service" in cmd
        assert cmd.endswith(" shift -300")
    undo = n.cmds[1]
    assert isinstance(undo, str) and " shift 300 && " in undo and "systemctl start" in undo
    n.restore_clock()  # to the host's time
    last = n.cmds[2]
    assert isinstance(last, str)
    sent = float(last.split(" set ")[1].split()[0])
    assert abs(sent - time.time()) < 5
    assert n.marks == ["clock node1 -300s", "clock node1 restored (shift 300s)", "clock node1 restored (host time)"]


@pytest.mark.parametrize("seconds", [math.nan, math.inf, "300", 1e9, True, "1; reboot"])
def test_hostile_skews_are_refused(seconds: Any) -> None:
    n = Recorded()
    refused(n, lambda: n.skew_clock(seconds))
    refused(n, lambda: n.restore_clock(seconds))


def test_the_clock_script_shifts_from_its_own_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    set_to: list[float] = []
    monkeypatch.setattr(time, "clock_gettime", lambda clock: 1000.0)
    monkeypatch.setattr(time, "clock_settime", lambda clock, t: set_to.append(t))
    for args, want in ((["shift", "-300"], 700.0), (["shift", "2.5"], 1002.5), (["set", "1234.5"], 1234.5)):
        monkeypatch.setattr(sys, "argv", ["-c", *args])
        exec(CLOCK_PY, {})
        assert set_to[-1] == want


# -- dm-flakey under a VM's mounted data disk ------------------------------------------------------------
def vm_node(answer: Answer | None = None) -> Recorded:
    return Recorded(answer=answer, the_plan=plan("vagrant"))


LOAD = ('[ -z "$2" ] || modprobe "$2"; dmsetup suspend $3 "$1" && { dmsetup load "$1"; rc=$?; dmsetup resume "$1"; '
        'exit $rc; }')


def sectors(cmd: str) -> tuple[int, str]:
    return (0, "2097152\n") if cmd.startswith("blockdev --getsz") else (0, "")


def test_flakey_swaps_the_table_under_the_mount_and_always_resumes() -> None:
    n = vm_node(sectors)
    n.flakey("data", 2, 3)
    assert n.cmds[:4] == [["dmsetup", "info", "storlab-data"], ["blockdev", "--getsz", "/dev/vdb"],
                          ["python3", "-", "storlab-data", "/data"],  # the disk's users noted first
                          ["sh", "-c", LOAD, "sh", "storlab-data", "dm_flakey", ""]]
    assert n.inputs[2] == NOTE_PY
    assert n.inputs[3] == "0 2097152 flakey /dev/vdb 0 2 3\n"  # the table on stdin
    n.flakey("data", 1, 1, mode="drop_writes")
    assert n.inputs[-1] == "0 2097152 flakey /dev/vdb 0 1 1 1 drop_writes\n"
    assert n.marks == ["flakey data on node1: up 2s, down 3s (error)", "flakey data on node1: up 1s, down 1s (drop_writes)"]


def test_delay_and_bad_blocks_are_tables_too() -> None:
    n = vm_node(sectors)
    n.delay_disk("data", 150)
    assert n.cmds[-1][-3:] == ["storlab-data", "dm_delay", ""] and n.inputs[-1] == "0 2097152 delay /dev/vdb 0 150\n"
    ranges = n.bad_blocks("data", 2)
    total = 2097152
    assert ranges == [(total // 5, 128), (total // 5 + (total * 4 // 5 - total // 5) // 2, 128)]
    lines = str(n.inputs[-1]).splitlines()
    assert lines[1] == f"{total // 5} 128 error" and lines[3] == f"{ranges[1][0]} 128 error"
    # the segments cover the whole disk, in order, with no gap
    at = 0
    for line in lines:
        start, length = map(int, line.split()[:2])
        assert start == at
        at += length
        if "linear" in line:
            assert line.split()[3:] == ["/dev/vdb", str(start)]
    assert at == total


def test_dm_restore_puts_the_linear_table_back_and_recovers_a_shut_down_filesystem() -> None:
    answer = json.dumps({"remounted": True, "units": ["glusterd.service"], "error": "/data: Input/output error"})
    n = vm_node(lambda cmd: (0, answer + "\n") if cmd.startswith("python3") else sectors(cmd))
    done = n.dm_restore("data")
    assert n.cmds[2] == ["sh", "-c", LOAD, "sh", "storlab-data", "", "--nolockfs"]
    assert n.inputs[2] == "0 2097152 linear /dev/vdb 0\n"
    assert n.cmds[3] == ["python3", "-", "storlab-data", "/dev/vdb", "/data"] and n.inputs[3] == RECOVER_PY
    assert done == Recovered(True, ("glusterd.service",), "/data: Input/output error")
    assert "mounted anew, restarted glusterd.service" in n.marks[-1]
    compile(RECOVER_PY, "recover", "exec")


def _on_node(script: str, users: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` run as dm faults run it on a node, its notes kept under ``users``."""
    return subprocess.run([sys.executable, "-", *args], input=script.replace(repr(USERS_DIR), repr(str(users)), 1),
                          capture_output=True, text=True, timeout=60)


def test_the_disk_users_noted_as_a_fault_goes_in_are_read_back_once_and_checked(tmp_path: Path) -> None:
    """NOTE_PY finds the processes using the mount (here one whose cwd is in it) and keeps their
    units in a file of its own; RECOVER_PY on a usable filesystem remounts nothing and consumes the
    note, so a later restore never restarts units of an earlier fault."""
    users, mnt = tmp_path / "users", tmp_path / "mnt"
    mnt.mkdir()
    holder = subprocess.Popen(["sleep", "60"], cwd=mnt)
    try:
        noted = _on_node(NOTE_PY, users, "storlab-data", str(mnt))
        assert noted.returncode == 0, noted.stderr
        note = users / "storlab-data"
        assert note.stat().st_mode & 0o777 == 0o600
        assert json.loads(noted.stdout) == note.read_text().split()
        # a planted unit name that is no unit is not taken (the note is the node's own file)
        note.write_text("glusterd.service\n$(reboot).service\n")
        done = _on_node(RECOVER_PY, users, "storlab-data", "/dev/vdb", str(mnt))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"remounted": False, "units": [], "error": ""}
        assert not note.exists()
    finally:
        holder.kill()
        holder.wait()
    note.symlink_to(tmp_path / "elsewhere")  # a link in the note's place is not followed
    assert _on_node(NOTE_PY, users, "storlab-data", str(mnt)).returncode != 0
    assert not (tmp_path / "elsewhere").exists()


def test_a_noted_unit_name_must_be_a_whole_service_name() -> None:
    unit = re.compile(r"[A-Za-z0-9@_.:-]+[.]service")
    assert f'UNIT = re.compile(r"{unit.pattern}")' in NOTE_PY
    assert unit.fullmatch("ceph-osd@1.service") and unit.fullmatch("glusterd.service")
    assert not unit.fullmatch("$(reboot).service") and not unit.fullmatch("a.service b.service")


@pytest.mark.parametrize(("node", "call", "why"), [
    (lambda: vm_node(), lambda n: n.flakey("data", 1, 1, mode="corrupt"), "mode 'corrupt'"),
    (lambda: vm_node(), lambda n: n.flakey("nope", 1, 1), "'nope' is not a mounted data disk"),
    (lambda: vm_node(), lambda n: n.flakey("data", 1, 0), "flakey down"),
    (lambda: vm_node(), lambda n: n.flakey("data", math.nan, 1), "flakey up"),
    (lambda: vm_node(), lambda n: n.delay_disk("data", 0), "disk delay"),
    (lambda: vm_node(), lambda n: n.bad_blocks("data", 0), "count 0"),
    (lambda: vm_node(sectors), lambda n: n.bad_blocks("data", 1024, sectors=1 << 20), "do not fit"),
    (lambda: Recorded(), lambda n: n.flakey("data", 1, 1), "containers get filesystems"),
])
def test_disk_faults_refuse_before_touching_the_disk(node: Callable[[], Recorded], call: Callable[[Recorded], object],
                                                     why: str) -> None:
    n = node()
    with pytest.raises(HarnessError, match=re.escape(why)):
        call(n)
    assert not any("dmsetup suspend" in str(c) for c in n.cmds)


def test_a_disk_without_its_device_mapper_device_says_to_bring_the_lab_up_again() -> None:
    n = vm_node(lambda cmd: (1, "") if cmd.startswith("dmsetup info") else (0, ""))
    with pytest.raises(HarnessError, match="take the lab down and up again"):
        n.flakey("data", 1, 1)
    assert len(n.cmds) == 1


# -- clock strobe ------------------------------------------------------------------------------------------
def test_strobe_runs_in_a_transient_unit_and_unstrobe_stops_it() -> None:
    n = Recorded()
    n.strobe_clock(5, 100)
    (cmd,) = n.cmds
    assert isinstance(cmd, str) and "systemctl stop" in cmd and "systemd-timesyncd.service" in cmd
    assert "systemd-run --unit storlab-clock-strobe.service --collect -p KillSignal=SIGTERM python3 -c" in cmd
    assert cmd.endswith(" 5 100; }")
    n.unstrobe_clock()
    assert isinstance(n.cmds[1], str) and n.cmds[1].startswith("systemctl stop storlab-clock-strobe.service")
    assert "systemctl start" in n.cmds[1]


@pytest.mark.parametrize(("delta", "period"), [(math.nan, 100), (0, 100), (5, 1), (5, "100; reboot"), (1e9, 100)])
def test_hostile_strobes_are_refused(delta: Any, period: Any) -> None:
    n = Recorded()
    refused(n, lambda: n.strobe_clock(delta, period))


def test_the_strobe_jumps_back_and_forth_and_stops_where_the_clock_would_be(monkeypatch: pytest.MonkeyPatch) -> None:
    """STROBE_PY run here with the clock, sleep and signal stood in for: after any number of jumps,
    its SIGTERM handler leaves the clock without an offset."""
    import signal
    clock = {"offset": 0.0}
    seen: list[float] = []
    handlers: dict[int, Any] = {}

    class Stop(Exception):
        pass

    def settime(_: int, t: float) -> None:
        clock["offset"] = round(t - 1000.0, 6)
        seen.append(clock["offset"])

    def sleep(_: float) -> None:
        if len(seen) == 5:
            raise Stop
    monkeypatch.setattr(time, "clock_gettime", lambda _: 1000.0 + clock["offset"])
    monkeypatch.setattr(time, "clock_settime", settime)
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(signal, "signal", lambda sig, fn: handlers.__setitem__(sig, fn))
    monkeypatch.setattr(sys, "argv", ["-c", "2.5", "100"])
    scope: dict[str, Any] = {}
    with pytest.raises(Stop):
        exec(compile(STROBE_PY, "strobe", "exec"), scope)
    assert seen == [2.5, 0.0, 2.5, 0.0, 2.5]  # ahead, back, ahead, ...
    with pytest.raises(SystemExit):
        handlers[signal.SIGTERM](signal.SIGTERM, None)
    assert clock["offset"] == 0.0  # stopped while ahead: put back
