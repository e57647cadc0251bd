"""What a node provider can give a lab, declared by the provider and read by validation, the
plan, class sizing and matrix estimates, so that none of them names a provider: its own kernel
or the host's, disks as block devices, a management network, memory taken whole from the host,
freeze and snapshots, the faults its nodes can be given (FAULTS), what a node costs the host
(Footprint), and labs on engine remotes (Remotes).

Providers are found by the one plugin loader (harness.plugins, the `storlab.providers` entry
points); each provider class carries its Capabilities."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness import plugins
from harness.errors import HarnessError
from harness.plan.model import NodePlan

#: the fault kinds a provider may declare (harness.chaos draws schedules from those a lab can give)
FAULTS: Mapping[str, str] = {
    "crash": "hard power-off, then power on",
    "freeze": "the node's processes stop (a container's kernel still answers TCP; a VM is silent)",
    "hang": "a faithful hang: frozen and silent (a container's traffic dropped on the host's side of its links)",
    "link": "the node's interface on a lab network down, then up",
    "partition": "traffic cut between groups of nodes, the clients included, both ways or one way",
    "kill": "kill -9 of a named daemon, then started again",
    "pause": "SIGSTOP of a named daemon, then SIGCONT",
    "netem": "delay with jitter, loss, duplicate, reorder, corrupt or a bandwidth limit on the node's interface",
    "disk-full": "the backend's data filesystem filled, then freed",
    "dm-flakey": "device-mapper under the backend's data disk: flakey up/down, error or drop writes, delay",
    "clock": "the node's clock skewed or strobed",
}


@dataclass(frozen=True, eq=False)
class Footprint:
    """What one node costs its host beyond its data disks, and how long a lab takes to come up:
    figures measured on this project's machines (bench/bench_nodes.py, bench/bench_class.py,
    bench/RESULTS.md) by each provider for its engine. The default knows nothing: a node
    takes its whole memory."""
    #: expected resident memory of an idle node (MiB), and what each role adds to it; None: the
    #: node takes its whole memory from the host (a VM), plus ``overhead_mib`` by accelerator
    base_mib: int | None = None
    role_mib: Mapping[str, int] = field(default_factory=dict)
    unknown_role_mib: int = 0
    #: the emulator's memory beside a VM's own, by accelerator ("tcg", "kvm")
    overhead_mib: Mapping[str, int] = field(default_factory=dict)
    #: the node's own files beside its data disks (a container's overlay, a VM's root overlay)
    disk_mib: int = 0
    #: bring-up in seconds: (a lab, each node more)
    up_s: tuple[float, float] = (0.0, 0.0)


class Remotes(Protocol):
    """How a provider places labs on engine remotes (`--on NAME:REMOTE[@GROUP]`) within a budget
    (`--budget`); a provider package implements it and names it in its Capabilities."""

    def check(self, value: str, remote: str) -> None:
        """Refuse (HarnessError) a REMOTE part of `--on value` that is not a remote's name."""

    def budget(self, text: str, nodes: Sequence[NodePlan]) -> dict[str, int]:
        """`--budget` LIMITS for a lab of ``nodes`` as the plan's budget fields (HarnessError: malformed)."""

    def capacity(self, remote: str) -> tuple[int, int, int, list[str]]:
        """(free memory MiB, CPUs, free disk MiB, member names) of ``remote`` (HarnessError: unreachable)."""

    # students of a class whose labs are on a remote reach their nodes through the jump host's gate
    # (their key's forced command), which the engine's client behind it runs
    def grant_students(self, klass: str, conf: Path, gate: Path, owner: tuple[int, int], remote: str,
                       projects: Sequence[str]) -> str:
        """Write the gate script at ``gate`` and the class account's own client in ``conf`` (owned by
        ``owner``: uid, gid), trusted by ``remote`` for ``projects`` only; returns its identity."""

    def revoke_students(self, klass: str, conf: Path, remote: str | None) -> list[str]:
        """Take back what grant_students gave; returns what was removed."""

    def project_lab(self, remote: str, project: str) -> str | None:
        """The lab whose project on ``remote`` ``project`` is (None: not a remote's name and a lab's project)."""


@dataclass(frozen=True)
class Capabilities:
    name: str
    #: nodes run a kernel of their own (kernel nfsd, LIO, iscsi_tcp, a hypervisor's kvm); else they
    #: share the host's, and have what it has
    own_kernel: bool
    #: data disks reach the node as block devices (/dev/vdb, ...) that the node formats itself;
    #: else as filesystems the provider mounts for it
    disk_devices: bool
    #: the provider needs a management network of its own beside the lab's (vagrant-libvirt)
    management_network: bool
    #: a node's memory is taken whole from the host (a VM), not shared with it (a container)
    reserves_memory: bool
    freeze: bool
    snapshot: bool
    #: the host command the provider needs, and how to get it
    tool: str
    install_hint: str
    #: picked by `provider: auto` on a host without usable KVM when no node needs a kernel of its own
    fast: bool
    #: what keeps root in a node off the host, for labs whose users are not the host's admins
    #: (students): "vm" (a kernel of its own), "userns" (unprivileged containers with an id map of
    #: their own: only roles that run there), "none" (root in a node is root on the host)
    isolation: str = "none"
    #: what a node costs the host (class sizing, matrix estimates)
    footprint: Footprint = field(default_factory=Footprint)
    #: data disks are sparse image files on this host, which a lab's `--disk-budget` filesystem holds
    disk_budget: bool = False
    #: labs on engine remotes with budgets; None: this host only
    remotes: Remotes | None = None
    #: the Debian releases it has golden images for (harness.spec.releases)
    releases: tuple[str, ...] = ("bookworm",)
    #: the FAULTS its nodes can be given on any host
    faults: frozenset[str] = frozenset()
    #: FAULTS given only where the host kernel has a module (containers share it): fault -> module
    faults_with_module: Mapping[str, str] = field(default_factory=dict)
    #: why the other FAULTS cannot be given (the reason a schedule skips them with, and the README's)
    faults_refused: Mapping[str, str] = field(default_factory=dict)

    def faults_offered(self, host_modules: Collection[str]) -> tuple[frozenset[str], dict[str, str]]:
        """(the FAULTS a lab of this provider can be given on a host whose kernel has
        ``host_modules``, every other one of FAULTS -> why not). Never more than declared."""
        given = set(self.faults) | {f for f, m in self.faults_with_module.items() if m in host_modules}
        why = {f: self.faults_refused.get(f, f"the {self.name} provider does not declare it") for f in FAULTS
               if f not in given}
        for f, m in self.faults_with_module.items():
            if f not in given:
                why[f] = f"needs the host kernel's {m} module ({self.name} nodes share the host's kernel), not loaded here"
        return frozenset(given & set(FAULTS)), why


def available() -> dict[str, Capabilities]:
    """Every installed provider's capabilities, by provider name (empty when storlab was
    installed before providers were entry points: `pip install -e .` again)."""
    out: dict[str, Capabilities] = {}
    for name, cls in plugins.providers().items():
        caps = getattr(cls, "capabilities", None)
        if isinstance(caps, Capabilities):
            out[name] = caps
    return out


def with_remotes() -> dict[str, Remotes]:
    """The installed providers that place labs on engine remotes, by name."""
    return {name: caps.remotes for name, caps in available().items() if caps.remotes is not None}


def remote_provider() -> str | None:
    """The provider a lab on an engine remote runs on (the first installed one that has remotes)."""
    return next(iter(with_remotes()), None)


def remotes_of(provider: str) -> Remotes | None:
    caps = available().get(provider)
    return caps.remotes if caps else None


def parse_on(value: str) -> tuple[str, str | None]:
    """`--on PROVIDER[:REMOTE[@GROUP]]`: the provider, and for one that has remotes the remote
    (None: this host), with the cluster group its labs are placed in when one is named."""
    provider, _, remote = value.partition(":")
    remote_ones = with_remotes()
    if not provider:
        where = [*available(), *(f"{n}:REMOTE[@GROUP]" for n in remote_ones)] or ["(no provider is installed)"]
        listed = f"{', '.join(where[:-1])} or {where[-1]}" if len(where) > 1 else where[0]
        raise HarnessError(f"--on {value!r}: say where the lab runs: {listed}")
    if remote:
        if provider not in remote_ones:
            hint = " or ".join(f"{n}:REMOTE" for n in remote_ones) or "none installed"
            raise HarnessError(f"--on {value!r}: only {' and '.join(remote_ones) or 'no provider'} has remotes "
                               f"({hint}); use --on {provider}")
        remote_ones[provider].check(value, remote)
    return provider, (remote or None)
