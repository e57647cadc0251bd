"""What every group of fault verbs shares: the node they act on (declared here, defined by `Node`),
the lab's fault timeline, and the strict patterns a unit, process, interface, address, path or
number passes before it reaches a command on a node or on the host."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from harness.errors import HarnessError
from harness.plan.model import NodePlan
from harness.run import CommandResult

if TYPE_CHECKING:
    from harness.providers.base import Provider

#: a systemd service name; the first character is no '-' (it would read as an option)
UNIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._-]{0,200}\.service")
#: the same without its type ("glusterd", "ceph-osd@0"): systemctl reads it as a service
BARE_UNIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@_-]{0,200}")
#: a process name as the kernel keeps it (comm: 15 characters), what `pkill -x` matches
PROCESS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,14}")
#: a Linux interface name (IFNAMSIZ - 1), nothing a command line could take for an option
IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
#: a data path on a node: absolute, a strict charset; no '.' or '..' component (checked apart)
PATH_RE = re.compile(r"/[A-Za-z0-9._@+/-]{0,1023}")
#: what the host's ssh to a node runs through: pausing or killing it would cut the control channel
CONTROL_UNITS = frozenset({"ssh.service", "sshd.service", "systemd-logind.service", "dbus.service"})
CONTROL_PROCESSES = frozenset({"sshd", "systemd", "init", "dbus-daemon", "systemd-logind"})


class Timeline(Protocol):
    """Where a node's faults and boots are recorded (the lab's fault log and saved state)."""

    def mark(self, event: str) -> None: ...

    def boot_bound(self, node: str) -> tuple[float, str]:
        """Seconds a (re)boot of ``node`` may take before it counts as hung, and why."""

    def booted(self, node: str, seconds: float) -> None: ...


class NodeVerbs:
    """The part of `Node` the fault verbs use: declared here so that each group of verbs (a mixin
    of `Node`) is typed on its own; `Node` defines it."""

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


def unit(name: str, *, control_ok: bool = True) -> str:
    """``name`` if it is a systemd service name, a bare one with '.service' added as systemctl would
    (HarnessError otherwise); ``control_ok`` False also refuses the units the host's ssh to the
    node runs through."""
    if isinstance(name, str) and BARE_UNIT_RE.fullmatch(name):
        name += ".service"
    if not isinstance(name, str) or not UNIT_RE.fullmatch(name):
        raise HarnessError(f"{name!r} is not a systemd service name ({UNIT_RE.pattern})")
    if not control_ok and name in CONTROL_UNITS:
        raise HarnessError(f"{name}: the host reaches the node through it; pausing it would cut storlab off the node")
    return name


def process(name: str) -> str:
    """``name`` if it is a process name `pkill -x` can match and not one the control channel needs."""
    if not PROCESS_RE.fullmatch(name):
        raise HarnessError(f"{name!r} is not a process name ({PROCESS_RE.pattern}: what the kernel keeps, 15 characters)")
    if name in CONTROL_PROCESSES:
        raise HarnessError(f"{name}: the host reaches the node through it; stopping it would cut storlab off the node")
    return name


def ifname(name: str) -> str:
    """``name`` if it is a plain Linux interface name (it may come from a node's own answer)."""
    if not IFNAME_RE.fullmatch(name):
        raise HarnessError(f"{name!r} is not an interface name ({IFNAME_RE.pattern})")
    return name


def ipv4s(addresses: Iterable[str]) -> list[str]:
    """Each address once, as ipaddress writes it (HarnessError: not a plain IPv4 address; a string
    is refused whole, not taken for its characters)."""
    if isinstance(addresses, str):
        raise HarnessError(f"give a list of addresses, not the string {addresses!r}")
    out: list[str] = []
    for a in addresses:
        try:
            addr = str(ipaddress.IPv4Address(a))
        except ValueError:
            raise HarnessError(f"{a!r} is not an IPv4 address") from None
        if addr not in out:
            out.append(addr)
    return out


def data_path(path: str) -> str:
    """``path`` if it is an absolute path of plain names (no '.' or '..', no empty component)."""
    parts = path.split("/")[1:]
    if not PATH_RE.fullmatch(path) or (path != "/" and any(p in ("", ".", "..") for p in parts)):
        raise HarnessError(f"{path!r} is not an absolute path of plain names ({PATH_RE.pattern}, no '.', '..' or '//')")
    return path


def number(value: float, low: float, high: float, what: str) -> str:
    """``value`` written by the code for a command line (never a caller's string): finite, within
    [low, high], in plain decimals ("12.5", "0", "-300")."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise HarnessError(f"{what}: {value!r} is not a number from {low:g} to {high:g}")
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
