"""Rules of host pools on the target wired on a hypervisor node (logical, disk, scsi, mpath): the
node logs in as an initiator with an ACL of its own; a logical or disk pool takes one LUN whole
(no other pool takes it) and names its map; a disk pool's volumes are its partitions; a node has
at most one scsi and one mpath pool."""

from __future__ import annotations

import re

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.iscsi.pools import LUN_POOLS, map_name, partition_name
from harness.backends.iscsi.schema import Iscsi
from harness.spec.topology import Pool

#: what a pool of each type lists, where libvirt finds it
VOLUMES = {"disk": "the partitions of its LUN's map (/dev/mapper/NAME1, ...)",
           "scsi": "the LUNs of the node's session (under /dev/disk/by-path)",
           "mpath": "every multipath map of the node (under /dev/mapper)"}
#: the longest map name storlab passes on (BLOCK_DEVICE_RE)
MAP_NAME_MAX = 64


def check(r: Rules, path: Path, pool: Pool, s: Iscsi) -> None:
    _fields(r, path, pool)
    _host(r, path, pool, s)
    if pool.type in LUN_POOLS:
        _lun(r, path, pool, s)
        _map_name(r, path, pool)
    else:
        _one_per_node(r, path, pool)
    if pool.type == "disk":
        _partitions(r, pool)


def initiator_problem(r: Rules, section: Iscsi, name: str, what: str) -> tuple[str, str] | None:
    """Why node ``name`` could not log in to ``what`` on the target (message, fix): it is no
    initiator, or has no ACL of its own (the i-th initiator node takes the i-th ACL)."""
    if name not in r.nodes:
        return None  # reported where the node is named
    initiators = [n for n, (_, node) in r.nodes.items() if "iscsi-initiator" in node.roles]
    if name not in initiators:
        return (f"node {name} is not an iSCSI initiator: it would not log in to {what}",
                f"add 'iscsi-initiator' to nodes[{r.nodes[name][0]}].roles")
    if initiators.index(name) >= len(section.acls):
        return (f"the target has no ACL for node {name} (the i-th initiator node takes the i-th ACL)",
                "add an ACL for it under iscsi.acls")
    return None


def _fields(r: Rules, path: Path, pool: Pool) -> None:
    """What a pool on a node's sessions does not take."""
    if pool.initiator:
        r.add(path + ("initiator",), f"a {pool.type} pool logs in with its node's own IQN and CHAP (the node's "
              "ACL): it takes no initiator", "drop initiator: (the iscsi-initiator role gives the node its ACL's IQN)")
    if pool.path and pool.type in VOLUMES:
        r.add(path + ("path",), f"a {pool.type} pool takes no path: its volumes are {VOLUMES[pool.type]}",
              "drop path:")
    if pool.disk:
        r.add(path + ("disk",), "disk names a disk of a node; a pool on the iSCSI target takes a LUN of it",
              "write lun: N (an index under iscsi.luns) instead" if pool.type in LUN_POOLS else "drop disk:")
    if pool.lun is not None and pool.type not in LUN_POOLS:
        r.add(path + ("lun",), f"a {pool.type} pool lists {VOLUMES[pool.type]}: it takes no lun",
              "drop lun: (a logical or disk pool takes one LUN whole)")


def _host(r: Rules, path: Path, pool: Pool, s: Iscsi) -> None:
    """Wired on a hypervisor node that logs in to the target (the KVM host is logged in to none)."""
    host = pool.host or "kvm"
    if host == "kvm":
        r.add(path + ("host",), f"a {pool.type} pool on the iSCSI target is wired on a hypervisor node of the lab "
              "that logs in to it: storlab logs the KVM host's own kernel in to no lab target",
              "set host: to a node with roles hypervisor and iscsi-initiator")
        return
    what = "the target" + (", nor run the multipathd whose maps the pool lists" if pool.type == "mpath" else "")
    problem = initiator_problem(r, s, host, what)
    if problem:
        r.add(path + ("host",), *problem)


def _earlier(r: Rules, path: Path) -> list[tuple[int, Pool]]:
    """The pools before the one at ``path`` (host.pools[i])."""
    pi = path[-1]
    pools = r.topology.host.pools
    return list(enumerate(pools[:pi] if isinstance(pi, int) else pools))


def _lun(r: Rules, path: Path, pool: Pool, s: Iscsi) -> None:
    n = len(s.luns)
    if pool.lun is None:
        if not pool.disk:  # else said at disk:, with the same fix
            r.add(path, f"a {pool.type} pool on the iSCSI target takes one LUN whole; name it",
                  f"add lun: N (an index under iscsi.luns, 0 to {n - 1})")
        return
    if pool.lun >= n:
        r.add(path + ("lun",), f"the target has {n} LUNs (0 to {n - 1})", "name one of them by its index under iscsi.luns")
    for j, other in _earlier(r, path):
        if other.backend == pool.backend and other.type in LUN_POOLS and other.lun == pool.lun:
            r.add(path + ("lun",), f"LUN {pool.lun} is taken whole by host.pools[{j}] ({other.name}) already",
                  "give each logical or disk pool a LUN of its own")
            break


def _map_name(r: Rules, path: Path, pool: Pool) -> None:
    """The LUN's multipath map is named after the pool: a name no other map takes."""
    name = map_name(pool.name)
    if len(name) > MAP_NAME_MAX:
        r.add(path + ("name",), f"the LUN's multipath map is named after the pool, and {len(name)} characters are more "
              f"than a map name storlab passes on ({MAP_NAME_MAX})", "use a shorter name")
    elif re.fullmatch(r"mpath[a-z]+", name):
        r.add(path + ("name",), f"the LUN's multipath map is named after the pool, and multipathd names other LUNs "
              f"{name} (user_friendly_names)", f"rename the pool, e.g. lun-{name}")


def _one_per_node(r: Rules, path: Path, pool: Pool) -> None:
    for j, other in _earlier(r, path):
        if other.type == pool.type and (other.host or "kvm") == (pool.host or "kvm"):
            r.add(path + ("type",), f"host.pools[{j}] ({other.name}) is a {pool.type} pool on {pool.host or 'kvm'} "
                  f"already, listing {VOLUMES[pool.type]}", "keep one of them")
            break


def _partitions(r: Rules, pool: Pool) -> None:
    """libvirt names a disk pool's volumes after the partitions parted makes, numbered in the
    order they are made (the topology's)."""
    mine = [(vi, v) for vi, v in enumerate(r.topology.host.volumes) if v.pool == pool.name]
    for number, (vi, v) in enumerate(mine, start=1):
        want = partition_name(map_name(pool.name), number)
        if v.name != want:
            r.add(("host", "volumes", vi, "name"), f"a disk pool's volumes are its partitions, named by libvirt after "
                  f"the pool's map: volume {number} of {pool.name} is partition {number}, {want}", f"name it {want}")
