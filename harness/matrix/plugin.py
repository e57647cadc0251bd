"""pytest side of config matrices: `pytest --matrix matrices/gluster.yaml -k gluster_failover`.

Every test using the `lab` fixture runs once per cell (the cell's name in its id:
`test_x[ping5-quorum_auto]`). Cells sharing a build key share a lab: the first builds it, the
next ones reconfigure it (the backends' `reconfigure`, verified) and record how long that took.
A cell's expected failures are strict xfails. Results (outcome, duration, the figures tests record
with `record_property`, the lab built or reconfigured) go to STORLAB_HOME/matrices/NAME/last.json
and the report (`report.md`, `report.html`), redacted (log.redact) as they are taken and again as
written; the JUnit file carries the cell and axis values as testcase properties.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import log
from harness.backends.base import backends
from harness.chaos import runner
from harness.errors import HarnessError
from harness.host import pools as hostpools
from harness.lab import versions
from harness.lab.lab import Lab, list_labs
from harness.matrix import report as matrix_report
from harness.matrix import spec as mx
from harness.plan.model import Plan
from harness.testing.markers import item_topology

_MATRIX = pytest.StashKey["mx.Matrix | None"]()
_CELLS = pytest.StashKey[list[mx.Cell]]()
_STATE = pytest.StashKey["MatrixRun"]()



def running_versions(lab: Lab) -> str:
    """What the cell's lab runs, in one line: each backend package's version and its nodes (a
    mixed cell shows two), e.g. "glusterfs-server 10.3-5 (gluster1, gluster2), 11.1-6 (gluster3)"."""
    try:
        by_pkg: dict[str, dict[str, list[str]]] = {}
        for node, vers in versions.running(lab).items():
            for pkg, v in vers.items():
                if pkg != "debian":
                    by_pkg.setdefault(pkg, {}).setdefault(v, []).append(node)
    except Exception as exc:  # a record, never a reason to fail the cell
        return f"unknown ({type(exc).__name__})"
    return "; ".join(f"{pkg} " + ", ".join(f"{v} ({', '.join(ns)})" if len(by) > 1 else v for v, ns in by.items())
                     for pkg, by in by_pkg.items())

class MatrixRun:
    """Labs per build key, what each cell cost, and the results as they come."""

    def __init__(self, m: mx.Matrix, config: pytest.Config) -> None:
        self.m, self.config = m, config
        self.labs: dict[str, Lab] = {}  # lab name -> lab (up)
        self.current: dict[str, str] = {}  # lab name -> cell it is configured for
        self.owned: set[str] = set()
        self.lab_events: dict[str, dict[str, Any]] = {}  # cell -> {lab, built_s | reconfigured_s, changes}
        self.results: dict[str, dict[str, dict[str, Any]]] = {}  # cell -> test -> result
        self.order: list[tuple[str, str]] = []  # (cell, lab name) per collected item

    def lab_topology(self, lab_name: str) -> Path:
        return self.m.workdir() / "labs" / f"{lab_name}.yaml"

    def lab_for(self, cell: mx.Cell) -> Lab:
        name = self.m.lab_name(cell)
        topo = self.lab_topology(name)
        topo.parent.mkdir(parents=True, exist_ok=True)
        provider = self.config.getoption("--lab-provider")
        if name in self.labs and self.current.get(name) == cell.name:
            return self.labs[name]
        t0 = time.monotonic()
        topo.write_text(cell.topology.read_text())  # one file per lab: its plan keeps its subnets
        if name in self.labs:
            before: Plan = self.labs[name].plan
            lab = Lab.from_topology(str(topo), provider, name=name)
            changes = self.reconfigure(lab, before, cell)
            if lab.plan.host.pools:  # the host side as a fresh lab has it (a FUSE client reconnected after
                # the last cell's faults); a slow listing that has not changed is not listed again
                hostpools.wire(lab, hostpools.listings(lab))
            took = round(time.monotonic() - t0, 2)
            log.info(f"matrix {self.m.name}: lab {name} reconfigured for cell {cell.name} in {took}s: "
                     f"{', '.join(changes) or 'nothing to change'}")
            self.lab_events[cell.name] = {**self.lab_events.get(cell.name, {}), "lab": name, "reconfigured_s": took,
                                          "changes": changes}
        else:
            lab = Lab.from_topology(str(topo), provider, name=name)
            if lab.is_up():
                raise HarnessError(f"lab {name} is already up (from another run?): `storlab down {name}` first")
            lab.up(owner_pid=os.getpid())
            self.owned.add(name)
            took = round(time.monotonic() - t0, 2)
            self.lab_events[cell.name] = {"lab": name, "built_s": took}
        self.labs[name] = lab
        self.current[name] = cell.name
        self.lab_events[cell.name]["versions"] = running_versions(lab)
        return lab

    def reconfigure(self, lab: Lab, before: Plan, cell: mx.Cell) -> list[str]:
        """The live lab moved to ``cell``'s settings (what changed); with the matrix's
        `reconfigure_under_writes`, while the chaos writers write, and a reconfiguration that lost an
        acknowledged write is an error of the cell (its tests fail with the checker's findings)."""
        changes: list[str] = []

        def apply() -> None:
            changes.extend(c for b in backends() for c in b.reconfigure(lab, before))
        if not self.m.model.reconfigure_under_writes:
            apply()
            return changes
        out = runner.during(lab, "reconfigure", apply, runner.run_dir_for(lab.name, 0, suffix=f"-to-{cell.name}"))
        v = out.verdict
        self.lab_events.setdefault(cell.name, {})["reconfigure_check"] = {
            "ok": v.ok, "acked": v.acked, "lost": v.counts()["lost"], "run_dir": str(out.run_dir)}
        log.info(f"matrix {self.m.name}: reconfiguring {lab.name} for {cell.name} under writes: "
                 f"{'PASS' if v.ok else 'FAIL'}, {v.acked} acknowledged, {v.counts()['lost']} lost ({out.run_dir})")
        if not v.ok:
            raise HarnessError(f"reconfiguring lab {lab.name} for cell {cell.name} ({', '.join(changes)}) under writes "
                               f"failed the checker:\n" + "\n".join(v.lines()) + f"\nrun directory: {out.run_dir}")
        return changes

    def release_unneeded(self, after_nodeid: str) -> None:
        """Take down labs no later test needs (on a small host two VM labs never run at once)."""
        later = {lab for nodeid, lab in self.order_after(after_nodeid)}
        for name in [n for n in self.labs if n not in later and n in self.owned]:
            if not self.config.getoption("--keep-lab"):
                self.labs.pop(name).down()
                self.owned.discard(name)

    def order_after(self, nodeid: str) -> list[tuple[str, str]]:
        ids = [n for n, _ in self.order]
        return self.order[ids.index(nodeid) + 1:] if nodeid in ids else []

    def teardown(self) -> None:
        if self.config.getoption("--keep-lab"):
            return
        for name in list(self.owned):
            if name in self.labs:
                self.labs.pop(name).down()
            self.owned.discard(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("storlab matrix")
    g.addoption("--matrix", default=None, help="run the lab tests once per cell of this matrix file (matrices/*.yaml)")
    g.addoption("--cells", default=None,
                help="only cells matching AXIS=VALUE[,VALUE] ... (e.g. 'ping=ping5 quorum=quorum_auto')")
    g.addoption("--subset", default=None, help="slice i/n of the cells that still covers every value of every axis")
    g.addoption("--rerun-failed", action="store_true", help="only the cell/test pairs that did not pass last time")


def pytest_configure(config: pytest.Config) -> None:
    file = config.getoption("--matrix", None)
    if not file:
        config.stash[_MATRIX] = None
        return
    m = mx.load(file, provider=config.getoption("--lab-provider"))
    cells = mx.by_lab(mx.subset(mx.select(m.cells, config.getoption("--cells")), config.getoption("--subset")))
    config.stash[_MATRIX] = m
    config.stash[_CELLS] = cells
    config.stash[_STATE] = MatrixRun(m, config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    m = metafunc.config.stash.get(_MATRIX, None)
    if m is None or "lab" not in metafunc.fixturenames:
        return
    cells = metafunc.config.stash[_CELLS]
    metafunc.parametrize("lab", cells, ids=[c.name for c in cells], indirect=True, scope="module")


def _cell_of(item: pytest.Item) -> mx.Cell | None:
    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("lab") if callspec else None
    return cell if isinstance(cell, mx.Cell) else None


def _base_name(item: pytest.Item) -> str:
    return getattr(item, "originalname", None) or item.name.split("[")[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    m = config.stash.get(_MATRIX, None)
    if m is None:
        return
    run = config.stash[_STATE]
    last = matrix_report.load_results(m) if config.getoption("--rerun-failed") else None
    keep, drop, other = [], [], set[str]()
    bases = {str(b) for b in m.bases()}
    for item in items:
        cell = _cell_of(item)
        if cell is None:
            keep.append(item)
            continue
        topo = item_topology(config, item)
        if topo is not None and topo not in bases:  # a test of another lab (pytest tests/lab -k seeded)
            other.add(f"{item.nodeid.split('[')[0]} ({Path(topo).name})")
            drop.append(item)
            continue
        test = _base_name(item)
        before = (last or {}).get("results", {}).get(cell.name, {}).get(test, {})
        if last is not None and before.get("outcome") in ("passed", "xfailed"):
            drop.append(item)
            continue
        if not cell.valid:
            why = "; ".join(str(p) for p in cell.problems[:3])
            item.add_marker(pytest.mark.skip(reason=f"cell {cell.name} {cell.values} is invalid here: {why}"))
        else:
            e = cell.expected(test)
            if e is not None:
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"expected in cell {cell.name}: {e.reason}"))
        keep.append(item)
    if other:
        log.info(f"matrix {m.name}: deselected {len(other)} test(s) whose lab is not one of the matrix's topologies "
                 f"({', '.join(sorted(str(b.name) for b in m.bases()))}): {', '.join(sorted(other))}")
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    run.order = [(item.nodeid, m.lab_name(c)) for item in items if (c := _cell_of(item)) is not None]


def lab_for_cell(request: pytest.FixtureRequest, cell: mx.Cell) -> Iterator[Lab]:
    """The `lab` fixture's body for a matrix cell (called from pytest_plugin.lab)."""
    run = request.config.stash[_STATE]
    if not cell.valid:
        pytest.skip(f"cell {cell.name} is invalid here: {'; '.join(str(p) for p in cell.problems[:3])}")
    yield run.lab_for(cell)
    # this cell's last test in this module: later cells (of this module or others) may reuse the lab
    last_item = [n for n, _ in run.order if n.startswith(request.node.nodeid + "::") and n.endswith(f"[{cell.name}]")]
    if last_item:
        run.release_unneeded(last_item[-1])


def pytest_runtest_setup(item: pytest.Item) -> None:
    cell = _cell_of(item)
    m = item.config.stash.get(_MATRIX, None)
    if cell is None or m is None:
        return
    item.user_properties += [("matrix", m.name), ("cell", cell.name), *((f"axis.{a}", v) for a, v in cell.values.items())]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    m = item.config.stash.get(_MATRIX, None)
    cell = _cell_of(item)
    if m is None or cell is None:
        return report
    run = item.config.stash[_STATE]
    if report.when == "call" or (report.when == "setup" and (report.failed or report.skipped)):
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "failed"  # strict: an expected failure that passed fails
        figures = {k: v for k, v in item.user_properties
                   if not k.startswith(("axis.", "storlab_")) and k not in ("matrix", "cell")}
        if report.failed:  # redacted before it is cut: a cut secret or key would no longer be recognised
            reason = log.redact(str(report.longrepr))[-600:]
        elif hasattr(report, "wasxfail"):
            reason = str(report.wasxfail)
        else:
            reason = str(report.longrepr[2]) if report.skipped and isinstance(report.longrepr, tuple) else ""
        run.results.setdefault(cell.name, {})[_base_name(item)] = log.redact_data({
            "outcome": outcome, "duration_s": round(report.duration, 2), "figures": figures, "reason": reason})
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    m = session.config.stash.get(_MATRIX, None)
    if m is None:
        return
    run = session.config.stash[_STATE]
    try:
        run.teardown()
    finally:
        cells = session.config.stash[_CELLS]
        md, html_path = matrix_report.save(m, cells, run.results, run.lab_events,
                                           merge=bool(session.config.getoption("--rerun-failed")))
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"matrix {m.name}: {len(cells)} cells; report {md} and {html_path}")
            for c in cells:
                if not c.valid:
                    tr.write_line(f"  invalid cell {c.name} {c.values}: {c.problems[0]}")
    leftover = [n for n in list_labs() if n in run.owned]
    if leftover:
        raise HarnessError(f"matrix labs left up: {leftover}")
