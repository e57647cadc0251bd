"""The class record: its name and students, and where it lives on disk.

    STORLAB_HOME/classes/CLASS/class.json          the record (students, labs, exercise, grades)
    STORLAB_HOME/classes/CLASS/handouts/STUDENT/   ssh_config, id_ed25519, known_hosts, HANDOUT.md
    STORLAB_HOME/classes/CLASS/handouts/STUDENT.tar.gz
    STORLAB_HOME/classes/CLASS/grades/             STUDENT-EXERCISE.xml (JUnit), summary.md, summary.html
    STORLAB_HOME/classes/CLASS/logs/               STUDENT-up.log ...
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import paths
from harness.errors import HarnessError
from harness.lab.lab import Lab, list_labs

CLASS_RE = re.compile(r"[a-z][a-z0-9]{0,11}")
STUDENT_RE = re.compile(r"[a-z][a-z0-9]{0,15}")
ADDRESS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
T = TypeVar("T")


def classes_dir() -> Path:
    return paths.home() / "classes"


def lab_name(klass: str, student: str) -> str:
    return f"{klass}-{student}"


def parse_students(spec: str | None, count: int | None) -> list[str]:
    """'alice,bob', a file (one name a line, # comments), or --count N (s01..sNN)."""
    if count is not None:
        if not 1 <= count <= 99:
            raise HarnessError(f"--count {count}: 1 to 99 students")
        return [f"s{i:02d}" for i in range(1, count + 1)]
    if not spec:
        raise HarnessError("give --students alice,bob,... or --students FILE or --count N")
    p = Path(spec)
    if p.is_file():
        names = [ln.split("#", 1)[0].strip() for ln in p.read_text().splitlines()]
        where = str(p)
    else:
        names = [n.strip() for n in spec.split(",")]
        where = "--students"
    names = [n for n in names if n]
    bad = [n for n in names if not STUDENT_RE.fullmatch(n)]
    if bad:
        raise HarnessError(f"{where}: student name(s) {', '.join(map(repr, bad[:5]))}: use 1-16 lower-case letters and "
                           "digits, starting with a letter (they name the student's lab)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HarnessError(f"{where}: student(s) listed twice: {', '.join(dup)}")
    if not names:
        raise HarnessError(f"{where}: no students")
    return names


@dataclass
class Klass:
    name: str
    topology: str
    provider: str | None
    students: list[str]
    created: float = field(default_factory=time.time)
    expire_seconds: float | None = None
    jump_address: str = "127.0.0.1"
    exercise: str | None = None
    grades: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: incus: the remote the labs are on (None: this host), and each lab's budget (--budget text)
    remote: str | None = None
    budget: str | None = None
    #: what each student's data disks may really take of this host's disk (--disk-budget text)
    disk_budget: str | None = None
    #: the class's own id, in every lab it makes (plan.klass): it recognises only those labs
    #: ("": a class made before ids, whose labs carry none)
    id: str = ""
    #: the students may be root on this host (`--trusted-students`); else their labs are untrusted
    trusted: bool = False

    @property
    def dir(self) -> Path:
        return classes_dir() / self.name

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "class.json.new"
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.rename(self.dir / "class.json")

    @classmethod
    def load(cls, name: str) -> Klass:
        f = classes_dir() / name / "class.json"
        if not CLASS_RE.fullmatch(name) or not f.exists():
            raise HarnessError(f"no class named {name!r} (classes: {', '.join(list_classes()) or 'none'})")
        return cls(**json.loads(f.read_text()))

    def lab(self, student: str) -> Lab:
        if student not in self.students:
            raise HarnessError(f"class {self.name} has no student {student!r} (students: {', '.join(self.students)})")
        lab = Lab.load(lab_name(self.name, student))
        if not self.owns(lab):
            raise HarnessError(f"lab {lab.name} was not made by class {self.name}: storlab touches only what it made")
        return lab

    def owns(self, lab: Lab) -> bool:
        return made_by(lab, self.id)

    def labs(self) -> dict[str, Lab]:
        """The students' labs that this class made (a lab of the same name made otherwise is not one)."""
        here = set(list_labs())
        labs = {s: Lab.load(lab_name(self.name, s)) for s in self.students if lab_name(self.name, s) in here}
        return {s: lab for s, lab in labs.items() if self.owns(lab)}


def made_by(lab: Lab, class_id: str) -> bool:
    """Whether the class with this id made ``lab`` ("": a class from before ids, whose labs carry none)."""
    return lab.plan.klass == (class_id or None)


def list_classes() -> list[str]:
    d = classes_dir()
    return sorted(p.name for p in d.iterdir() if (p / "class.json").exists()) if d.is_dir() else []



def each(students: list[str], fn: Callable[[str], T], parallel: int) -> dict[str, T | BaseException]:
    """fn per student, ``parallel`` at a time; every student's result or exception."""
    out: dict[str, T | BaseException] = {}

    def one(s: str) -> None:
        try:
            out[s] = fn(s)
        except BaseException as exc:  # reported per student; the others go on
            out[s] = exc
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, students))
    return {s: out[s] for s in students}
