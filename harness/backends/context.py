"""What roles and the host-pool wiring may use of a lab: the `LabContext` protocol and the
`NodeView` it hands out. They are defined in harness.backends.base, at the bottom of the
layers, so that the backend hooks there are typed with them; this module names them for the
core's roles and host pools, which import them from here."""

from __future__ import annotations

from harness.backends.base import LabContext, NodeView

__all__ = ["LabContext", "NodeView"]
