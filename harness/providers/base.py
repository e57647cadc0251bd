"""The node-provider interface: how nodes come to exist, stop, and have faults injected.

Roles and tests never talk to a provider directly for commands: they use harness.nodes.node.Node,
which reaches every node over ssh whatever made it. A provider is one package (providers/ENGINE/)
registered as a `storlab.providers` entry point and found by the one plugin loader (harness.plugins).
It implements create, destroy, leftovers and the power and fault verbs below; it declares what it
can give a lab in its Capabilities (kernel, disks, isolation, what a node costs, labs on engine
remotes: harness.providers.capabilities); and it may override the hooks that have defaults here:
boot_floor, freeze/thaw, hang_ports (what hang/unhang silence), snapshots, preflight, ssh_proxy,
host_reach, location, exec_route and reap_orphans (its engine's objects whose lab directory is
gone). Nothing outside providers/ names a provider or imports an engine package
(tests/unit/test_layering.py).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

from harness import plugins
from harness.errors import CleanupReport, HarnessError
from harness.host import silence
from harness.plan.model import Plan
from harness.providers.capabilities import Capabilities
from harness.providers.stale import Stale


class Provider(abc.ABC):
    name: ClassVar[str] = ""
    #: what this provider can give a lab (validation and the plan read it)
    capabilities: ClassVar[Capabilities]

    def __init__(self, plan: Plan, labdir: Path) -> None:
        self.plan = plan
        self.labdir = labdir
        self.lab = plan.lab
        #: monotonic time each node was last powered on by this process (boot times are measured from it)
        self.powered_at: dict[str, float] = {}

    def boot_floor(self) -> float:
        """Declared: seconds from power-on to ssh + systemd ready before a node counts as hung,
        used until this lab's own boots were measured (and as the least bound after that)."""
        return 60.0

    # -- lifecycle ---------------------------------------------------------------------
    @abc.abstractmethod
    def create(self, public_key: str) -> None:
        """Create networks, disks and nodes and start them; idempotent (a re-run continues).

        Nodes must accept ssh as root with ``public_key`` at their plan address when this returns
        or shortly after (the caller waits for ssh and systemd)."""

    @abc.abstractmethod
    def destroy(self) -> CleanupReport:
        """Remove everything this lab created; continue past failing items and report them."""

    @abc.abstractmethod
    def leftovers(self) -> list[str]:
        """Everything carrying this lab's name that still exists on the host (empty after destroy)."""

    # -- power and faults --------------------------------------------------------------
    @abc.abstractmethod
    def is_running(self, node: str) -> bool: ...

    @abc.abstractmethod
    def start(self, node: str) -> None:
        """Power a stopped node on again (after crash())."""

    @abc.abstractmethod
    def crash(self, node: str) -> None:
        """Hard power-off: no shutdown scripts, no flushing."""

    @abc.abstractmethod
    def set_link(self, node: str, network: str, up: bool) -> None:
        """Take the node's interface on ``network`` down/up from the host side."""

    def freeze(self, node: str) -> None:
        """Hang the node (processes stop, sockets stay open)."""
        raise NotImplementedError(f"{self.name} cannot freeze nodes")

    def thaw(self, node: str) -> None:
        raise NotImplementedError(f"{self.name} cannot freeze nodes")

    def hang(self, node: str) -> None:
        """A faithful hang: frozen and silent (no ARP answer, no TCP reset or ACK reaches a peer),
        undone by unhang() from the host, never through the node. A node whose freeze is silent
        already (a VM: qemu stopped) is frozen; one whose frozen kernel still answers (a container:
        the host's kernel does) is frozen with its bridge ports silenced (harness.host.silence)."""
        ports = self.hang_ports(node)
        if ports is None:
            self.freeze(node)
        else:
            table = silence.table(self.lab, self.plan.node(node).index)
            silence.hang(lambda: self.freeze(node), lambda: self.thaw(node), table, ports)

    def unhang(self, node: str) -> None:
        """Lift the node's silence (when its hang made one: asked of the host, not of hang_ports,
        so that nothing can keep a node hung), then thaw it."""
        silence.unhang(lambda: self.thaw(node), silence.table(self.lab, self.plan.node(node).index))

    def hang_ports(self, node: str) -> list[str] | None:
        """The host-side bridge ports (veths) to silence while ``node`` is frozen; None: its freeze
        is silent already. Default: the provider cannot hang nodes."""
        raise NotImplementedError(f"{self.name} cannot hang nodes")

    def console_log(self, node: str) -> str:
        """Boot/console output for failure evidence."""
        return ""

    # -- snapshots -----------------------------------------------------------------------
    def snapshot(self, dest: Path) -> None:
        """Save every node's root file system and data disks under ``dest`` (a new directory),
        leaving the nodes as they were (running nodes keep running)."""
        raise HarnessError(f"provider {self.name} cannot snapshot labs (yet): use the lxc provider, or down + up")

    def restore(self, src: Path) -> None:
        """Put back what ``snapshot`` saved in ``src`` and power every node on (without waiting)."""
        raise HarnessError(f"provider {self.name} cannot revert labs (yet): use the lxc provider, or down + up")

    def drop_snapshot(self, path: Path) -> None:
        """Free what a snapshot saved outside ``path`` (VM snapshots live in the disks)."""
        return None  # nothing outside ``path`` by default

    # -- where the lab is, and how it is reached ---------------------------------------------
    @classmethod
    def preflight(cls, plan: Plan) -> None:
        """Refuse a plan this provider cannot hold (a budget it exceeds), before anything is made."""
        return None

    def ssh_proxy(self, node: str) -> str | None:
        """An ssh ProxyCommand that reaches the node without a route to its address (None: ssh goes
        straight to the plan address)."""
        return None

    def host_reach(self) -> str | None:
        """Why this host cannot reach the lab's networks (its libvirt pools are then skipped); None: it can."""
        return None

    def location(self) -> str | None:
        """Where the lab's nodes are when that is not simply this host (a cluster member)."""
        return None

    def exec_route(self) -> tuple[str, str] | None:
        """(Incus remote, project) when a student reaches the nodes with `incus exec` there rather
        than by address (the lab's networks are not on this host); None: by address."""
        return None

    # -- the host as a whole: what no lab directory holds any more ----------------------------
    @classmethod
    def reap_orphans(cls, live_labs: set[str], report: CleanupReport) -> None:
        """Remove what this engine holds marked as a lab of this storlab home that is not in
        ``live_labs`` (its lab directory is gone); leave another home's objects alone and say so in
        the log; continue past failing items and add them to ``report``."""
        return None

    @classmethod
    def stale_cache(cls, keep: set[str], in_use: set[str]) -> list[Stale]:
        """What this engine made from golden images and keeps for the next lab (a VM box, an image
        imported into an engine, saved states) that is of no image in ``keep`` (the current releases'
        and those labs were made from) or can no longer be used; ``in_use``: the image keys existing
        labs may still need everything of. HarnessError when the engine cannot be asked (not
        installed, its daemon down): prune says so and leaves it. Nothing is removed here."""
        return []


def get(name: str) -> type[Provider]:
    """The provider class installed as ``name``, through the one plugin loader (harness.plugins:
    the `storlab.providers` entry points of this package and any other installed package)."""
    cls = plugins.provider(name)
    if cls is None:
        known = plugins.provider_names()
        raise HarnessError(f"no node provider '{name}' (installed: {', '.join(known) or 'none'}; "
                           "is storlab installed with `pip install -e .`?)")
    if not issubclass(cls, Provider):
        raise TypeError(f"entry point {plugins.PROVIDERS}:{name} is not a harness.providers.base.Provider")
    return cls


def registered() -> dict[str, type[Provider]]:
    """Every installed provider class, by name, in entry-point order."""
    return {name: get(name) for name in plugins.provider_names()}
