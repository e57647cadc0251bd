"""The writers of a chaos run: what a backend's chaos support (backends.base.ChaosSupport) hands
the runner for each place a workload writes to on the KVM host, how a client's secret reaches it
(a 0600 file of the private run directory, never argv), and the stall a lab with one server can
promise while a fault keeps that server away."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import paths
from harness.chaos.checker import ReadBack
from harness.chaos.ledger import LedgeredOp
from harness.chaos.schedule import Event
from harness.chaos.vocabulary import HOST
from harness.errors import HarnessError
from harness.plan.model import Plan
from harness.providers.capabilities import available

#: (target, offset, size) of every location to read back (harness.chaos.checker.locations)
Locations = Sequence[tuple[str, int, int]]
#: what a client file in the run directory may be called
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
#: node faults that keep a server from its clients for their whole duration
NODE_OUTAGES = frozenset({"crash", "freeze", "hang", "link"})
#: faults in which the server's side says nothing (powered off, hung, cut off by a drop): a client's
#: TCP retransmission timer doubles meanwhile (Linux: 0.2 s up to 120 s), so its next try may come
#: about as long after the server is back as the server had been gone
SILENT = frozenset({"crash", "freeze", "hang", "link", "client-partition"})
#: faults after which the server's daemon starts anew (NFS's grace period, for one, with it)
RESTARTS = frozenset({"crash", "kill"})
#: seconds a container node takes from power-on to serving again: 0.5-4 s to ssh measured on LXC
#: and Incus (LAB-FACTS), then its units' start; a VM's boot (47-326 s under TCG) is promised nothing
CONTAINER_BOOT = 30.0


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


def client_secret(run_dir: Path, name: str, content: str) -> Path:
    """``content`` in a new 0600 file clients/``name`` of the run directory (made 0700): how a
    client's secret (a cephx keyring, a CHAP password) reaches it without argv. A file or link
    already there is an error, never followed or overwritten. forget() it when the client is done:
    a run directory is kept as the run's record, its secrets are not."""
    if not _NAME.fullmatch(name):
        raise HarnessError(f"client file name {name!r} is not a plain file name")
    f = paths.private_dir(run_dir / "clients") / name
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    return f


def forget(*files: Path) -> None:
    """Remove client secret files (those already gone are fine)."""
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)


def cuts_off(event: Event, server: str, units: Collection[str]) -> bool:
    """Does ``event`` keep the lone server ``server`` (its daemons ``units``) from the KVM host's
    writers: the node down, hung, frozen or unlinked, one of its daemons killed or paused, or the
    host cut from it? A partition among servers leaves the host's path to it alone."""
    if event.kind in NODE_OUTAGES:
        return server in event.nodes
    if event.kind in ("kill", "pause"):
        return event.nodes == (server,) and event.daemon in units
    if event.kind == "client-partition":
        return HOST in event.nodes and server in event.apart
    return False


def boot_allowance(plan: Plan) -> float | None:
    """Seconds a crashed node of ``plan`` takes to serve again (CONTAINER_BOOT); None for a node
    with a kernel of its own (a VM), whose boot storlab promises nothing about."""
    caps = available().get(plan.provider)
    return CONTAINER_BOOT if caps is not None and not caps.own_kernel else None


def outage_bound(event: Event, resume: float, boot: float | None, restart: float = 0.0) -> float | None:
    """The longest stall of a lab's writers while ``event`` keeps its one server away (cuts_off).
    Nothing can be written for the fault's whole duration (a stall counts whole, and no other
    server takes over); then ``resume`` s for the client to be writing again (its reconnect and a
    margin), ``restart`` more after a fault that restarts the server (RESTARTS), TCP's backoff
    after a silent one (SILENT) and ``boot`` after a crash (the fault ends once the node is back:
    its boot is in the stall; None: no promise for a crash)."""
    if event.kind == "crash" and boot is None:
        return None
    extra = resume + (min(event.duration, 120.0) if event.kind in SILENT else 0.0)
    extra += restart if event.kind in RESTARTS else 0.0
    extra += (boot or 0.0) if event.kind == "crash" else 0.0
    return event.duration + extra
