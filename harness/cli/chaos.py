"""`storlab chaos LAB`: a seeded fault schedule on a live lab with a write ledger and a checker;
`--replay RUN` runs a saved run's schedule again, `--shrink` reduces a failing one.

Exit codes: 0 the checker found nothing, 3 it found lost/torn/corrupt/stale writes or a stall
past the backend's bound (the run directory says which), 1 the harness could not run it."""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from harness import locks, log
from harness.chaos import runner
from harness.chaos.ledger import read
from harness.chaos.schedule import Schedule
from harness.chaos.shrink import shrink
from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.lab.lease import parse_duration

#: the exit code of a run whose checker found something
FOUND = 3


def seconds_arg(text: str, what: str) -> float:
    value = parse_duration(text)
    if value is None:
        raise HarnessError(f"{what} {text!r}: give a duration such as 5m or 90s")
    return value


def schedule_for(lab: Lab, args: argparse.Namespace) -> Schedule:
    """The run's schedule: the replayed run's, or one drawn from the seed for this lab."""
    if args.replay:
        return runner.load_schedule(args.replay)
    seed = args.seed if args.seed is not None else secrets.randbelow(1 << 31)
    kinds = [k.strip() for k in args.faults.split(",") if k.strip()] if args.faults else None
    return runner.draw_for(lab, seed, seconds_arg(args.duration, "--duration"), kinds, args.warmup)


def cache_mode(args: argparse.Namespace) -> str:
    """--cache as given; else, replaying a run directory, the mode its writers had (its ledger's
    first record); else none."""
    if args.cache:
        return str(args.cache)
    if args.replay and (Path(args.replay) / "ledger.jsonl").is_file():
        mode = read(Path(args.replay) / "ledger.jsonl").header.get("cache")
        return "unsafe" if mode == "unsafe" else "none"
    return "none"


def run_dir(args: argparse.Namespace, lab: str, seed: int, suffix: str = "") -> Path:
    return runner.run_dir_for(lab, seed, Path(args.out) if args.out else None, suffix)


def cmd_chaos(args: argparse.Namespace) -> int:
    lab = Lab.load(args.lab)
    locks.hold(lab.name)
    sched = schedule_for(lab, args)
    settings = runner.Settings(interval=args.interval, sync=cache_mode(args) == "none")
    out = runner.run(lab, sched, run_dir(args, lab.name, sched.seed), settings)
    for line in runner.summary(out):
        print(line)
    if out.verdict.ok or not args.shrink:
        return 0 if out.verdict.ok else FOUND
    budget = seconds_arg(args.shrink_budget, "--shrink-budget")
    tries = [0]

    def fails(candidate: Schedule) -> bool:
        tries[0] += 1
        o = runner.run(lab, candidate, run_dir(args, lab.name, sched.seed, f"-shrink{tries[0]}"), settings)
        log.info(f"chaos: shrink try {tries[0]}: events {[e.id for e in candidate.events]}: "
                 f"{'fails' if not o.verdict.ok else 'passes'}")
        return not o.verdict.ok
    res = shrink(sched.only([e.id for e in sched.events]), fails, seconds=budget)
    smallest = out.run_dir / "shrunk-schedule.json"
    smallest.write_text(res.schedule.to_json())
    print(res.summary())
    print(f"smallest schedule: {smallest} (replay it: storlab chaos {lab.name} --replay {smallest})")
    return FOUND


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("chaos", help="seeded faults on a live lab while writers write; check every acknowledged write")
    p.add_argument("lab")
    p.add_argument("--seed", type=int, help="the schedule's seed (default: a random one, printed)")
    p.add_argument("--duration", default="5m", help="the schedule's length on its own clock (recovery waits "
                                                    "stop it): 90s, 5m, 1h (default 5m)")
    p.add_argument("--faults", metavar="KIND,...", help="fault kinds to draw from (default: every one the lab's "
                                                        "provider can give here; see README)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of writes before the first fault and after the last")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between one writer's writes")
    p.add_argument("--cache", choices=("none", "unsafe"),
                   help="the writers' cache mode, as a guest disk's: none (default; a replayed run's own mode) "
                        "acknowledges a write once it is durable (FUA, fsync); unsafe once the client took it "
                        "(what its cache can lose)")
    p.add_argument("--replay", metavar="RUN", help="run the schedule of a run directory (or a schedule.json) again")
    p.add_argument("--shrink", action="store_true", help="when the checker finds something, replay ever smaller "
                                                         "parts of the schedule until the smallest that still fails")
    p.add_argument("--shrink-budget", default="30m", help="how long --shrink may take (default 30m)")
    p.add_argument("--out", help="where run directories go (default: STORLAB_HOME/chaos)")
    p.set_defaults(fn=cmd_chaos)
