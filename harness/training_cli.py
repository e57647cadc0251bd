"""Commands for exercises on one lab (`storlab exercise ...`) and for classes (`storlab class ...`)."""

from __future__ import annotations

import argparse

from . import locks, log, training
from .errors import HarnessError
from .lab import Lab


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
    print(f"{lab.name} / {ex.name}: {'PASSED' if g.passed else 'FAILED'} (JUnit: {junit})")
    return 0 if g.passed else 1


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("exercise", help="training exercises on one lab: list, apply (break), solve, grade")
    esub = p.add_subparsers(dest="exercise_cmd", required=True)
    esub.add_parser("list", help="the exercises under training/").set_defaults(fn=cmd_exercise_list)
    for verb, fn, text in (("apply", cmd_exercise_apply, "break the lab as the exercise says"),
                           ("solve", cmd_exercise_solve, "apply the model solution"),
                           ("grade", cmd_exercise_grade, "run the exercise's checks against the lab")):
        e = esub.add_parser(verb, help=text)
        e.add_argument("lab")
        e.add_argument("exercise")
        e.set_defaults(fn=fn)
