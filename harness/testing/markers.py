"""Where a lab test's topology comes from: `--topology`, else its `pytest.mark.topology` (a path,
or a file name under the repository's topologies/). Read by the lab fixtures and by matrices,
which run a test only in cells of its own topology."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.spec.yamlload import load_file


def marked_topology(config: pytest.Config, node: pytest.Item) -> Path | None:
    """The topology file of ``node``'s lab (None: no --topology and no marker)."""
    marker = node.get_closest_marker("topology")
    name = config.getoption("--topology") or (marker.args[0] if marker else None)
    if name is None:
        return None
    p = Path(name)
    return p if p.exists() else Path(config.rootpath) / "topologies" / name


def item_topology(config: pytest.Config, item: pytest.Item) -> str | None:
    """marked_topology, resolved (what two items are compared by)."""
    p = marked_topology(config, item)
    return str(p.resolve()) if p is not None else None


def lab_name_of(topology: str) -> str:
    """The `lab:` a topology file names (read without validating: validation comes with the lab)."""
    data = load_file(topology).data
    name = data.get("lab") if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise HarnessError(f"{topology}: no lab: name")
    return name
