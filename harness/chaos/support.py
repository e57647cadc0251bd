"""The writers of a chaos run: what a backend's chaos support (backends.base.ChaosSupport) hands
the runner for each place a workload writes to on the KVM host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.chaos.checker import ReadBack
from harness.chaos.ledger import LedgeredOp

#: (target, offset, size) of every location to read back (harness.chaos.checker.locations)
Locations = Sequence[tuple[str, int, int]]


@dataclass
class WriteTarget:
    """One writer's path to the storage: its op (each call one acknowledged, durable write), how
    its locations are read back once the faults healed, and what to close at the end."""
    name: str
    what: str
    op: LedgeredOp
    read_back: Callable[[Locations], ReadBack]
    close: Callable[[], None] = field(default=lambda: None)
    #: kill its client process abruptly (client-crash; None: a client storlab cannot crash, e.g.
    #: the FUSE mount a host pool uses)
    crash: Callable[[], None] | None = None
