"""Exercises: a directory that breaks a lab on purpose, knows the model solution, and grades a lab
with a pytest check suite run through the plugin (``--lab NAME``). They ship as package data in
``harness/training/exercises/NAME/``; ``STORLAB_TRAINING=DIR`` reads them from ``DIR/NAME/`` instead.

    NAME/README.md      the text a student reads (put in the handout)
    NAME/exercise.py    TITLE, BACKEND, TOPOLOGY, HOST_POOLS, break_lab(lab), solve(lab)
    NAME/test_*.py      the checks: plain lab tests using the ``lab`` fixture

Exercises are the instructor's code (in the repository), not topology input: they run with
storlab's rights, like the lab tests do.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.lab.lab import Lab

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")


def training_dir() -> Path:
    """``STORLAB_TRAINING`` or the exercises shipped with the package (``harness/training/exercises/``)."""
    env = os.environ.get("STORLAB_TRAINING")
    return Path(env) if env else Path(__file__).resolve().parent / "exercises"


@dataclass
class Exercise:
    name: str
    path: Path
    title: str
    backend: str
    break_lab: Callable[[Lab], None]
    solve: Callable[[Lab], None]
    topology: str = ""  # the topology it was written for, under topologies/ (TOPOLOGY, optional)
    host_pools: bool = False  # it breaks or checks the KVM host's pools on the lab (HOST_POOLS, optional)

    @property
    def text(self) -> str:
        readme = self.path / "README.md"
        return readme.read_text() if readme.exists() else self.title + "\n"

    def fits(self, lab: Lab) -> str | None:
        """Why this exercise cannot run on ``lab`` (None when it can)."""
        if getattr(lab.plan, self.backend, None) is None:
            return f"exercise {self.name} needs a lab with the {self.backend} backend; lab {lab.name} has none"
        if self.host_pools and not lab.pools_here():
            return (f"exercise {self.name} works on the KVM host's pools, and lab {lab.name}'s networks are not "
                    f"reachable from this host ({lab.provider.host_reach() or 'it has no host pools'})")
        return None


def available() -> list[str]:
    root = training_dir()
    return sorted(p.name for p in root.iterdir() if (p / "exercise.py").exists()) if root.is_dir() else []


def load(name: str) -> Exercise:
    if not NAME_RE.fullmatch(name):
        raise HarnessError(f"exercise name {name!r}: use lower-case letters, digits and '-' (one of: "
                           f"{', '.join(available()) or 'none'})")
    path = training_dir() / name
    module_file = path / "exercise.py"
    if not module_file.exists():
        raise HarnessError(f"no exercise {name!r} in {training_dir()} (exercises: {', '.join(available()) or 'none'})")
    spec = importlib.util.spec_from_file_location(f"storlab_exercise_{name.replace('-', '_')}", module_file)
    if spec is None or spec.loader is None:
        raise HarnessError(f"{module_file}: cannot be loaded")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    missing = [a for a in ("TITLE", "BACKEND", "break_lab", "solve") if not hasattr(mod, a)]
    if missing:
        raise HarnessError(f"{module_file}: defines no {', '.join(missing)} (see harness/training/exercise.py)")
    if not list(path.glob("test_*.py")):
        raise HarnessError(f"{path}: no check suite (test_*.py)")
    return Exercise(name=name, path=path, title=str(mod.TITLE), backend=str(mod.BACKEND),
                    break_lab=mod.break_lab, solve=mod.solve, topology=str(getattr(mod, "TOPOLOGY", "")),
                    host_pools=bool(getattr(mod, "HOST_POOLS", False)))


@dataclass
class Grade:
    lab: str
    exercise: str
    when: float
    checks: dict[str, str] = field(default_factory=dict)  # check -> passed | failed | error | skipped
    messages: dict[str, str] = field(default_factory=dict)  # failed check -> what its assertion says
    junit: str = ""
    output: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(v == "passed" for v in self.checks.values())

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "exercise": self.exercise, "when": self.when, "checks": self.checks,
                "messages": self.messages, "junit": self.junit, "passed": self.passed}


def parse_junit(xml: str) -> dict[str, str]:
    """testcase name -> outcome, from pytest's JUnit XML."""
    return {name: outcome for name, (outcome, _) in parse_junit_full(xml).items()}


def parse_junit_full(xml: str) -> dict[str, tuple[str, str]]:
    """testcase name -> (outcome, message of a failure or error: its first line)."""
    out: dict[str, tuple[str, str]] = {}
    for case in ET.fromstring(xml).iter("testcase"):
        name = case.get("name") or "?"
        for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                msg = (el.get("message") or "").strip().splitlines()
                out[name] = (outcome, msg[0].removeprefix("AssertionError: ") if msg else "")
                break
        else:
            out[name] = ("passed", "")
    return out


def grade(lab: Lab, ex: Exercise, junit: Path, timeout: float = 900) -> Grade:
    """Run the exercise's checks against the running lab; per-check outcome from the JUnit file."""
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pytest", str(ex.path), "--lab", lab.name, f"--junitxml={junit}",
            "-o", f"junit_suite_name={lab.name}:{ex.name}", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(ex.path), "-c", os.devnull]
    env = {**os.environ, "STORLAB_EVIDENCE": "off"}  # a failing check is the student's work, not a fault to debug
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    g = Grade(lab=lab.name, exercise=ex.name, when=time.time(), junit=str(junit), output=res.stdout[-4000:])
    if junit.exists():
        full = parse_junit_full(junit.read_text())
        g.checks = {k: v[0] for k, v in full.items()}
        g.messages = {k: v[1] for k, v in full.items() if v[1] and v[0] != "passed"}
    if not g.checks:
        g.checks = {"(the check suite did not run)": "error"}
    return g
