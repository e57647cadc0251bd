"""Rules of an nfs: section (the server node, exports and their options, grace and lease) and of
host pools on it (netfs, or dir on an NFS mount) with their client options."""

from __future__ import annotations

from collections import Counter

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.nfs.schema import Nfs, NfsClient
from harness.spec.topology import Pool


def check(r: Rules, n: Nfs) -> None:
    r.node_ref(("nfs", "server"), n.server, "nfs-server")
    paths = Counter(e.path for e in n.exports)
    for ei, e in enumerate(n.exports):
        base: Path = ("nfs", "exports", ei)
        if paths[e.path] > 1:
            r.add(base + ("path",), f"path {e.path} exported twice", "merge the clients into one export")
        opts = set(e.options)
        for a, b in (("rw", "ro"), ("sync", "async"), ("root_squash", "no_root_squash")):
            if a in opts and b in opts:
                r.add(base + ("options",), f"options '{a}' and '{b}' contradict each other", "keep one")
        if "*" in e.clients and "no_root_squash" in opts and not e.allow_insecure:
            r.add(base + ("options",), "export to '*' with no_root_squash gives root on the export to anyone",
                     "restrict clients (e.g. 'lab'), use root_squash, or set allow_insecure: true")
    if n.grace_period < n.lease_time:
        r.add(("nfs", "grace_period"), f"grace period {n.grace_period}s is shorter than the lease time "
                 f"{n.lease_time}s: clients could not reclaim their state after a restart",
                 f"set grace_period to at least {n.lease_time}")


#: where a dir pool's NFS mount may be made on a hypervisor node: a directory of its own under one of these
MOUNT_ROOTS = ("/srv", "/mnt", "/var/lib/libvirt")
#: versions with sessions (RFC 5661): what session trunking needs
SESSIONS = ("4.1", "4.2")


def check_pool(r: Rules, path: Path, pool: Pool, n: Nfs) -> None:
    """A netfs pool, or a dir pool on an NFS mount (on a hypervisor node), on one of the exports;
    its client options (`nfs:`) are ones the pool's mount can take."""
    if pool.export and pool.export not in {e.path for e in n.exports}:
        r.add(path + ("export",), f"'{pool.export}' is not an export of nfs.exports", "use one of the exported paths")
    if pool.type == "dir":
        _dir_pool(r, path, pool)
    client = pool.options("nfs")
    if isinstance(client, NfsClient) and client.trunk:
        _trunk(r, path + ("nfs",), pool, client)
    _shared_client(r, path, pool)


def _client_of(pool: Pool) -> tuple[str, str, int, int]:
    """What the Linux client keeps one nfs_client for (node, version; a mount without a version
    negotiates 4.2 with both servers here) and the options that client takes from its first mount."""
    c = pool.options("nfs")
    opts = c if isinstance(c, NfsClient) else NfsClient.model_validate({})
    return pool.host or "kvm", opts.version or "4.2", opts.nconnect or 1, len(opts.trunk)


def _shared_client(r: Rules, path: Path, pool: Pool) -> None:
    """Two pools mounting the server from one node over one version share the kernel's client and
    its connections: the options of the mount made first hold for both."""
    here = path[2] if len(path) > 2 and isinstance(path[2], int) else len(r.topology.host.pools)
    node, version, nconnect, trunks = _client_of(pool)
    for i, other in enumerate(r.topology.host.pools[:here]):
        o_node, o_version, o_nconnect, o_trunks = _client_of(other)
        if other.backend != "nfs" or (o_node, o_version) != (node, version) or (o_nconnect, o_trunks) == (nconnect, trunks):
            continue
        r.add(path + ("nfs",), f"pools {other.name} and {pool.name} both mount the NFS server from {node} over NFS "
              f"{version}: the Linux client keeps one set of connections for them, made with the options of the "
              f"mount that comes first (nconnect={o_nconnect}, {o_trunks} trunk(s)), not nconnect={nconnect}, "
              f"{trunks} trunk(s)", f"give both the same nconnect and trunk as host.pools[{i}], another version, or "
              "another hypervisor node")
        return


def _dir_pool(r: Rules, path: Path, pool: Pool) -> None:
    if not pool.export:
        r.add(path, "a dir pool on nfs sits on a mount of one of its exports", "add export: (one of nfs.exports)")
    if (pool.host or "kvm") == "kvm":
        r.add(path + ("host",), "a dir pool on an NFS mount lives on a hypervisor node of the lab: storlab mounts the "
              "export there (on the KVM host, libvirt mounts an export itself as a netfs pool)",
              "set host: to a node with role hypervisor, or use type: netfs")
    if pool.path and not any(pool.path.startswith(root + "/") for root in MOUNT_ROOTS):
        r.add(path + ("path",), f"{pool.path} is not a place for an NFS mount on a node: mounted over a system "
              "directory it would hide it", f"use a directory of its own under {', '.join(MOUNT_ROOTS)}, "
              f"e.g. /var/lib/libvirt/images/{pool.name}")


def _trunk(r: Rules, at: Path, pool: Pool, client: NfsClient) -> None:
    """Session trunking: the mount is made once more over each further network of the server, and
    the Linux client (5.15+, max_connect=) adds that connection to the first mount's session."""
    if pool.type != "dir":
        r.add(at + ("trunk",), "session trunking is built for dir pools on an NFS mount: libvirt mounts a netfs "
              "pool once, over one address, and the second mount that makes the client trunk is storlab's",
              "use type: dir (with host: a hypervisor node), or drop trunk:")
    if client.version not in SESSIONS:
        r.add(at + ("version",) if client.version else at, f"session trunking needs NFSv4.1 sessions; this mount "
              f"is NFS {client.version or 'of a negotiated version'}", "set version: 4.1 (or 4.2)")
    nets = [net.name for net in r.topology.networks]
    for i, net in enumerate(client.trunk):
        if net not in nets:
            r.add(at + ("trunk", i), f"network '{net}' does not exist", f"use one of: {', '.join(nets[1:]) or '(none)'}")
        elif net == nets[0]:
            r.add(at + ("trunk", i), f"the mount is over {net} (the first network) already",
                  "name a further network of the server" if len(nets) > 1 else "add a second network to trunk over")
        elif net in client.trunk[:i]:
            r.add(at + ("trunk", i), f"network {net} is listed twice", "list each network once")
