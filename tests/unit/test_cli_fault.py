"""`storlab fault`: every action is a node verb with its arguments, an action the lab's provider
cannot give here is refused with the reason before anything is done, and undo actions are never
refused. A recording node stands in for a lab's node: no lab, no root."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from harness.cli import fault
from harness.cli.main import build_parser
from harness.errors import HarnessError
from harness.plan.model import DiskPlan
from harness.providers.capabilities import FAULTS


class Spec:
    def __init__(self, disks: tuple[DiskPlan, ...] = (), addresses: dict[str, str] | None = None) -> None:
        self.disks = disks
        self.addresses = addresses or {"storage": "10.0.0.1"}


class Recorder:
    """Records each verb called on it, with its arguments."""

    def __init__(self, name: str = "g1", spec: Spec | None = None) -> None:
        self.name = name
        self.spec = spec or Spec()
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, verb: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((verb, args, kwargs))
        return call


class FakeLab:
    def __init__(self, nodes: dict[str, Recorder]) -> None:
        self.nodes = nodes


def args(line: str) -> argparse.Namespace:
    return build_parser().parse_args(["fault", "lab1", "g1", *line.split()])


DISKS = (DiskPlan(name="brick", size=1 << 30, filesystem="xfs", mount="/bricks/b1", device=None, image="x"),
         DiskPlan(name="raw", size=1 << 30, filesystem="none", mount=None, device=None, image="y"))


def run(line: str, node: Recorder | None = None) -> Recorder:
    node = node or Recorder(spec=Spec(DISKS))
    lab = FakeLab({"g1": node, "g2": Recorder("g2", Spec(addresses={"storage": "10.0.0.2", "b": "10.1.0.2"}))})
    a = args(line)
    fault.ACTIONS[a.action][1](lab, node, a)  # type: ignore[arg-type]
    return node


@pytest.mark.parametrize(("line", "call"), [
    ("hang", ("hang", (), {})),
    ("unhang", ("unhang", (), {})),
    ("pause-service --unit glusterd.service", ("pause_service", ("glusterd.service",), {})),
    ("resume-service --unit glusterd.service", ("resume_service", ("glusterd.service",), {})),
    ("kill-service --unit glusterd.service", ("stop_service", ("glusterd.service",), {"kill": True})),
    ("pause-process --process glusterfsd", ("pause_process", ("glusterfsd",), {})),
    ("kill-process --process glusterfsd", ("kill_process", ("glusterfsd",), {})),
    ("fill", ("fill", ("/bricks/b1",), {})),  # the only mounted disk
    ("unfill --disk brick", ("unfill", ("/bricks/b1",), {})),
    ("clock-skew --seconds -300", ("skew_clock", (-300.0,), {})),
    ("clock-restore", ("restore_clock", (), {})),
    ("clock-strobe --seconds 3 --period-ms 150", ("strobe_clock", (3.0, 150.0), {})),
    ("clock-unstrobe", ("unstrobe_clock", (), {})),
    ("netem-clear --network storage", ("netem_clear", ("storage",), {})),
    ("isolate --direction out", ("block", (["10.0.0.2", "10.1.0.2"],), {"on": True, "direction": "out"})),
    ("rejoin", ("block", (["10.0.0.2", "10.1.0.2"],), {"on": False, "direction": "both"})),
])
def test_each_action_is_its_node_verb(line: str, call: tuple[str, tuple[Any, ...], dict[str, Any]]) -> None:
    assert run(line).calls == [call]


def test_netem_passes_every_figure() -> None:
    node = run("netem --delay-ms 40 --jitter-ms 10 --loss-pct 2.5 --rate-kbit 800")
    assert node.calls == [("netem", (None,), {"delay_ms": 40.0, "jitter_ms": 10.0, "loss_pct": 2.5, "duplicate_pct": 0.0,
                                              "reorder_pct": 0.0, "corrupt_pct": 0.0, "rate_kbit": 800.0})]


@pytest.mark.parametrize(("line", "needs"), [("pause-service", "--unit"), ("kill-process", "--process"),
                                             ("fill --disk raw", "--disk")])
def test_missing_or_wrong_target_is_refused_with_the_option(line: str, needs: str) -> None:
    with pytest.raises(HarnessError, match=needs):
        run(line)


def test_fill_asks_which_disk_when_there_are_two() -> None:
    two = (DISKS[0], DISKS[0].model_copy(update={"name": "log", "mount": "/log"}))
    with pytest.raises(HarnessError, match=r"--disk \(brick, log\)"):
        run("fill", Recorder(spec=Spec(two)))


def test_every_action_names_a_declared_fault_kind_or_is_an_undo() -> None:
    assert {kind for kind, _ in fault.ACTIONS.values()} - {None} <= set(FAULTS)


def test_a_fault_the_provider_cannot_give_here_is_refused_with_why() -> None:
    why = fault.refusal("lxc", "netem", frozenset())
    assert why is not None and "sch_netem" in why
    assert fault.refusal("lxc", "netem", frozenset({"sch_netem"})) is None
    clock = fault.refusal("lxc", "clock-skew", frozenset())
    assert clock is not None and "clock" in clock
    assert fault.refusal("vagrant", "clock-skew", frozenset()) is None
    # undoing is never refused: what was done must be undoable
    assert fault.refusal("lxc", "netem-clear", frozenset()) is None
    assert fault.refusal("lxc", "clock-restore", frozenset()) is None


def test_flakey_names_the_disk_and_its_figures() -> None:
    node = run("flakey --up-s 2 --down-s 4 --mode error_writes")
    assert node.calls == [("flakey", ("brick", 2.0, 4.0, "error_writes"), {})]
    assert fault.refusal("lxc", "flakey", frozenset()) is not None
    assert fault.refusal("vagrant", "flakey", frozenset()) is None
    assert run("disk-delay --delay-ms 80").calls == [("delay_disk", ("brick", 80.0), {})]
    assert run("bad-blocks --count 3").calls == [("bad_blocks", ("brick", 3), {})]
    assert run("dm-restore --disk brick").calls == [("dm_restore", ("brick",), {})]
