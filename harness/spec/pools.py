"""Host-pool rules of validation: what a pool may point at (paths, disks, backends, hosts) and
which volumes a pool can hold; with the state every rule shares (the topology, the nodes, the
problems found so far)."""

from __future__ import annotations

import difflib
import re
from typing import Any, ClassVar

from harness.backends.base import KERNEL_FEATURES, backends, get
from harness.errors import Problem
from harness.host.facts import HostFacts
from harness.providers.capabilities import available
from harness.spec.topology import Pool, Topology
from harness.spec.yamlload import Located

Path = tuple[str | int, ...]


# directories of the KVM host a lab pool (created, mounted over, removed by `down`) must not be
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
               "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/lib/libvirt",
               "/var/lib/libvirt/images", "/var/lib/storlab", "/var/log")
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys",
                "/usr", "/var/lib/storlab", "/var/log")


#: where a FUSE mount of a lab's volume (whose files students write) may be made on the KVM host:
#: a directory of its own under one of these (never one of them itself), mounted nosuid,nodev
FUSE_ROOTS = ("/srv/storlab", "/mnt/storlab", "/var/lib/libvirt/images")


def _fuse_root(path: str) -> bool:
    return any(path.startswith(r + "/") and path != r + "/" for r in FUSE_ROOTS)


#: where a lab's dir, fs and netfs pools may be on the KVM host: a directory of its own under one of
#: these (storlab's own home and every system tree stay out: _system_path still applies)
POOL_ROOTS = ("/var/lib/libvirt/images", "/srv", "/mnt", "/data")
DIR_POOL_TYPES = ("dir", "fs", "netfs")


def _pool_root(path: str) -> bool:
    p = path.rstrip("/")
    return any(p.startswith(r + "/") and ".." not in p.split("/") for r in POOL_ROOTS)


#: a logical pool's path on the KVM host: its volume group's /dev/NAME (LVM makes it; nothing is
#: created or mounted there), NAME as LVM takes it
VG_PATH_RE = re.compile(r"/dev/[A-Za-z0-9+_][A-Za-z0-9+_.-]{0,62}")


def _system_path(path: str) -> bool:
    p = path.rstrip("/") or "/"
    return p in SYSTEM_DIRS or any(p.startswith(t + "/") for t in SYSTEM_TREES)


#: pool types whose volumes libvirt only lists (it creates none), and what to do instead
NO_VOLUMES = {
    "gluster": "create it in a dir pool on the same backend (e.g. the gluster FUSE mount); this pool lists it",
    "iscsi": "its volumes are the target's LUNs; drop this entry",
    "iscsi-direct": "its volumes are the target's LUNs; drop this entry",
    "scsi": "its volumes are the LUNs of its SCSI host (the iSCSI session); drop this entry",
    "mpath": "its volumes are the node's multipath maps; drop this entry, or use a logical or disk pool on a LUN"}

#: why no zfs pool is built (the kernel feature as validation names it: base.KERNEL_FEATURES["zfs"])
ZFS_WHY = (f"it needs {KERNEL_FEATURES['zfs']}, which the image's mirror does not carry: no node kernel here "
           "can load it")


class RuleBase:
    """What every rule shares: the topology, its nodes by name, and the problems found so far."""


    def __init__(self, loc: Located, topo: Topology, facts: HostFacts) -> None:
        self.loc, self.t, self.facts = loc, topo, facts
        self.caps = available()
        self.problems: list[Problem] = []
        self.nodes = {n.name: (i, n) for i, n in enumerate(topo.nodes)}

    @property
    def topology(self) -> Topology:
        return self.t

    def add(self, path: Path, message: str, fix: str = "") -> None:
        self.problems.append(self.loc.problem(path, message, fix))

    def node_ref(self, path: Path, name: str, role: str | None) -> bool:
        if name not in self.nodes:
            near = difflib.get_close_matches(name, list(self.nodes), n=1)
            self.add(path, f"node '{name}' does not exist",
                     f"did you mean '{near[0]}'?" if near else "define it under nodes:")
            return False
        i, node = self.nodes[name]
        if role and role not in node.roles:
            self.add(path, f"node '{name}' does not have role '{role}'",
                     f"add '{role}' to nodes[{i}].roles")
        return True


class PoolRules(RuleBase):
    """Host pools and volumes. Each rule appends to self.problems; none stops the others."""

    NEED: ClassVar[dict[str, tuple[str, ...]]] = {
        "dir": ("path",), "fs": ("path",), "netfs": ("path", "export"), "logical": ("path",), "disk": (),
        "iscsi": ("initiator",), "iscsi-direct": ("initiator",), "scsi": (), "mpath": (), "gluster": ("volume",),
        "rbd": ("rbd_pool", "client"), "zfs": ()}
    #: pool types on the KVM host's (or a hypervisor node's) own storage
    LOCAL: ClassVar[tuple[str, ...]] = ("dir", "fs", "logical")

    def _backends_for(self, pool_type: str) -> list[str]:
        return ((["local"] if pool_type in self.LOCAL else [])
                + [b.name for b in backends() if pool_type in b.pool_types or (b.mounts and pool_type == "dir")])

    def pools(self) -> None:
        h = self.t.host
        names: dict[str, int] = {}
        paths: dict[tuple[str, str], int] = {}
        used_disks: dict[tuple[str, str], int] = {}
        for pi, p in enumerate(h.pools):
            base: Path = ("host", "pools", pi)
            if p.name in names:
                self.add(base + ("name",), f"pool name '{p.name}' already used by host.pools[{names[p.name]}]", "rename one")
            names.setdefault(p.name, pi)
            if p.type == "zfs":  # one problem, with the reason: nothing else of the pool is worth checking
                self._zfs(base, p)
                continue
            self._pool_path(base, pi, p, paths)
            self._pool_options(base, p)
            self._pool_backend(base, p)
            if p.type in ("fs", "logical") and p.backend == "local":  # the plan gives these a disk of their host
                self._pool_disk(base, pi, p, used_disks)  # node (on a backend, `disk` is the backend's: checked there)
            self._pool_host(base, p)
        self._volumes(names)

    def _pool_path(self, base: Path, pi: int, p: Any, paths: dict[tuple[str, str], int]) -> None:
        where = p.host or "kvm"
        if p.path and p.fuse_mount and not _fuse_root(p.path):
            # students write what the volume holds: mounted over a host directory, it would be that
            # directory's content (a crontab, dpkg's database, libvirt's domain state)
            self.add(base + ("path",), f"{p.path} is not a place for a FUSE mount of a lab's volume: it may only be "
                     f"mounted in a directory of its own under {', '.join(r + '/' for r in FUSE_ROOTS)}",
                     f"use e.g. /srv/storlab/{self.t.lab}-{p.name} (or /var/lib/libvirt/images/{p.name})")
        elif p.path and where == "kvm" and p.type in DIR_POOL_TYPES and not _pool_root(p.path):
            # a lab's VMs write the volumes there (a raw volume named `root` in /var/spool/cron/crontabs
            # would be root's crontab): only under roots meant for pools
            self.add(base + ("path",), f"{p.path} is not a place for a pool of a lab on this host: a {p.type} pool's "
                     f"directory must be one of its own under {', '.join(r + '/' for r in POOL_ROOTS)}",
                     f"use e.g. /var/lib/libvirt/images/{self.t.lab}-{p.name}")
        elif p.path and where == "kvm" and p.type == "logical":
            if not VG_PATH_RE.fullmatch(p.path):
                self.add(base + ("path",), f"{p.path} is not a volume group's path: a logical pool's path is /dev/VG, "
                         "VG the name LVM gives its volume group", f"use e.g. /dev/vg_{p.name.replace('-', '_')}")
        elif p.path and where == "kvm" and _system_path(p.path):
            self.add(base + ("path",), f"{p.path} is a system directory of this host (or inside one); a lab's "
                     "pool must not take it over", "use a directory of its own, e.g. /var/lib/libvirt/images/LAB-POOL")
        if p.path:
            if (where, p.path) in paths:
                self.add(base + ("path",), f"target path {p.path} already used by host.pools[{paths[(where, p.path)]}]",
                         "give each pool its own directory")
            paths.setdefault((where, p.path), pi)

    def _zfs(self, base: Path, p: Pool) -> None:
        where = p.host or "kvm"
        lacks = "" if where != "kvm" or self.facts.kernel_zfs else "; this host's kernel lacks it too"
        self.add(base + ("type",), f"a zfs pool is not built: {ZFS_WHY}{lacks}",
                 "use type: logical (an LVM volume group on a node's disk or on an iSCSI LUN) for block volumes")

    def _pool_backend(self, base: Path, p: Pool) -> None:
        """The pool's type and backend; the backend checks the objects the pool names."""
        for f in self.NEED[p.type]:
            if not getattr(p, f):
                self.add(base, f"a {p.type} pool needs '{f}'", f"add {f}:")
        allowed = self._backends_for(p.type)
        if p.backend not in allowed:
            self.add(base + ("backend",), f"a {p.type} pool cannot use backend '{p.backend}'",
                     f"use backend: {' or '.join(allowed)}")
        b = None if p.backend == "local" else get(p.backend)
        if p.lun is not None and (b is None or b.block_ref != "lun"):
            serving = [x.name for x in backends() if x.block_ref == "lun"]
            self.add(base + ("lun",), f"lun names a LUN of a target; backend '{p.backend}' serves none",
                     f"drop lun:, or use backend: {' or '.join(serving) or '(none installed)'}")
        section = b.of(self.t) if b is not None else None
        if b is not None and section is None:
            self.add(base + ("backend",), f"backend '{p.backend}' is not defined in this topology",
                     f"add a {p.backend}: section")
        if p.fuse_mount and not (b is not None and b.mounts):
            mountable = [x.name for x in backends() if x.mounts]
            self.add(base + ("fuse_mount",), f"fuse_mount is for dir pools on a {' or '.join(mountable)} volume",
                     f"set backend: {mountable[0] if mountable else '...'}")
        if b is None:
            return
        if b.mounts and p.type == "dir" and not p.fuse_mount:
            self.add(base + ("fuse_mount",), f"a dir pool on {b.name} needs fuse_mount: true", "add fuse_mount: true")
        if section is not None and p.backend in allowed:
            b.check_pool(self, base, p, section)

    def _pool_options(self, base: Path, p: Pool) -> None:
        """A backend's options (`nfs:` ...) belong on a pool of that backend only."""
        for b in backends():
            if b.pool_options is not None and p.options(b.name) is not None and p.backend != b.name:
                self.add(base + (b.name,), f"{b.name}: options are for pools on backend {b.name}, this pool is on "
                         f"{p.backend}", f"drop {b.name}:, or set backend: {b.name}")

    def _pool_disk(self, base: Path, pi: int, p: Any, used_disks: dict[tuple[str, str], int]) -> None:
        if not p.host or p.host == "kvm":
            self.add(base + ("host",), f"a {p.type} pool needs a block device, which the KVM host cannot give it",
                     "set host: to a hypervisor node with a disk (the pool uses its first disk)")
        elif p.host in self.nodes and not self.nodes[p.host][1].disks:
            self.add(base + ("host",), f"node {p.host} has no disk for this {p.type} pool",
                     f"add a disk to nodes[{self.nodes[p.host][0]}] (the pool uses its first disk)")
        elif p.host in self.nodes:
            node_disks = [d.name for d in self.nodes[p.host][1].disks]
            disk = p.disk or node_disks[0]
            if disk not in node_disks:
                self.add(base + ("disk",), f"node {p.host} has no disk '{disk}'", f"use one of: {', '.join(node_disks)}")
            elif (p.host, disk) in used_disks:
                self.add(base + ("disk",),
                         f"disk {disk} of {p.host} is already used by host.pools[{used_disks[(p.host, disk)]}]",
                         "give each fs/logical pool its own disk (set disk:)")
            used_disks.setdefault((p.host, disk), pi)

    def _pool_host(self, base: Path, p: Any) -> None:
        """Where the pool is wired: the KVM host (whose kernel it may need) or a hypervisor node."""
        if p.host and p.host != "kvm":
            self.node_ref(base + ("host",), p.host, "hypervisor")
        elif p.type == "netfs" and not self.facts.kernel_nfs_client:
            self.add(base + ("type",), "netfs needs an NFS client in the KVM host's kernel, which this host lacks",
                     "set host: to a node with role hypervisor (the pool is then wired inside the lab)")
        elif p.type == "iscsi" and not self.facts.kernel_iscsi_tcp:
            self.add(base + ("type",), "an iscsi pool needs iscsi_tcp in the KVM host's kernel, which this host lacks",
                     "use type iscsi-direct, or set host: to a node with role hypervisor")

    def _volumes(self, names: dict[str, int]) -> None:
        types = {p.name: p.type for p in self.t.host.pools}
        for vi, v in enumerate(self.t.host.volumes):
            if types.get(v.pool) in NO_VOLUMES:
                self.add(("host", "volumes", vi, "pool"), f"libvirt cannot create volumes in a {types[v.pool]} pool",
                         NO_VOLUMES[types[v.pool]])
            if v.pool not in names:
                self.add(("host", "volumes", vi, "pool"), f"pool '{v.pool}' does not exist",
                         f"use one of: {', '.join(names) or '(none)'}")
