"""What hooks that act on a running lab are given: a `LabContext` (its plan, its nodes as
`NodeView`s, its rendered files, its secrets directory), defined below everything that implements
it (harness.lab.lab.Lab, harness.nodes.node.Node) and everything that takes it (harness.backends.base's
hooks, harness.upgrade.support), so that the core and every backend type their hooks alike.
harness.backends.base re-exports them: backends import them from there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from harness.plan.model import NodePlan, Plan
from harness.run import CommandResult

Command = Sequence[str] | str  # an argv list (quoted once, at ssh), or a shell snippet run as is


class NodeView(Protocol):
    """What roles and backend hooks use of a lab node: its plan, commands over ssh with a
    timeout, files, units, and stopping a service as a fault. harness.nodes.node.Node is one;
    crashes, links and partitions are the tests' (through the Node itself), not the roles'."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    @property
    def spec(self) -> NodePlan: ...

    def run(self, cmd: Command, *, timeout: float = 120, input: str | None = None) -> CommandResult: ...

    def succeed(self, cmd: Command, *, timeout: float = 120, input: str | None = None) -> str: ...

    def put(self, path: str, content: str, mode: str = "0644") -> None: ...

    def ensure_file(self, path: str, content: str, mode: str = "0644") -> bool:
        """Write ``path`` only if its content differs; True when it changed."""

    def get(self, path: str) -> str: ...

    def enable_units(self, units: Sequence[str], *, unmask: Sequence[str] = (), mask: Sequence[str] = (),
                     wait: str | None = None, timeout: float = 120) -> None: ...

    def wait_for_unit(self, unit: str, timeout: float = 120) -> None: ...

    def stop_service(self, unit: str, kill: bool = False) -> None: ...

    def start_service(self, unit: str) -> None: ...


class LabContext(Protocol):
    """What roles and backend hooks may use of a lab: its plan, its nodes, the files the plan
    rendered for a node or the host, its secrets and its ssh key. harness.lab.lab.Lab provides
    it; roles never see the lab's lifecycle, provider or state (the NixOS driver hands a test a
    machine, not the driver)."""

    @property
    def name(self) -> str: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def key(self) -> Path:
        """The lab's private ssh key (libvirt's qemu+ssh to hypervisor nodes uses it)."""

    @property
    def nodes(self) -> Mapping[str, NodeView]: ...

    def node(self, name: str) -> NodeView: ...

    def files(self, where: str) -> Path:
        """The directory of rendered files for a node (its name) or for the KVM host ('host')."""

    @property
    def secrets_dir(self) -> Path:
        """Where the lab's secrets are kept (0700; one 0600 file per secret, decided at plan time)."""

    @property
    def logs(self) -> Path:
        """The lab's log directory (removed with the lab): logs of what the lab runs on the host go here."""

    def owns(self, thing: str) -> bool:
        """Was ``thing`` (e.g. "pool storlab-lab-x") made by this lab? (recorded before it was made)"""

    def claim(self, thing: str) -> None:
        """Record that this lab is about to make ``thing``: `down` may then remove it."""
