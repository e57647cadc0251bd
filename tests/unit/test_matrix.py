"""Matrix files: paths, patches, cells, rules, validation of every cell, reuse keys, selection."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos import runner
from harness.chaos.availability import Availability
from harness.chaos.checker import Finding, Verdict, Write
from harness.chaos.runner import Outcome
from harness.errors import HarnessError, TopologyError
from harness.host.facts import PROFILES
from harness.matrix import plugin as matrix_plugin
from harness.matrix import report as matrix_report
from harness.matrix import spec as mx
from harness.matrix.plugin import MatrixRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    return tmp_path


def write(tmp: Path, text: str) -> Path:
    f = tmp / "m.yaml"
    f.write_text(text.replace("BASE", str(ROOT / "topologies" / "gluster-3.yaml")))
    return f


GOOD = """matrix: g
base: BASE
axes:
  ping:
    path: gluster.volumes[0].options["network.ping-timeout"]
    values: {ping5: 5, ping10: 10}
  layout:
    values:
      replica3: {}
      replica1: {"gluster.volumes[0].replica": 1, "gluster.volumes[0].bricks": ["gluster1:/gluster/bricks/1/brick"]}
exclude: [{ping: ping10, layout: replica1}]
expect_fail:
  - {cells: {layout: replica1}, tests: [test_gluster_failover_*], reason: one copy}
"""


def test_paths_read_dots_indexes_and_quoted_keys() -> None:
    assert mx.parse_path('gluster.volumes[0].options["network.ping-timeout"]') == \
        ("gluster", "volumes", 0, "options", "network.ping-timeout")
    with pytest.raises(ValueError):
        mx.parse_path("a..[x")


def test_patch_sets_adds_and_refuses_missing_items() -> None:
    data = {"a": [{"b": 1}]}
    mx.patch(data, ("a", 0, "b"), 2)
    mx.patch(data, ("a", 0, "c", "d"), 3)
    assert data == {"a": [{"b": 2, "c": {"d": 3}}]}
    with pytest.raises(HarnessError):
        mx.patch(data, ("a", 5, "b"), 1)


def test_cells_are_the_product_minus_excludes_each_validated(home: Path) -> None:
    m = mx.load(write(home, GOOD), PROFILES["ci"])
    assert [c.name for c in m.cells] == ["ping5-replica3", "ping5-replica1", "ping10-replica3"]
    assert all(c.valid for c in m.cells)
    assert "network.ping-timeout: 10" in (m.workdir() / "cells" / "ping10-replica3.yaml").read_text()


def test_cells_differing_in_runtime_settings_share_a_lab(home: Path) -> None:
    m = mx.load(write(home, GOOD), PROFILES["ci"])
    by = {c.name: c for c in m.cells}
    assert m.lab_name(by["ping5-replica3"]) == m.lab_name(by["ping10-replica3"])  # a volume option: reconfigured
    assert m.lab_name(by["ping5-replica3"]) != m.lab_name(by["ping5-replica1"])  # another volume: its own lab


def test_expected_failures_are_per_cell_and_pattern(home: Path) -> None:
    by = {c.name: c for c in mx.load(write(home, GOOD), PROFILES["ci"]).cells}
    assert by["ping5-replica1"].expected("test_gluster_failover_hung_node_stalls_at_most_ping_timeout")
    assert by["ping5-replica3"].expected("test_gluster_failover_hung_node_stalls_at_most_ping_timeout") is None


def test_an_invalid_cell_carries_its_located_problem_and_the_others_stay(home: Path) -> None:
    bad = GOOD.replace("replica1: {", 'replica2: {"gluster.volumes[0].replica": 2}\n      replica1: {').replace(
        "exclude: [{ping: ping10, layout: replica1}]", "exclude: []")
    m = mx.load(write(home, bad), PROFILES["ci"])
    invalid = [c for c in m.cells if not c.valid]
    assert {c.values["layout"] for c in invalid} == {"replica2"}
    text = str(invalid[0].problems[0])
    assert "replica 2 does not divide the 3 bricks" in text and ".yaml:" in text
    assert sum(c.valid for c in m.cells) == 4


def test_matrix_file_errors_are_located(home: Path) -> None:
    with pytest.raises(TopologyError) as e:
        mx.load(write(home, GOOD.replace("values: {ping5: 5, ping10: 10}", "valuez: {ping5: 5}")), PROFILES["ci"])
    assert "m.yaml:6" in str(e.value) and "unknown key 'valuez'" in str(e.value)
    with pytest.raises(TopologyError) as e:
        mx.load(write(home, GOOD.replace("exclude: [{ping: ping10,", "exclude: [{ping: ping99,")), PROFILES["ci"])
    assert "axis ping has no value 'ping99'" in str(e.value)


def test_select_by_axis_values(home: Path) -> None:
    cells = mx.load(write(home, GOOD), PROFILES["ci"]).cells
    assert [c.name for c in mx.select(cells, "layout=replica3")] == ["ping5-replica3", "ping10-replica3"]
    assert [c.name for c in mx.select(cells, "ping=ping5 layout=replica1")] == ["ping5-replica1"]
    with pytest.raises(HarnessError):
        mx.select(cells, "nope=1")


def test_subset_slices_cover_every_axis_value_and_all_cells_together(home: Path) -> None:
    cells = mx.load(write(home, GOOD), PROFILES["ci"]).cells
    slices = [mx.subset(cells, f"{i}/3") for i in (1, 2, 3)]
    for sl in slices:
        for axis in ("ping", "layout"):
            assert {c.values[axis] for c in sl} == {c.values[axis] for c in cells}
    assert {c.name for sl in slices for c in sl} == {c.name for c in cells}
    with pytest.raises(HarnessError):
        mx.subset(cells, "4/3")


def test_report_table_and_plot(home: Path) -> None:
    m = mx.load(write(home, GOOD), PROFILES["ci"])
    results = {"ping5-replica3": {"test_hung": {"outcome": "passed", "figures": {"stall_s": 7.1}}},
               "ping10-replica3": {"test_hung": {"outcome": "failed", "figures": {"stall_s": 12.4}}},
               "ping5-replica1": {"test_hung": {"outcome": "xfailed", "figures": {}}}}
    md, html = matrix_report.save(m, m.cells, results, {"ping5-replica3": {"lab": "x", "built_s": 18.0},
                                                         "ping10-replica3": {"lab": "x", "reconfigured_s": 0.2}})
    text = md.read_text()
    assert "| ping5-replica3 | ping5 | replica3 | built 18s | pass (stall_s=7.10) |" in text
    assert "| ping10-replica3 | ping10 | replica3 | reconfigured 0.2s | FAIL (stall_s=12.40) |" in text
    assert "xfail (expected)" in text
    page = html.read_text()
    assert "<svg" in page and "stall_s against ping" in page
    again = matrix_report.save(m, m.cells, {"ping10-replica3": {"test_hung": {"outcome": "passed", "figures": {}}}},
                               {}, merge=True)[0].read_text()
    assert "| ping5-replica3 | ping5 | replica3 | built 18s | pass (stall_s=7.10) |" in again  # kept from before
    assert "| ping10-replica3 | ping10 | replica3 | reconfigured 0.2s | pass |" in again


def _numbers(svg: str) -> list[float]:
    """The SVG's text elements that are numbers (its tick labels)."""
    texts = [el.text or "" for el in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    return [float(t) for t in texts if re.fullmatch(r"-?[\d.]+(e[-+]?\d+)?", t)]


def test_report_plot_has_axes_ticks_and_a_line_through_the_points(home: Path) -> None:
    """Three cells along ping (5, 10, 20 s) with stalls of 700..1240: the plot labels several ticks
    on each axis (x below 100, y above) and joins the three points with one line (a path M L L);
    a cell of the other layout is a line of its own, named in the legend."""
    m = mx.load(write(home, GOOD.replace("{ping5: 5, ping10: 10}", "{ping5: 5, ping10: 10, ping20: 20}")), PROFILES["ci"])
    results = {f"ping{p}-replica3": {"test_hung": {"outcome": "passed", "figures": {"stall_s": y}}}
               for p, y in ((5, 700.0), (10, 1240.0), (20, 900.0))}
    results["ping5-replica1"] = {"test_hung": {"outcome": "passed", "figures": {"stall_s": 300.0}}}
    page = matrix_report.save(m, m.cells, results, {})[1].read_text()
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    numbers = _numbers(svg)
    assert len([n for n in numbers if n < 100]) > 2, numbers  # x ticks
    assert len([n for n in numbers if n >= 100]) > 2, numbers  # y ticks
    lines = [p.get("d", "") for p in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}path")]
    assert any(re.fullmatch(r"M [-\d. ]+ L [-\d. ]+ L [-\d. ]+", d.strip()) for d in lines), lines
    assert ">layout=replica1<" in svg and ">layout=replica3<" in svg


def test_shipped_matrices_load_and_their_cells_validate_or_say_why() -> None:
    for f in sorted((ROOT / "matrices").glob("*.yaml")):
        m = mx.load(f, PROFILES["kvm"])
        assert m.cells, f
        assert sum(c.valid for c in m.cells) >= 1, f"{f}: no valid cell on a KVM host"


def test_matrix_json_schema_names_every_field() -> None:
    schema = mx.MatrixModel.model_json_schema()
    assert {"matrix", "base", "tests", "axes", "include", "exclude", "expect_fail"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


# -- what a matrix may read and where its cells go ----------------------------------------------
def _matrix_in(d: Path, base: str, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    f = d / "m.yaml"
    f.write_text(GOOD.replace("base: BASE", f"base: {base}") + extra)
    return f


def test_a_base_outside_the_matrix_dir_and_the_topologies_is_refused_at_its_line(home: Path) -> None:
    secret = home / "root-only.yaml"
    secret.write_text("lab: t\nnodes: [{name: n1}]\n# a 0600 file of root's\n")
    secret.chmod(0o600)
    for base in (str(secret), "../root-only.yaml", "/etc/passwd"):
        with pytest.raises(TopologyError) as e:
            mx.load(_matrix_in(home / "mdir", base), PROFILES["ci"])
        (p,) = e.value.problems
        assert (p.field, p.line) == ("base", 2) and "outside" in p.message, e.value
    assert not (home / "home" / "matrices").exists()  # no cell was written


def test_a_base_symlink_out_of_the_matrix_dir_is_refused(home: Path) -> None:
    outside = home / "outside.yaml"
    outside.write_text((ROOT / "topologies" / "gluster-3.yaml").read_text())
    d = home / "mdir"
    d.mkdir()
    (d / "base.yaml").symlink_to(outside)
    with pytest.raises(TopologyError) as e:
        mx.load(_matrix_in(d, "base.yaml"), PROFILES["ci"])
    assert "outside" in str(e.value)
    (d / "inside.yaml").write_text(outside.read_text())  # a topology of the matrix's own directory: fine
    assert mx.load(_matrix_in(d, "inside.yaml"), PROFILES["ci"]).cells


def test_an_axis_value_base_outside_is_refused_at_its_line(home: Path) -> None:
    extra = "  other:\n    values:\n      elsewhere: {base: /etc/passwd}\n"
    text = GOOD.replace("exclude:", extra + "exclude:").replace("BASE", str(ROOT / "topologies" / "gluster-3.yaml"))
    f = home / "m.yaml"
    f.write_text(text)
    with pytest.raises(TopologyError) as e:
        mx.load(f, PROFILES["ci"])
    (p,) = e.value.problems
    assert p.field == "axes.other.values.elsewhere.base" and p.line == 13 and "outside" in p.message, e.value


@pytest.mark.parametrize("test", ["/etc/passwd", "../../outside/test_x.py", "tests/../../x.py", "-p", "--rootdir=/",
                                  "tests/lab\n/x.py"])
def test_matrix_tests_are_paths_inside_the_repository(home: Path, test: str) -> None:
    f = write(home, GOOD.replace("axes:", f"tests: [{test!r}]\naxes:".replace("'", '"').replace("\n/", "\\n/")))
    with pytest.raises(TopologyError) as e:
        mx.load(f, PROFILES["ci"])
    (p,) = e.value.problems
    assert p.field == "tests[0]" and p.line == 3 and p.fix, e.value


def test_cell_files_are_private(home: Path) -> None:
    import stat
    m = mx.load(write(home, GOOD), PROFILES["ci"])
    cells_dir = m.cells[0].topology.parent
    assert stat.S_IMODE(cells_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(c.topology.stat().st_mode) == 0o600 for c in m.cells)
    m.cells[0].topology.chmod(0o644)  # a cell an older storlab wrote
    m = mx.load(write(home, GOOD), PROFILES["ci"])
    assert stat.S_IMODE(m.cells[0].topology.stat().st_mode) == 0o600


# -- a live reconfiguration checked as a fault ------------------------------------------------------
class _Config:
    def getoption(self, name: str) -> object:
        return {"--lab-provider": "lxc", "--keep-lab": False}.get(name)


def _verdict(lost: int) -> Verdict:
    w = Write(writer="gfapi", seq=7, target="vol/x.img", offset=4096, size=4096, digest="d", order=3, acked=1.0)
    return Verdict(seed=0, findings=[Finding("lost", w, "read back all zero")] * lost,
                   availability=Availability(0.0, 10.0, 200, 0, None), acked=200, in_doubt=0, superseded=0)


@pytest.mark.parametrize("under_writes", [False, True])
def test_reconfiguring_between_cells_under_writes_is_checked_and_a_loss_fails_the_cell(
        home: Path, monkeypatch: pytest.MonkeyPatch, under_writes: bool) -> None:
    m = mx.load(write(home, GOOD), PROFILES["ci"])
    m.model = m.model.model_copy(update={"reconfigure_under_writes": under_writes})
    mrun = MatrixRun(m, _Config())  # type: ignore[arg-type]
    calls: list[str] = []

    class Backend:
        def reconfigure(self, lab: object, before: object) -> list[str]:
            calls.append("reconfigure")
            return ["kvmgluster: network.ping-timeout=10"]
    monkeypatch.setattr(matrix_plugin, "backends", lambda: [Backend()])
    verdicts = [_verdict(0), _verdict(2)]

    def during(lab: object, kind: str, action: Callable[[], object], run_dir: Path) -> Outcome:
        assert kind == "reconfigure" and "-to-ping10" in run_dir.name
        calls.append("writers on")
        action()
        calls.append("writers checked")
        return Outcome(run_dir, None, verdicts.pop(0), 0.0, 1.0)  # type: ignore[arg-type]
    monkeypatch.setattr(runner, "during", during)
    lab = type("L", (), {"name": "mx-g-1", "plan": None})()
    cell = next(c for c in m.cells if c.name.startswith("ping10"))
    assert mrun.reconfigure(lab, None, cell) == ["kvmgluster: network.ping-timeout=10"]  # type: ignore[arg-type]
    if not under_writes:
        assert calls == ["reconfigure"] and cell.name not in mrun.lab_events
        return
    assert calls == ["writers on", "reconfigure", "writers checked"]
    assert mrun.lab_events[cell.name]["reconfigure_check"]["ok"] is True
    with pytest.raises(HarnessError, match=r"(?s)under writes failed the checker.*lost: writer gfapi seq 7"):
        mrun.reconfigure(lab, None, cell)  # type: ignore[arg-type]
    assert mrun.lab_events[cell.name]["reconfigure_check"] | {"run_dir": ""} == {
        "ok": False, "acked": 200, "lost": 2, "run_dir": ""}


def test_bases_are_the_topologies_a_matrix_runs_tests_of(home: Path) -> None:
    """pytest --matrix runs a test only in cells of its own topology: `pytest tests/lab --matrix
    matrices/gluster-chaos.yaml -k seeded` ran test_chaos_ceph's seeded test on the gluster lab."""
    m = mx.load(ROOT / "matrices" / "pools.yaml", PROFILES["ci"])
    named = {line.split("topologies/")[1].strip() for line in (ROOT / "matrices" / "pools.yaml").read_text().splitlines()
             if line.strip().startswith("base: ../topologies/")}
    assert len(named) > 1 and m.bases() == {(ROOT / "topologies" / n).resolve() for n in named}
    g = mx.load(ROOT / "matrices" / "gluster-chaos.yaml", PROFILES["ci"])
    assert g.bases() == {(ROOT / "topologies" / "gluster-3.yaml").resolve()}
