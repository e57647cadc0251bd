"""A class: one lab instance per student, with handouts, exercises, grading, reset and expiry.

The record is klass.py; each student's lab comes up in students.py (in this process, side by
side in threads); their access (jump keys and handouts) is handout.py. Here: the class's verbs,
each done for every student, a failing student reported without stopping the others.
"""

from __future__ import annotations

import html
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import locks, paths
from harness.errors import HarnessError
from harness.host.facts import HostFacts, kvm_status
from harness.lab import lease, trust
from harness.lab.lab import Lab, list_labs
from harness.lab.state import LabState
from harness.plan import planner as planmod
from harness.plan.placement import check_disk_budget, disk_floor_mib
from harness.providers import capabilities
from harness.training import capacity, gate, jump
from harness.training import exercise as training
from harness.training.handout import refresh_access
from harness.training.klass import ADDRESS_RE, CLASS_RE, Klass, each, lab_name, list_classes, made_by
from harness.training.students import bring_up, quiet_terminal


# -- capacity ---------------------------------------------------------------------------------
def check_capacity(topology: str, provider: str | None, students: int, running: int = 0,
                   remote: str | None = None, untrusted: bool = False, disk_budget: str | None = None) -> capacity.Fit:
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
    # a seat's disks take at most its budget, and its baseline snapshot's copy of them (taken at up,
    # about what the lab needs to come up: disk_floor_mib) lives beside it, outside the budget
    budget_mib = None if disk_budget is None else (
        check_disk_budget(prov, f"{topo.lab} (one per student)", topo.nodes, disk_budget) + disk_floor_mib(topo.nodes))
    where = "this host"
    if remote:
        remotes = capabilities.remotes_of(prov)
        if remotes is None:
            raise HarnessError(f"class on remote {remote}: provider {prov} has no remotes")
        free_m, cpus, free_d, members = remotes.capacity(remote)
        f = capacity.fit(students, needs, free_m, free_d, cpus=cpus, reserve_mib=capacity.HOST_RESERVE_MIB *
                         max(1, len(members)), node_cpus=sum(int(n.cpus) for n in topo.nodes))
        where = f"Incus remote {remote} ({len(members) or 1} member(s){': ' + ', '.join(members) if members else ''})"
    else:
        paths.home().mkdir(parents=True, exist_ok=True)
        free_m, free_d = capacity.host_free(str(paths.home()))
        f = capacity.fit(students, needs, free_m, free_d, node_cpus=sum(int(n.cpus) for n in topo.nodes),
                         disk_budget_mib=budget_mib)
    if not f.ok:
        raise HarnessError(f"class of {students} does not fit on {where} ({prov} nodes, per student: "
                           f"{len(needs)} nodes): {f.explain()}. Nothing was created; use fewer students, or a "
                           "bigger host (an Incus cluster spreads classes over hosts)")
    why = None if remote or capabilities.available()[prov].own_kernel else capacity.inotify_room(students * len(needs))
    if why:
        raise HarnessError(f"class of {students} does not fit on {where}: {why}. Nothing was created")
    return f


# -- up -------------------------------------------------------------------------------------------
def _record(topology: str, students: list[str], name: str, provider: str | None, expire: float | None,
            jump_address: str, remote: str | None, budget: str | None,
            trusted: bool, disk_budget: str | None = None) -> tuple[Klass, list[str], str | None]:
    """The class's record (the one saved before, or a new one, not saved yet), the students whose
    labs are to be made, and the provider; refuses, before anything is made, what must not be."""
    if not CLASS_RE.fullmatch(name):
        raise HarnessError(f"class name {name!r}: 1-12 lower-case letters and digits, starting with a letter")
    if not ADDRESS_RE.fullmatch(jump_address):  # it goes into every student's ssh_config
        raise HarnessError(f"--jump-address {jump_address!r}: an IP address or a host name")
    if jump.sshd_pid() is None:
        raise HarnessError("the jump sshd for student access is not running: run `bash ci/setup-host.sh --class` "
                           "(or `storlab class jump-setup`); nothing was created")
    existing = Klass.load(name) if name in list_classes() else None
    if existing and existing.topology != str(Path(topology).resolve()):
        raise HarnessError(f"class {name} exists with topology {existing.topology}: pick another --name")
    new = [s for s in students if not (existing and s in existing.students and lab_name(name, s) in list_labs())]
    if existing and (existing.remote, existing.budget) != (remote, budget) and (remote or budget):
        raise HarnessError(f"class {name} exists on {existing.remote or 'this host'} with budget "
                           f"{existing.budget or '-'}: give the same --on/--budget or pick another --name")
    if existing and disk_budget is not None and existing.disk_budget != disk_budget:
        raise HarnessError(f"class {name} exists with --disk-budget {existing.disk_budget or '-'}: give the same "
                           f"or pick another --name")
    if existing and trusted and not existing.trusted:
        raise HarnessError(f"class {name} exists for untrusted students: it cannot become trusted; pick another --name")
    if existing:
        remote, budget, trusted, disk_budget = existing.remote, existing.budget, existing.trusted, existing.disk_budget
    on_remotes = capabilities.remote_provider()  # the provider whose labs go on remotes
    if remote and provider not in (None, on_remotes):
        raise HarnessError(f"class on remote {remote}: the provider is {on_remotes}, not {provider}")
    provider = on_remotes if remote else provider
    class_id = existing.id if existing else uuid.uuid4().hex[:12]
    here = set(list_labs())
    foreign = [lab_name(name, s) for s in new if lab_name(name, s) in here
               and not made_by(Lab.load(lab_name(name, s)), class_id)]
    if foreign:  # a lab named CLASS-STUDENT that this class did not make is not a student's
        raise HarnessError(f"lab(s) {', '.join(foreign)} exist and were not made by class {name}: storlab touches "
                           f"only what it made; `storlab down` them or pick another --name. Nothing was created")
    k = existing or Klass(name=name, topology=str(Path(topology).resolve()), provider=provider, students=[],
                          expire_seconds=expire, jump_address=jump_address, remote=remote, budget=budget,
                          id=class_id, trusted=trusted, disk_budget=disk_budget)
    return k, new, provider


def default_parallel(provider: str | None) -> int:
    """Labs `class up` brings up at once: the host's CPUs (at least 2), but one at a time for VMs
    without KVM: under TCG on 2 cores, two gluster-3 labs at once (6 VMs) starved a node's glusterd
    start past its 60 s bound, and both labs failed (bench/bench_vmseats.py)."""
    caps = capabilities.available()
    own_kernel = provider is not None and provider in caps and caps[provider].own_kernel
    if own_kernel and not kvm_status()[0]:
        return 1
    return max(2, os.cpu_count() or 1)


def up(topology: str, students: list[str], name: str, provider: str | None = None, expire: float | None = None,
       jump_address: str = "127.0.0.1", parallel: int | None = None, progress: Callable[[str], None] = print,
       remote: str | None = None, budget: str | None = None, trusted: bool = False,
       disk_budget: str | None = None) -> Klass:
    """One lab per student (``remote``: on an Incus remote, each in its own project limited to
    ``budget``; Incus places the labs on its members, each lab whole on one member; ``disk_budget``:
    what each lab's data disks may really take of this host's disk)."""
    k, new, provider = _record(topology, students, name, provider, expire, jump_address, remote, budget, trusted,
                               disk_budget)
    fit = check_capacity(topology, provider, len(new), remote=k.remote, untrusted=not k.trusted,
                         disk_budget=k.disk_budget)
    who = "trusted with root on this host" if k.trusted else "untrusted: each isolated from the host"
    progress(f"class {name}: {len(students)} students ({who}); capacity: {fit.explain()}")
    k.students = list(dict.fromkeys([*k.students, *students]))
    k.expire_seconds = expire if expire is not None else k.expire_seconds
    k.failed = {}
    k.save()
    jump.ensure_account(name)
    (k.dir / "logs").mkdir(exist_ok=True)
    t0 = time.monotonic()

    def one(student: str) -> float:
        return bring_up(k, student, topology, provider, expire, progress, t0)
    # side by side in threads of this process (students.py: each student's log to their own files)
    with quiet_terminal():
        results = each(new, one, parallel or default_parallel(provider))
    k.failed = {s: str(r) for s, r in results.items() if isinstance(r, BaseException)}
    k.save()
    refresh_access(k)
    for s, why in k.failed.items():
        progress(f"  {s}: FAILED: {why}")
    return k


# -- status -----------------------------------------------------------------------------------
def status(k: Klass) -> list[dict[str, Any]]:
    labs = k.labs()
    rows = []
    now = time.time()
    for s in k.students:
        lab = labs.get(s)
        st = lab.state() if lab else LabState()
        running = lab is not None and all(n.is_up() for n in lab.nodes.values())
        g = k.grades.get(s)
        rows.append({
            "student": s, "lab": lab_name(k.name, s),
            "state": ("failed" if s in k.failed else "gone (expired or removed)") if lab is None
            else ((st.status or "?") if running else "stopped"),
            "age_seconds": round(now - st.created) if st.created else None,
            "expires": st.expires, "expires_in": lease.remaining(st.expires) if lab else "-",
            "where": lab.where() if lab else "-",
            "exercise": st.exercise or k.exercise,
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
    results = each(list(labs), remove, parallel or max(2, os.cpu_count() or 1))
    problems = [f"{s}: {r}" for s, r in results.items() if isinstance(r, BaseException)]
    if not problems:
        for item in [*gate.revoke_remote(k.name, k.remote), *jump.remove_account(k.name)]:
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
    results = each(list(labs), apply, parallel or 3)
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
    results = each(list(labs), lambda s: training.grade(labs[s], ex, k.dir / "grades" / f"{s}-{exname}.xml"),
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
    return each(chosen, lambda s: fn(labs[s]), parallel or 2)
