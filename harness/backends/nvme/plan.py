"""The nvme section of a plan: the target's ports (with its address on each network), its
subsystems with their namespaces (each with a fixed UUID and NGUID, so that a host finds it as
/dev/disk/by-id/nvme-uuid.UUID), the host NQNs each admits, and the host NQN of every nvme-host
node (decided here, so that allowed_hosts can name nodes)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Literal

from harness.backends.base import PlanInputs
from harness.backends.nvme.schema import Nvme, NvmeDhchap, NvmeHost, NvmeSubsystem
from harness.plan.model import Frozen, HostPoolPlan, Plan

#: the prefix `nvme gen-hostnqn` gives a host NQN (NVMe base spec 4.5: the UUID-based form)
HOSTNQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"
#: how allowed_hosts (and host pools) name the KVM host itself
KVM = "kvm"


class NamespacePlan(Frozen):
    nsid: int
    name: str
    kind: Literal["file", "block"]
    path: str | None
    size: int | None
    disk: str | None
    device: str  # what nvmet serves: the backing file or the disk's block device
    uuid: str
    nguid: str


class PortPlan(Frozen):
    id: int  # nvmet's port directory (/sys/kernel/config/nvmet/ports/ID)
    network: str
    address: str  # the target's address on that network
    port: int


class SubsystemPlan(Frozen):
    nqn: str
    namespaces: tuple[NamespacePlan, ...]
    allowed_hosts: tuple[str, ...]  # host NQNs (nodes resolved)
    allow_any_host: bool
    ports: tuple[int, ...]  # PortPlan ids


class HostNqnPlan(Frozen):
    node: str
    nqn: str
    hostid: str


class DhchapPlan(Frozen):
    """DH-HMAC-CHAP of one host NQN. nvmet keeps it on the host's entry (hosts/NQN), so it holds
    for every subsystem that admits the host. The keys are named: files of the lab's secrets."""
    host: str  # the host NQN
    key: str  # the secret holding the host's key
    ctrl_key: str | None  # the secret holding the controller's key (bidirectional)
    hash: str  # nvmet's dhchap_hash: hmac(sha256)
    dhgroup: str  # nvmet's dhchap_dhgroup: null, ffdhe2048, ...
    generate: bool


class NvmePlan(Frozen):
    target: str
    ports: tuple[PortPlan, ...]
    subsystems: tuple[SubsystemPlan, ...]
    hosts: tuple[HostNqnPlan, ...]  # the nvme-host nodes
    kvm_host: HostNqnPlan | None = None  # the KVM host, when a subsystem admits it
    dhchap: tuple[DhchapPlan, ...] = ()

    def port(self, pid: int) -> PortPlan:
        return next(p for p in self.ports if p.id == pid)

    def host(self, node: str) -> HostNqnPlan | None:
        """An nvme-host node's NQN, or the KVM host's (node "kvm")."""
        if node == KVM:
            return self.kvm_host
        return next((h for h in self.hosts if h.node == node), None)

    def auth(self, host_nqn: str) -> DhchapPlan | None:
        return next((d for d in self.dhchap if d.host == host_nqn), None)


class NvmeHostPool(HostPoolPlan):
    """A logical pool on an NVMe namespace, on a hypervisor node with role nvme-host: which
    subsystem and namespace (device is its /dev/disk/by-id/nvme-uuid.UUID link)."""
    subsystem: str | None = None
    namespace: int | None = None
    namespace_uuid: str | None = None


def _uuid(lab: str, *what: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(["storlab", lab, "nvme", *map(str, what)])))


def host_nqn(lab: str, node: str) -> HostNqnPlan:
    hostid = _uuid(lab, "host", node)
    return HostNqnPlan(node=node, nqn=HOSTNQN_PREFIX + hostid, hostid=hostid)


def _subsystem(inputs: PlanInputs, s: NvmeSubsystem, port_ids: dict[tuple[str, int], int],
               hosts: dict[str, HostNqnPlan], devices: dict[str, str | None]) -> SubsystemPlan:
    namespaces = tuple(NamespacePlan(
        nsid=i, name=ns.name or f"ns{i}", kind=ns.kind, path=ns.path, size=ns.size, disk=ns.disk,
        device=(ns.path or "") if ns.kind == "file" else (devices.get(ns.disk or "") or f"/dev/storlab/{ns.disk}"),
        uuid=_uuid(inputs.lab, s.nqn, i), nguid=_uuid(inputs.lab, s.nqn, i, "nguid"))
        for i, ns in enumerate(s.namespaces, start=1))
    allowed = tuple(dict.fromkeys(_resolve(h, hosts) for h in s.allowed_hosts))
    return SubsystemPlan(nqn=s.nqn, namespaces=namespaces,
                         allowed_hosts=allowed, allow_any_host=s.allow_any_host,
                         ports=tuple(port_ids[(p.network, p.port)] for p in s.ports))


def _resolve(h: NvmeHost, hosts: dict[str, HostNqnPlan]) -> str:
    return h.nqn or hosts[h.node or ""].nqn


def secret_name(h: NvmeHost, what: str) -> str:
    """The lab secret holding a host's key (what: "key" or "ctrl-key"): named after its node, or
    after a hash of its literal NQN (a secret's name is a plain file name; an NQN has ':')."""
    who = h.node or "nqn-" + hashlib.sha256((h.nqn or "").encode()).hexdigest()[:12]
    return f"nvme-dhchap-{what}-{who}"


def _dhchap(h: NvmeHost, d: NvmeDhchap, nqn: str) -> DhchapPlan:
    two_way = d.bidirectional or d.ctrl_key is not None
    return DhchapPlan(host=nqn, key=secret_name(h, "key"), ctrl_key=secret_name(h, "ctrl-key") if two_way else None,
                      hash=f"hmac({d.hash})", dhgroup=d.dhgroup, generate=d.generate)


def dhchaps(nvme: Nvme, hosts: dict[str, HostNqnPlan]) -> dict[str, tuple[NvmeHost, NvmeDhchap]]:
    """Host NQN -> (the allowed_hosts entry, its dhchap), first listing first (validation made every
    listing of one host say the same)."""
    out: dict[str, tuple[NvmeHost, NvmeDhchap]] = {}
    for s in nvme.subsystems:
        for h in s.allowed_hosts:
            if h.dhchap is not None:
                out.setdefault(_resolve(h, hosts), (h, h.dhchap))
    return out


def make(inputs: PlanInputs, nvme: Nvme) -> NvmePlan:
    tnode = inputs.node(nvme.target)
    port_ids: dict[tuple[str, int], int] = {}
    for s in nvme.subsystems:
        for p in s.ports:
            port_ids.setdefault((p.network, p.port), len(port_ids) + 1)
    ports = tuple(PortPlan(id=i, network=net, address=tnode.addresses[net], port=port)
                  for (net, port), i in port_ids.items())
    hosts = {n.name: host_nqn(inputs.lab, n.name) for n in inputs.having("nvme-host")}
    nodes = tuple(hosts.values())
    if any(h.node == KVM for s in nvme.subsystems for h in s.allowed_hosts):
        hosts[KVM] = host_nqn(inputs.lab, KVM)
    devices = {d.name: d.device for d in tnode.disks}
    subsystems = tuple(_subsystem(inputs, s, port_ids, hosts, devices) for s in nvme.subsystems)
    auth = tuple(_dhchap(h, d, nqn) for nqn, (h, d) in dhchaps(nvme, hosts).items())
    return NvmePlan(target=nvme.target, ports=ports, subsystems=subsystems, hosts=nodes, kvm_host=hosts.get(KVM),
                    dhchap=auth)


def of(plan: Plan) -> NvmePlan | None:
    """The lab's nvme section, None when it has none."""
    return plan.section("nvme", NvmePlan)


def namespace_for(section: NvmePlan, name: str | None, host_nqn_: str | None) -> tuple[SubsystemPlan, NamespacePlan] | None:
    """The namespace a pool names (disk: NAME), or without a name the first one ``host_nqn_`` is admitted to."""
    for s in section.subsystems:
        if name is None and not (s.allow_any_host or host_nqn_ in s.allowed_hosts):
            continue
        for ns in s.namespaces:
            if name is None or ns.name == name:
                return s, ns
    return None
