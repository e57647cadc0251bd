"""Applying one scheduled fault to a lab: each kind's node verbs, and the undo that ends it.
`apply` returns the undo; the runner calls it when the event's time is up (or at once when the
run is stopped), then waits for the lab to be whole again before the next fault."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from harness import log, paths
from harness.chaos.schedule import Event
from harness.chaos.vocabulary import CLIENT_ROLES, HOST
from harness.errors import HarnessError
from harness.host import firewall
from harness.nodes.node import Node, partition
from harness.plan.model import Plan

Undo = Callable[[], None]


class ChaosLab(Protocol):
    """What the verbs need of a lab (harness.lab.lab.Lab is one)."""

    @property
    def name(self) -> str: ...

    @property
    def plan(self) -> Plan: ...

    def node(self, name: str) -> Node: ...


def _addresses(lab: ChaosLab, names: Sequence[str]) -> list[str]:
    return [a for n in names for a in lab.node(n).spec.addresses.values()]


def _crash(lab: ChaosLab, e: Event) -> Undo:
    node = lab.node(e.nodes[0])
    node.crash()
    return lambda: _started(node)


def _started(node: Node) -> None:
    node.start()


def _freeze(lab: ChaosLab, e: Event) -> Undo:
    node = lab.node(e.nodes[0])
    node.freeze()
    return node.thaw


def _hang(lab: ChaosLab, e: Event) -> Undo:
    node = lab.node(e.nodes[0])
    node.hang()
    return node.unhang


def _pause(lab: ChaosLab, e: Event) -> Undo:
    node, unit = lab.node(e.nodes[0]), _unit(e)
    node.pause_service(unit)
    return lambda: node.resume_service(unit)


def _netem(lab: ChaosLab, e: Event) -> Undo:
    node, p = lab.node(e.nodes[0]), e.params
    node.netem(delay_ms=p.get("delay_ms", 0), jitter_ms=p.get("jitter_ms", 0), loss_pct=p.get("loss_pct", 0))
    return node.netem_clear


def _disk_full(lab: ChaosLab, e: Event) -> Undo:
    node = lab.node(e.nodes[0])
    disk = next((d for d in node.spec.disks if d.name == e.disk), None)
    if disk is None or not disk.mount:
        raise HarnessError(f"{e.describe()}: {node.name} has no mounted data disk {e.disk}")
    node.fill(disk.mount)
    return lambda: _unfilled(node, str(disk.mount))


def _unfilled(node: Node, path: str) -> None:
    node.unfill(path)


def _device_mapper(lab: ChaosLab, e: Event) -> Undo:
    """dm-flakey, dm-delay or bad blocks under the event's disk; the undo puts the linear table back."""
    node, p = lab.node(e.nodes[0]), e.params
    if not e.disk:
        raise HarnessError(f"{e.describe()}: no disk named")
    disk = e.disk
    if e.kind == "dm-flakey":
        node.flakey(disk, p.get("up_s", 1), p.get("down_s", 1))
    elif e.kind == "dm-delay":
        node.delay_disk(disk, p.get("delay_ms", 100))
    else:
        node.bad_blocks(disk, int(p.get("ranges", 8)))
    return lambda: _restored(node, disk)


def _restored(node: Node, disk: str) -> None:
    node.dm_restore(disk)


def _clock(lab: ChaosLab, e: Event) -> Undo:
    node, skew = lab.node(e.nodes[0]), e.params.get("skew_s", 0.0)
    node.skew_clock(skew)
    return lambda: node.restore_clock(skew)


def _strobe(lab: ChaosLab, e: Event) -> Undo:
    node, p = lab.node(e.nodes[0]), e.params
    node.strobe_clock(p.get("delta_s", 10.0), p.get("period_ms", 200.0))
    return node.unstrobe_clock


def _link(lab: ChaosLab, e: Event) -> Undo:
    node = lab.node(e.nodes[0])
    node.set_link(False)
    return lambda: node.set_link(True)


def _kill(lab: ChaosLab, e: Event) -> Undo:
    node, unit = lab.node(e.nodes[0]), _unit(e)
    node.stop_service(unit, kill=True)
    return lambda: _restarted(node, unit)


def _restarted(node: Node, unit: str) -> None:
    """Started again now: a stop first cancels the restart systemd may have scheduled for the
    killed unit (glusterd's waits 60 s), which a plain start would wait behind; reset-failed
    zeroes its start rate limit, which a run's kills would otherwise use up (ceph-osd@ allows 3
    starts in 30 minutes, systemd's own restarts 10 s after a kill among them) and then refuse
    the start."""
    node.run(["systemctl", "stop", unit], timeout=60)
    node.run(["systemctl", "reset-failed", unit], timeout=60)
    node.start_service(unit)


def _unit(e: Event) -> str:
    if not e.daemon:
        raise HarnessError(f"{e.describe()}: no daemon named")
    return e.daemon


def _partition(lab: ChaosLab, e: Event) -> Undo:
    """The servers ``e.nodes`` cut from ``e.apart`` (nodes.node.partition): both ways, or for
    partition-oneway what ``e.nodes`` send the others is lost (they still hear them)."""
    stack = contextlib.ExitStack()
    stack.enter_context(partition([lab.node(n) for n in e.nodes], [lab.node(n) for n in e.apart],
                                  direction="out" if e.kind == "partition-oneway" else "both"))
    return stack.close


def _client_partition(lab: ChaosLab, e: Event) -> Undo:
    """The clients ``e.nodes`` (the KVM host, client nodes) cut from the servers ``e.apart``: the
    host by a table of its own (its ssh to the nodes kept), a client node by blackhole routes on
    both sides."""
    servers = _addresses(lab, e.apart)
    undos: list[Undo] = []
    try:
        for client in e.nodes:
            if client == HOST:
                tag = paths.tag(lab.name)
                firewall.cut(tag, servers)
                undos.append(functools.partial(_uncut, tag))
            else:
                cut = _partition(lab, Event(id=e.id, at=e.at, duration=e.duration, kind=e.kind, nodes=(client,),
                                            apart=e.apart))
                undos.append(cut)
    except Exception:
        for u in reversed(undos):
            u()
        raise

    def undo() -> None:
        for u in reversed(undos):
            u()
    return undo


def _client_flip(lab: ChaosLab, e: Event) -> Undo:
    """The clients cut from ``e.apart`` for the first half of the event, then from the other
    servers instead: the servers a client reaches change while it writes, without a moment in
    between in which it reaches all of them (where nothing keeps quorum, both sides take writes)."""
    other = tuple(n.name for n in lab.plan.nodes if n.name not in e.apart and n.name not in e.nodes
                  and not set(n.roles) <= CLIENT_ROLES)
    if not other:
        raise HarnessError(f"{e.describe()}: no other servers to flip the cut to")
    state: dict[str, Undo | bool] = {"undo": _client_partition(lab, e), "done": False}
    lock = threading.Lock()

    def flip() -> None:
        with lock:
            if state["done"]:
                return
            undo_first = state["undo"]
            if callable(undo_first) and e.nodes != (HOST,):  # the host's cut alone is replaced in one step
                undo_first()
            state["undo"] = _client_partition(lab, e.model_copy(update={"apart": other}))
            log.info(f"chaos: e{e.id} client-flip: {','.join(e.nodes)} now cut from {','.join(other)}")
    timer = threading.Timer(e.duration / 2, flip)
    timer.daemon = True
    timer.start()

    def undo() -> None:
        timer.cancel()
        with lock:
            state["done"] = True
            current = state["undo"]
            if callable(current):
                current()
    return undo


def _uncut(tag: str) -> None:
    firewall.uncut(tag)


VERBS: dict[str, Callable[[ChaosLab, Event], Undo]] = {
    "crash": _crash,
    "freeze": _freeze,
    "hang": _hang,
    "link": _link,
    "kill": _kill,
    "pause": _pause,
    "netem": _netem,
    "disk-full": _disk_full,
    "dm-flakey": _device_mapper,
    "dm-delay": _device_mapper,
    "dm-bad-blocks": _device_mapper,
    "clock": _clock,
    "clock-strobe": _strobe,
    "partition": _partition,
    "partition-oneway": _partition,
    "client-partition": _client_partition,
    "client-flip": _client_flip,
}


def apply(lab: ChaosLab, e: Event, host_clients: Sequence[Callable[[], None]] = (),
          own: Mapping[str, Callable[[Event], Undo]] | None = None) -> Undo:
    """Apply ``e`` and return its undo (HarnessError: a kind storlab has no verb for).
    ``host_clients``: what kills each of the KVM host's writer clients (client-crash); ``own``:
    the verbs of the lab's backends' own faults (ChaosSupport.faults), given the lab already."""
    if e.kind == "client-crash":
        for kill in host_clients:
            kill()
        return lambda: None  # the next write starts a new client: a restarted guest's qemu
    if own and e.kind in own:
        return own[e.kind](e)
    verb = VERBS.get(e.kind)
    if verb is None:
        raise HarnessError(f"{e.describe()}: storlab has no verb for fault kind {e.kind} yet")
    return verb(lab, e)
