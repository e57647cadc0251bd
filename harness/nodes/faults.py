"""A node's fault verbs (power off and on, freeze, cut links, block addresses, stop services) and
their context managers: one layer over the provider, each verb logged on the lab's fault timeline.
Mixed into `Node`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, Self

from harness.plan.model import NodePlan
from harness.run import CommandResult

if TYPE_CHECKING:
    from harness.providers.base import Provider


class Timeline(Protocol):
    """Where a node's faults and boots are recorded (the lab's fault log and saved state)."""

    def mark(self, event: str) -> None: ...

    def boot_bound(self, node: str) -> tuple[float, str]:
        """Seconds a (re)boot of ``node`` may take before it counts as hung, and why."""

    def booted(self, node: str, seconds: float) -> None: ...


class FaultVerbs:
    """The fault verbs of `Node` (as the NixOS test driver's `machine.crash()`: faults are node
    verbs). What they use of the node is declared here; `Node` defines it."""

    name: str
    spec: NodePlan
    provider: Provider
    timeline: Timeline

    if TYPE_CHECKING:  # Node's own methods
        def run(self, cmd: Sequence[str] | str, *, timeout: float = ..., input: str | None = ...) -> CommandResult: ...

        def succeed(self, cmd: Sequence[str] | str, *, timeout: float = ..., input: str | None = ...) -> str: ...

        def close_connection(self) -> None: ...

        def is_up(self) -> bool: ...

        def wait_booted(self, timeout: float | None = None) -> float: ...

        def wait_for_unit(self, unit: str, timeout: float = ...) -> None: ...

    def crash(self) -> None:
        """Hard power-off: no shutdown, no flushing."""
        self.timeline.mark(f"crash {self.name}")
        self.provider.crash(self.name)
        self.close_connection()

    def power_on(self) -> None:
        """Power the node on (after crash()) without waiting; see start()."""
        self.timeline.mark(f"start {self.name}")
        self.close_connection()
        if not self.is_up():
            self.provider.start(self.name)

    def start(self, timeout: float | None = None) -> float:
        """Power on and wait until booted, within the node's boot bound (the lab derives it
        from the boot it measured; logged with its reason) unless ``timeout`` is given."""
        self.power_on()
        return self.wait_booted(timeout)

    def freeze(self) -> None:
        """Hang the node: its processes stop, its sockets stay open."""
        self.timeline.mark(f"freeze {self.name}")
        self.provider.freeze(self.name)

    def thaw(self) -> None:
        self.timeline.mark(f"thaw {self.name}")
        self.provider.thaw(self.name)

    def set_link(self, up: bool, network: str | None = None) -> None:
        """Take the node's interface on ``network`` (default: every lab network) down or up."""
        self.timeline.mark(f"link {'up' if up else 'down'} {self.name} {network or '(all)'}")
        for net in ([network] if network else list(self.spec.addresses)):
            self.provider.set_link(self.name, net, up)

    def stop_service(self, unit: str, kill: bool = False) -> None:
        self.timeline.mark(f"{'kill' if kill else 'stop'} {unit} on {self.name}")
        self.succeed(["systemctl", "kill", "-s", "KILL", unit] if kill else ["systemctl", "stop", unit])

    def start_service(self, unit: str) -> None:
        self.timeline.mark(f"start {unit} on {self.name}")
        self.succeed(["systemctl", "start", unit])
        self.wait_for_unit(unit)

    def block(self, addresses: Sequence[str], on: bool = True) -> None:
        """Drop (on=False: stop dropping) traffic to ``addresses`` with blackhole routes on the node;
        the host's ssh path to it is untouched."""
        self.timeline.mark(f"{'block' if on else 'unblock'} {self.name} -> {', '.join(addresses)}")
        for addr in addresses:
            if on:
                self.succeed(["ip", "route", "replace", "blackhole", f"{addr}/32"])
            else:
                self.run(["ip", "route", "del", "blackhole", f"{addr}/32"], timeout=15)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[Self]:
        self.freeze()
        try:
            yield self
        finally:
            self.thaw()

    @contextlib.contextmanager
    def link_down(self, network: str | None = None) -> Iterator[Self]:
        self.set_link(False, network)
        try:
            yield self
        finally:
            self.set_link(True, network)

    @contextlib.contextmanager
    def service_stopped(self, unit: str, kill: bool = False) -> Iterator[Self]:
        self.stop_service(unit, kill)
        try:
            yield self
        finally:
            self.start_service(unit)
