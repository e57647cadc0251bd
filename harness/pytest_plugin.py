"""pytest plugin: --topology / --keep-lab options and lab fixtures (see tests/lab/)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("storlab")
    g.addoption("--topology", action="append", default=[], help="topology file(s) for lab tests")
    g.addoption("--keep-lab", action="store_true", help="leave labs up after the session")
    g.addoption("--provider", choices=["lxc", "vagrant"], default=None, help="force a node provider")
