"""The plan: a lab resolved from its topology (subnets, addresses, MACs, disks, object names,
each backend's section, host pools and volumes), as frozen typed models. `make_plan` builds it,
`plan.json` in the lab directory holds it, and everything after validation reads it through
attributes that mypy checks. Secrets are named here, never held."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, SerializeAsAny, ValidationError, create_model, field_validator

from harness import plugins as registry
from harness.errors import HarnessError


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


S = TypeVar("S", bound=BaseModel)


class NetworkPlan(Frozen):
    name: str
    cidr: str
    prefix: int
    host_address: str
    bridge: str
    libvirt_network: str


class MgmtPlan(NetworkPlan):
    """vagrant-libvirt's management network (VM labs only)."""
    netmask: str
    dhcp_start: str
    dhcp_end: str


class DiskPlan(Frozen):
    name: str
    size: int
    filesystem: str
    mount: str | None
    device: str | None  # /dev/vdX on VMs; None where the provider hands the disk over mounted
    image: str

    @property
    def dm_name(self) -> str:
        """The device-mapper device a VM's mounted data disk sits on (linear over ``device``), so
        that a fault can change its table under the mounted filesystem (Node.flakey)."""
        return f"storlab-{self.name}"


class NodePlan(Frozen):
    name: str
    index: int
    roles: tuple[str, ...]
    cpus: int
    memory: int
    address: str  # on the first lab network
    addresses: dict[str, str]  # network name -> address
    macs: dict[str, str]
    disks: tuple[DiskPlan, ...]
    object: str  # container/domain name
    kernel: str | None = None  # the kernel a VM node boots (harness.spec.kernels; None: the default)
    release: str = "bookworm"  # the node's Debian release: its golden image (harness.spec.releases)


class ChapPlan(Frozen):
    username: str
    secret_name: str  # the file in the lab's secrets directory
    password_file: str | None
    generate: bool
    literal: bool


class SecretRef(Frozen):
    uuid: str | None


class HostPoolPlan(Frozen):
    """A libvirt pool on the KVM host ('kvm') or on a hypervisor node of the lab: the topology's
    fields and what the core resolves. A pool on a backend is that backend's subclass (its
    `pool_section`), which adds what the backend resolves; those fields are written to plan.json
    only where they were set (see Plan.to_json)."""
    name: str
    object: str  # the pool's name in libvirt
    type: str
    backend: str
    path: str | None
    volume: str | None
    fuse_mount: bool
    export: str | None
    initiator: str | None
    rbd_pool: str | None
    client: str | None
    secret: SecretRef | None
    host: str
    disk: str | None
    secret_uuid: str | None = None  # the libvirt secret the pool logs in with (the core defines it)
    device: str | None = None  # an fs or logical pool's disk on a hypervisor node
    # what a backend asks of libvirt's mount of an fs or netfs pool: <protocol ver='...'/> (netfs) and
    # options of the storage pool fs namespace (<fs:mount_opts>), each already checked by its pattern
    protocol_ver: str | None = None
    mount_opts: tuple[str, ...] = ()


HP = TypeVar("HP", bound=HostPoolPlan)


def pool_section(backend: str) -> type[HostPoolPlan]:
    """The pool model of a backend ('local' and an unknown name: the plain HostPoolPlan)."""
    for b in registry.declared():
        if b.name == backend and issubclass(b.pool_section, HostPoolPlan):
            return b.pool_section
    return HostPoolPlan


class HostVolumePlan(Frozen):
    pool: str
    name: str
    size: int
    format: str
    allocation: str
    pool_type: str
    squashed: bool


class HostPlan(Frozen):
    uri: str
    # dumped as what each pool is (its backend's subclass), not as the base model
    pools: tuple[SerializeAsAny[HostPoolPlan], ...]
    volumes: tuple[HostVolumePlan, ...]

    @field_validator("pools", mode="before")
    @classmethod
    def _backend_pools(cls, value: Any) -> Any:
        """A pool read from plan.json becomes its backend's pool model."""
        if not isinstance(value, list | tuple):
            return value
        return tuple(pool_section(str(p.get("backend"))).model_validate(p) if isinstance(p, dict) else p
                     for p in value)


class BudgetPlan(Frozen):
    """What one lab may use on an engine with per-lab limits (an Incus project's limits)."""
    instances: int
    memory_mib: int
    cpus: int
    disk_gib: int


class Plan(Frozen):
    lab: str
    topology: str  # the topology file, resolved
    provider: str
    accel: Literal["kvm", "tcg"]
    networks: tuple[NetworkPlan, ...]
    nodes: tuple[NodePlan, ...]
    tag: str
    mgmt: MgmtPlan | None = None
    host: HostPlan
    instance_of: str | None = None  # the lab the topology file describes, when this lab is an instance of it
    remote: str | None = None  # where the nodes live on an engine with remotes (incus: a remote name); None: this host
    budget: BudgetPlan | None = None  # the lab's limits (incus: its project's); None: exactly what its nodes need
    # the lab's users are not this host's admins (students): nodes run where root inside cannot
    # reach the host (see harness/lab/trust.py); set only when true, so older plans read the same
    untrusted: bool = False
    klass: str | None = None  # the id of the class that made this lab (a class adopts no other lab)
    # what the lab's data disk images (sparse) may really take of this host's disk (`--disk-budget`):
    # the capacity checks count it instead of their full sizes; lxc keeps them in a filesystem of
    # that size, so a lab that writes more fills its own budget, not the host; None: full sizes
    disk_budget_mib: int | None = None
    # VM nodes boot (`vagrant up`) instead of being restored from a saved state (`--cold-boot`);
    # set only when true, so older plans read the same
    cold_boot: bool = False
    # each installed backend adds its section (gluster, nfs, ...) as an optional field: see model()

    def section(self, name: str, kind: type[S]) -> S | None:
        """A backend's section of this plan, None when the lab has none."""
        value = getattr(self, name, None)
        if value is None:
            return None
        if not isinstance(value, kind):
            raise HarnessError(f"plan section {name} is a {type(value).__name__}, not a {kind.__name__}")
        return value

    # -- look-ups ----------------------------------------------------------------------------
    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @overload
    def pool(self, name: str) -> HostPoolPlan: ...

    @overload
    def pool(self, name: str, kind: type[HP]) -> HP: ...

    def pool(self, name: str, kind: type[HostPoolPlan] = HostPoolPlan) -> HostPoolPlan:
        """A host pool of the plan; with ``kind`` (a backend's pool_section), checked to be one."""
        for p in self.host.pools:
            if p.name == name:
                if not isinstance(p, kind):
                    raise HarnessError(f"pool {name} is a {type(p).__name__}, not a {kind.__name__}")
                return p
        raise KeyError(name)

    # -- plan.json -----------------------------------------------------------------------------
    def to_json(self) -> str:
        # fields never set (a pool's extras that its type does not use) stay out of the file
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return model().model_validate(json.loads(text))

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            return cls.from_json(path.read_text())
        except (ValueError, ValidationError) as exc:  # another version's plan, or a damaged file
            first = str(exc).splitlines()[:3]
            raise HarnessError(f"{path} is not a plan this storlab can read ({'; '.join(first)}); "
                               f"`storlab down` with the storlab that made it, or remove the lab directory") from None

    def with_(self, **changes: Any) -> Plan:
        """A copy with ``changes`` (the plan itself never changes)."""
        return self.model_copy(update=changes)


def model() -> type[Plan]:
    """The plan model with a section per installed backend."""
    return _sectioned(registry.declared())


@cache
def _sectioned(backends: tuple[registry.Declared, ...]) -> type[Plan]:
    fields: dict[str, Any] = {b.name: (b.plan_section | None, None) for b in backends}
    return create_model("Plan", __base__=Plan, **fields)


T = TypeVar("T")


def need(value: T | None, what: str) -> T:
    """A field validation guarantees for this kind of object (a fileio LUN's path, a dir pool's
    path): a plan without it was not made by make_plan."""
    if value is None:
        raise HarnessError(f"plan: {what} is missing (the plan was not made from a validated topology?)")
    return value
