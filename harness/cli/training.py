"""Commands for exercises on one lab (`storlab exercise ...`) and for classes (`storlab class ...`)."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from harness import locks, log
from harness.cli.lab import placement, placement_args
from harness.errors import HarnessError
from harness.lab import lease
from harness.lab.lab import Lab
from harness.spec.yamlload import load_file
from harness.training import classroom, handout, jump
from harness.training import exercise as training
from harness.training.klass import Klass, list_classes, parse_students


def cmd_exercise_list(args: argparse.Namespace) -> int:
    for name in training.available():
        ex = training.load(name)
        print(f"{name:<28} {ex.backend:<8} {ex.title}")
    return 0


def _lab_and_exercise(args: argparse.Namespace) -> tuple[Lab, training.Exercise]:
    lab = Lab.load(args.lab)
    ex = training.load(args.exercise)
    why = ex.fits(lab)
    if why:
        raise HarnessError(why)
    log.add_logfile(lab.logfile)
    return lab, ex


def cmd_exercise_apply(args: argparse.Namespace) -> int:
    lab, ex = _lab_and_exercise(args)
    locks.hold(lab.name)
    with log.step(f"lab {lab.name}: break for exercise {ex.name}"):
        ex.break_lab(lab)
    lab.save_state(exercise=ex.name)
    print(f"exercise {ex.name} applied to lab {lab.name}: {ex.title}")
    return 0


def cmd_exercise_solve(args: argparse.Namespace) -> int:
    lab, ex = _lab_and_exercise(args)
    locks.hold(lab.name)
    with log.step(f"lab {lab.name}: model solution of exercise {ex.name}"):
        ex.solve(lab)
    print(f"model solution of {ex.name} applied to lab {lab.name}")
    return 0


def cmd_exercise_grade(args: argparse.Namespace) -> int:
    lab, ex = _lab_and_exercise(args)
    junit = lab.dir / "grades" / f"{ex.name}.xml"
    g = training.grade(lab, ex, junit)
    for check, outcome in g.checks.items():
        print(f"  {outcome:<8} {check}")
        if check in g.messages:
            print(f"           {g.messages[check][:300]}")
    print(f"{lab.name} / {ex.name}: {'PASSED' if g.passed else 'FAILED'} (JUnit: {junit})")
    return 0 if g.passed else 1


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    add_class_commands(sub)
    p = sub.add_parser("exercise", help="training exercises on one lab: list, apply (break), solve, grade")
    esub = p.add_subparsers(dest="exercise_cmd", required=True)
    esub.add_parser("list", help="the shipped exercises (or those under $STORLAB_TRAINING)").set_defaults(fn=cmd_exercise_list)
    for verb, fn, text in (("apply", cmd_exercise_apply, "break the lab as the exercise says"),
                           ("solve", cmd_exercise_solve, "apply the model solution"),
                           ("grade", cmd_exercise_grade, "run the exercise's checks against the lab")):
        e = esub.add_parser(verb, help=text)
        e.add_argument("lab")
        e.add_argument("exercise")
        e.set_defaults(fn=fn)


# -- classes ------------------------------------------------------------------------------------
def _default_class_name(topology: str) -> str:
    data = load_file(topology).data
    lab = data.get("lab") if isinstance(data, dict) else None
    return re.sub(r"[^a-z0-9]", "", str(lab or ""))[:12] or "class"


def cmd_class_up(args: argparse.Namespace) -> int:
    students = parse_students(args.students, args.count)
    expire = lease.parse_duration(args.expire) if args.expire else None
    name = args.name or _default_class_name(args.topology)
    t0 = time.monotonic()
    provider, remote = placement(args)
    if args.cold_boot:  # each seat's plan records it (Lab.from_topology reads it)
        os.environ["STORLAB_COLD_BOOT"] = "1"
    k = classroom.up(args.topology, students, name, provider=provider, expire=expire,
                     jump_address=args.jump_address, parallel=args.parallel, remote=remote, budget=args.budget,
                     trusted=args.trusted_students, disk_budget=args.disk_budget)
    ok = [s for s in k.students if s not in k.failed]
    print(f"class {k.name}: {len(ok)} of {len(k.students)} labs up in {time.monotonic() - t0:.0f}s")
    if k.remote:
        spread: dict[str, list[str]] = {}
        for s, lab in k.labs().items():
            spread.setdefault(lab.where(), []).append(s)
        print("  placed:   " + "; ".join(f"{w}: {', '.join(v)}" for w, v in sorted(spread.items())))
    print(f"  handouts: {k.dir / 'handouts'}/STUDENT.tar.gz (ssh -F ssh_config NODE from the unpacked directory)")
    print(f"  next:     storlab class exercise {k.name} EXERCISE | grade | reset | status | down")
    return 0 if not k.failed else 1


def cmd_class_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for name in list_classes():
        k = Klass.load(name)
        st = classroom.status(k)
        rows.append({"class": name, "topology": k.topology, "students": len(k.students),
                     "labs_up": sum(1 for r in st if r["state"] == "up"), "exercise": k.exercise,
                     "expires_in": sorted({r["expires_in"] for r in st}),
                     "where": sorted({r["where"] for r in st if r["where"] != "-"})})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['class']:<13} {r['labs_up']}/{r['students']} labs up  exercise: {r['exercise'] or '-':<24} "
              f"expires: {', '.join(r['expires_in'])}  on: {', '.join(r['where']) or '-'}  ({r['topology']})")
    return 0


def cmd_class_status(args: argparse.Namespace) -> int:
    k = Klass.load(args.klass)
    rows = classroom.status(k)
    if args.json:
        print(json.dumps({"class": k.name, "topology": k.topology, "exercise": k.exercise, "students": rows}, indent=2))
        return 0
    print(f"class {k.name}: {k.topology}, exercise {k.exercise or '-'}")
    for r in rows:
        g = r["last_grade"]
        grade = "-" if not g else f"{g['exercise']} {'PASSED' if g['passed'] else 'FAILED'}"
        age = f"{r['age_seconds'] // 60}m" if r["age_seconds"] is not None else "-"
        print(f"  {r['student']:<16} {r['lab']:<30} {r['state']:<10} {r['where']:<22} age {age:<6} "
              f"expires {r['expires_in']:<16} grade {grade}")
    return 0


def cmd_class_down(args: argparse.Namespace) -> int:
    k = Klass.load(args.klass)
    problems = classroom.down(k)
    if problems:
        raise HarnessError(f"class {k.name}: not everything was removed:\n  " + "\n  ".join(problems))
    print(f"class {k.name} removed")
    return 0


def cmd_class_exercise(args: argparse.Namespace) -> int:
    k = Klass.load(args.klass)
    for s, outcome in classroom.exercise(k, args.exercise).items():
        print(f"  {s}: {outcome}")
    print(f"class {k.name}: exercise {args.exercise} handed out (handouts updated)")
    return 0


def cmd_class_solve(args: argparse.Namespace) -> int:
    k = Klass.load(args.klass)
    classroom.solve(k, args.exercise, args.student)
    print(f"class {k.name}: model solution of {args.exercise} applied to {args.student}")
    return 0


def cmd_class_grade(args: argparse.Namespace) -> int:
    k = Klass.load(args.klass)
    grades = classroom.grade(k, args.exercise)
    head, rows = classroom.summary_rows(k)
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(r))
    print(f"summary: {k.dir / 'grades' / 'summary.md'} and summary.html; JUnit per student in {k.dir / 'grades'}")
    return 0 if all(g.passed for g in grades.values()) else 1


def _class_labs(args: argparse.Namespace, what: str, fn: Callable[[Lab], float]) -> int:
    k = Klass.load(args.klass)
    failed = 0
    for s, r in classroom.for_students(k, args.student, fn).items():
        if isinstance(r, BaseException):
            failed += 1
            print(f"  {s}: {what} FAILED: {r}")
        else:
            print(f"  {s}: {what} in {r:.1f}s")
    return 1 if failed else 0


def cmd_class_reset(args: argparse.Namespace) -> int:
    return _class_labs(args, "reset", lambda lab: lab.reset())


def cmd_class_snapshot(args: argparse.Namespace) -> int:
    return _class_labs(args, f"snapshot {args.name}", lambda lab: lab.snapshot(args.name))


def cmd_class_revert(args: argparse.Namespace) -> int:
    return _class_labs(args, f"revert to {args.name}", lambda lab: lab.revert(args.name))


def cmd_class_lease(args: argparse.Namespace) -> int:
    seconds = lease.parse_duration(args.duration)
    k = Klass.load(args.klass)
    for s, lab in k.labs().items():
        lab.lease(seconds)
        print(f"  {s}: expires {lease.remaining(lab.state().expires)}")
    k.expire_seconds = seconds
    k.save()
    handout.refresh_access(k)
    return 0


def cmd_class_handout(args: argparse.Namespace) -> int:
    k = Klass.load(args.klass)
    handout.refresh_access(k)
    for s in k.labs():
        print(f"  {s}: {k.dir / 'handouts' / s}.tar.gz")
    return 0


def cmd_class_jump_setup(args: argparse.Namespace) -> int:
    print(jump.setup_jump(args.port))
    return 0


def _class_up_parser(c: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = c.add_parser("up", help="one lab per student, side by side, after a capacity check")
    u.add_argument("topology")
    who = u.add_mutually_exclusive_group(required=True)
    who.add_argument("--students", help="alice,bob,... or a file with one name a line")
    who.add_argument("--count", type=int, help="N students named s01..sNN")
    u.add_argument("--name", help="the class name (default: from the topology's lab name)")
    u.add_argument("--expire", metavar="DURATION", help="each lab's lease (4h, 90m); `storlab reap` removes them after")
    u.add_argument("--provider")
    placement_args(u)
    u.add_argument("--jump-address", default="127.0.0.1",
                   help="the address students reach this host's jump sshd at (put in their ssh config)")
    u.add_argument("--parallel", type=int, help="labs brought up at once (default: the host's CPU count, at least 2)")
    u.add_argument("--trusted-students", action="store_true",
                   help="the students may be root on this host: their labs may use any provider and role (privileged "
                        "containers, gluster and NFS-Ganesha in containers); without it each student's nodes run "
                        "where root inside cannot reach the host (incus: unprivileged containers; vagrant: VMs)")
    u.set_defaults(fn=cmd_class_up)


def _class_exercise_parsers(c: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = c.add_parser("exercise", help="break every student's lab as the exercise says; handouts get its text")
    e.add_argument("klass", metavar="CLASS")
    e.add_argument("exercise")
    e.set_defaults(fn=cmd_class_exercise)
    e = c.add_parser("solve", help="apply an exercise's model solution to one student's lab")
    e.add_argument("klass", metavar="CLASS")
    e.add_argument("exercise")
    e.add_argument("--student", required=True)
    e.set_defaults(fn=cmd_class_solve)
    e = c.add_parser("grade", help="run the exercise's checks on every student's lab: JUnit + summary table")
    e.add_argument("klass", metavar="CLASS")
    e.add_argument("--exercise", help="default: the class's current exercise")
    e.set_defaults(fn=cmd_class_grade)


def _class_lab_parsers(c: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = c.add_parser("reset", help="every (or one) student's lab back to its state after up")
    e.add_argument("klass", metavar="CLASS")
    e.add_argument("--student")
    e.set_defaults(fn=cmd_class_reset)
    for verb, fn in (("snapshot", cmd_class_snapshot), ("revert", cmd_class_revert)):
        e = c.add_parser(verb, help=f"{verb} every (or one) student's lab")
        e.add_argument("klass", metavar="CLASS")
        e.add_argument("name")
        e.add_argument("--student")
        e.set_defaults(fn=fn)
    e = c.add_parser("lease", help="set every lab's expiry to DURATION from now")
    e.add_argument("klass", metavar="CLASS")
    e.add_argument("duration")
    e.set_defaults(fn=cmd_class_lease)


def add_class_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("class", help="training classes: one lab per student, handouts, exercises, grading, reset")
    c = p.add_subparsers(dest="class_cmd", required=True)
    _class_up_parser(c)
    lst = c.add_parser("list", help="classes on this host")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(fn=cmd_class_list)
    for verb, fn, text in (("status", cmd_class_status, "each student's lab, state, age, expiry and last grade"),
                           ("down", cmd_class_down, "remove every lab of the class, its jump account and handouts"),
                           ("handout", cmd_class_handout, "write the handouts again")):
        e = c.add_parser(verb, help=text)
        e.add_argument("klass", metavar="CLASS")
        if verb == "status":
            e.add_argument("--json", action="store_true")
        e.set_defaults(fn=fn)
    _class_exercise_parsers(c)
    _class_lab_parsers(c)
    e = c.add_parser("jump-setup", help="start (or reload) the jump sshd students reach their nodes through")
    e.add_argument("--port", type=int, default=jump.DEFAULT_PORT)
    e.set_defaults(fn=cmd_class_jump_setup)
