"""The topology schema: pydantic models for nodes, networks, backends and host pools.

Field-level checks live here; rules that relate several parts of a topology live in
validate.py so that every problem in a file is reported at once.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .capabilities import available

NAME_RE = r"^[a-z][a-z0-9-]{0,30}$"
IQN_RE = re.compile(r"^iqn\.(\d{4})-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                    r"(:[A-Za-z0-9][A-Za-z0-9._:-]{0,200})?$")

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: Any) -> int:
    """'2G', '512M', '1.5G', 1048576 -> bytes (binary units)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number with an optional K/M/G/T suffix, e.g. 2G")
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(value), re.IGNORECASE)
    if not m:
        raise ValueError(f"'{value}' is not a size; write e.g. 512M, 2G or 1T")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_mib(value: Any) -> int:
    """Memory: a bare number is MiB (as in Vagrant), '2G' is converted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():  # a quoted bare number is MiB too
        return int(value)
    return parse_size(value) // 1024**2


# -- input that reaches a path, a config file, XML or a command ------------------------------
# A topology is untrusted input and storlab runs as root: every such value is allow-listed here,
# so that no quote, newline, '<', '&', '..' or shell character gets into ganesha.conf, /etc/exports,
# the tgt/targetcli configs, an LXC config, libvirt XML or a path.

def _allow(pattern: str, what: str, fix: str) -> AfterValidator:
    rx = re.compile(pattern)

    def check(v: str) -> str:
        if not rx.fullmatch(v) or ".." in v:
            raise ValueError(f"{what} {v!r} has characters storlab does not pass on; fix: {fix}")
        return v
    return AfterValidator(check)


def _abs_path(v: str) -> str:
    if not re.fullmatch(r"/([A-Za-z0-9._+@-]+/?)*", v) or any(seg in (".", "..") for seg in v.split("/")):
        raise ValueError(f"path {v!r} is not a plain absolute path; fix: use /, letters, digits and . _ + @ - "
                         f"(no '..', spaces, quotes or newlines)")
    return v.rstrip("/") or "/"


AbsPath = Annotated[str, AfterValidator(_abs_path)]
Token = Annotated[str, _allow(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", "name",
                              "use letters, digits and . _ + - (at most 64), starting with a letter or digit")]
Iqn = str  # checked against IQN_RE by the rules (validate.check_iqn), with the RFC 3720 fix
ExportClient = Annotated[str, _allow(r"\*|lab|[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?|[A-Za-z0-9][A-Za-z0-9.-]*",
                                     "export client", "use lab, *, an address, a CIDR or a host name")]
ExportOption = Annotated[str, _allow(r"[a-z_]+(=[A-Za-z0-9_:.-]+)?", "export option",
                                     "one option per list item, e.g. [rw, sync, root_squash]")]
ChapUser = Annotated[str, _allow(r"[A-Za-z0-9._:@-]{1,64}", "CHAP username", "use letters, digits and . _ : @ -")]
ChapSecret = Annotated[str, _allow(r"[A-Za-z0-9._~!@#%^*+=,:/-]{1,64}", "CHAP secret",
                                   "use letters, digits and ._~!@#%^*+=,:/- (no spaces or quotes)")]
OptionKey = Annotated[str, _allow(r"[a-z0-9][a-z0-9_.-]*", "option name", "use lower-case letters, digits and . _ -")]
OptionValue = Annotated[str, _allow(r"[A-Za-z0-9_.,*:/-]*", "option value", "use letters, digits and . , * : / _ -")]
CephCap = Annotated[str, _allow(r"[A-Za-z0-9 _.,=*-]+", "ceph cap", "e.g. 'allow rwx pool=vms' or 'profile rbd pool=vms'")]
HealthCode = Annotated[str, _allow(r"[A-Z][A-Z0-9_]*", "health check code", "e.g. POOL_NO_REDUNDANCY")]
# the KVM host's own libvirtd only: a remote one is reached through a hypervisor node of the lab
LibvirtUri = Annotated[str, _allow(r"qemu:///(system|session)", "libvirt URI",
                                   "use qemu:///system (pools on another machine: give a hypervisor node of the lab)")]

def _at_least(least: int, what: str, unit: str = "") -> AfterValidator:
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


ROLES = (
    "gluster", "nfs-server", "iscsi-target", "iscsi-initiator",
    "ceph-admin", "ceph-mon", "ceph-mgr", "ceph-osd", "hypervisor", "client",
)
Role = Literal[
    "gluster", "nfs-server", "iscsi-target", "iscsi-initiator",
    "ceph-admin", "ceph-mon", "ceph-mgr", "ceph-osd", "hypervisor", "client",
]


class Disk(Strict):
    name: Name
    size: Annotated[Size, _at_least(16 * 2**20, "a disk")] = Field(description="bytes or 512M, 2G, ... (at least 16M)")
    filesystem: Literal["xfs", "ext4", "none"] = "none"
    mount: AbsPath | None = None


class Node(Strict):
    name: Name
    roles: list[Role] = []
    cpus: int = Field(1, ge=1, le=64)
    memory: Annotated[MiB, _at_least(128, "node memory", "MiB")] = Field(1024, description="MiB, or 2G (at least 128)")
    disks: list[Disk] = []
    address: str | None = Field(None, description="address on the first lab network")
    addresses: dict[str, str] = Field({}, description="network name -> address for further networks")


class NfsExport(Strict):
    path: AbsPath
    clients: list[ExportClient] = Field(["lab"], description="hosts/CIDRs, 'lab' = the lab network, '*' = everyone")
    options: list[ExportOption] = ["rw", "sync", "root_squash"]
    allow_insecure: bool = Field(False, description="permit '*' with no_root_squash")


class Nfs(Strict):
    server: Name
    implementation: Literal["auto", "kernel", "ganesha"] = "auto"
    exports: list[NfsExport] = Field(min_length=1)
    grace_period: int = Field(15, ge=10, le=3600, description="NFSv4 grace period after a server (re)start, seconds "
                              "(both servers default to 90; a lab restarts often)")
    lease_time: int = Field(10, ge=10, le=3600, description="NFSv4 lease time, seconds")


class Chap(Strict):
    username: ChapUser
    password: ChapSecret | None = Field(None, description="literal secret (12-16 chars); prefer password_file or generate")
    password_file: AbsPath | None = None
    generate: bool = Field(False, description="generate a per-lab secret stored in the lab directory")


class IscsiLun(Strict):
    kind: Literal["fileio", "block", "lvm"]
    size: Annotated[Size, _at_least(2**20, "a LUN")] | None = Field(None, description="fileio/lvm: at least 1M")
    path: AbsPath | None = Field(None, description="fileio: backing file")
    disk: Name | None = Field(None, description="block/lvm: name of a disk of the target node")
    vg: Token | None = None
    lv: Token | None = None


class IscsiAcl(Strict):
    initiator: Iqn
    chap: Chap | None = None


class Iscsi(Strict):
    target: Name
    implementation: Literal["auto", "lio", "tgt"] = "auto"
    iqn: Iqn
    portals: list[Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9-]{0,30})$")]] = Field(
        ["*"], description="network names, or '*' for every lab network; port 3260")
    luns: list[IscsiLun] = Field(min_length=1)
    acls: list[IscsiAcl] = []


def _brick(v: str) -> str:
    node, sep, path = v.partition(":")
    if not sep or not re.fullmatch(NAME_RE, node):
        raise ValueError(f"brick {v!r} is not node:/absolute/path; fix: write e.g. gluster1:/gluster/bricks/1/brick")
    return f"{node}:{_abs_path(path)}"


class GlusterVolume(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]
    replica: int = Field(3, ge=1)
    bricks: list[Annotated[str, AfterValidator(_brick)]] = Field(min_length=1, description="node:/path")
    options: dict[OptionKey, OptionValue | int | bool] = {}


class Gluster(Strict):
    volumes: list[GlusterVolume] = Field(min_length=1)


class CephPool(Strict):
    name: Token
    pg_num: int = Field(32, ge=1)
    size: int = Field(2, ge=1)
    min_size: int | None = None
    application: Literal["rbd", "cephfs", "rgw"] = "rbd"


class CephClient(Strict):
    name: Annotated[str, Field(pattern=r"^client\.[A-Za-z0-9_.-]+$")]
    caps: dict[Literal["mon", "osd", "mgr", "mds"], CephCap]


class Ceph(Strict):
    osd_disk: Name | None = Field(None, description="disk name on each ceph-osd node; file-backed when omitted")
    osd_pool_default_size: int = Field(2, ge=1)
    heartbeat_grace: int = Field(20, ge=1)
    pools: list[CephPool] = []
    clients: list[CephClient] = []
    accept_warnings: list[HealthCode] = []


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
    type: Literal["dir", "fs", "netfs", "logical", "iscsi", "iscsi-direct", "gluster", "rbd"]
    backend: Literal["gluster", "nfs", "iscsi", "ceph", "local"] = "local"
    path: AbsPath | None = Field(None, description="target path (dir/fs/netfs/logical)")
    volume: Token | None = Field(None, description="gluster volume")
    fuse_mount: bool = Field(False, description="dir pool on a Gluster FUSE mount at path")
    export: AbsPath | None = Field(None, description="netfs: export path")
    initiator: Iqn | None = Field(None, description="iscsi/iscsi-direct: initiator IQN")
    rbd_pool: Token | None = None
    client: str | None = Field(None, description="rbd: ceph client name, e.g. client.KVMpool")
    secret: Secret | None = None
    host: Name | None = Field(None, description="'kvm' (default) or a hypervisor node of the lab")
    disk: Name | None = Field(None, description="fs/logical: the disk of the host node to use (default: its first)")


class Volume(Strict):
    pool: Token
    name: Token
    size: Annotated[Size, _at_least(2**20, "a volume")] = Field(description="at least 1M")
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
    if v not in names:
        expected = ", ".join(f"'{n}'" for n in names[:-1]) + f" or '{names[-1]}'"
        raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})
    return v


class Topology(Strict):
    lab: Name
    description: str = ""
    provider: str = Field("auto", description="auto, or an installed node provider (lxc, vagrant, ...)")
    networks: list[Network] = Field([Network(name="storage", cidr=None)], min_length=1)
    nodes: list[Node] = Field(min_length=1)
    nfs: Nfs | None = None
    iscsi: Iscsi | None = None
    gluster: Gluster | None = None
    ceph: Ceph | None = None
    host: Host = Host()

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        return _provider_name(v)
