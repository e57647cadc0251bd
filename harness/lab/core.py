"""What a lab's own parts (lifecycle.py, snapshots.py) use of the lab: a Protocol that the facade
harness.lab.lab.Lab satisfies, so that no part imports the facade and no part imports another
(`up` takes the baseline snapshot and `revert` re-runs the role steps through this)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from harness.backends.base import LabContext
from harness.errors import CleanupReport
from harness.lab.access import Access
from harness.lab.state import LabState, SnapshotInfo, StateFile
from harness.nodes.node import Node
from harness.providers.base import Provider

Step = tuple[str, Callable[[], None]]


class LabCore(LabContext, Protocol):
    @property
    def nodes(self) -> dict[str, Node]: ...

    def node(self, name: str) -> Node: ...

    @property
    def dir(self) -> Path: ...

    @property
    def logfile(self) -> Path: ...

    @property
    def provider(self) -> Provider: ...

    @property
    def access(self) -> Access: ...

    @property
    def store(self) -> StateFile: ...

    def state(self) -> LabState: ...

    def save_state(self, **changes: object) -> None: ...

    def pools_here(self) -> bool: ...

    def steps(self) -> list[Step]: ...

    def down(self) -> CleanupReport: ...

    def snapshots(self) -> dict[str, SnapshotInfo]: ...

    def snapshot(self, name: str) -> float: ...

    def mark(self, event: str) -> None: ...
