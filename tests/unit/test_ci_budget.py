"""The time-budget guard of ci/test.sh (ci/budget.sh), driven for real: bash runs `phase` with
simulated elapsed time (bash's SECONDS can be set) and real pytest on a one-test file. A phase
that does not fit is skipped loudly and pytest reports its test as skipped with the reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def guard(tmp_path: Path, script: str) -> str:
    test = tmp_path / "test_phase.py"
    test.write_text("def test_phase() -> None:\n    pass\n")
    prelude = (f"cd {REPO}; set -u; rc=0; timings=(); budget=4500; target=2700; t0=0; SECONDS=0\n"
               f"source ci/budget.sh\nT={test}\n")
    r = subprocess.run(["bash", "-c", prelude + script + '\nprintf "%s\\n" "${timings[@]}"; echo "rc=$rc"'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_phases_that_fit_run(tmp_path: Path) -> None:
    out = guard(tmp_path, 'phase always unit 0 -q -p no:cacheprovider "$T"\n'
                          'phase core vm1 600 -q -p no:cacheprovider "$T"')
    assert "== phase 'unit' (never skipped" in out and "== phase 'vm1' (predicted 600s" in out
    assert out.count("1 passed") == 2 and "SKIPPED" not in out and "rc=0" in out


def test_a_core_phase_past_the_budget_is_skipped_and_reported_by_pytest(tmp_path: Path) -> None:
    out = guard(tmp_path, 'SECONDS=4000\nphase core vm1 600 -q -rs -p no:cacheprovider "$T"')
    assert "== SKIPPED phase 'vm1' skipped: predicted 600s (600s on a slow day) after 4000s would pass the 4500s budget" in out
    assert "1 skipped" in out and "would pass the 4500s budget" in out.split("== SKIPPED", 1)[1].split("\n", 1)[1]
    assert "vm1: SKIPPED (predicted 600s, 4000s elapsed, limit 4500s)" in out


def test_extra_phases_follow_this_machines_speed_against_the_target(tmp_path: Path) -> None:
    # the first VM phase took its full slow-day time: an extra phase after 2400 s does not fit 2700 s
    slow = guard(tmp_path, 'vm_expected=1500; vm_actual=1500; SECONDS=2400\n'
                           'phase extra nfsd 600 -q -rs -p no:cacheprovider "$T"')
    assert "SKIPPED phase 'nfsd'" in slow and "would pass the 2700s target" in slow and "1 skipped" in slow
    # on a day three times faster the same phase is predicted at 200 s and runs
    fast = guard(tmp_path, 'vm_expected=1500; vm_actual=500; SECONDS=2400\n'
                           'phase extra nfsd 600 -q -p no:cacheprovider "$T"')
    assert "== phase 'nfsd' (predicted 200s" in fast and "1 passed" in fast
