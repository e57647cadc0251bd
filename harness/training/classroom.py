"""A class: one lab instance per student, with handouts, exercises, grading, reset and expiry.

    STORLAB_HOME/classes/CLASS/class.json          the record (students, labs, exercise, grades)
    STORLAB_HOME/classes/CLASS/handouts/STUDENT/   ssh_config, id_ed25519, known_hosts, HANDOUT.md
    STORLAB_HOME/classes/CLASS/handouts/STUDENT.tar.gz
    STORLAB_HOME/classes/CLASS/grades/             STUDENT-EXERCISE.xml (JUnit), summary.md, summary.html
    STORLAB_HOME/classes/CLASS/logs/               STUDENT-up.log ...

Each student's lab is `storlab up TOPOLOGY --name CLASS-STUDENT` (its own networks, nodes, keys,
secrets, host pools and paths), run as a child process so labs come up side by side.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import locks, paths
from harness.errors import HarnessError
from harness.host.facts import HostFacts
from harness.lab import lease, trust
from harness.lab.lab import BASELINE, Lab, list_labs
from harness.plan import planner as planmod
from harness.providers.incus import client as incus
from harness.run import succeed
from harness.training import capacity, handout
from harness.training import exercise as training

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


def _each(students: list[str], fn: Callable[[str], T], parallel: int) -> dict[str, T | BaseException]:
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


# -- capacity ---------------------------------------------------------------------------------
def check_capacity(topology: str, provider: str | None, students: int, running: int = 0,
                   remote: str | None = None, untrusted: bool = False) -> capacity.Fit:
    """Validate the topology and size one student's lab from the plan's nodes; refuse before
    anything is made if the class does not fit (on this host, or on the members of an Incus
    remote: their free memory summed), or if its provider or roles cannot hold ``untrusted``
    students (trust.py)."""
    facts = HostFacts.detect()
    loaded = planmod.load_topology(topology, facts, provider, None)
    topo = loaded.topo
    prov = loaded.res.provider
    why = trust.refusal_for(f"{topo.lab} (one per student)", prov, [(n.name, n.roles) for n in topo.nodes]) \
        if untrusted else None
    if why:
        raise HarnessError(why + "; nothing was created")
    needs = [capacity.node_need(n.name, list(n.roles), int(n.memory), sum(int(d.size) for d in n.disks) // 2**20,
                                prov, "kvm" if facts.kvm_usable else "tcg") for n in topo.nodes]
    where = "this host"
    if remote:
        client = incus.Incus(incus.split_remote(remote)[0])
        why = client.reachable()
        if why:
            raise HarnessError(why)
        free_m, cpus, free_d, members = incus.capacity(client)
        f = capacity.fit(students, needs, free_m, free_d, cpus=cpus, reserve_mib=capacity.HOST_RESERVE_MIB *
                         max(1, len(members)), node_cpus=sum(int(n.cpus) for n in topo.nodes))
        where = f"Incus remote {remote} ({len(members) or 1} member(s){': ' + ', '.join(members) if members else ''})"
    else:
        paths.home().mkdir(parents=True, exist_ok=True)
        free_m, free_d = capacity.host_free(str(paths.home()))
        f = capacity.fit(students, needs, free_m, free_d, node_cpus=sum(int(n.cpus) for n in topo.nodes))
    if not f.ok:
        raise HarnessError(f"class of {students} does not fit on {where} ({prov} nodes, per student: "
                           f"{len(needs)} nodes): {f.explain()}. Nothing was created; use fewer students, or a "
                           "bigger host (an Incus cluster spreads classes over hosts)")
    return f


# -- up -------------------------------------------------------------------------------------------
def up(topology: str, students: list[str], name: str, provider: str | None = None, expire: float | None = None,
       jump_address: str = "127.0.0.1", parallel: int | None = None, progress: Callable[[str], None] = print,
       remote: str | None = None, budget: str | None = None, trusted: bool = False) -> Klass:
    """One lab per student (``remote``: on an Incus remote, each in its own project limited to
    ``budget``; Incus places the labs on its members, each lab whole on one member)."""
    if not CLASS_RE.fullmatch(name):
        raise HarnessError(f"class name {name!r}: 1-12 lower-case letters and digits, starting with a letter")
    if not ADDRESS_RE.fullmatch(jump_address):  # it goes into every student's ssh_config
        raise HarnessError(f"--jump-address {jump_address!r}: an IP address or a host name")
    if handout.sshd_pid() is None:
        raise HarnessError("the jump sshd for student access is not running: run `bash ci/setup-host.sh --class` "
                           "(or `storlab class jump-setup`); nothing was created")
    existing = Klass.load(name) if name in list_classes() else None
    if existing and existing.topology != str(Path(topology).resolve()):
        raise HarnessError(f"class {name} exists with topology {existing.topology}: pick another --name")
    new = [s for s in students if not (existing and s in existing.students and lab_name(name, s) in list_labs())]
    if existing and (existing.remote, existing.budget) != (remote, budget) and (remote or budget):
        raise HarnessError(f"class {name} exists on {existing.remote or 'this host'} with budget "
                           f"{existing.budget or '-'}: give the same --on/--budget or pick another --name")
    if existing and trusted and not existing.trusted:
        raise HarnessError(f"class {name} exists for untrusted students: it cannot become trusted; pick another --name")
    if existing:
        remote, budget, trusted = existing.remote, existing.budget, existing.trusted
    if remote and provider not in (None, "incus"):
        raise HarnessError(f"class on remote {remote}: the provider is incus, not {provider}")
    provider = "incus" if remote else provider
    class_id = existing.id if existing else uuid.uuid4().hex[:12]
    here = set(list_labs())
    foreign = [lab_name(name, s) for s in new if lab_name(name, s) in here
               and not made_by(Lab.load(lab_name(name, s)), class_id)]
    if foreign:  # a lab named CLASS-STUDENT that this class did not make is not a student's
        raise HarnessError(f"lab(s) {', '.join(foreign)} exist and were not made by class {name}: storlab touches "
                           f"only what it made; `storlab down` them or pick another --name. Nothing was created")
    fit = check_capacity(topology, provider, len(new), remote=remote, untrusted=not trusted)
    who = "trusted with root on this host" if trusted else "untrusted: each isolated from the host"
    progress(f"class {name}: {len(students)} students ({who}); capacity: {fit.explain()}")
    k = existing or Klass(name=name, topology=str(Path(topology).resolve()), provider=provider, students=[],
                          expire_seconds=expire, jump_address=jump_address, remote=remote, budget=budget,
                          id=class_id, trusted=trusted)
    k.students = list(dict.fromkeys([*k.students, *students]))
    k.expire_seconds = expire if expire is not None else k.expire_seconds
    k.failed = {}
    k.save()
    handout.ensure_account(name)
    (k.dir / "logs").mkdir(exist_ok=True)
    t0 = time.monotonic()

    def bring_up(student: str) -> float:
        hd = paths.private_dir(handout.handouts_dir(k.dir) / student)  # handouts/ itself 0700 too
        key = hd / "id_ed25519"
        if not key.exists():
            succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"storlab-{name}-{student}", "-f", str(key)],
                    timeout=30)
        argv = [sys.executable, "-m", "harness.cli", "up", topology, "--name", lab_name(name, student),
                "--authorize", str(key.with_suffix(".pub"))]
        argv += ["--on", f"incus:{remote}"] if remote else (["--provider", provider] if provider else [])
        argv += ["--budget", budget] if budget else []
        argv += [] if k.trusted else ["--untrusted"]
        argv += ["--for-class", k.id] if k.id else []
        argv += ["--expire", f"{int(expire)}s"] if expire else []
        s0 = time.monotonic()
        progress(f"  {student}: up ... ({time.monotonic() - t0:.0f}s)")
        with open(k.dir / "logs" / f"{student}-up.log", "w") as fh:
            res = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, timeout=7200, check=False)
        if res.returncode == 0 and BASELINE not in Lab.load(lab_name(name, student)).snapshots():
            Lab.load(lab_name(name, student)).snapshot(BASELINE)  # VM labs: reset needs it
        took = time.monotonic() - s0
        if res.returncode != 0:
            raise HarnessError(f"up failed after {took:.0f}s (log {k.dir / 'logs' / f'{student}-up.log'})")
        progress(f"  {student}: lab {lab_name(name, student)} up in {took:.0f}s ({time.monotonic() - t0:.0f}s)")
        return took

    results = _each(new, bring_up, parallel or max(2, (os.cpu_count() or 1)))
    k.failed = {s: str(r) for s, r in results.items() if isinstance(r, BaseException)}
    k.save()
    refresh_access(k)
    for s, why in k.failed.items():
        progress(f"  {s}: FAILED: {why}")
    return k


def refresh_access(k: Klass) -> None:
    """Jump keys for every student whose lab is up, and every handout (re)written; under the
    class's keys lock, so that two refreshes at once (class up beside a `storlab down`) never
    write keys from two different views of the class's labs."""
    with locks.exclusive(handout.keys_lock(k.name)):
        _refresh_access(k)


def _refresh_access(k: Klass) -> None:
    labs = k.labs()
    access = []
    projects: list[str] = []  # the class's labs on its Incus remote
    for s, lab in labs.items():
        pub = (k.dir / "handouts" / s / "id_ed25519.pub").read_text()
        route = lab.provider.exec_route()
        if route is None:
            access.append(handout.StudentAccess(s, pub, targets=tuple(f"{n.address}:22" for n in lab.nodes.values())))
        else:  # the lab's networks are on an Incus member, not here: the jump's gate runs `incus exec`
            remote, project = route
            projects.append(project)
            access.append(handout.StudentAccess(s, pub, gate=(remote, project, tuple(lab.nodes))))
    handout.write_keys(k.name, access)  # first: a removed lab's key line goes even if the remote is away
    if k.remote:  # the class's certificate follows its labs (none left: revoked)
        if projects:
            handout.grant_incus(k.name, k.remote, projects)
        else:
            handout.revoke_incus(k.name, k.remote)
    for s, lab in labs.items():
        write_handout(k, s, lab)


def refresh_all_access() -> list[str]:
    """Every class's jump keys rewritten from the labs that still exist: a lab removed by `down`
    or `reap` (expired) loses its student's channels at once, so that a later lab reusing its
    addresses is not reachable with the old key. Returns the classes touched."""
    touched = []
    for name in list_classes():
        k = Klass.load(name)
        if (handout.jump_dir() / "keys" / handout.account_name(name)).exists():
            try:
                refresh_access(k)
            except (HarnessError, OSError) as exc:  # one class's remote being away must not stop the others
                print(f"storlab: class {name}: access not brought up to date: {exc}", file=sys.stderr)
                continue
            touched.append(name)
    return touched


def write_handout(k: Klass, student: str, lab: Lab) -> Path:
    hd = k.dir / "handouts" / student
    port = handout.jump_port()
    nodes = {n.name: n.address for n in lab.nodes.values()}
    gated = lab.provider.exec_route() is not None
    (hd / "ssh_config").write_text(handout.ssh_config(k.name, k.jump_address, port, nodes,
                                                      lab=lab.name if gated else None))
    (hd / "known_hosts").write_text(handout.known_hosts(k.jump_address, port))
    ex = training.load(k.exercise) if k.exercise else None
    text = handout.handout_text(
        k.name, student, lab.name,
        [{"name": n.name, "address": n.address, "roles": ", ".join(n.roles)} for n in lab.nodes.values()],
        [b for b in ("gluster", "ceph", "nfs", "iscsi") if getattr(lab.plan, b, None) is not None],
        [f"{p.object} ({p.type})" for p in lab.plan.host.pools],
        ex.title if ex else None, ex.text if ex else None, lease.remaining(lab.state().get("expires")),
        where=f"remote {lab.where()}" if gated else None)
    (hd / "HANDOUT.md").write_text(text)
    return handout.archive(hd)


# -- status -----------------------------------------------------------------------------------
def status(k: Klass) -> list[dict[str, Any]]:
    labs = k.labs()
    rows = []
    now = time.time()
    for s in k.students:
        lab = labs.get(s)
        st = lab.state() if lab else {}
        running = lab is not None and all(n.is_up() for n in lab.nodes.values())
        g = k.grades.get(s)
        rows.append({
            "student": s, "lab": lab_name(k.name, s),
            "state": ("failed" if s in k.failed else "gone (expired or removed)") if lab is None
            else (st.get("status", "?") if running else "stopped"),
            "age_seconds": round(now - st["created"]) if st.get("created") else None,
            "expires": st.get("expires"), "expires_in": lease.remaining(st.get("expires")) if lab else "-",
            "where": lab.where() if lab else "-",
            "exercise": st.get("exercise") or k.exercise,
            "last_grade": None if not g else {"exercise": g["exercise"], "passed": g["passed"], "when": g["when"]},
            "handout": str(k.dir / "handouts" / f"{s}.tar.gz"),
        })
    return rows


def down(k: Klass, parallel: int | None = None, progress: Callable[[str], None] = print) -> list[str]:
    """Every student's lab, the jump account and keys, and the class directory; returns problems."""
    labs = k.labs()

    def remove(s: str) -> None:
        lab = labs[s]
        rep = lab.down()
        left = lab.leftovers()
        if rep.failed or left:
            raise HarnessError(f"could not remove {rep.failed} / still present: {left}")
        progress(f"  {s}: lab {lab.name} removed")
    results = _each(list(labs), remove, parallel or max(2, os.cpu_count() or 1))
    problems = [f"{s}: {r}" for s, r in results.items() if isinstance(r, BaseException)]
    if not problems:
        for item in [*handout.revoke_incus(k.name, k.remote), *handout.remove_account(k.name)]:
            progress(f"  removed {item}")
        shutil.rmtree(k.dir, ignore_errors=True)
    return problems


# -- exercises and grading ----------------------------------------------------------------------
def exercise(k: Klass, name: str, parallel: int | None = None) -> dict[str, str]:
    ex = training.load(name)
    labs = k.labs()
    misfit = {s: why for s, lab in labs.items() if (why := ex.fits(lab))}
    if misfit:
        raise HarnessError(f"exercise {name} does not fit class {k.name}: {next(iter(misfit.values()))}")

    def apply(s: str) -> None:
        lab = labs[s]
        locks.hold(lab.name)
        ex.break_lab(lab)
        lab.save_state(exercise=name)
    results = _each(list(labs), apply, parallel or 3)
    k.exercise = name
    k.save()
    refresh_access(k)
    return {s: ("applied" if not isinstance(r, BaseException) else f"FAILED: {r}") for s, r in results.items()}


def solve(k: Klass, name: str, student: str) -> None:
    ex = training.load(name)
    ex.solve(k.lab(student))


def grade(k: Klass, name: str | None = None, parallel: int | None = None) -> dict[str, training.Grade]:
    exname = name or k.exercise
    if not exname:
        raise HarnessError(f"class {k.name} has no exercise yet: `storlab class exercise {k.name} EXERCISE` first, "
                           "or name one with --exercise")
    ex = training.load(exname)
    labs = k.labs()
    results = _each(list(labs), lambda s: training.grade(labs[s], ex, k.dir / "grades" / f"{s}-{exname}.xml"),
                    parallel or 2)
    grades: dict[str, training.Grade] = {}
    for s, r in results.items():
        if isinstance(r, BaseException):
            r = training.Grade(lab=labs[s].name, exercise=exname, when=time.time(),
                               checks={"(grading failed)": "error"}, output=str(r))
        grades[s] = r
        k.grades[s] = r.to_json()
    k.save()
    write_summary(k)
    return grades


def summary_rows(k: Klass) -> tuple[list[str], list[list[str]]]:
    checks = list(dict.fromkeys(c for g in k.grades.values() for c in g["checks"]))
    head = ["student", "exercise", *checks, "result", "when"]
    rows = []
    for s in k.students:
        g = k.grades.get(s)
        if not g:
            rows.append([s, "-", *["-"] * len(checks), "not graded", "-"])
            continue
        rows.append([s, g["exercise"], *[g["checks"].get(c, "-") for c in checks],
                     "PASSED" if g["passed"] else "FAILED", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(g["when"]))])
    return head, rows


def write_summary(k: Klass) -> tuple[Path, Path]:
    head, rows = summary_rows(k)
    md = [f"# Class {k.name}: grades", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    out_md = k.dir / "grades" / "summary.md"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(md) + "\n")
    colour = {"passed": "#cfc", "PASSED": "#cfc", "failed": "#fcc", "FAILED": "#fcc", "error": "#fcc"}
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td style="background:{colour.get(c, "#fff")}">{html.escape(c)}</td>' for c in r)
                   + "</tr>" for r in rows)
    out_html = k.dir / "grades" / "summary.html"
    out_html.write_text(f"<!doctype html><meta charset=utf-8><title>class {html.escape(k.name)}: grades</title>"
                        f"<style>td,th{{border:1px solid #999;padding:4px 8px;font-family:sans-serif}}"
                        f"table{{border-collapse:collapse}}</style><h1>Class {html.escape(k.name)}: grades</h1>"
                        f"<table><tr>{cells}</tr>{body}</table>\n")
    return out_md, out_html


# -- snapshots for the whole class or one student ---------------------------------------------
def for_students(k: Klass, student: str | None, fn: Callable[[Lab], float], parallel: int | None = None) -> dict[str, Any]:
    labs = k.labs()
    chosen = [student] if student else list(labs)
    if student and student not in labs:
        raise HarnessError(f"class {k.name}: student {student!r} has no lab up")
    return _each(chosen, lambda s: fn(labs[s]), parallel or 2)
