"""`pytest` alone runs the unit tests only; `pytest -k NAME` reaches the lab tests (as CI jobs run
`pytest -k gluster_failover`); a path runs what it names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def collected(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=120).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_pytest_alone_collects_unit_tests_only() -> None:
    ids = collected()
    assert ids and all(i.startswith("tests/unit/") for i in ids), [i for i in ids if not i.startswith("tests/unit/")][:5]


def test_a_selection_or_a_path_reaches_the_lab_tests() -> None:
    assert any(i.startswith("tests/lab/test_gluster_failover.py::") for i in collected("-k", "gluster_failover"))
    assert all(i.startswith("tests/lab/test_nfs.py::") for i in collected("tests/lab/test_nfs.py"))
