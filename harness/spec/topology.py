"""The topology schema: pydantic models for nodes, networks, backends and host pools.

Field-level checks live here; rules that relate several parts of a topology live in
validate.py so that every problem in a file is reported at once.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator
from pydantic_core import PydanticCustomError

from harness import plugins as registry
from harness.providers.capabilities import available
from harness.spec import kernels, releases

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


#: the largest size a topology may give (a disk, LUN, volume or node memory): far above any lab,
#: far below what overflows a float or a 64-bit field in libvirt, qemu-img or truncate
MAX_SIZE = 64 * 1024**4


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"


def parse_size(value: Any) -> int:
    """'2G', '512M', '1.5G', 1048576 -> bytes (binary units), at most MAX_SIZE (64T)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number with an optional K/M/G/T suffix, e.g. 2G")
    if isinstance(value, int):
        size = value
    else:
        m = re.fullmatch(r"\s*(\d{1,30}(?:\.\d{1,12})?)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
        if not m:
            raise ValueError(f"'{_shown(value)}' is not a size; "
                             "fix: write a number (at most 30 digits) and a unit, e.g. 512M, 2G or 1T")
        size = int(Decimal(m.group(1)) * _UNITS[m.group(2).upper()])  # Decimal: no float overflow to inf
    if size > MAX_SIZE:
        raise ValueError(f"a size of {_shown(value)} is more than 64T; "
                         "fix: give a size a lab can hold, e.g. 2G")
    return size


def parse_mib(value: Any) -> int:
    """Memory: a bare number is MiB (as in Vagrant), '2G' is converted."""
    if isinstance(value, str) and value.strip().isdigit():  # a quoted bare number is MiB too
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value > MAX_SIZE // 1024**2:
            raise ValueError(f"{_shown(value)} MiB of memory is more than 64T; fix: give e.g. 2048 (MiB) or 2G")
        return value
    return parse_size(value) // 1024**2


# -- input that reaches a path, a config file, XML or a command ------------------------------
# A topology is untrusted input and storlab runs as root: every such value is allow-listed here,
# so that no quote, newline, '<', '&', '..' or shell character gets into ganesha.conf, /etc/exports,
# the tgt/targetcli configs, an LXC config, libvirt XML or a path.

def allow(pattern: str, what: str, fix: str) -> AfterValidator:
    rx = re.compile(pattern)

    def check(v: str) -> str:
        if not rx.fullmatch(v) or ".." in v:
            raise ValueError(f"{what} {v!r} has characters storlab does not pass on; fix: {fix}")
        return v
    return AfterValidator(check)


def abs_path(v: str) -> str:
    if not re.fullmatch(r"/([A-Za-z0-9._+@-]+/?)*", v) or any(seg in (".", "..") for seg in v.split("/")):
        raise ValueError(f"path {v!r} is not a plain absolute path; fix: use /, letters, digits and . _ + @ - "
                         f"(no '..', spaces, quotes or newlines)")
    return v.rstrip("/") or "/"


AbsPath = Annotated[str, AfterValidator(abs_path)]
Token = Annotated[str, allow(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", "name",
                              "use letters, digits and . _ + - (at most 64), starting with a letter or digit")]
# the KVM host's own libvirtd only: a remote one is reached through a hypervisor node of the lab
LibvirtUri = Annotated[str, allow(r"qemu:///(system|session)", "libvirt URI",
                                   "use qemu:///system (pools on another machine: give a hypervisor node of the lab)")]

def at_least(least: int, what: str, unit: str = "") -> AfterValidator:
    def check(v: int) -> int:
        if v < least:
            shown = f"{least} {unit}" if unit else f"{least // 2**20}M"
            raise ValueError(f"{what} of {v}{' ' + unit if unit else ' bytes'} is less than {shown}; fix: give at least {shown}")
        return v
    return AfterValidator(check)


Size = Annotated[int, BeforeValidator(parse_size)]
MiB = Annotated[int, BeforeValidator(parse_mib)]
Name = Annotated[str, Field(pattern=NAME_RE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Network(Strict):
    name: Name
    cidr: str | None = Field(None, description="IPv4 CIDR; allocated per lab when omitted")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"'{v}' is not an IPv4 network ({exc}); write e.g. 192.168.60.0/24") from None
        if net.prefixlen > 29:
            raise ValueError("network too small; use at most /29")
        return str(net)


#: roles the core itself gives meaning to; each backend adds its own (harness.plugins)
CORE_ROLES = ("hypervisor", "client")


def _one_of(names: list[str], v: str) -> str:
    if v not in names:
        expected = ", ".join(f"'{n}'" for n in names[:-1]) + f" or '{names[-1]}'"
        raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})
    return v


def _role(v: str) -> str:
    """A core role or one an installed backend brings."""
    return _one_of([*registry.roles(), *CORE_ROLES], v)


Role = Annotated[str, AfterValidator(_role)]


def _quoted_kernel(v: Any) -> Any:
    """YAML reads `kernel: 6.12` as a number (and 6.10 as 6.1): ask for the string."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        raise PydanticCustomError("kernel_quoted", "write the kernel in quotes (kernel: \"{v}\"): YAML reads it as a "
                                  "number, and would read 6.10 as 6.1", {"v": v})
    return v


class Disk(Strict):
    name: Name
    size: Annotated[Size, at_least(16 * 2**20, "a disk")] = Field(description="bytes or 512M, 2G, ... (at least 16M)")
    filesystem: Literal["xfs", "ext4", "none"] = "none"
    mount: AbsPath | None = None


class Node(Strict):
    name: Name
    roles: list[Role] = []
    cpus: int = Field(1, ge=1, le=64)
    memory: Annotated[MiB, at_least(128, "node memory", "MiB")] = Field(1024, description="MiB, or 2G (at least 128)")
    disks: list[Disk] = []
    address: str | None = Field(None, description="address on the first lab network")
    addresses: dict[str, str] = Field({}, description="network name -> address for further networks")
    kernel: Annotated[str, BeforeValidator(_quoted_kernel), AfterValidator(lambda v: _one_of(list(kernels.KERNELS), v))
                      ] | None = Field(None, description="the kernel a VM node boots, in quotes: " + "; ".join(
                          f"{name} ({k.about})" for name, k in kernels.KERNELS.items()) + "; default: its release's own ("
                          + ", ".join(f"{r} {rel.kernels[0]}" for r, rel in releases.RELEASES.items()) + ")")
    release: Annotated[str, AfterValidator(lambda v: _one_of(list(releases.RELEASES), v))] | None = Field(
        None, description="this node's Debian release, when it is not the lab's (mixed versions)")


class Secret(Strict):
    uuid: str | None = None

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        import uuid as _u
        if v is not None:
            _u.UUID(v)
        return v


class Pool(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    type: Literal["dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "gluster", "rbd",
                  "zfs"] = Field(description="zfs is refused by validation, with the reason")
    backend: Annotated[str, AfterValidator(lambda v: _one_of([*registry.names(), "local"], v))] = Field(
        "local", description="an installed backend (its section must be in the topology), or local")
    path: AbsPath | None = Field(None, description="target path (dir/fs/netfs/logical)")
    volume: Token | None = Field(None, description="gluster volume")
    fuse_mount: bool = Field(False, description="dir pool on a Gluster FUSE mount at path")
    export: AbsPath | None = Field(None, description="netfs: export path")
    initiator: str | None = Field(None, description="iscsi/iscsi-direct: initiator IQN (checked by the iscsi backend)")
    rbd_pool: Token | None = None
    client: str | None = Field(None, description="rbd: ceph client name, e.g. client.KVMpool")
    secret: Secret | None = None
    host: Name | None = Field(None, description="'kvm' (default) or a hypervisor node of the lab")
    disk: Name | None = Field(None, description="fs/logical: the disk of the host node to use (default: its first); "
                              "logical on nvme: the namespace's name")
    lun: int | None = Field(None, ge=0, le=255, description="logical/disk on iscsi: the LUN's index under iscsi.luns "
                            "(the pool takes it whole)")
    # each installed backend with pool options adds them under its name (`nfs: {version: 4.2}`): see model()

    def options(self, backend: str) -> BaseModel | None:
        """The options a backend's key gives this pool (`nfs:` ...), None when it has none."""
        value = getattr(self, backend, None)
        return value if isinstance(value, BaseModel) else None


class Volume(Strict):
    pool: Token
    name: Token
    size: Annotated[Size, at_least(2**20, "a volume")] = Field(description="at least 1M")
    format: Literal["qcow2", "raw"] = "qcow2"
    allocation: Literal["sparse", "preallocated"] = "sparse"


class Host(Strict):
    uri: LibvirtUri = "qemu:///system"
    pools: list[Pool] = []
    volumes: list[Volume] = []


def _provider_name(v: str) -> str:
    """auto, or a provider registered through the storlab.providers entry points."""
    names = ["auto", *sorted(available())]
    if len(names) == 1:
        raise PydanticCustomError("no_provider", "no node providers are installed (storlab.providers entry points): "
                                  "run `pip install -e .` in the storlab checkout", {})
    return _one_of(names, v)


class Topology(Strict):
    """The core of a topology. Each installed backend adds its section (gluster:, nfs:, ...)
    as an optional field of the model `model()` returns; read one with `section()`."""
    lab: Name
    description: str = ""
    provider: str = Field("auto", description="auto, or an installed node provider (lxc, vagrant, ...)")
    release: Annotated[str, AfterValidator(lambda v: _one_of(list(releases.RELEASES), v))] = Field(
        releases.DEFAULT, description="the nodes' Debian release: " + "; ".join(
            releases.about(r) for r in releases.RELEASES))
    networks: list[Network] = Field([Network(name="storage", cidr=None)], min_length=1)
    nodes: list[Node] = Field(min_length=1)
    host: Host = Host()

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        return _provider_name(v)

    def section(self, name: str) -> BaseModel | None:
        """A backend's section of this topology, None when the topology has none."""
        value = getattr(self, name, None)
        return value if isinstance(value, BaseModel) else None


def model() -> type[Topology]:
    """The topology model with a section per installed backend."""
    return _sectioned(registry.declared())


@cache
def _sectioned(backends: tuple[registry.Declared, ...]) -> type[Topology]:
    fields: dict[str, Any] = {b.name: (b.section | None, None) for b in backends}
    clash = set(fields) & set(Topology.model_fields)
    if clash:
        raise TypeError(f"backend section(s) {sorted(clash)} would hide core topology fields")
    options: dict[str, Any] = {b.name: (b.pool_options | None, None) for b in backends if b.pool_options is not None}
    if options:  # a pool takes its backend's options under the backend's name: host.pools[].nfs
        clash = set(options) & set(Pool.model_fields)
        if clash:
            raise TypeError(f"backend pool option(s) {sorted(clash)} would hide core pool fields")
        pool = create_model("Pool", __base__=Pool, **options)
        host = create_model("Host", __base__=Host, pools=(list[pool], []))  # type: ignore[valid-type]
        fields["host"] = (host, host())
    return create_model("Topology", __base__=Topology, **fields)
