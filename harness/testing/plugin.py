"""pytest plugin: lab fixtures for storlab topologies.

Options: --topology FILE (overrides a module's `pytestmark = pytest.mark.topology(...)`),
--keep-lab (leave labs up at the end), --lab-provider lxc|vagrant|incus[:REMOTE], --lab-prefix P (run every
topology as an instance named P-LAB: two sessions on one host do not share labs).
Fixtures: `lab` (one per topology per session, brought up once, torn down at the end;
a lab that is already up, e.g. from `storlab up`, is reused and left alone),
`nodes` (name -> harness.nodes.node.Node), `hosts` (name -> testinfra host), `libvirt_conn`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import log
from harness.chaos import runner
from harness.errors import HarnessError
from harness.host.virt import connect
from harness.lab import evidence, secrets, versions
from harness.lab.lab import Lab
from harness.matrix.plugin import lab_for_cell
from harness.nodes.node import Node
from harness.providers.capabilities import parse_on
from harness.testing.markers import item_topology, lab_name_of, marked_topology


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("storlab")
    g.addoption("--topology", default=None, help="topology file for lab tests (overrides the module's marker)")
    g.addoption("--keep-lab", action="store_true", help="leave labs up after the session")
    g.addoption("--lab-provider", default=None,
                help="force a node provider: lxc, vagrant, incus, or incus:REMOTE (an Incus remote or cluster)")
    g.addoption("--lab-release", default=None,
                help="the labs' Debian release instead of their topologies' (bookworm, trixie); also STORLAB_RELEASE")
    g.addoption("--lab-prefix", default=None,
                help="run each topology as an instance named PREFIX-LAB (storlab up --name), so that several "
                     "sessions (CI jobs, students) share a host without sharing labs")
    g.addoption("--lab", default=None, dest="attach_lab",
                help="run against this lab, already up (storlab up / class up): never built nor taken down by the "
                     "session; how `storlab class grade` runs an exercise's checks on each student's lab")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(file): the topology a lab test module runs against")
    config.addinivalue_line("markers", "lab: brings up a real lab (root, lxc or vagrant, libvirtd)")
    config.addinivalue_line("markers", "vm: needs the vagrant-libvirt provider (slow under TCG)")
    release = config.getoption("--lab-release", default=None)
    if release:  # labs the tests make through the CLI (classes, `storlab up` in a subprocess) run it too
        os.environ["STORLAB_RELEASE"] = release


# -- redaction --------------------------------------------------------------------------------
# pytest's own log handlers (capture per test phase, the report's "Captured log" sections, live
# logging, --log-file) go on the root logger: each gets storlab's redaction filter (log.py), which
# rewrites a record before any of them formats it; records of other libraries (paramiko,
# testinfra) reach them only through root, so the `storlab` logger's own filter is not enough.
# What a report carries besides log records (captured stdout/stderr, the failure text, recorded
# properties) is redacted in pytest_runtest_makereport below, before the terminal or JUnit sees it.
_LOGGING_HANDLERS = ("caplog_handler", "report_handler", "log_file_handler", "log_cli_handler")


def redact_log_handlers(config: pytest.Config) -> None:
    """The redaction filter on pytest's logging handlers and on whatever the root logger holds."""
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    handlers = [getattr(plugin, a, None) for a in _LOGGING_HANDLERS] if plugin is not None else []
    for h in [*handlers, *logging.getLogger().handlers]:
        if isinstance(h, logging.Handler):
            log.add_filter(h)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    redact_log_handlers(session.config)


def redact_report(report: pytest.TestReport) -> None:
    """Captured output, the failure (or skip) text and recorded properties without secrets."""
    report.sections = [(title, log.redact(text)) for title, text in report.sections]
    report.user_properties = [(k, log.redact(v) if isinstance(v, str) else v) for k, v in report.user_properties]
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        report.longrepr = (longrepr[0], longrepr[1], log.redact(str(longrepr[2])))
    elif longrepr is not None:
        text = longrepr if isinstance(longrepr, str) else report.longreprtext
        clean = log.redact(text)
        if clean != text:  # the traceback's structure goes with it: only when something was masked
            report.longrepr = clean


class LabManager:
    """Session-wide cache of labs, keyed by topology file."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.labs: dict[str, Lab] = {}
        self.owned: list[Lab] = []

    def get(self, topology: str) -> Lab:
        key = str(Path(topology).resolve())
        if key in self.labs:
            return self.labs[key]
        if os.geteuid() != 0:
            raise HarnessError("lab tests need root (they create bridges, containers and mounts)")
        provider, remote = self.config.getoption("--lab-provider"), None
        if provider:
            provider, remote = parse_on(provider)
        prefix = self.config.getoption("--lab-prefix")
        name = f"{prefix}-{lab_name_of(topology)}" if prefix else None
        lab = Lab.from_topology(topology, provider, name=name, remote=remote,
                                release=self.config.getoption("--lab-release"))
        if lab.is_up():
            lab.access.write_ssh_config()
            log.add_logfile(lab.logfile)  # faults, restarts and their bounds go to the lab's log
        else:
            lab.up(owner_pid=os.getpid())  # a failed up removes its own lab
            self.owned.append(lab)
        self.labs[key] = lab
        return lab

    def release(self, lab: Lab) -> None:
        """Take a lab down now (no later test needs it) if this session brought it up."""
        self.labs = {k: v for k, v in self.labs.items() if v is not lab}
        if lab in self.owned and not self.config.getoption("--keep-lab"):
            self.owned.remove(lab)
            rep = lab.down()
            left = lab.leftovers()
            if rep.failed or left:
                raise HarnessError(f"{lab.name}: teardown incomplete: failed {rep.failed}, left {left}")

    def teardown(self) -> None:
        if self.config.getoption("--keep-lab"):
            for lab in self.owned:
                lab.save_state(status="up", owner_pid=None)
            return
        errors = []
        for lab in self.owned:
            rep = lab.down()
            left = lab.leftovers()
            if rep.failed or left:
                errors.append(f"{lab.name}: failed {rep.failed}, left {left}")
        if errors:
            raise HarnessError("lab teardown incomplete: " + "; ".join(errors))


@pytest.fixture(scope="session")
def lab_manager(request: pytest.FixtureRequest) -> Iterator[LabManager]:
    mgr = LabManager(request.config)
    yield mgr
    mgr.teardown()


def _topology_for(request: pytest.FixtureRequest) -> str:
    p = marked_topology(request.config, request.node)
    if p is None:
        raise HarnessError(f"{request.node.nodeid}: no topology (use --topology or pytest.mark.topology)")
    return str(p)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # ci/test.sh skips a phase that does not fit its time budget: the phase's tests are still
    # collected, and reported as skipped with the reason, so a summary never hides them
    reason = os.environ.get("STORLAB_SKIP_REASON")
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
    # remembered so a lab can be taken down as soon as no later test needs it: two VM labs
    # never run at once on a small host
    config.stash[_ORDER] = [(item.nodeid, item_topology(config, item)) for item in items]


_ORDER = pytest.StashKey[list[tuple[str, "str | None"]]]()


def _needed_after(config: pytest.Config, module_prefix: str, topology: str) -> bool:
    order = config.stash.get(_ORDER, [])
    last = max((i for i, (nodeid, _) in enumerate(order) if nodeid.startswith(module_prefix)), default=-1)
    return any(t == topology for _, t in order[last + 1:])


def attached(name: str) -> Lab:
    """A running lab by name, for tests that must not build or remove it."""
    the_lab = Lab.load(name)
    if not the_lab.is_up():
        down = [n.name for n in the_lab.nodes.values() if not n.is_up()]
        raise HarnessError(f"lab {name} is not up (status {the_lab.state().status!r}, nodes down: "
                           f"{', '.join(down) or 'none'}): bring it up first, or run without --lab")
    the_lab.access.write_ssh_config()
    log.add_logfile(the_lab.logfile)
    return the_lab


def _secrets_masked(the_lab: Lab) -> Lab:
    """The lab, its secrets registered for masking: a test may print a node's config that holds
    one before anything in this session read it."""
    secrets.mask_all(the_lab.secrets_dir)
    return the_lab


#: lab name -> JSON of what each node runs (release, backend package versions), read when a test
#: module takes the lab: every test's JUnit properties carry it (storlab_versions)
_VERSIONS: dict[str, str] = {}


def _record_versions(the_lab: Lab) -> None:
    try:
        _VERSIONS[the_lab.name] = json.dumps(versions.running(the_lab), sort_keys=True)
    except Exception as exc:  # a record, never a reason to fail the tests
        _VERSIONS[the_lab.name] = json.dumps({"error": f"{type(exc).__name__}: {exc}"[:200]})


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, lab_manager: LabManager) -> Iterator[Lab]:
    name = request.config.getoption("attach_lab")
    if name:
        yield _secrets_masked(attached(str(name)))
        return
    cell = getattr(request, "param", None)
    if cell is not None:  # `--matrix`: the lab of this cell (harness/matrix/plugin.py parametrizes it)
        for cell_lab in lab_for_cell(request, cell):
            yield _secrets_masked(cell_lab)
        return
    topology = _topology_for(request)
    the_lab = _secrets_masked(lab_manager.get(topology))
    _record_versions(the_lab)
    yield the_lab
    if not _needed_after(request.config, request.node.nodeid + "::", str(Path(topology).resolve())):
        lab_manager.release(the_lab)


@pytest.fixture(scope="module")
def nodes(lab: Lab) -> dict[str, Node]:
    return dict(lab.nodes)


@pytest.fixture(scope="module")
def hosts(lab: Lab) -> dict[str, Any]:
    return {name: node.testinfra() for name, node in lab.nodes.items()}


def _skip_without_host_side(lab: Lab) -> None:
    why = lab.provider.host_reach()
    if why:
        pytest.skip(f"needs the KVM host's pools on lab {lab.name}: {why}")


@pytest.fixture
def host_side(lab: Lab) -> Lab:
    """The lab, for a test that works through the KVM host's side of it (its libvirt pools, FUSE
    mount, volumes the pools made): skipped, with the reason, when this host cannot reach the lab's
    networks (a lab on an Incus remote), where those pools were never made."""
    _skip_without_host_side(lab)
    return lab


@pytest.fixture
def chaos(host_side: Lab, record_property: Callable[[str, object], None]) -> Callable[..., runner.Outcome]:
    """Runs a chaos schedule on the test's lab and returns the outcome (its verdict, its run
    directory under STORLAB_HOME/chaos): chaos(seed=7, duration=90, faults=["crash", "hang"],
    cache="none"), or chaos(replay=PATH) for a saved schedule. The test asserts on the verdict;
    its figures are recorded (JUnit, matrix reports: the same seed compared across cells)."""
    def run(seed: int | None = None, duration: float = 60, faults: list[str] | None = None, cache: str = "none",
            replay: str | os.PathLike[str] | None = None, warmup: float = 10.0) -> runner.Outcome:
        if replay is not None:
            sched = runner.load_schedule(replay)
        else:
            sched = runner.draw_for(host_side, seed if seed is not None else 0, duration, faults, warmup)
        res = runner.run(host_side, sched, runner.run_dir_for(host_side.name, sched.seed),
                         runner.Settings(sync=cache == "none"))
        v = res.verdict
        for name, value in (("chaos_seed", sched.seed), ("chaos_acked", v.acked), ("chaos_lost", v.counts()["lost"]),
                            ("chaos_longest_stall_s", round(v.availability.longest.length, 2)
                             if v.availability.longest else 0.0), ("chaos_run_dir", str(res.run_dir))):
            record_property(name, value)
        return res
    return run


@pytest.fixture(scope="module")
def libvirt_conn(lab: Lab) -> Iterator[Any]:
    _skip_without_host_side(lab)
    conn = connect(lab.plan.host.uri)
    yield conn
    conn.close()


# -- failure evidence ---------------------------------------------------------------------------
# A lab test that fails (its call, or its setup once its lab exists) gets its lab's evidence
# (harness/lab/evidence.py) saved under STORLAB_HOME/evidence/, outside the lab (labs go at the end
# of the session); the path is in the failure's report, on the terminal and in the JUnit file
# (testcase property `storlab_evidence`). Expected failures collect nothing.
# STORLAB_EVIDENCE=off turns it off (a grading run, where failing checks are the point).

_STARTED = pytest.StashKey[float]()
#: evidence already collected for an exception (a failing module fixture fails every later setup
#: with the same exception object): (exception, path)
_COLLECTED = pytest.StashKey[list[tuple[BaseException, Path]]]()
#: when each lab (by id; the lab kept alive with it) was last handed out by its fixture
_LAB_READY = pytest.StashKey[dict[int, tuple[Any, float]]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.time()  # the journal in a failure's evidence starts here
    redact_log_handlers(item.config)  # also handlers another plugin put on the root logger since


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Generator[None, Any, Any]:
    value = yield
    if fixturedef.argname == "lab":
        request.config.stash.setdefault(_LAB_READY, {})[id(value)] = (value, time.time())
    return value


def journal_since(item: pytest.Item, the_lab: Any) -> float | None:
    """Where a failed test's journal starts: its setup, or the moment its lab was ready when the
    lab came up during that setup (the first test of a module: its bring-up is not the test's)."""
    started = item.stash.get(_STARTED, None)
    ready = item.config.stash.get(_LAB_READY, {}).get(id(the_lab))
    if started is None or ready is None or ready[0] is not the_lab:
        return started
    return max(started, ready[1])


def wants_evidence(report: pytest.TestReport) -> bool:
    """A failure worth evidence: a failed setup or call, not an expected failure (xfail) nor an
    unexpected pass of a strict xfail; not when STORLAB_EVIDENCE=off."""
    if os.environ.get("STORLAB_EVIDENCE", "").lower() in ("off", "0", "no", "false"):
        return False
    if report.when not in ("setup", "call") or not report.failed or hasattr(report, "wasxfail"):
        return False
    return not (isinstance(report.longrepr, str) and report.longrepr.startswith("[XPASS(strict)]"))


def _short_reason(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    return str(message) if message else (report.longreprtext.strip().splitlines() or ["(no failure text)"])[-1]


def _evidence_for(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None], the_lab: Any
                  ) -> tuple[Path, str]:
    """Collect (or reuse, for the same exception) the evidence: its path and the line naming it."""
    seen = item.config.stash.setdefault(_COLLECTED, [])
    exc = call.excinfo.value if call.excinfo else None
    earlier = next((path for e, path in seen if exc is not None and e is exc), None)
    if earlier is not None:
        return earlier, f"evidence for {item.nodeid}: {earlier} (the same failure as an earlier test's)"
    t0 = time.monotonic()
    reason = evidence.reason_text(item.nodeid, report.when, _short_reason(report), report.longreprtext)
    path = evidence.collect(the_lab, item.name, journal_since(item, the_lab), reason)
    if exc is not None:
        seen.append((exc, path))
    line = f"evidence for {item.nodeid}: {path} (collected in {time.monotonic() - t0:.1f}s)"
    log.info(line)
    return path, line


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: sees the report after xfail handling
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    the_lab = getattr(item, "funcargs", {}).get("lab")
    recorded = _VERSIONS.get(str(getattr(the_lab, "name", "")))
    if report.when == "call" and recorded is not None:
        item.user_properties.append(("storlab_versions", recorded))
    if the_lab is not None and wants_evidence(report):
        _add_evidence(item, call, report, the_lab)
    redact_report(report)
    return report


def _add_evidence(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, the_lab: Any) -> None:
    try:
        path, line = _evidence_for(item, report, call, the_lab)
        # JUnit takes a testcase's properties from its teardown report, made from the item's
        item.user_properties.append(("storlab_evidence", str(path)))
        report.user_properties.append(("storlab_evidence", str(path)))
    except Exception as exc:  # evidence never hides the failure it is about
        line = f"evidence for {item.nodeid}: could not be collected: {type(exc).__name__}: {exc}"
    report.sections.append(("storlab evidence", line))
    tr = item.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(line)
