"""A chaos run's HTML report, from a real ledger and block file through the checker and the
timeline: PASS or FAIL with the lost write named, a plot with one band per fault, hostile text
from the lab escaped, an empty run drawn without a degenerate axis, the same page twice; and the
CLI never paying for matplotlib."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.chaos import html
from harness.chaos.checker import Unreadable, check, locations, read_file_blocks
from harness.chaos.ledger import Ledger, Records, read
from harness.chaos.report import timeline
from harness.chaos.schedule import Event, Schedule, Skipped
from harness.testing.workload import BlockFileWriter

REPO = Path(__file__).resolve().parents[2]
SIZE = 512
HOSTILE = "<script>alert(1)</script>"
# a kind from a lab's ledger: HTML, and a `$` pair matplotlib would parse as mathtext (and fail on)
HOSTILE_KIND = "$\\frac{$<img src=x onerror=alert(2)>"
FAULTS = [(0, "crash", HOSTILE), (1, HOSTILE_KIND, "gluster3")]


def _run(tmp_path: Path) -> tuple[Records, dict[tuple[str, int], bytes | Unreadable], BlockFileWriter]:
    """24 acknowledged writes of w1 over 8 blocks (seqs 16..23 are the last at each), with two
    faults recorded between them; what the file holds, read back."""
    vol, lpath = tmp_path / "vol.img", tmp_path / "ledger.jsonl"
    op = BlockFileWriter(str(vol), "w1", SIZE, span=8 * SIZE, target="vol.img")
    with Ledger.open(lpath, seed=4242, sync=False) as ledger:
        for seq in range(24):
            for fid, kind, what in FAULTS:
                if seq == 6 + 6 * fid:
                    ledger.fault(fid, kind, "start", what)
                if seq == 9 + 6 * fid:
                    ledger.fault(fid, kind, "end", what)
            ledger.intend(op.intent(seq))
            op(seq)
            ledger.ack("w1", seq)
    records = read(lpath)
    return records, read_file_blocks(str(vol), "vol.img", locations(records)), op


SCHEDULE = Schedule(seed=4242, duration=60, provider="lxc", kinds=("crash", "link", "disk-slow"),
                    events=(Event(id=0, at=1, duration=2, kind="crash", nodes=("gluster2",)),
                            Event(id=1, at=4, duration=2, kind="link", nodes=("gluster3",))),
                    skipped=(Skipped(kind="disk-slow", reason=f"lxc has no data disk {HOSTILE}"),))


def _svg(page: str) -> str:
    return page[page.index("<svg"):page.index("</svg>") + len("</svg>")]


def test_a_passing_run_says_pass_draws_a_band_per_fault_and_escapes_the_lab(tmp_path: Path) -> None:
    records, reads, _ = _run(tmp_path)
    data = timeline(records, check(records, reads), SCHEDULE)
    page = html.render(data)
    assert data["verdict"]["ok"] and "PASS" in page and "FAIL" not in page
    assert "seed 4242" in page and "<b>24</b> writes acknowledged" in page and "Findings</h2><p>None" in page
    svg = _svg(page)
    ET.fromstring(svg)  # well-formed: the escaped kind did not break the SVG
    bands = data["bands"]
    assert len(bands) == len(FAULTS) and svg.count(f"opacity: {html.BAND_ALPHA}") == 3 * len(bands)  # 3 panels
    assert svg.count(">e0 crash<") == 1 and "e1 $\\frac{$&lt;img" in svg
    assert len(re.findall(r"<tr><td>e\d+</td>", page)) == len(bands)
    low = page.lower()
    assert "<script" not in low and "<img" not in low
    assert html.esc(HOSTILE) in page and "disk-slow</b>: lxc has no data disk &lt;script&gt;" in page
    assert "storlab chaos LAB --replay RUNDIR" in page


def test_a_lost_write_fails_the_run_and_is_named(tmp_path: Path) -> None:
    records, reads, op = _run(tmp_path)
    reads = dict(reads)
    reads[("vol.img", op.offset(19))] = bytes(SIZE)  # seq 19 was the last acknowledged there
    data = timeline(records, check(records, reads), SCHEDULE)
    page = html.render(data)
    assert not data["verdict"]["ok"] and "FAIL" in page and "PASS" not in page
    assert "<b>1 lost</b>" in page and "Findings (1)" in page
    item = re.search(r"<li><b>lost</b>: (.*?)</li>", page)
    assert item is not None, page
    assert f"writer <code>w1</code> seq 19 at <code>vol.img</code>+{op.offset(19)}" in item[1]
    assert "s into the run: 512 bytes read, all zero" in item[1]


def test_an_empty_or_idle_run_draws_axes_from_zero(tmp_path: Path) -> None:
    empty = Records("none", [])
    page = html.render(timeline(empty, check(empty, {})))
    assert "<svg" in page and "No fault was applied" in page and "No schedule was saved" in page
    idle: dict[str, Any] = {"seed": 1, "seconds": 5.0, "bands": [], "verdict": {"ok": True},
                            "series": {"t": [0, 1, 2, 3, 4], "ops": [0] * 5, "errors": [0] * 5,
                                       "latency_mean": [None] * 5, "latency_max": [None] * 5}}
    svg = _svg(html.render(idle))
    labels = [t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "\N{MINUS SIGN}" not in "".join(labels) and "-" not in "".join(labels)  # no negative ticks on a count
    assert {"0", "1", "4"} <= set(labels)


def test_malformed_values_are_shown_as_text_not_trusted() -> None:
    data: dict[str, Any] = {"seed": "<x>", "seconds": "long", "series": {"t": [0, 1], "ops": ["a", 3]},
                            "bands": [{"id": "<1>", "kind": 7, "start": "soon", "end": None}],
                            "verdict": {"ok": "yes", "acked": 2.5, "findings": [{"writer": ["<w>"]}]}}
    page = html.render(data)
    assert "FAIL" in page and "&lt;x&gt;" in page and "&lt;1&gt;" in page and "[&#x27;&lt;w&gt;&#x27;]" in page
    assert "<x>" not in page


def test_a_long_list_of_findings_is_cut_with_the_count() -> None:
    found = [{"category": "lost", "writer": "w1", "seq": i} for i in range(html.LIST_MAX + 3)]
    page = html.render({"verdict": {"ok": False, "findings": found}})
    assert f"Findings ({html.LIST_MAX + 3})" in page and "<li>... and 3 more</li>" in page
    assert page.count("<li><b>lost</b>") == html.LIST_MAX


def test_the_same_data_renders_the_same_page_and_write_names_the_run_dir(tmp_path: Path) -> None:
    records, reads, _ = _run(tmp_path)
    data = timeline(records, check(records, reads), SCHEDULE)
    first = html.render(data)
    html.render({"seed": 2, "series": {"t": [0], "ops": [1]}})  # another figure between: no state carried over
    assert html.render(data) == first
    out = html.write(tmp_path, data)
    assert out == tmp_path / "report.html"
    assert f"storlab chaos LAB --replay {tmp_path}" in out.read_text()


def test_the_cli_and_the_reports_import_without_matplotlib() -> None:
    code = ("import sys; from harness.cli import main; import harness.chaos.html, harness.matrix.report; "
            f"rc = main.main(['validate', '--host-profile', 'ci', {str(REPO / 'topologies' / 'gluster-3.yaml')!r}]); "
            "assert rc == 0, rc; assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
