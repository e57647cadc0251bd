"""`storlab fault LAB NODE ACTION`: one fault (or its undo) on one node, left in place until the
matching undo: what an instructor breaks for a class and what an engineer does by hand before
writing a test. Each action is a node verb (harness.nodes); an action whose fault kind the lab's
provider cannot give on this host is refused with the reason, never faked."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from harness import locks
from harness.errors import HarnessError
from harness.host.facts import loaded_modules
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import DiskPlan
from harness.providers.capabilities import available


def _unit(args: argparse.Namespace) -> str:
    if not args.unit:
        raise HarnessError(f"{args.action} needs --unit UNIT (a systemd unit on the node, e.g. glusterd.service)")
    return str(args.unit)


def _process(args: argparse.Namespace) -> str:
    if not args.process:
        raise HarnessError(f"{args.action} needs --process NAME (the exact process name, e.g. glusterfsd)")
    return str(args.process)


def _disk(node: Node, args: argparse.Namespace) -> DiskPlan:
    """The node's mounted data disk --disk (its only mounted one when not given)."""
    mounted = [d for d in node.spec.disks if d.mount]
    chosen = [d for d in mounted if d.name == args.disk] if args.disk else mounted
    if len(chosen) != 1:
        names = ", ".join(d.name for d in mounted) or "none"
        raise HarnessError(f"{args.action}: name one of {node.name}'s mounted data disks with --disk ({names})")
    return chosen[0]


def _mount(node: Node, args: argparse.Namespace) -> str:
    return str(_disk(node, args).mount)


def _isolate(lab: Lab, node: Node, args: argparse.Namespace, on: bool) -> None:
    """Cut (restore) the node's traffic to every other lab node; the host's ssh path stays."""
    others = [a for other in lab.nodes.values() if other is not node for a in other.spec.addresses.values()]
    node.block(others, on=on, direction=args.direction)


Action = Callable[[Lab, Node, argparse.Namespace], object]

#: action -> (the fault kind a provider declares for it, None: needs none; what it does)
ACTIONS: dict[str, tuple[str | None, Action]] = {
    "crash": ("crash", lambda lab, n, a: n.crash()),
    "start": (None, lambda lab, n, a: n.start()),
    "link-down": ("link", lambda lab, n, a: n.set_link(False, a.network)),
    "link-up": (None, lambda lab, n, a: n.set_link(True, a.network)),
    "freeze": ("freeze", lambda lab, n, a: n.freeze()),
    "thaw": (None, lambda lab, n, a: n.thaw()),
    "hang": ("hang", lambda lab, n, a: n.hang()),
    "unhang": (None, lambda lab, n, a: n.unhang()),
    "isolate": ("partition", lambda lab, n, a: _isolate(lab, n, a, True)),
    "rejoin": (None, lambda lab, n, a: _isolate(lab, n, a, False)),
    "stop-service": ("kill", lambda lab, n, a: n.stop_service(_unit(a))),
    "kill-service": ("kill", lambda lab, n, a: n.stop_service(_unit(a), kill=True)),
    "start-service": (None, lambda lab, n, a: n.start_service(_unit(a))),
    "pause-service": ("pause", lambda lab, n, a: n.pause_service(_unit(a))),
    "resume-service": (None, lambda lab, n, a: n.resume_service(_unit(a))),
    "kill-process": ("kill", lambda lab, n, a: n.kill_process(_process(a))),
    "pause-process": ("pause", lambda lab, n, a: n.pause_process(_process(a))),
    "resume-process": (None, lambda lab, n, a: n.resume_process(_process(a))),
    "netem": ("netem", lambda lab, n, a: n.netem(a.network, delay_ms=a.delay_ms, jitter_ms=a.jitter_ms,
                                                 loss_pct=a.loss_pct, duplicate_pct=a.duplicate_pct,
                                                 reorder_pct=a.reorder_pct, corrupt_pct=a.corrupt_pct,
                                                 rate_kbit=a.rate_kbit)),
    "netem-clear": (None, lambda lab, n, a: n.netem_clear(a.network)),
    "fill": ("disk-full", lambda lab, n, a: n.fill(_mount(n, a))),
    "unfill": (None, lambda lab, n, a: n.unfill(_mount(n, a))),
    "flakey": ("dm-flakey", lambda lab, n, a: n.flakey(_disk(n, a).name, a.up_s, a.down_s, a.mode)),
    "disk-delay": ("dm-flakey", lambda lab, n, a: n.delay_disk(_disk(n, a).name, a.delay_ms)),
    "bad-blocks": ("dm-flakey", lambda lab, n, a: print(n.bad_blocks(_disk(n, a).name, a.count))),
    "dm-restore": (None, lambda lab, n, a: print(n.dm_restore(_disk(n, a).name))),
    "clock-skew": ("clock", lambda lab, n, a: n.skew_clock(a.seconds)),
    "clock-restore": (None, lambda lab, n, a: n.restore_clock()),
    "clock-strobe": ("clock", lambda lab, n, a: n.strobe_clock(a.seconds, a.period_ms)),
    "clock-unstrobe": (None, lambda lab, n, a: n.unstrobe_clock()),
}


def refusal(provider: str, action: str, host_modules: frozenset[str]) -> str | None:
    """Why ``provider`` cannot give ``action`` on this host (None: it can, or the action is an undo)."""
    kind = ACTIONS[action][0]
    caps = available().get(provider)
    if kind is None or caps is None:
        return None
    given, why = caps.faults_offered(host_modules)
    return None if kind in given else f"{action} ({kind}) on {provider} nodes: {why.get(kind, 'not declared')}"


def cmd_fault(args: argparse.Namespace) -> int:
    lab = Lab.load(args.lab)
    locks.hold(lab.name)  # not while another process builds or removes it
    node = lab.node(args.node)
    why = refusal(lab.plan.provider, args.action, loaded_modules())
    if why:
        raise HarnessError(why)
    ACTIONS[args.action][1](lab, node, args)
    print(f"{args.action} {node.name}: done")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fault", help="inject a fault on a node, or undo it: crash/start, hang/unhang, "
                       "isolate/rejoin, netem, fill, flakey (dm-flakey), clock-skew, services and processes")
    p.add_argument("lab")
    p.add_argument("node")
    p.add_argument("action", choices=list(ACTIONS))
    p.add_argument("--network", help="link-*, netem: one lab network (default: every one)")
    p.add_argument("--unit", help="*-service: a systemd unit on the node")
    p.add_argument("--process", help="*-process: an exact process name (e.g. glusterfsd)")
    p.add_argument("--direction", choices=["both", "in", "out"], default="both",
                   help="isolate/rejoin: out = what the node sends is lost, in = what it hears is lost")
    p.add_argument("--disk", help="fill/unfill, flakey, disk-delay, bad-blocks, dm-restore: the data disk "
                   "(default: the node's only mounted one)")
    p.add_argument("--count", type=int, default=8, help="bad-blocks: ranges of 128 bad sectors")
    p.add_argument("--up-s", type=float, default=5.0, help="flakey: seconds the disk works")
    p.add_argument("--down-s", type=float, default=5.0, help="flakey: seconds it fails, after each up")
    p.add_argument("--mode", choices=["error", "error_writes", "drop_writes"], default="error",
                   help="flakey: what fails while down (drop_writes: writes acknowledged and lost)")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="clock-skew: seconds to move the clock (negative: back); clock-strobe: how far it jumps")
    p.add_argument("--period-ms", type=float, default=200.0, help="clock-strobe: milliseconds between jumps")
    for name, what in (("delay-ms", "delay"), ("jitter-ms", "jitter"), ("loss-pct", "loss, percent"),
                       ("duplicate-pct", "duplicates, percent"), ("reorder-pct", "reordered, percent"),
                       ("corrupt-pct", "corrupted, percent"), ("rate-kbit", "bandwidth limit, kbit/s")):
        p.add_argument(f"--{name}", type=float, default=0.0, help=f"netem (disk-delay: --delay-ms): {what}")
    p.set_defaults(fn=cmd_fault)
