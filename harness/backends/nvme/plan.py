"""The nvme section of a plan: the target's ports (with its address on each network), its
subsystems with their namespaces (each with a fixed UUID and NGUID, so that a host finds it as
/dev/disk/by-id/nvme-uuid.UUID), the host NQNs each admits, and the host NQN of every nvme-host
node (decided here, so that allowed_hosts can name nodes)."""

from __future__ import annotations

import uuid
from typing import Literal

from harness.backends.base import PlanInputs
from harness.backends.nvme.schema import Nvme, NvmeSubsystem
from harness.plan.model import Frozen, HostPoolPlan, Plan

#: the prefix `nvme gen-hostnqn` gives a host NQN (NVMe base spec 4.5: the UUID-based form)
HOSTNQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"


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


class NvmePlan(Frozen):
    target: str
    ports: tuple[PortPlan, ...]
    subsystems: tuple[SubsystemPlan, ...]
    hosts: tuple[HostNqnPlan, ...]

    def port(self, pid: int) -> PortPlan:
        return next(p for p in self.ports if p.id == pid)

    def host(self, node: str) -> HostNqnPlan | None:
        return next((h for h in self.hosts if h.node == node), None)


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
    allowed = tuple(dict.fromkeys(h.nqn or hosts[h.node or ""].nqn for h in s.allowed_hosts))
    return SubsystemPlan(nqn=s.nqn, namespaces=namespaces,
                         allowed_hosts=allowed, allow_any_host=s.allow_any_host,
                         ports=tuple(port_ids[(p.network, p.port)] for p in s.ports))


def make(inputs: PlanInputs, nvme: Nvme) -> NvmePlan:
    tnode = inputs.node(nvme.target)
    port_ids: dict[tuple[str, int], int] = {}
    for s in nvme.subsystems:
        for p in s.ports:
            port_ids.setdefault((p.network, p.port), len(port_ids) + 1)
    ports = tuple(PortPlan(id=i, network=net, address=tnode.addresses[net], port=port)
                  for (net, port), i in port_ids.items())
    hosts = {n.name: host_nqn(inputs.lab, n.name) for n in inputs.having("nvme-host")}
    devices = {d.name: d.device for d in tnode.disks}
    subsystems = tuple(_subsystem(inputs, s, port_ids, hosts, devices) for s in nvme.subsystems)
    return NvmePlan(target=nvme.target, ports=ports, subsystems=subsystems, hosts=tuple(hosts.values()))


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
