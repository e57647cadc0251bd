"""What roles and the host-pool wiring may use of a lab: its plan, its nodes, the files the
plan rendered for a node or the host, its secrets and its ssh key. harness.lab.lab.Lab provides it;
roles never see the lab's lifecycle, provider or state (the NixOS driver hands a test a machine,
not the driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from harness.nodes.node import Node
from harness.plan.model import Plan


class LabContext(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def key(self) -> Path:
        """The lab's private ssh key (libvirt's qemu+ssh to hypervisor nodes uses it)."""

    @property
    def nodes(self) -> dict[str, Node]: ...

    def node(self, name: str) -> Node: ...

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
