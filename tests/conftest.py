"""What `pytest` runs when told nothing: the unit tests (seconds, no root). Lab tests need root and
real daemons, so they run when a path names them (`pytest tests/lab/test_nfs.py`) or a selection
asks for them (`pytest -k gluster_failover`, `pytest -m lab`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return  # paths given: run what they name
    if config.option.keyword or config.option.markexpr:
        return  # -k/-m: the selection decides, lab tests included
    lab = [item for item in items if item.nodeid.startswith("tests/lab/")]
    if lab:
        items[:] = [item for item in items if not item.nodeid.startswith("tests/lab/")]
        config.hook.pytest_deselected(items=lab)
