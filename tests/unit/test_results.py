"""bench/results.py: the dated sections the bench scripts and the CI summary append to
bench/RESULTS.md, written here into temporary files only."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import results  # noqa: E402

WHEN = dt.datetime(2026, 12, 4, 10, 30, tzinfo=dt.UTC)


def test_record_starts_a_missing_file_with_the_header_and_appends_dated_sections(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    results.record("bench_nodes.py --provider lxc", ["up 3 nodes: 3.8 s", "down: 0.4 s"], path=out, when=WHEN)
    results.record("CI: bash ci/test.sh (exit 0)", ["lint: 5s"], path=out, when=WHEN + dt.timedelta(hours=1))
    text = out.read_text()
    assert text.startswith(results.HEADER)
    assert text.count("# Measured results") == 1
    first, second = text.split("\n## ")[1:]
    assert first.startswith("2026-12-04 10:30 UTC: bench_nodes.py --provider lxc\n")
    assert "- up 3 nodes: 3.8 s\n- down: 0.4 s\n" in first
    assert second.startswith("2026-12-04 11:30 UTC: CI: bash ci/test.sh (exit 0)\n")
    for part in (first, second):  # every section says on which commit and which host
        assert f"Commit {results.commit()}; host: " in part
        assert " CPUs, " in part and " GiB, kernel " in part and "VMs: " in part


def test_record_keeps_what_the_file_had(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# Measured results\n\n## 2026-11-30: an entry from before\n")
    results.record("bench_ceph.py --provider lxc", ["health_ok_s: 20.8"], path=out, when=WHEN)
    text = out.read_text()
    assert text.startswith("# Measured results\n\n## 2026-11-30: an entry from before\n\n## 2026-12-04 10:30 UTC: ")
    assert text.endswith("- health_ok_s: 20.8\n")


def test_commit_names_this_checkout() -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          timeout=10).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    assert results.commit().split()[0] == head
    assert results.commit(Path("/")) == "unknown"


def test_as_lines_gives_one_line_per_figure() -> None:
    assert results.as_lines({"provider": "lxc", "up_s": 18.2, "steps_s": {"ready": 2.0}, "runs": [1, 2]}) == [
        "provider: lxc", "up_s: 18.2", 'steps_s: {"ready": 2.0}', "runs: [1, 2]"]


def test_cli_writes_where_the_environment_says(tmp_path: Path) -> None:
    """What ci/test.sh runs with STORLAB_RECORD_RESULTS=1: `python3 bench/results.py TITLE LINE...`."""
    out = tmp_path / "scratch.md"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "results.py"), "CI: bash ci/test.sh (exit 1)",
                        "lint: 4s", "unit + LXC labs: FAILED (900s)", "total 1800s"],
                       env={"PATH": "/usr/bin:/bin", "STORLAB_RESULTS_FILE": str(out)}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "UTC: CI: bash ci/test.sh (exit 1)\n" in text
    assert "- lint: 4s\n- unit + LXC labs: FAILED (900s)\n- total 1800s\n" in text
    assert subprocess.run([sys.executable, str(ROOT / "bench" / "results.py")], capture_output=True,
                          timeout=60).returncode == 2


def test_ci_records_only_when_asked() -> None:
    """ci/test.sh appends its phase timings through bench/results.py behind STORLAB_RECORD_RESULTS=1
    (CI runs on a clean clone and must not dirty it unasked)."""
    script = (ROOT / "ci" / "test.sh").read_text()
    tail = script[script.index('echo "== phase timings:"'):]
    assert 'if [ "${STORLAB_RECORD_RESULTS:-0}" = 1 ]; then' in tail
    assert "python3 bench/results.py" in tail


def test_readme_gives_expectations_and_leaves_dated_figures_to_results() -> None:
    """The README's test command is what .ci/run runs, and it carries no dated run figures: those are
    bench/RESULTS.md's, written by the runs."""
    readme = (ROOT / "README.md").read_text()
    ci_run = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
              if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_run == ["bash ci/test.sh"]
    assert "```\nbash ci/test.sh\n```" in readme and "```\nbash ci/up.sh topologies/gluster-3.yaml\n```" in readme
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", readme) is None, "dated figures belong in bench/RESULTS.md"
    assert "bench/RESULTS.md" in readme
