"""`storlab upgrade`: a running lab's backends taken to another Debian release's versions
(harness.upgrade.rolling), optionally while writers write, every acknowledged write then checked."""

from __future__ import annotations

import argparse

from harness import locks
from harness.chaos import runner
from harness.cli.chaos import FOUND, seconds_arg
from harness.lab.lab import Lab
from harness.upgrade import rolling


def cmd_upgrade(args: argparse.Namespace) -> int:
    lab = Lab.load(args.lab)
    locks.hold(lab.name)
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] if args.nodes else None
    reports: list[rolling.Report] = []

    def act() -> None:
        reports.append(rolling.upgrade(lab, args.to, nodes, pause_after=args.pause_after, offline=args.offline,
                                       full=args.full,
                                       gate_timeout=seconds_arg(args.gate_timeout, "--gate-timeout")))
    if not args.check_writes:
        act()
    else:
        out = runner.during(lab, "upgrade", act, runner.run_dir_for(lab.name, 0, suffix=f"-upgrade-{args.to}"),
                            before=args.warmup, after=args.warmup)
        for line in runner.summary(out):
            print(line)
        if not out.verdict.ok:
            return FOUND
    for line in reports[0].lines() if reports else []:
        print(line)
    if reports:
        print(f"lab {lab.name}: upgrade to {args.to} {'paused' if reports[0].paused_after else 'done'} "
              f"in {reports[0].seconds:.0f}s")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("upgrade", help="take a running lab's backends to another Debian release's versions, "
                                       "server by server behind each backend's gates")
    p.add_argument("lab")
    p.add_argument("--to", required=True, help="the release whose versions to take (bookworm, trixie)")
    p.add_argument("--nodes", metavar="NODE,...", help="only these servers, in this order (default: every server, "
                                                       "in the topology's order)")
    p.add_argument("--pause-after", metavar="NODE", help="stop after this node: the lab is left running mixed "
                                                        "versions (run the command again to finish)")
    p.add_argument("--offline", action="store_true", help="every server of a backend stopped, upgraded and started "
                                                          "together (the offline procedure; clients stall meanwhile)")
    p.add_argument("--full", action="store_true", help="each server's whole Debian distribution (dist-upgrade, from "
                                                       "an offline bundle of every package the release replaces), "
                                                       "then a clean reboot, before its backend starts")
    p.add_argument("--gate-timeout", default="10m", help="how long a gate may stay shut before the upgrade stops (10m)")
    p.add_argument("--check-writes", action="store_true", help="writers write through the KVM host's clients all "
                                                               "along; every acknowledged write is read back and "
                                                               "checked (exit 3 if one was lost)")
    p.add_argument("--warmup", type=float, default=5.0, help="with --check-writes: seconds of writes before and after")
    p.set_defaults(fn=cmd_upgrade)
