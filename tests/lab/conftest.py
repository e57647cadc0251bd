"""Lab tests run against real daemons; they are marked `lab` so unit runs can skip them."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.lab)
