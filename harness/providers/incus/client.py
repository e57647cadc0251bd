"""Talking to Incus: the `incus` command-line client (argv lists, JSON answers, a timeout on
every call), pure parsers of its API answers, where a lab goes (`--on incus:REMOTE`) and a
lab's budget (the limits of its Incus project).

Everything storlab makes in Incus carries the config key ``user.storlab.lab`` (its ownership
mark); names alone are never trusted.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import CommandError, HarnessError
from harness.plan.model import NodePlan
from harness.run import CommandResult, run

#: every lab's Incus project is this prefix and the lab's name
PROJECT_PREFIX = "storlab-"


def project_of(lab: str) -> str:
    return f"{PROJECT_PREFIX}{lab}"


#: the config key every Incus object storlab makes carries: the lab it belongs to
OWNER_KEY = "user.storlab.lab"
#: on a lab's project: the storlab home that made it (paths.home_id); `reap` takes only its own
HOME_KEY = "user.storlab.home"
#: the storage pool storlab's labs use (ci/setup-host.sh --incus makes it on this host)
POOL = "storlab"
#: a remote name as `incus remote add` accepts it, with nothing a command line could take for an option
REMOTE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: a node's root disk: the golden image (1.4 GiB) plus what the roles write
ROOT_GIB = 8
GIB = 1 << 30


#: a cluster group name (`incus cluster group list`)
GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def split_remote(remote: str | None) -> tuple[str | None, str | None]:
    """A plan's remote `REMOTE[@GROUP]` as (remote, cluster group)."""
    if not remote:
        return None, None
    name, _, group = remote.partition("@")
    return name, (group or None)


# -- budgets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What one lab may use: the limits of its Incus project."""
    instances: int
    memory_mib: int
    cpus: int
    disk_gib: int

    FIELDS = ("instances", "memory", "cpus", "disk")

    @classmethod
    def parse(cls, text: str, need: Budget) -> Budget:
        """`instances=5,memory=8GiB,cpus=4,disk=60GiB`; a field left out is the lab's own need."""
        got: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, val = part.partition("=")
            if key not in cls.FIELDS or not val:
                raise HarnessError(f"--budget {text!r}: '{part}' is not FIELD=VALUE with FIELD one of "
                                   f"{', '.join(cls.FIELDS)} (e.g. instances=5,memory=8GiB,cpus=4,disk=60GiB)")
            m = re.fullmatch(r"(\d+)\s*(MiB|GiB|M|G)?", val)
            if not m or (m.group(2) and key in ("instances", "cpus")):
                raise HarnessError(f"--budget {key}={val!r}: expected a whole number"
                                   + (" with MiB or GiB" if key in ("memory", "disk") else ""))
            n, unit = int(m.group(1)), (m.group(2) or "")
            if key == "memory":
                n = n * 1024 if unit in ("GiB", "G") else n
            elif key == "disk":
                n = -(-n // 1024) if unit in ("MiB", "M") else n
            got[key] = n
        return Budget(instances=got.get("instances", need.instances), memory_mib=got.get("memory", need.memory_mib),
                      cpus=got.get("cpus", need.cpus), disk_gib=got.get("disk", need.disk_gib))

    def over(self, need: Budget) -> list[str]:
        """What ``need`` asks beyond this budget, each with both numbers (empty: it fits)."""
        out = []
        for label, want, have, unit in (("instances", need.instances, self.instances, ""),
                                        ("memory", need.memory_mib, self.memory_mib, " MiB"),
                                        ("CPUs", need.cpus, self.cpus, ""),
                                        ("disk", need.disk_gib, self.disk_gib, " GiB")):
            if want > have:
                out.append(f"{label}: the lab needs {want}{unit}, its project allows {have}{unit}")
        return out

    def project_config(self) -> dict[str, str]:
        return {"limits.instances": str(self.instances), "limits.memory": f"{self.memory_mib}MiB",
                "limits.cpu": str(self.cpus), "limits.disk": f"{self.disk_gib}GiB"}

    def as_dict(self) -> dict[str, int]:
        return {"instances": self.instances, "memory_mib": self.memory_mib, "cpus": self.cpus, "disk_gib": self.disk_gib}


def need_of(nodes: Sequence[NodePlan]) -> Budget:
    """What a lab's nodes need: their memory and CPUs, a root disk each and their data disks."""
    disk = sum(ROOT_GIB + sum(-(-d.size // GIB) for d in n.disks) for n in nodes)
    return Budget(instances=len(nodes), memory_mib=sum(n.memory for n in nodes), cpus=sum(n.cpus for n in nodes),
                  disk_gib=disk)


def project_budget(project: dict[str, Any]) -> Budget | None:
    """The limits an existing project (an answer of /1.0/projects/NAME) sets, None without all four."""
    cfg = project.get("config") or {}
    try:
        mem = cfg["limits.memory"]
        m = re.fullmatch(r"(\d+)(MiB|GiB|MB|GB)", mem)
        if not m:
            return None
        mib = int(m.group(1)) * (1024 if m.group(2) in ("GiB", "GB") else 1)
        d = re.fullmatch(r"(\d+)(GiB|GB)", cfg["limits.disk"])
        if not d:
            return None
        return Budget(instances=int(cfg["limits.instances"]), memory_mib=mib, cpus=int(cfg["limits.cpu"]),
                      disk_gib=int(d.group(1)))
    except (KeyError, ValueError):
        return None


# -- parsers of API answers ------------------------------------------------------------------------
def home_of(obj: dict[str, Any]) -> str | None:
    """The storlab home an Incus project was made by (None: an older storlab's, which marked none)."""
    value = (obj.get("config") or {}).get(HOME_KEY)
    return str(value) if value else None


def owner(obj: dict[str, Any]) -> str | None:
    """The lab an Incus object (instance, volume, network, project) belongs to, by its mark."""
    value = (obj.get("config") or {}).get(OWNER_KEY)
    return str(value) if value else None


@dataclass(frozen=True)
class Member:
    name: str
    status: str
    groups: tuple[str, ...]


def members(answer: list[dict[str, Any]]) -> list[Member]:
    """Cluster members from /1.0/cluster/members?recursion=1."""
    return [Member(m["server_name"], m.get("status", "?"), tuple(m.get("groups") or ())) for m in answer]


def location(instance: dict[str, Any]) -> str | None:
    """The member an instance is on (None on a daemon that is not clustered, where it reads 'none')."""
    loc = instance.get("location") or ""
    return None if loc in ("", "none") else str(loc)


def spread(instances: list[dict[str, Any]], lab_of: dict[str, str]) -> dict[str, set[str]]:
    """Member -> labs with instances on it (from /1.0/instances?all-projects=true&recursion=1)."""
    out: dict[str, set[str]] = {}
    for inst in instances:
        lab = owner(inst) or lab_of.get(inst.get("project", ""))
        if lab:
            out.setdefault(location(inst) or "local", set()).add(lab)
    return out


def host_name(state: dict[str, Any], iface: str) -> str | None:
    """The host side of an instance's nic (its veth) from /1.0/instances/NAME/state."""
    net = (state.get("network") or {}).get(iface) or {}
    return str(net["host_name"]) if net.get("host_name") else None


# -- the client ------------------------------------------------------------------------------------
class Incus:
    """The `incus` client aimed at one remote (None: this host's daemon) and project."""

    def __init__(self, remote: str | None, project: str = "default") -> None:
        self.remote = remote
        self.project = project

    def ref(self, name: str = "") -> str:
        """An object on this client's remote (`REMOTE:NAME`, or NAME on the local daemon)."""
        return f"{self.remote}:{name}" if self.remote else name

    def where(self) -> str:
        return f"remote {self.remote}" if self.remote else "this host's Incus"

    def run(self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> CommandResult:
        if shutil.which("incus") is None:
            raise HarnessError("the incus client is not installed: run ci/setup-host.sh --incus")
        # the global flag first: after an `exec ... --` it would be the node's command's argument
        res = run(["incus", "--project", self.project, *args], timeout=timeout, input=input)
        if check and not res.ok:
            raise CommandError(res, f"incus ({self.where()}, project {self.project}): {res}")
        return res

    def query(self, path: str, method: str = "GET", data: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        """An API call through `incus query` (the client's own transport and credentials)."""
        sep = "&" if "?" in path else "?"
        argv = ["query", "-X", method, self.ref(f"{path}{sep}project={self.project}")]
        if data is not None:
            argv += ["--data", json.dumps(data)]
        res = run(["incus", *argv], timeout=timeout)
        if not res.ok:
            raise CommandError(res, f"incus query {path} ({self.where()}): {res.stderr.strip()[-400:]}")
        return json.loads(res.stdout) if res.stdout.strip() else None

    def maybe(self, path: str) -> Any:
        """Like query, None when the object does not exist."""
        try:
            return self.query(path)
        except CommandError as exc:
            if isinstance(exc.result, CommandResult) and "not found" in exc.result.stderr.lower():
                return None
            raise

    def status(self, instance: str) -> str:
        """An instance's status in this project (Running, Frozen, Stopped, ...), Missing if none."""
        inst = self.maybe(f"/1.0/instances/{instance}")
        return str(inst.get("status", "Stopped")) if inst else "Missing"

    def reachable(self) -> str | None:
        """None when the daemon answers, else why not (with the fix)."""
        if shutil.which("incus") is None:
            return "the incus client is not installed: run ci/setup-host.sh --incus"
        res = run(["incus", "query", self.ref("/1.0")], timeout=30)
        if res.ok:
            return None
        hint = ("`incus remote list` shows the remotes this client knows" if self.remote
                else "run ci/setup-host.sh --incus (it starts incusd)")
        return f"Incus does not answer on {self.where()}: {res.stderr.strip()[-300:]} ({hint})"

    def clustered(self) -> bool:
        return bool((self.query("/1.0").get("environment") or {}).get("server_clustered"))

    def members(self) -> list[Member]:
        return members(self.query("/1.0/cluster/members?recursion=1")) if self.clustered() else []


def free_of(resources: dict[str, Any]) -> tuple[int, int]:
    """(free memory MiB, CPU threads) of one server from /1.0/resources."""
    mem = resources.get("memory") or {}
    return (int(mem.get("total", 0)) - int(mem.get("used", 0))) >> 20, int((resources.get("cpu") or {}).get("total", 0))


def pool_free_mib(resources: dict[str, Any]) -> int:
    """Free space of a storage pool from /1.0/storage-pools/NAME/resources."""
    space = resources.get("space") or {}
    return (int(space.get("total", 0)) - int(space.get("used", 0))) >> 20


def capacity(client: Incus) -> tuple[int, int, int, list[str]]:
    """(free memory MiB, CPU threads, free MiB in pool storlab, member names) summed over a
    remote's online members (one for a daemon that is not clustered)."""
    names = [m.name for m in client.members() if m.status.lower() == "online"]
    free, cpus, disk = 0, 0, 0
    for name in names or [""]:
        target = f"?target={name}" if name else ""
        f, c = free_of(client.query("/1.0/resources" + target))
        free, cpus = free + f, cpus + c
        disk += pool_free_mib(client.query(f"/1.0/storage-pools/{POOL}/resources" + target))
    return free, cpus, disk, names
