"""What a backend gives `storlab upgrade` (Backend.upgrade): the packages that carry it on a
node, how its daemons stop and start around their replacement, the gate that must hold before the
next node is touched, what to do once every node runs the new version (Gluster's op-version, Ceph's
require-osd-release), and what a known upgrade problem looks like when a gate does not open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from harness.backends.context import LabContext, NodeView
    from harness.plan.model import NodePlan


class UpgradeSupport(Protocol):
    #: an upgrade that may take one server at a time while clients write (False: every server of
    #: the backend is stopped, upgraded and started together: the offline procedure)
    rolling: bool

    def rank(self, node: NodePlan) -> int:
        """Servers go by rank, lowest first, then in the topology's order (Ceph: monitors before OSDs)."""
        ...

    def begin(self, lab: LabContext) -> list[str]:
        """Once the first gate held, before any server stops (Ceph: noout); what it did."""
        ...

    def packages(self, node: NodePlan) -> tuple[str, ...]:
        """The Debian packages of this backend on ``node`` an upgrade replaces (empty: none there)."""
        ...

    def ready(self, lab: LabContext) -> str | None:
        """The gate: None when the backend may lose its next server (every server serving, nothing
        to heal or recover); else what it still waits for."""
        ...

    def stop(self, lab: LabContext, node: NodeView) -> None:
        """Stop every process of the backend on ``node`` (before its packages are replaced)."""
        ...

    def start(self, lab: LabContext, node: NodeView) -> None:
        """Start them again on the packages now installed."""
        ...

    def settle(self, lab: LabContext, started: Sequence[NodeView]) -> list[str]:
        """After ``started`` came up on the new packages (all of them at once when offline): what
        the backend does so its servers agree again; what it did, one line each (often nothing)."""
        ...

    def finish(self, lab: LabContext) -> list[str]:
        """Once every node runs the new packages: what the backend then raises or enables (its
        feature level), read back; what it did, said in one line each."""
        ...

    def diagnose(self, lab: LabContext, node: NodeView) -> str | None:
        """When the gate stays shut after ``node``: a known cause, said with its reference (None: none known)."""
        ...


class Defaults:
    """What a backend's upgrade support does where it has nothing of its own to do: rank 0, no
    begin, settle, finish or known cause; rolling."""
    rolling = True

    def rank(self, node: NodePlan) -> int:
        return 0

    def begin(self, lab: LabContext) -> list[str]:
        return []

    def settle(self, lab: LabContext, started: Sequence[NodeView]) -> list[str]:
        return []

    def finish(self, lab: LabContext) -> list[str]:
        return []

    def diagnose(self, lab: LabContext, node: NodeView) -> str | None:
        return None
