"""Rules of a clusterfs: section: the nodes (each with role clusterfs-node, each able to reach the
shared device as an iSCSI initiator with an ACL or as an admitted NVMe host), the filesystems
(one device and one mount each) and o2cb's timeouts; and of dir pools on a cluster filesystem."""

from __future__ import annotations

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules, backends, get
from harness.backends.clusterfs.schema import ClusterFilesystem, Clusterfs
from harness.spec.topology import Pool

ROLE = "clusterfs-node"
#: where a cluster filesystem may be mounted on a node: a directory of its own under one of these
MOUNT_ROOTS = ("/srv", "/mnt", "/var/lib/libvirt")
GFS2_WHY = ("GFS2 is not built: it needs corosync, dlm_controld and fencing (pacemaker) on every node, a cluster "
            "stack of its own; OCFS2's o2cb carries its heartbeat (on the shared disk) and its lock manager in the kernel")


def check(r: Rules, s: Clusterfs) -> None:
    if s.filesystem == "gfs2":
        r.add(("clusterfs", "filesystem"), GFS2_WHY, "use filesystem: ocfs2")
    nets = {n.name for n in r.topology.networks}
    if s.network not in nets:
        r.add(("clusterfs", "network"), f"network '{s.network}' does not exist", f"use one of: {', '.join(sorted(nets))}")
    seen: set[str] = set()
    for i, name in enumerate(s.nodes):
        if name in seen:
            r.add(("clusterfs", "nodes", i), f"node {name} is listed twice", "list each node once")
        seen.add(name)
        r.node_ref(("clusterfs", "nodes", i), name, ROLE)
    for name, (i, node) in r.nodes.items():
        if ROLE in node.roles and name not in s.nodes:
            r.add(("nodes", i, "roles"), f"node {name} has role {ROLE} but is not in clusterfs.nodes",
                  f"add {name} to clusterfs.nodes, or drop the role")
    if s.keepalive_delay_ms >= s.idle_timeout_ms:  # the kernel refuses it (o2net)
        r.add(("clusterfs", "keepalive_delay_ms"), "o2net's keepalive delay must be shorter than its idle timeout",
              f"set keepalive_delay_ms below {s.idle_timeout_ms}")
    mounts: dict[str, int] = {}
    devices: dict[tuple[str, str], int] = {}
    for fi, f in enumerate(s.filesystems):
        at: Path = ("clusterfs", "filesystems", fi)
        if f.mount in mounts:
            r.add(at + ("mount",), f"{f.mount} is the mount of filesystems[{mounts[f.mount]}] too", "give each its own")
        mounts.setdefault(f.mount, fi)
        if not any(f.mount.rstrip("/").startswith(root + "/") for root in MOUNT_ROOTS):
            r.add(at + ("mount",), f"{f.mount} is not a place for a shared filesystem on a node: mounted over a "
                  "system directory it would hide it", f"use a directory of its own under {', '.join(MOUNT_ROOTS)}, "
                  f"e.g. /var/lib/libvirt/{f.name}")
        if f.slots < len(s.nodes):
            r.add(at + ("slots",), f"{len(s.nodes)} nodes mount it but it has {f.slots} node slots",
                  f"set slots: {len(s.nodes)} or more")
        key = (f.device.backend, str(f.device.lun if f.device.backend == "iscsi" else f.device.namespace))
        if key in devices:
            r.add(at + ("device",), f"filesystems[{devices[key]}] is on this device already", "give each its own device")
        devices.setdefault(key, fi)
        _device(r, at + ("device",), f, s.nodes)


def _device(r: Rules, at: Path, f: ClusterFilesystem, nodes: list[str]) -> None:
    """The device is one another backend of the lab serves, and every node reaches it (that backend says)."""
    d = f.device
    try:
        b = get(d.backend)
    except KeyError:
        b = None
    if b is None or not b.block_ref:
        serving = [x for x in backends() if x.block_ref]
        r.add(at + ("backend",), f"backend '{d.backend}' serves no block device a cluster filesystem can be on",
              "use " + " or ".join(f"{{backend: {x.name}, {x.block_ref}: ...}}" for x in serving))
        return
    given = [k for k in ("lun", "namespace") if getattr(d, k) is not None]
    if given != [b.block_ref]:
        r.add(at, f"a device on {b.name} is named by {b.block_ref} (and nothing else)",
              f"write device: {{backend: {b.name}, {b.block_ref}: ...}}")
        return
    section = b.of(r.topology)
    if section is None:
        r.add(at + ("backend",), f"this topology has no {b.name}: section", "add one, or put the filesystem elsewhere")
        return
    b.check_block(r, at, section, d.ref if d.ref is not None else "", nodes)


def check_pool(r: Rules, path: Path, pool: Pool, s: Clusterfs) -> None:
    """A dir pool on a cluster filesystem: on one of its nodes, at one of its mounts."""
    if (pool.host or "kvm") not in s.nodes:
        r.add(path + ("host",), "a pool on the cluster filesystem lives on one of its nodes",
              f"set host: to one of {', '.join(s.nodes)}")
    mounts = [f.mount for f in s.filesystems]
    if pool.path not in mounts:
        r.add(path + ("path",), f"{pool.path} is not the mount of a cluster filesystem", f"use one of: {', '.join(mounts)}")
