"""The fault vocabulary as data (each kind: what it targets, how long, whether it may overlap
others, the provider capability it needs, the verb that applies it) and the shape of a lab that
schedules are drawn for: its nodes, roles, daemons and disks, its clients and the faults its
provider can give on this host. Nothing here touches a lab."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from harness.plan.model import NodePlan
from harness.providers.capabilities import FAULTS, Capabilities

#: roles whose nodes use storage rather than serve it: they write, they are not faulted as servers
CLIENT_ROLES = frozenset({"client", "hypervisor"})
#: the KVM host as a partition side: its clients (qemu's drivers, the host pools) reach every server
HOST = "host"


class Target(StrEnum):
    NODE = "node"        # one node of the kind's roles
    DAEMON = "daemon"    # one daemon (a systemd unit) on such a node
    DISK = "disk"        # one data disk of such a node
    GROUPS = "groups"    # the servers split into two sides
    CLIENTS = "clients"  # the clients (the KVM host, client nodes) cut from some servers
    HOST = "host"        # the KVM host's own writers (their client processes)
    BACKEND = "backend"  # the backend as a whole, through a setting of its own (its event names every server of
    #                      the kind's roles: nothing else is drawn on them meanwhile)


@dataclass(frozen=True)
class FaultKind:
    name: str
    #: the provider capability it needs (one of harness.providers.capabilities.FAULTS); "" for a
    #: fault of the KVM host's own clients, which every provider's labs can be given
    needs: str
    target: Target
    #: seconds the fault lasts, drawn uniformly
    duration: tuple[float, float]
    #: whether it may be active while other faults are (on other nodes)
    overlap: bool
    #: the roles of the nodes it targets; () any server
    roles: tuple[str, ...] = ()
    #: parameters drawn uniformly: (name, low, high)
    params: tuple[tuple[str, float, float], ...] = ()
    #: the node verbs that apply and undo it; None: storlab has none yet, and it is skipped, never faked
    verb: str | None = None
    #: the backend whose chaos support applies it (ChaosSupport.faults); "" a fault of nodes or the host
    backend: str = ""

    def __post_init__(self) -> None:
        if self.needs and self.needs not in FAULTS:
            raise ValueError(f"fault kind {self.name}: needs {self.needs!r}, not one of {sorted(FAULTS)}")
        if (self.target is Target.BACKEND) != bool(self.backend):
            raise ValueError(f"fault kind {self.name}: a backend's fault (target backend) names its backend, and only it")
        lo, hi = self.duration
        if not 0 < lo <= hi:
            raise ValueError(f"fault kind {self.name}: duration range {self.duration} is not 0 < low <= high")


_KINDS = (
    FaultKind("crash", "crash", Target.NODE, (5, 30), True, verb="Node.crash / Node.start"),
    FaultKind("freeze", "freeze", Target.NODE, (5, 60), True, verb="Node.freeze / Node.thaw"),
    FaultKind("hang", "hang", Target.NODE, (5, 60), True, verb="Node.hang / Node.unhang"),
    FaultKind("link", "link", Target.NODE, (5, 30), True, verb="Node.set_link"),
    FaultKind("partition", "partition", Target.GROUPS, (10, 60), False, verb="nodes.node.partition"),
    # one way: what the event's nodes send the others is lost (they still hear them); the verb's
    # direction='in' (they hear nothing) is there for tests that want the other way
    FaultKind("partition-oneway", "partition", Target.GROUPS, (10, 60), False,
              verb="nodes.node.partition(nodes, apart, direction='out')"),
    FaultKind("client-partition", "partition", Target.CLIENTS, (10, 60), False,
              verb="Node.block on the cut servers, of the clients' addresses"),
    FaultKind("client-flip", "partition", Target.CLIENTS, (10, 60), False,
              verb="client-partition, then at half time the clients cut from the other servers instead"),
    FaultKind("client-crash", "", Target.HOST, (1, 5), True,
              verb="kill -9 of the KVM host's writer clients (a hypervisor's qemu dying); the next write starts anew"),
    FaultKind("kill", "kill", Target.DAEMON, (2, 20), True, verb="Node.stop_service(kill=True) / Node.start_service"),
    FaultKind("pause", "pause", Target.DAEMON, (5, 45), True, verb="Node.pause_service / Node.resume_service"),
    FaultKind("netem", "netem", Target.NODE, (10, 60), True,
              params=(("delay_ms", 10, 200), ("jitter_ms", 0, 50), ("loss_pct", 0, 10)),
              verb="Node.netem(delay_ms=, jitter_ms=, loss_pct=) / Node.netem_clear"),
    FaultKind("disk-full", "disk-full", Target.DISK, (10, 40), True, verb="Node.fill / Node.unfill of the disk's mount"),
    FaultKind("dm-flakey", "dm-flakey", Target.DISK, (10, 40), True, params=(("up_s", 1, 5), ("down_s", 1, 5)),
              verb="Node.flakey(disk, up_s, down_s) / Node.dm_restore: every I/O fails while down"),
    # device-mapper too (the provider's dm-flakey capability: a disk of the node's own under its mount)
    FaultKind("dm-delay", "dm-flakey", Target.DISK, (10, 40), True, params=(("delay_ms", 20, 500),),
              verb="Node.delay_disk(disk, delay_ms) / Node.dm_restore: a slow disk"),
    FaultKind("dm-bad-blocks", "dm-flakey", Target.DISK, (10, 40), True, params=(("ranges", 1, 16),),
              verb="Node.bad_blocks(disk, ranges) / Node.dm_restore: ranges of sectors that fail with EIO"),
    FaultKind("clock", "clock", Target.NODE, (10, 60), True, params=(("skew_s", -300, 300),),
              verb="Node.skew_clock(skew_s) / Node.restore_clock(skew_s)"),
    FaultKind("clock-strobe", "clock", Target.NODE, (10, 60), True, params=(("delta_s", 1, 120), ("period_ms", 50, 1000)),
              verb="Node.strobe_clock(delta_s, period_ms) / Node.unstrobe_clock: the clock jumping back and forth"),
    # the backends' own error injection: Gluster's error-gen translator at the top of every client's
    # graph, failing that share of the writes and fsyncs it is asked for, with a real one's errors
    FaultKind("gluster-error-gen", "", Target.BACKEND, (10, 40), False, roles=("gluster",),
              params=(("failure_pct", 5, 30),), backend="gluster",
              verb="gluster volume set VOL debug.error-gen client, debug.error-fops WRITE,FSYNC, "
                   "debug.error-failure PCT / gluster volume reset of each"),
)
#: every fault kind, by name
KINDS: Mapping[str, FaultKind] = {k.name: k for k in _KINDS}
#: kinds never drawn: what a caller does to a live lab while the writers write, checked as a fault
#: (runner.run's ``extra`` verbs give them)
UNDRAWN: Mapping[str, FaultKind] = {k.name: k for k in (
    FaultKind("reconfigure", "", Target.BACKEND, (0.1, 3600), False, backend="matrix",
              verb="a matrix's next cell's settings applied to the live lab (Backend.reconfigure)"),
    FaultKind("upgrade", "", Target.BACKEND, (0.1, 7200), False, backend="upgrade",
              verb="the lab's backends taken to another release, server by server (storlab upgrade)"),
)}


@dataclass(frozen=True)
class NodeShape:
    name: str
    roles: tuple[str, ...]
    #: systemd units of its daemons (what kill and pause target)
    daemons: tuple[str, ...] = ()
    #: its data disks (what disk faults target)
    disks: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabShape:
    """What a schedule is drawn for: the servers faults target, the clients that write (the KVM
    host, client nodes), and the faults the lab's provider can give on this host (others: why not)."""
    provider: str
    nodes: tuple[NodeShape, ...]
    clients: tuple[str, ...] = (HOST,)
    faults: frozenset[str] = frozenset()
    refused: Mapping[str, str] = field(default_factory=dict)
    #: the fault kinds the lab's backends apply themselves (ChaosSupport.faults)
    backend_faults: frozenset[str] = frozenset()

    def node(self, name: str) -> NodeShape | None:
        return next((n for n in self.nodes if n.name == name), None)

    def candidates(self, kind: FaultKind) -> list[NodeShape]:
        """The servers ``kind`` may target (by its roles, and for daemon and disk faults those that have one)."""
        out = [n for n in self.nodes if not kind.roles or set(kind.roles) & set(n.roles)]
        if kind.target is Target.DAEMON:
            out = [n for n in out if n.daemons]
        elif kind.target is Target.DISK:
            out = [n for n in out if n.disks]
        return out

    def why_not(self, kind: FaultKind) -> str | None:
        """Why ``kind`` cannot be drawn for this lab (None: it can)."""
        if kind.target is Target.HOST:
            return None if HOST in self.clients and kind.verb else "the KVM host writes nothing in this lab"
        if kind.backend and kind.name not in self.backend_faults:
            return f"a fault of the {kind.backend} backend, which this lab does not run"
        if kind.needs and kind.needs not in self.faults:
            reason = self.refused.get(kind.needs, "not declared in its Capabilities")
            return f"the {self.provider} provider cannot give {kind.needs}: {reason}"
        if kind.verb is None:
            return "storlab has no node verb that applies it yet"
        cands = self.candidates(kind)
        if kind.target is Target.GROUPS and len(cands) < 2:
            return f"a partition needs two servers; the lab has {len(cands)}"
        if kind.target is Target.CLIENTS and not (cands and self.clients):
            return "no clients or no servers to cut them from"
        if not cands:
            what = {Target.DAEMON: "a daemon", Target.DISK: "a data disk"}.get(kind.target, "a node")
            roles = f" of role {', '.join(kind.roles)}" if kind.roles else ""
            return f"no server{roles} with {what}"
        return None


def is_client(node: NodePlan) -> bool:
    """A node that uses storage rather than serves it: roles, all of them CLIENT_ROLES."""
    return bool(node.roles) and set(node.roles) <= CLIENT_ROLES


def shape_of(nodes: Sequence[NodePlan], caps: Capabilities, daemons: Mapping[str, Sequence[str]],
             host_modules: Collection[str] = (), host_clients: bool = True,
             backend_faults: Collection[str] = ()) -> LabShape:
    """A lab's shape from its plan's nodes, its provider's Capabilities, the daemons on each node
    (node name -> systemd units: the backends' ChaosSupport.daemons) and the modules of the kernel
    its containers run on. Nodes with only client roles (CLIENT_ROLES) are clients; the KVM host is
    one unless ``host_clients`` is False. ``backend_faults``: the kinds its backends apply themselves
    (ChaosSupport.faults)."""
    servers, clients = [], [HOST] if host_clients else []
    for n in nodes:
        if is_client(n):
            clients.append(n.name)
            continue
        units = tuple(dict.fromkeys(daemons.get(n.name, ())))
        disks = tuple(d.name for d in n.disks if d.mount)  # a filesystem to fill, not a raw device
        servers.append(NodeShape(n.name, tuple(n.roles), units, disks))
    given, refused = caps.faults_offered(host_modules)
    return LabShape(caps.name, tuple(servers), tuple(clients), given, refused, frozenset(backend_faults))
