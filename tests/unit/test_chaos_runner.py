"""The chaos run's parts without a lab: each fault kind's verbs and undo on recording nodes, the
schedule driven on its own clock (recovery waits stop it, every fault undone on the way out, the
ledger's fault windows), and the qemu-io client on a local raw image (qemu's own block layer:
FUA writes, reads, an unreadable location, a killed client replaced)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import runner, verbs
from harness.chaos.checker import Unreadable
from harness.chaos.ledger import Ledger, decode_block, read
from harness.chaos.qemuio import QemuIo, QemuIoWriter, image_opts, read_blocks
from harness.chaos.schedule import Event, Schedule
from harness.chaos.vocabulary import HOST, KINDS, UNDRAWN, LabShape, NodeShape
from harness.errors import HarnessError
from harness.host import firewall


class Disk:
    def __init__(self, name: str, mount: str) -> None:
        self.name, self.mount = name, mount


class Spec:
    def __init__(self, name: str, address: str) -> None:
        self.addresses = {"storage": address}
        self.disks = [Disk("brick1", "/gluster/bricks/1")]
        self.roles = ("gluster",)
        self.name = name


class FakeNode:
    """Records each verb called on it, as 'verb arg...'."""

    def __init__(self, name: str, address: str, calls: list[str]) -> None:
        self.name, self.spec, self.calls = name, Spec(name, address), calls

    def __getattr__(self, verb: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            self.calls.append(" ".join([f"{self.name}.{verb}", *map(str, args),
                                        *(f"{k}={v}" for k, v in sorted(kw.items()))]))
            return type("R", (), {"ok": True})()
        return call


class FakePlan:
    def __init__(self, nodes: list[FakeNode]) -> None:
        self.nodes, self.provider = [n.spec for n in nodes], "lxc"


class FakeLab:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.name = "gluster3"
        self.nodes = {f"g{i}": FakeNode(f"g{i}", f"10.0.0.{i}", self.calls) for i in (1, 2, 3)}
        self.plan = FakePlan(list(self.nodes.values()))

    def node(self, name: str) -> Any:
        return self.nodes[name]


def ev(kind: str, nodes: tuple[str, ...] = ("g1",), **kw: Any) -> Event:
    return Event(id=kw.pop("id", 0), at=kw.pop("at", 1.0), duration=kw.pop("duration", 2.0), kind=kind, nodes=nodes, **kw)


@pytest.mark.parametrize(("event", "applied", "undone"), [
    (ev("crash"), ["g1.crash"], ["g1.start"]),
    (ev("freeze"), ["g1.freeze"], ["g1.thaw"]),
    (ev("hang"), ["g1.hang"], ["g1.unhang"]),
    (ev("link"), ["g1.set_link False"], ["g1.set_link True"]),
    (ev("kill", daemon="glusterd.service"), ["g1.stop_service glusterd.service kill=True"],
     ["g1.run ['systemctl', 'stop', 'glusterd.service'] timeout=60",
      "g1.run ['systemctl', 'reset-failed', 'glusterd.service'] timeout=60", "g1.start_service glusterd.service"]),
    (ev("pause", daemon="glusterd.service"), ["g1.pause_service glusterd.service"], ["g1.resume_service glusterd.service"]),
    (ev("netem", params={"delay_ms": 40, "jitter_ms": 5, "loss_pct": 1}),
     ["g1.netem delay_ms=40.0 jitter_ms=5.0 loss_pct=1.0"], ["g1.netem_clear"]),
    (ev("disk-full", disk="brick1"), ["g1.fill /gluster/bricks/1"], ["g1.unfill /gluster/bricks/1"]),
    (ev("dm-flakey", disk="brick1", params={"up_s": 2, "down_s": 3}), ["g1.flakey brick1 2.0 3.0"],
     ["g1.dm_restore brick1"]),
    (ev("dm-delay", disk="brick1", params={"delay_ms": 120}), ["g1.delay_disk brick1 120.0"], ["g1.dm_restore brick1"]),
    (ev("dm-bad-blocks", disk="brick1", params={"ranges": 4}), ["g1.bad_blocks brick1 4"], ["g1.dm_restore brick1"]),
    (ev("clock", params={"skew_s": -120}), ["g1.skew_clock -120.0"], ["g1.restore_clock -120.0"]),
    (ev("clock-strobe", params={"delta_s": 5, "period_ms": 100}), ["g1.strobe_clock 5.0 100.0"], ["g1.unstrobe_clock"]),
    (ev("partition", apart=("g2", "g3")),
     ["g1.block ['10.0.0.2', '10.0.0.3'] direction=both", "g2.block ['10.0.0.1'] direction=both",
      "g3.block ['10.0.0.1'] direction=both"],
     ["g1.block ['10.0.0.2', '10.0.0.3'] direction=both on=False", "g2.block ['10.0.0.1'] direction=both on=False",
      "g3.block ['10.0.0.1'] direction=both on=False"]),
    # one way: dropped where it arrives (a drop where it leaves hands the sender EPERM)
    (ev("partition-oneway", apart=("g2", "g3")),
     ["g2.block ['10.0.0.1'] direction=in", "g3.block ['10.0.0.1'] direction=in"],
     ["g2.block ['10.0.0.1'] direction=in on=False", "g3.block ['10.0.0.1'] direction=in on=False"]),
])
def test_each_kind_applies_its_verbs_and_its_undo_reverses_them(event: Event, applied: list[str], undone: list[str]) -> None:
    lab = FakeLab()
    undo = verbs.apply(lab, event)  # type: ignore[arg-type]
    assert lab.calls == applied
    del lab.calls[:]
    undo()
    assert lab.calls == undone


def recorded_cuts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    cuts: list[tuple[str, list[str]]] = []

    def uncut(tag: str) -> bool:
        cuts.append(("uncut", []))
        return True
    monkeypatch.setattr(firewall, "cut", lambda tag, addrs: cuts.append(("cut", addrs)))
    monkeypatch.setattr(firewall, "uncut", uncut)
    return cuts


def test_the_host_is_cut_from_servers_by_its_own_table_and_client_crash_kills_its_clients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cuts = recorded_cuts(monkeypatch)
    lab = FakeLab()
    undo = verbs.apply(lab, ev("client-partition", (HOST,), apart=("g1", "g2")))  # type: ignore[arg-type]
    assert cuts == [("cut", ["10.0.0.1", "10.0.0.2"])] and lab.calls == []  # the nodes are not touched
    undo()
    assert cuts[-1] == ("uncut", [])
    killed: list[int] = []
    verbs.apply(lab, ev("client-crash", (HOST,)), [lambda: killed.append(1), lambda: killed.append(2)])()  # type: ignore[arg-type]
    assert killed == [1, 2]


def test_client_flip_moves_the_cut_to_the_other_servers_at_half_time(monkeypatch: pytest.MonkeyPatch) -> None:
    cuts = recorded_cuts(monkeypatch)
    undo = verbs.apply(FakeLab(), ev("client-flip", (HOST,), apart=("g1",), duration=0.4))  # type: ignore[arg-type]
    time.sleep(0.5)
    undo()
    # replaced in one step (no uncut between: no moment in which the host reaches every server)
    assert cuts == [("cut", ["10.0.0.1"]), ("cut", ["10.0.0.2", "10.0.0.3"]), ("uncut", [])]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(HarnessError, match="no verb"):
        verbs.apply(FakeLab(), ev("dm-dust", disk="brick1"))  # type: ignore[arg-type]


class Sup:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def health(self, lab: Any) -> None:
        self.log.append("health")

    def faults(self) -> dict[str, Any]:
        return {}


def drive(tmp_path: Path, events: tuple[Event, ...], monkeypatch: pytest.MonkeyPatch,
          fail_on: str | None = None) -> tuple[list[str], float, Path]:
    log: list[str] = []

    def apply(lab: Any, e: Event, crashers: Any = (), own: Any = None) -> verbs.Undo:
        if e.kind == fail_on:
            raise HarnessError(f"{e.kind} failed")
        log.append(f"apply e{e.id}")
        return lambda: log.append(f"undo e{e.id}")
    monkeypatch.setattr(verbs, "apply", apply)
    sched = Schedule(seed=1, duration=1.5, provider="test", kinds=("crash", "freeze"), events=events)
    path = tmp_path / "ledger.jsonl"
    with Ledger.open(path, seed=1, sync=False) as ledger:
        paused = runner.drive(FakeLab(), sched, ledger, [Sup(log)], [], runner.Settings())  # type: ignore[arg-type,list-item]
    return log, paused, path


def test_drive_applies_each_fault_at_its_time_and_waits_for_recovery_when_none_is_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = (ev("crash", id=0, at=0.2, duration=0.5), ev("freeze", ("g2",), id=1, at=0.4, duration=0.2),
              ev("crash", ("g3",), id=2, at=1.0, duration=0.2))
    t0 = time.monotonic()
    log, _, path = drive(tmp_path, events, monkeypatch)
    # overlapping faults: the lab is awaited whole only once both are undone
    assert log == ["apply e0", "apply e1", "undo e1", "undo e0", "health", "apply e2", "undo e2", "health"]
    assert time.monotonic() - t0 >= 1.5  # the schedule's length, on its own clock
    faults = [(r["id"], r["phase"], r["kind"]) for r in read(path).of("fault")]
    assert faults == [(0, "start", "crash"), (1, "start", "freeze"), (1, "end", "freeze"), (0, "end", "crash"),
                      (2, "start", "crash"), (2, "end", "crash")]


def test_a_fault_that_fails_to_apply_leaves_none_in_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = (ev("crash", id=0, at=0.1, duration=1.0), ev("freeze", ("g2",), id=1, at=0.2, duration=0.5))
    with pytest.raises(HarnessError, match="freeze failed"):
        drive(tmp_path, events, monkeypatch, fail_on="freeze")


needs_qemu_io = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="qemu-io is not installed (qemu-utils)")


def test_image_opts_refuse_what_would_start_another_option() -> None:
    assert image_opts({"file.driver": "gluster", "file.server.0.port": 24007}) == \
        "file.driver=gluster,file.server.0.port=24007"
    for bad in ({"file.path": "a,file.driver=file"}, {"file.path": "x y"}, {"Bad-Key": "v"}, {"file.path": ""}):
        with pytest.raises(HarnessError, match="not a safe"):
            image_opts(bad)


@needs_qemu_io
def test_qemu_io_writes_blocks_fua_and_a_new_client_reads_them_back(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(64 * 4096))
    opts: dict[str, str | int] = {"file.driver": "file", "file.filename": str(img)}
    client = QemuIo(opts, tmp_path / "client.log")
    op = QemuIoWriter(client, "w1", "disk", tmp_path / "w1.blk", span=16 * 4096)
    for seq in range(20):
        op(seq)
    client.kill()  # a crashed client: the next write starts another
    op(20)
    client.close()
    where = [("disk", op.offset(s), 4096) for s in range(16)] + [("disk", 64 * 4096, 4096)]  # the last: past the end
    got = read_blocks(opts, tmp_path / "read.log", "disk", where)
    seen = {o: decode_block(b) for (_, o), b in got.items() if isinstance(b, bytes)}
    assert seen[op.offset(4)] is not None and seen[op.offset(4)].seq == 20  # type: ignore[union-attr]
    assert seen[op.offset(5)] is not None and seen[op.offset(5)].seq == 5 and seen[op.offset(5)].intact  # type: ignore[union-attr]
    assert isinstance(got[("disk", 64 * 4096)], Unreadable)


@needs_qemu_io
def test_a_refused_write_raises_with_the_clients_words(tmp_path: Path) -> None:
    img = tmp_path / "ro.img"
    img.write_bytes(bytes(4096))
    client = QemuIo({"file.driver": "file", "file.filename": str(img), "read-only": "on"}, tmp_path / "c.log")
    with pytest.raises(OSError):
        QemuIoWriter(client, "w1", "ro", tmp_path / "b.blk", span=4096)(0)
    client.close()


def test_a_replayed_run_keeps_its_cache_mode_unless_told(tmp_path: Path) -> None:
    from argparse import Namespace

    from harness.cli.chaos import cache_mode
    Ledger.open(tmp_path / "ledger.jsonl", seed=3, cache="unsafe").close()  # as runner.run writes it
    assert cache_mode(Namespace(cache=None, replay=str(tmp_path))) == "unsafe"
    assert cache_mode(Namespace(cache="none", replay=str(tmp_path))) == "none"
    assert cache_mode(Namespace(cache=None, replay=None)) == "none"


def test_during_checks_an_action_as_one_undrawn_fault_of_every_server(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    lab = FakeLab()
    shape = LabShape("lxc", tuple(NodeShape(n, ("gluster",)) for n in lab.nodes), (HOST,), frozenset())
    monkeypatch.setattr(runner, "supports", lambda lab: [])
    monkeypatch.setattr(runner, "shape", lambda lab, sup: shape)
    seen: dict[str, Any] = {}

    def run(lab: Any, sched: Schedule, run_dir: Path, settings: Any, extra: Any) -> str:
        seen.update(sched=sched, extra=extra)
        return "outcome"
    monkeypatch.setattr(runner, "run", run)
    done: list[str] = []
    assert runner.during(lab, "reconfigure", lambda: done.append("reconfigured"), tmp_path, before=4) == "outcome"  # type: ignore[arg-type,comparison-overlap]
    sched: Schedule = seen["sched"]
    (e,) = sched.events
    assert (e.kind, e.at, e.nodes) == ("reconfigure", 4.0, ("g1", "g2", "g3")) and sched.duration == pytest.approx(9.1)
    seen["extra"]["reconfigure"](e)()
    assert done == ["reconfigured"]
    # the kind is known to a schedule's check only where the caller gives its verb; it is never drawn
    assert sched.problems(shape) == [f"{e.describe()}: unknown fault kind"]
    given = dataclasses.replace(shape, backend_faults=frozenset({"reconfigure"}))
    assert sched.problems(given, {**KINDS, **UNDRAWN}) == [] and "reconfigure" not in KINDS
