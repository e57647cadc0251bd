"""Validate a topology file: schema errors plus cross-reference rules, all reported at once."""

from __future__ import annotations

import difflib
import ipaddress
import types
import typing
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from .capabilities import Capabilities, available
from .errors import Problem, TopologyError
from .hostfacts import HostFacts
from .topology import IQN_RE, Topology
from .yamlload import Located, load_file, load_text

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Resolved:
    """Decisions validation makes that the plan needs: provider and implementations."""

    provider: str
    nfs_impl: str | None
    iscsi_impl: str | None


def _model_of(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(get_args(annotation)[0])
    if origin in (list, dict) or origin is typing.Union or origin is types.UnionType:
        for arg in get_args(annotation):
            m = _model_of(arg)
            if m is not None:
                return m
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _fields_at(loc: Path) -> list[str]:
    model: Any = Topology
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return []
        model = _model_of(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def _schema_problems(loc: Located, err: ValidationError) -> list[Problem]:
    out = []
    for e in err.errors():
        path: Path = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic adds the union member / validator name to loc for some errors; keep data keys only
        path = tuple(p for p in path if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "bool"))))
        if e["type"] == "extra_forbidden":
            key = str(path[-1])
            valid = _fields_at(path[:-1])
            near = difflib.get_close_matches(key, valid, n=1)
            fix = f"did you mean '{near[0]}'?" if near else f"valid keys here: {', '.join(valid)}"
            out.append(loc.problem(path, f"unknown key '{key}'", fix))
        elif e["type"] == "missing":
            out.append(loc.problem(path, f"required field '{path[-1]}' is missing", f"add '{path[-1]}:'"))
        else:
            msg, _, fix = e["msg"].removeprefix("Value error, ").partition("; fix: ")
            if e["type"] in ("literal_error", "enum"):
                expected = [x.strip(" '") for x in str(e.get("ctx", {}).get("expected", "")).replace(" or ", ",").split(",")]
                near = difflib.get_close_matches(str(e.get("input")), expected, n=1)
                fix = f"did you mean '{near[0]}'?" if near else "use one of the listed values"
            elif e["type"] == "string_pattern_mismatch":
                fix = "use lower-case letters, digits and '-', starting with a letter"
            out.append(loc.problem(path, msg, fix))
    return out


class _Rules:
    """Cross-reference rules. Each appends to self.problems; none stops the others."""

    def __init__(self, loc: Located, topo: Topology, facts: HostFacts) -> None:
        self.loc, self.t, self.facts = loc, topo, facts
        self.caps = available()
        self.problems: list[Problem] = []
        self.nodes = {n.name: (i, n) for i, n in enumerate(topo.nodes)}

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

    # -- nodes and networks ------------------------------------------------------------
    def networks(self) -> None:
        seen: dict[str, int] = {}
        nets: list[tuple[int, ipaddress.IPv4Network]] = []
        for i, net in enumerate(self.t.networks):
            if net.name in seen:
                self.add(("networks", i, "name"), f"duplicate network name '{net.name}'", "rename one")
            if net.name == "mgmt":
                self.add(("networks", i, "name"), "the network name 'mgmt' is reserved for the VM management network",
                         "rename this network, e.g. storage2")
            seen[net.name] = i
            if net.cidr:
                cidr = ipaddress.IPv4Network(net.cidr)
                if cidr.is_loopback or cidr.is_link_local or cidr.is_multicast or not cidr.is_private:
                    self.add(("networks", i, "cidr"), f"{cidr} is not a private network (lab traffic stays on this host)",
                             "use a subnet of 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, or leave cidr out")
                for j, other in nets:
                    if cidr.overlaps(other):
                        self.add(("networks", i, "cidr"),
                                 f"{cidr} overlaps networks[{j}] ({other})", "give each network its own subnet")
                nets.append((i, cidr))
                room = cidr.num_addresses - 3  # network, broadcast and the host's .1
                if room < len(self.t.nodes):
                    self.add(("networks", i, "cidr"),
                             f"{cidr} has room for {room} node addresses; the lab has {len(self.t.nodes)} nodes",
                             "use a larger network, e.g. a /24")

    def node_basics(self) -> None:
        names: dict[str, int] = {}
        addrs: dict[str, str] = {}
        nets = {n.name: n for n in self.t.networks}
        first = self.t.networks[0].name
        for i, node in enumerate(self.t.nodes):
            if node.name in names:
                self.add(("nodes", i, "name"), f"duplicate node name '{node.name}' (also nodes[{names[node.name]}])",
                         "give each node a unique name")
            names.setdefault(node.name, i)
            dup_roles = [r for r, c in Counter(node.roles).items() if c > 1]
            if dup_roles:
                self.add(("nodes", i, "roles"), f"role(s) listed twice: {', '.join(dup_roles)}", "list each role once")
            disk_names = Counter(d.name for d in node.disks)
            for j, d in enumerate(node.disks):
                if disk_names[d.name] > 1:
                    self.add(("nodes", i, "disks", j, "name"), f"duplicate disk name '{d.name}'", "rename one")
                if d.mount and d.filesystem == "none":
                    self.add(("nodes", i, "disks", j, "filesystem"), "a disk with a mount point needs a filesystem",
                             "set filesystem: xfs (or ext4)")
            if node.address and first in node.addresses:
                self.add(("nodes", i, "addresses", first),
                         f"the address on '{first}' is given twice (address: and addresses.{first})",
                         "keep only address:")
            wanted: list[tuple[Path, str, str]] = []
            if node.address:
                wanted.append((("nodes", i, "address"), first, node.address))
            for net, addr in node.addresses.items():
                wanted.append((("nodes", i, "addresses", net), net, addr))
            for path, net, addr in wanted:
                if net not in nets:
                    self.add(path, f"network '{net}' does not exist", f"define it under networks: ({', '.join(nets)})")
                    continue
                try:
                    ip = ipaddress.IPv4Address(addr)
                except ValueError:
                    self.add(path, f"'{addr}' is not an IPv4 address", "write e.g. 192.168.60.11")
                    continue
                cidr = nets[net].cidr
                if cidr is None:
                    self.add(path, f"static address {addr} on network '{net}' that has no cidr",
                             f"set networks[].cidr for '{net}' or drop the address")
                    continue
                netw = ipaddress.IPv4Network(cidr)
                if ip not in netw:
                    self.add(path, f"address {addr} is outside network '{net}' ({cidr})",
                             f"pick an address inside {cidr}")
                elif ip in (netw.network_address, netw.broadcast_address, netw.network_address + 1):
                    self.add(path, f"address {addr} is reserved (network, broadcast or the host's .1)",
                             f"use {netw.network_address + 10} or above")
                key = f"{net}/{addr}"
                if key in addrs:
                    self.add(path, f"address {addr} is already used by {addrs[key]}", "give each node its own address")
                addrs.setdefault(key, f"nodes[{i}] ({node.name})")

    def memory(self, caps: Capabilities) -> None:
        total = sum(n.memory for n in self.t.nodes)
        for i, n in enumerate(self.t.nodes):
            if n.memory > self.facts.mem_mib:
                self.add(("nodes", i, "memory"), f"{n.memory} MiB is more than this host has ({self.facts.mem_mib} MiB)",
                         "lower memory")
        if caps.reserves_memory and total > self.facts.mem_mib * 0.9:
            self.add(("nodes",), f"the {caps.name} nodes need {total} MiB together; this host has {self.facts.mem_mib} MiB",
                     "lower node memory or use fewer nodes")

    # -- backends ------------------------------------------------------------------------
    def gluster(self) -> None:
        g = self.t.gluster
        if g is None:
            return
        vnames = Counter(v.name for v in g.volumes)
        for vi, vol in enumerate(g.volumes):
            base: Path = ("gluster", "volumes", vi)
            if vnames[vol.name] > 1:
                self.add(base + ("name",), f"duplicate volume name '{vol.name}'", "rename one")
            hosts: list[str | None] = []
            for bi, brick in enumerate(vol.bricks):
                path = base + ("bricks", bi)
                node, sep, bpath = brick.partition(":")
                if not sep or not bpath.startswith("/"):
                    self.add(path, f"brick '{brick}' is not node:/absolute/path", "write e.g. gluster1:/gluster/bricks/1/brick")
                    hosts.append(None)
                    continue
                self.node_ref(path, node, "gluster")
                hosts.append(node)
                i = self.nodes.get(node, (None, None))[0]
                if i is not None:
                    mounts = [d.mount for d in self.t.nodes[i].disks if d.mount]
                    if any(bpath == m for m in mounts):
                        self.add(path, f"brick {bpath} is the mount point itself; gluster refuses it",
                                 f"use a sub-directory, e.g. {bpath}/brick")
            if Counter(vol.bricks).most_common(1)[0][1] > 1:
                self.add(base + ("bricks",), "the same brick is listed twice", "list each brick once")
            n = len(vol.bricks)
            if n % vol.replica:
                self.add(base + ("replica",), f"replica {vol.replica} does not divide the {n} bricks",
                         f"use a multiple of {vol.replica} bricks, or replica {n}")
                continue
            for s in range(0, n, vol.replica):
                group = [h for h in hosts[s:s + vol.replica] if h]
                dup = [h for h, c in Counter(group).items() if c > 1]
                if dup and vol.replica > 1:
                    self.add(base + ("bricks", s), f"replica set {s // vol.replica} has two bricks on node {dup[0]}",
                             "put the bricks of one replica set on different nodes")
            for key, value in vol.options.items():
                if key == "network.ping-timeout" and not str(value).isdigit():
                    self.add(base + ("options", key), "network.ping-timeout must be whole seconds", "e.g. 5")

    def ceph(self) -> None:
        c = self.t.ceph
        roles = {r for n in self.t.nodes for r in n.roles if r.startswith("ceph-")}
        if c is None:
            if roles:
                self.add(("nodes",), f"nodes have ceph roles ({', '.join(sorted(roles))}) but there is no ceph: section",
                         "add a ceph: section or remove the roles")
            return
        mons = [n for n in self.t.nodes if "ceph-mon" in n.roles]
        osds = [n for n in self.t.nodes if "ceph-osd" in n.roles]
        if not mons:
            self.add(("ceph",), "ceph needs at least one node with role ceph-mon", "add ceph-mon to a node's roles")
        elif len(mons) % 2 == 0:
            self.add(("ceph",), f"{len(mons)} monitors: an even count gains no fault tolerance and can split votes",
                     f"use {len(mons) - 1} or {len(mons) + 1} monitors")
        if not [n for n in self.t.nodes if "ceph-mgr" in n.roles]:
            self.add(("ceph",), "ceph needs a node with role ceph-mgr (pools and health need it)", "add ceph-mgr to a mon node")
        if not osds:
            self.add(("ceph",), "ceph needs nodes with role ceph-osd", "add ceph-osd to some nodes")
        if c.osd_pool_default_size > len(osds) and osds:
            self.add(("ceph", "osd_pool_default_size"),
                     f"default size {c.osd_pool_default_size} > {len(osds)} OSD hosts", f"use at most {len(osds)}")
        if c.osd_disk:
            for n in osds:
                if c.osd_disk not in {d.name for d in n.disks}:
                    i = self.nodes[n.name][0]
                    self.add(("ceph", "osd_disk"), f"OSD node {n.name} has no disk '{c.osd_disk}'",
                             f"add a disk named {c.osd_disk} (filesystem: none) to nodes[{i}]")
        pool_names = Counter(p.name for p in c.pools)
        for pi, p in enumerate(c.pools):
            base: Path = ("ceph", "pools", pi)
            if pool_names[p.name] > 1:
                self.add(base + ("name",), f"duplicate pool '{p.name}'", "rename one")
            if osds and p.size > len(osds):
                self.add(base + ("size",), f"pool size {p.size} needs {p.size} OSD hosts; the lab has {len(osds)}",
                         f"use size {len(osds)} or add OSD nodes")
            min_size = p.min_size if p.min_size is not None else max(1, p.size - p.size // 2)
            if min_size == 1:
                self.add(base + ("min_size",), "min_size 1 acknowledges writes held by a single copy (data loss on one failure)",
                         "use min_size 2 with size 2 or 3")
            if p.min_size is not None and p.min_size > p.size:
                self.add(base + ("min_size",), f"min_size {p.min_size} > size {p.size}", "lower min_size")
        for ci, client in enumerate(c.clients):
            for daemon, cap in client.caps.items():
                for word in cap.replace(",", " ").split():
                    if word.startswith("pool="):
                        name = word.split("=", 1)[1].strip("'\"")
                        if name not in pool_names:
                            self.add(("ceph", "clients", ci, "caps", daemon), f"cap names pool '{name}' which is not defined",
                                     f"define it under ceph.pools or use one of: {', '.join(pool_names) or '(none)'}")

    def nfs(self) -> str | None:
        n = self.t.nfs
        if n is None:
            if any("nfs-server" in x.roles for x in self.t.nodes):
                self.add(("nodes",), "a node has role nfs-server but there is no nfs: section", "add nfs: with exports")
            return None
        self.node_ref(("nfs", "server"), n.server, "nfs-server")
        paths = Counter(e.path for e in n.exports)
        for ei, e in enumerate(n.exports):
            base: Path = ("nfs", "exports", ei)
            if paths[e.path] > 1:
                self.add(base + ("path",), f"path {e.path} exported twice", "merge the clients into one export")
            opts = set(e.options)
            for a, b in (("rw", "ro"), ("sync", "async"), ("root_squash", "no_root_squash")):
                if a in opts and b in opts:
                    self.add(base + ("options",), f"options '{a}' and '{b}' contradict each other", "keep one")
            if "*" in e.clients and "no_root_squash" in opts and not e.allow_insecure:
                self.add(base + ("options",), "export to '*' with no_root_squash gives root on the export to anyone",
                         "restrict clients (e.g. 'lab'), use root_squash, or set allow_insecure: true")
        if n.grace_period < n.lease_time:
            self.add(("nfs", "grace_period"), f"grace period {n.grace_period}s is shorter than the lease time "
                     f"{n.lease_time}s: clients could not reclaim their state after a restart",
                     f"set grace_period to at least {n.lease_time}")
        impl = n.implementation
        return impl

    def iscsi(self) -> str | None:
        s = self.t.iscsi
        if s is None:
            if any("iscsi-target" in x.roles for x in self.t.nodes):
                self.add(("nodes",), "a node has role iscsi-target but there is no iscsi: section", "add iscsi: with luns")
            return None
        self.check_iqn(("iscsi", "iqn"), s.iqn)
        exists = self.node_ref(("iscsi", "target"), s.target, "iscsi-target")
        disks = {d.name: d for d in self.nodes[s.target][1].disks} if exists else {}
        nets = {n.name for n in self.t.networks}
        for pi, portal in enumerate(s.portals):
            if portal != "*" and portal not in nets:
                self.add(("iscsi", "portals", pi), f"portal network '{portal}' does not exist",
                         f"use one of: *, {', '.join(nets)}")
        for li, lun in enumerate(s.luns):
            base: Path = ("iscsi", "luns", li)
            if lun.kind == "fileio":
                if not lun.path or not lun.size:
                    self.add(base, "a fileio LUN needs path and size", "add path: /iscsi/lun0.img and size: 1G")
            elif lun.kind == "block":
                if not lun.disk:
                    self.add(base, "a block LUN needs disk (a disk of the target node)", "add disk: NAME")
                elif exists and lun.disk not in disks:
                    self.add(base + ("disk",), f"target node {s.target} has no disk '{lun.disk}'",
                             f"add it to its disks ({', '.join(disks) or 'none'})")
            elif lun.kind == "lvm":
                if not (lun.disk and lun.vg and lun.lv and lun.size):
                    self.add(base, "an lvm LUN needs disk, vg, lv and size", "add disk, vg, lv and size")
                elif exists and lun.disk not in disks:
                    self.add(base + ("disk",), f"target node {s.target} has no disk '{lun.disk}'",
                             f"add it to its disks ({', '.join(disks) or 'none'})")
        if not s.acls:
            self.add(("iscsi", "acls"), "a target without ACLs admits no initiator on LIO and every initiator on tgt",
                     "add acls: with an entry per initiator IQN (e.g. - initiator: iqn.2019-12.com.packt:PacktStratis01)")
        with_chap = [bool(a.chap) for a in s.acls]
        if any(with_chap) and not all(with_chap):
            self.add(("iscsi", "acls", with_chap.index(False)), "this ACL has no CHAP while others do; CHAP is on for the "
                     "whole target (LIO's TPG authentication, tgt's incominguser), so this initiator could not log in",
                     "give every ACL chap:, or none")
        inits = Counter(a.initiator for a in s.acls)
        for ai, acl in enumerate(s.acls):
            base = ("iscsi", "acls", ai)
            self.check_iqn(base + ("initiator",), acl.initiator)
            if inits[acl.initiator] > 1:
                self.add(base + ("initiator",), "initiator listed twice", "merge the two ACLs")
            if acl.chap:
                chosen = ([k for k in ("password", "password_file") if getattr(acl.chap, k)]
                          + (["generate"] if acl.chap.generate else []))
                if len(chosen) != 1:
                    self.add(base + ("chap",), "give exactly one of password, password_file or generate: true",
                             "prefer generate: true")
                pw = acl.chap.password
                if pw is not None and not 12 <= len(pw) <= 16:
                    self.add(base + ("chap", "password"), f"CHAP secret is {len(pw)} characters; initiators need 12 to 16",
                             "use 12-16 characters, or generate: true")
        return s.implementation

    def check_iqn(self, path: Path, iqn: str) -> None:
        if not IQN_RE.match(iqn):
            self.add(path, f"'{iqn}' is not an RFC 3720 iqn name",
                     "write iqn.YYYY-MM.reversed.domain:name in lower case, e.g. iqn.2019-12.com.example:target1")

    # -- host pools ----------------------------------------------------------------------
    NEED: ClassVar[dict[str, tuple[str, ...]]] = {
        "dir": ("path",), "fs": ("path",), "netfs": ("path", "export"), "logical": ("path",),
        "iscsi": ("initiator",), "iscsi-direct": ("initiator",), "gluster": ("volume",), "rbd": ("rbd_pool", "client")}
    BACKENDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "netfs": ("nfs",), "iscsi": ("iscsi",), "iscsi-direct": ("iscsi",), "gluster": ("gluster",),
        "rbd": ("ceph",), "dir": ("local", "gluster"), "fs": ("local",), "logical": ("local",)}

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
            self._pool_path(base, pi, p, paths)
            self._pool_backend(base, p)
            if p.type in ("fs", "logical"):  # the plan gives these the first disk of their host node
                self._pool_disk(base, pi, p, used_disks)
            self._pool_host(base, p)
        self._volumes(names)

    def _pool_path(self, base: Path, pi: int, p: Any, paths: dict[tuple[str, str], int]) -> None:
        where = p.host or "kvm"
        if p.path and where == "kvm" and _system_path(p.path):
            self.add(base + ("path",), f"{p.path} is a system directory of this host (or inside one); a lab's "
                     "pool must not take it over", "use a directory of its own, e.g. /var/lib/libvirt/images/LAB-POOL")
        if p.path:
            if (where, p.path) in paths:
                self.add(base + ("path",), f"target path {p.path} already used by host.pools[{paths[(where, p.path)]}]",
                         "give each pool its own directory")
            paths.setdefault((where, p.path), pi)

    def _pool_backend(self, base: Path, p: Any) -> None:
        """The pool's type, backend and the backend objects it names."""
        for f in self.NEED[p.type]:
            if not getattr(p, f):
                self.add(base, f"a {p.type} pool needs '{f}'", f"add {f}:")
        if p.backend not in self.BACKENDS[p.type]:
            self.add(base + ("backend",), f"a {p.type} pool cannot use backend '{p.backend}'",
                     f"use backend: {' or '.join(self.BACKENDS[p.type])}")
        if p.backend != "local" and getattr(self.t, p.backend) is None:
            self.add(base + ("backend",), f"backend '{p.backend}' is not defined in this topology",
                     f"add a {p.backend}: section")
        if p.fuse_mount and p.backend != "gluster":
            self.add(base + ("fuse_mount",), "fuse_mount is for dir pools on a gluster volume", "set backend: gluster")
        if p.backend == "gluster" and p.type == "dir" and not p.fuse_mount:
            self.add(base + ("fuse_mount",), "a dir pool on gluster needs fuse_mount: true", "add fuse_mount: true")
        if p.volume and self.t.gluster and p.volume not in {v.name for v in self.t.gluster.volumes}:
            self.add(base + ("volume",), f"gluster volume '{p.volume}' is not defined", "use a volume from gluster.volumes")
        if p.export and self.t.nfs and p.export not in {e.path for e in self.t.nfs.exports}:
            self.add(base + ("export",), f"'{p.export}' is not an export of nfs.exports", "use one of the exported paths")
        if p.initiator:
            self.check_iqn(base + ("initiator",), p.initiator)
            if self.t.iscsi and self.t.iscsi.acls and p.initiator not in {a.initiator for a in self.t.iscsi.acls}:
                self.add(base + ("initiator",), f"initiator {p.initiator} is not in iscsi.acls; the target will refuse it",
                         "add an ACL for it")
        if p.type == "rbd" and self.t.ceph:
            if p.rbd_pool and p.rbd_pool not in {x.name for x in self.t.ceph.pools}:
                self.add(base + ("rbd_pool",), f"ceph pool '{p.rbd_pool}' is not defined", "use a pool from ceph.pools")
            if p.client and p.client not in {c.name for c in self.t.ceph.clients}:
                self.add(base + ("client",), f"ceph client '{p.client}' is not defined", "use a client from ceph.clients")

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
            if p.type == "iscsi" and p.host in self.nodes and "iscsi-initiator" in self.nodes[p.host][1].roles:
                self.add(base + ("host",), f"node {p.host} is also an iscsi-initiator: its own sessions to the target "
                         "take the same /dev/disk/by-path names as the pool's session, and libvirt then lists none "
                         "of the pool's LUNs", "wire this pool on a hypervisor node without role iscsi-initiator")
        elif p.type == "netfs" and not self.facts.kernel_nfs_client:
            self.add(base + ("type",), "netfs needs an NFS client in the KVM host's kernel, which this host lacks",
                     "set host: to a node with role hypervisor (the pool is then wired inside the lab)")
        elif p.type == "iscsi" and not self.facts.kernel_iscsi_tcp:
            self.add(base + ("type",), "an iscsi pool needs iscsi_tcp in the KVM host's kernel, which this host lacks",
                     "use type iscsi-direct, or set host: to a node with role hypervisor")

    def _volumes(self, names: dict[str, int]) -> None:
        types = {p.name: p.type for p in self.t.host.pools}
        for vi, v in enumerate(self.t.host.volumes):
            if types.get(v.pool) in ("gluster", "iscsi", "iscsi-direct"):
                self.add(("host", "volumes", vi, "pool"), f"libvirt cannot create volumes in a {types[v.pool]} pool",
                         "create it in a dir pool on the same backend (e.g. the gluster FUSE mount); this pool lists it"
                         if types[v.pool] == "gluster" else "its volumes are the target's LUNs; drop this entry")
            if v.pool not in names:
                self.add(("host", "volumes", vi, "pool"), f"pool '{v.pool}' does not exist",
                         f"use one of: {', '.join(names) or '(none)'}")

    # -- provider ------------------------------------------------------------------------
    def provider(self) -> Capabilities:
        """The provider the topology names, or for `auto`: one with a kernel of its own where KVM
        works or a node needs that kernel, else the fast one (containers sharing this kernel)."""
        if self.t.provider != "auto":
            return self.caps[self.t.provider]
        own = [c for c in self.caps.values() if c.own_kernel]
        fast = [c for c in self.caps.values() if c.fast and not c.own_kernel]
        if own and ((self.facts.kvm_usable and self.facts.has(own[0].tool)) or self.needs_own_kernel() or not fast):
            return own[0]
        return fast[0]

    def needs_own_kernel(self) -> bool:
        """Does anything in the topology need a kernel feature that containers (sharing ours) lack?"""
        roles = {r for n in self.t.nodes for r in n.roles}
        f = self.facts
        return ("hypervisor" in roles
                or ("iscsi-initiator" in roles and not f.kernel_iscsi_tcp)
                or (self.t.nfs is not None and self.t.nfs.implementation == "kernel" and not f.kernel_nfsd)
                or (self.t.iscsi is not None and self.t.iscsi.implementation == "lio" and not f.kernel_lio))

    def kernel_features(self, caps: Capabilities, nfs_impl: str | None,
                        iscsi_impl: str | None) -> tuple[str | None, str | None]:
        shared = not caps.own_kernel  # nodes have what this host's kernel has
        own = next((c.name for c in self.caps.values() if c.own_kernel), "one whose nodes have their own kernel")
        why = f"the {caps.name} provider shares this host's kernel"
        if nfs_impl is not None:
            has = not shared or self.facts.kernel_nfsd
            if nfs_impl == "auto":
                nfs_impl = "kernel" if has else "ganesha"
            elif nfs_impl == "kernel" and not has:
                self.add(("nfs", "implementation"), f"kernel nfsd is not available: {why}, which has no nfsd",
                         f"use implementation: ganesha (userspace) or provider: {own}")
        if iscsi_impl is not None:
            has = not shared or self.facts.kernel_lio
            if iscsi_impl == "auto":
                iscsi_impl = "lio" if has else "tgt"
            elif iscsi_impl == "lio" and not has:
                self.add(("iscsi", "implementation"), f"LIO (targetcli) is not available: {why}, which has no LIO",
                         f"use implementation: tgt (userspace) or provider: {own}")
        if shared:
            for i, n in enumerate(self.t.nodes):
                if "hypervisor" in n.roles:
                    self.add(("nodes", i, "roles"),
                             "a hypervisor node needs its own kernel (kvm/nfs client), containers have none",
                             f"use provider: {own} for this topology")
                if "iscsi-initiator" in n.roles and not self.facts.kernel_iscsi_tcp:
                    self.add(("nodes", i, "roles"),
                             f"iscsi-initiator needs iscsi_tcp, which this host's kernel lacks ({caps.name} shares it)",
                             f"use provider: {own}")
        if not self.facts.has(caps.tool):
            other = next((c.name for c in self.caps.values() if c is not caps and self.facts.has(c.tool)), None)
            self.add(("provider",), f"{caps.name} is not installed on this host ({caps.tool} not found)",
                     caps.install_hint + (f", or use provider: {other}" if other else ""))
        return nfs_impl, iscsi_impl


# directories of the KVM host a lab pool (created, mounted over, removed by `down`) must not be
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run",
               "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/lib/libvirt",
               "/var/lib/libvirt/images", "/var/lib/storlab", "/var/log")
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys",
                "/usr", "/var/lib/storlab", "/var/log")


def _system_path(path: str) -> bool:
    p = path.rstrip("/") or "/"
    return p in SYSTEM_DIRS or any(p.startswith(t + "/") for t in SYSTEM_TREES)


def validate_located(loc: Located, facts: HostFacts) -> tuple[Topology, Resolved]:
    if not isinstance(loc.data, dict):
        raise TopologyError([loc.problem((), "a topology must be a mapping (lab:, nodes:, ...)",
                                         "see topologies/gluster-3.yaml")])
    try:
        topo = Topology.model_validate(loc.data)
    except ValidationError as exc:
        raise TopologyError(_schema_problems(loc, exc)) from None
    r = _Rules(loc, topo, facts)
    caps = r.provider()
    r.networks()
    r.node_basics()
    r.memory(caps)
    r.gluster()
    r.ceph()
    nfs_impl = r.nfs()
    iscsi_impl = r.iscsi()
    r.pools()
    nfs_impl, iscsi_impl = r.kernel_features(caps, nfs_impl, iscsi_impl)
    if r.problems:
        raise TopologyError(r.problems)
    return topo, Resolved(caps.name, nfs_impl, iscsi_impl)


def validate_file(path: str, facts: HostFacts | None = None) -> tuple[Topology, Resolved]:
    return validate_located(load_file(path), facts or HostFacts.detect())


def validate_text(text: str, facts: HostFacts, file: str = "<test>.yaml") -> tuple[Topology, Resolved]:
    return validate_located(load_text(text, file), facts)
