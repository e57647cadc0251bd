"""What a storage backend is to the core: one object, registered through the `storlab.backends`
entry points, that carries everything about one backend (its topology section and rules, its
plan section and rendered configs, its roles, host-pool wiring, evidence and faults). The core
(validate, plan, lab, host pools, CLI) iterates `backends()` and names no backend.

A backend lives in one package (see harness/backends/gluster for a walk-through): `schema.py`
(the topology section), `plan.py` (the plan section), `rules.py`, `role.py`, templates and a
`Backend` subclass in `__init__.py` tying them together. The README's "Adding a backend" section
walks through it.

Hooks that act on a running lab take a `LabContext`: what a role or a hook may use of a lab
(its plan, its nodes as `NodeView`s, its rendered files, its secrets directory), defined in
harness.backends.context (below everything that implements or takes it) and re-exported here."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol

import jinja2
from pydantic import BaseModel
from typing_extensions import TypeVar

from harness import plugins as registry
from harness.backends.context import Command as Command  # re-exported: backends import them from here
from harness.backends.context import LabContext as LabContext
from harness.backends.context import NodeView as NodeView
from harness.chaos.schedule import Event
from harness.chaos.support import WriteTarget
from harness.errors import CleanupReport, HarnessError
from harness.host.facts import HostFacts
from harness.plan.model import HostPoolPlan, NetworkPlan, NodePlan, Plan
from harness.spec.topology import Node, Pool, Topology
from harness.upgrade.support import UpgradeSupport

S = TypeVar("S", bound=BaseModel)  # the topology section
P = TypeVar("P", bound=BaseModel)  # the plan section
#: a host pool on this backend in the plan: HostPoolPlan and what the backend resolves for it
PP = TypeVar("PP", bound=HostPoolPlan, default=HostPoolPlan)

Path_ = tuple[str | int, ...]  # a location in the topology file, e.g. ("gluster", "volumes", 0, "name")

#: what a block device found on a node (a link resolved there, a multipath map) may be: read from
#: the node, so a pattern, not trust: /dev/nvme0n1, /dev/sdb, /dev/mapper/mpatha
BLOCK_DEVICE_RE = re.compile(r"/dev/(mapper/)?[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: what a scsi pool's adapter found on a node may be: a SCSI host, host3
SCSI_HOST_RE = re.compile(r"host[0-9]{1,5}")


@dataclass(frozen=True)
class Implementation:
    """One way a backend can serve (the section's `implementation:`), and the kernel feature
    (a HostFacts `kernel_*` name) its nodes need for it; None means userspace only."""
    name: str
    label: str
    kernel: str | None = None


#: how validation names a kernel feature a node lacks
KERNEL_FEATURES = {"nfsd": "nfsd", "lio": "LIO", "iscsi_tcp": "iscsi_tcp", "nfs_client": "an NFS client",
                   "nvmet": "the NVMe target (nvmet, nvmet-tcp)", "nvme_tcp": "the NVMe/TCP host (nvme-tcp)",
                   "ocfs2": "OCFS2 with its o2cb cluster stack", "zfs": "ZFS (not in Debian's kernel: zfs-dkms is in contrib)"}


class Rules(Protocol):
    """What validation gives a backend's rules: the topology, this host's facts, the nodes by
    name (with their index) and a way to report a located problem. Every rule reports and goes
    on; none stops the others."""

    @property
    def topology(self) -> Topology: ...

    @property
    def facts(self) -> HostFacts: ...

    @property
    def nodes(self) -> dict[str, tuple[int, Node]]: ...

    def add(self, path: Path_, message: str, fix: str = "") -> None: ...

    def node_ref(self, path: Path_, name: str, role: str | None) -> bool:
        """Report a node name that does not exist or lacks ``role``; True when it exists."""


class ChaosSupport(Protocol):
    """What a backend gives a chaos run (Backend.chaos): the daemons its roles run (what kill and
    pause target), the places a workload writes to on the KVM host through the clients the host's
    pools use, when the lab is whole again (the recovery wait between faults), and the longest
    stall it promises per fault. A backend without it is not offered to `storlab chaos`."""

    def daemons(self, lab: LabContext) -> Mapping[str, tuple[str, ...]]:
        """Node name -> systemd services of the daemons this backend runs there (the targets of
        kill and pause). Asked of the lab, not declared per role: which daemon serves can be the
        plan's choice (kernel nfsd has no process to kill, NFS-Ganesha has) and a unit's name the
        running lab's (ceph-osd@ID: the cluster gives the id)."""
        ...

    def targets(self, lab: LabContext, run_dir: Path, run_id: str, sync: bool = True,
                span: int = 1 << 20) -> list[WriteTarget]:
        """The writers of a run: their files or images made (named for ``run_id``), clients open,
        each writing ``span`` bytes round and round (a write overwritten later is checked no more).
        ``sync`` False: writes are acknowledged when the client took them, never flushed (as a
        guest disk with cache=unsafe): the negative control for what a client cache can lose."""
        ...

    def health(self, lab: LabContext) -> str | None:
        """None when the lab is whole (every server up, nothing to heal, clients reconnected);
        else what it still waits for (said while waiting)."""
        ...

    def bound(self, lab: LabContext, event: Event) -> float | None:
        """The longest stall (s) of acknowledged writes the configuration promises while ``event``
        is in effect alone (None: no promise, e.g. a fault that takes quorum away)."""
        ...

    def remove(self, lab: LabContext, run_id: str) -> None:
        """Remove what targets() made for ``run_id`` (after the read-back)."""
        ...

    def faults(self) -> Mapping[str, Callable[[LabContext, Event], Callable[[], None]]]:
        """This backend's own fault kinds (the vocabulary's kinds that name it) and their verbs:
        each applies its event's fault to the lab and returns the undo ({}: none)."""
        ...


@dataclass(frozen=True)
class PlanInputs:
    """What the core has resolved when a backend plans its section."""
    lab: str
    networks: tuple[NetworkPlan, ...]
    nodes: tuple[NodePlan, ...]
    #: what validation chose for `implementation: auto` (None for a backend without implementations)
    implementation: str | None

    def node(self, name: str) -> NodePlan:
        return next(n for n in self.nodes if n.name == name)

    def having(self, role: str) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if role in n.roles)


#: a step of `up`: its name (kept in state.json, so `up` resumes) and what it does to the lab
RoleStep = tuple[str, Callable[[LabContext], None]]


class Backend(Generic[S, P, PP]):
    """A storage backend. Subclasses set the class attributes and override the hooks they need."""

    #: the topology key of its section, the entry point name, the plan.json key
    name: ClassVar[str]
    #: bring-up order among backends (roles are applied in this order)
    order: ClassVar[int] = 100
    section: type[S]
    plan_section: type[P]
    #: its host pools in the plan (a HostPoolPlan subclass with the fields pool_extras sets)
    pool_section: type[PP] = HostPoolPlan  # type: ignore[assignment]
    #: what a pool on it may say under the backend's name (`host.pools[].nfs: {version: 4.2}`): a
    #: model whose values reach XML or a command only through its own patterns; None: no options
    pool_options: ClassVar[type[BaseModel] | None] = None
    #: node roles this backend brings, and those that make no sense without its section
    roles: ClassVar[tuple[str, ...]] = ()
    section_roles: ClassVar[tuple[str, ...]] = ()
    #: role -> kernel feature a node with that role needs
    role_kernel: ClassVar[dict[str, str]] = {}
    #: ways to serve, preferred first; `implementation: auto` takes the first the nodes can run
    implementations: ClassVar[tuple[Implementation, ...]] = ()
    #: libvirt pool types that take this backend, and whether a dir pool can sit on its FUSE mount
    pool_types: ClassVar[tuple[str, ...]] = ()
    mounts: ClassVar[bool] = False
    #: Debian packages baked into the golden image, and their units that only a role starts
    packages: ClassVar[tuple[str, ...]] = ()
    services: ClassVar[tuple[str, ...]] = ()
    #: role -> system calls a container node with that role needs that the default seccomp
    #: profile denies (a provider sharing the host kernel then runs it without that filter)
    syscalls: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: role -> why it cannot run in an unprivileged container (root mapped to an unprivileged host
    #: id): such a role runs for untrusted users (students) only on a provider with a kernel per node
    host_privilege: ClassVar[dict[str, str]] = {}
    #: topology paths a running lab can take without being rebuilt ('gluster.volumes.*.options':
    #: '*' is any key or item); matrix cells differing only there share one lab (see reconfigure)
    reconfigurable: ClassVar[tuple[str, ...]] = ()

    # -- sections --------------------------------------------------------------------------
    def of(self, topo: Topology) -> S | None:
        value = topo.section(self.name)
        return value if isinstance(value, self.section) else None

    def planned(self, plan: Plan) -> P | None:
        return plan.section(self.name, self.plan_section)

    # -- validation ------------------------------------------------------------------------
    def check(self, rules: Rules, section: S) -> None:
        """Cross-reference rules of the section (nodes, disks, sizes, names)."""

    def check_pool(self, rules: Rules, path: Path_, pool: Pool, section: S) -> None:
        """Rules for a host pool on this backend (the objects it names exist)."""

    # -- plan --------------------------------------------------------------------------------
    def plan(self, inputs: PlanInputs, section: S) -> P:
        raise NotImplementedError(f"backend {self.name} does not plan its section")

    def render(self, plan: Plan, section: P) -> dict[str, str]:
        """Config files for the nodes: relative path (nodes/NODE/...) -> content."""
        return {}

    def pool_extras(self, plan: Plan, section: P, pool: Pool, secret_uuid: str) -> dict[str, Any]:
        """What a host pool on this backend resolves to (servers, target, secret uuid, ...):
        fields of its `pool_section`. ``secret_uuid`` is the pool's, for a pool that needs a secret."""
        return {}

    def squashes(self, section: S, pool: Pool) -> bool:
        """Does the backend squash root for this pool (volumes are then made by qemu's user)?"""
        return False

    def decide_secrets(self, plan: P, section: S, store: Callable[[str, str], None]) -> None:
        """Give each secret the plan names its value: store(name, value) (kept across runs)."""

    # -- a running lab -------------------------------------------------------------------------
    def steps(self, plan: Plan) -> list[RoleStep]:
        """The role steps of `up` for this backend, in order: (name, apply(lab))."""
        return []

    def pool_secret(self, lab: LabContext, pool: PP) -> bytes | None:
        """The value of the libvirt secret a pool logs in with (a cephx key, a CHAP password)."""
        return None

    def prepare_pool(self, lab: LabContext, pool: PP, sh: Callable[..., str]) -> None:
        """Before libvirt defines and starts the pool (``sh`` runs a command where the pool lives)."""

    def pool_adapter(self, lab: LabContext, pool: PP, sh: Callable[..., str]) -> str | None:
        """A scsi pool's SCSI host (hostN) on the pool's host, known only there once prepare_pool has
        made it (an iSCSI session's host number): found when the pool is defined; the core checks
        it against SCSI_HOST_RE before it reaches the XML."""
        return None

    def release_pool(self, lab: LabContext, pool: PP) -> CleanupReport:
        """After the pool is gone from libvirt on the KVM host: what the backend set up for it."""
        return CleanupReport()

    def pool_leftovers(self, lab: LabContext, pool: PP) -> list[str]:
        return []

    def pool_conflicts(self, lab: LabContext, pool: PP) -> list[str]:
        """What on the host the pool would take that is not this lab's (checked before `up` makes anything)."""
        return []

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        """Commands whose output explains a failed bring-up on a node with these roles."""
        return []

    # -- block devices it serves, for other backends (a cluster filesystem on a LUN) -----------
    #: what names one of its block devices in another section (`lun: INDEX`, `namespace: NAME`);
    #: empty: it serves none
    block_ref: ClassVar[str] = ""

    def check_block(self, rules: Rules, path: Path_, section: S, ref: str | int, nodes: Sequence[str]) -> None:
        """Report a ``ref`` that names none of its devices, or a node of ``nodes`` that could not reach it."""
        rules.add(path + ("backend",), f"backend {self.name} serves no block device another backend can use",
                  "use a backend that serves LUNs or namespaces")

    def attach_block(self, lab: LabContext, node: NodeView, ref: str | int) -> str:
        """Make the device ``ref`` present on ``node`` (log in, connect: what is there already is
        kept) and return its stable block device there (/dev/NAME or /dev/mapper/NAME)."""
        raise NotImplementedError(f"backend {self.name} serves no block device")

    def chaos(self) -> ChaosSupport | None:
        """What a chaos run of a lab with this backend uses (harness.chaos.support); None: not offered."""
        return None

    def upgrade(self) -> UpgradeSupport | None:
        """What `storlab upgrade` uses (harness.upgrade.support); None: the backend has no upgrade path."""
        return None

    def reconfigure(self, lab: LabContext, before: Plan) -> list[str]:
        """Bring the running lab from plan ``before`` to ``lab.plan`` where they differ only in
        ``reconfigurable`` settings, and verify each new value is what the daemon reports.
        Returns what changed (empty: nothing of this backend's)."""
        return []


def one_line_in(what: str) -> Callable[[object], object]:
    """A template environment's finalize: every value printed into ``what`` stays on its line (a
    line break would start a directive of its own); one is refused (validation should have stopped it)."""
    def check(value: object) -> object:
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise HarnessError(f"a value with a line break reached {what}: {value.splitlines()[0][:40]!r}...; "
                               "refused (validation should have stopped it)")
        return value
    return check


def templates(package: str) -> jinja2.Environment:
    """The Jinja environment of a backend package's templates/ (undefined names are errors)."""
    return jinja2.Environment(loader=jinja2.PackageLoader(package, "templates"), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=False)


def backends() -> tuple[Backend[Any, Any], ...]:
    """Every installed backend, in bring-up order."""
    out = []
    for b in registry.declared():
        if not isinstance(b, Backend):
            raise TypeError(f"backend {b.name} ({type(b).__module__}) is not a harness.backends.base.Backend")
        out.append(b)
    return tuple(out)


def get(name: str) -> Backend[Any, Any]:
    for b in backends():
        if b.name == name:
            return b
    raise KeyError(name)
