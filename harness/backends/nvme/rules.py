"""Rules of an nvme: section (namespaces, hosts with their DH-HMAC-CHAP, ports) and of host pools
on its namespaces (on a hypervisor node, or on the KVM host where its kernel has nvme-tcp)."""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Sequence

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.nvme.plan import KVM
from harness.backends.nvme.schema import Nvme, NvmeDhchap, NvmeHost, NvmeNamespace, NvmeSubsystem
from harness.spec import kernels, releases
from harness.spec.topology import Disk, Pool

HOST_ROLE = "nvme-host"


def _dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def check(r: Rules, s: Nvme) -> None:
    exists = r.node_ref(("nvme", "target"), s.target, "nvme-target")
    disks = {d.name: d for d in r.nodes[s.target][1].disks} if exists else {}
    nqns = Counter(sub.nqn for sub in s.subsystems)
    names: dict[str, Path] = {}
    used_disks: dict[str, Path] = {}
    paths: dict[str, Path] = {}
    auth: dict[str, tuple[Path, NvmeDhchap | None]] = {}
    if KVM in r.nodes:
        r.add(("nodes", r.nodes[KVM][0], "name"), "a node named kvm: in the nvme section (and host pools) kvm names "
              "the KVM host itself", "rename the node")
    for si, sub in enumerate(s.subsystems):
        base: Path = ("nvme", "subsystems", si)
        if nqns[sub.nqn] > 1:
            r.add(base + ("nqn",), f"subsystem {sub.nqn} is listed twice", "give each subsystem its own NQN")
        for ni, ns in enumerate(sub.namespaces):
            at = base + ("namespaces", ni)
            name = ns.name or f"ns{ni + 1}"
            if ns.name and name in names:
                r.add(at + ("name",), f"namespace name '{name}' is used twice (host pools name a namespace by it)",
                      "give each namespace its own name")
            names.setdefault(name, at)
            _namespace(r, at, ns, s.target, disks, used_disks, paths)
        _hosts(r, base, sub, auth)
        _ports(r, base, sub)
    _auth_kernels(r, s.target if exists else None, auth)


def _auth_kernels(r: Rules, target: str | None, auth: dict[str, tuple[Path, NvmeDhchap | None]]) -> None:
    """DH-HMAC-CHAP runs in the kernels of the target and of each node that authenticates: each
    must boot a kernel that has it (checked where storlab picks the kernel: the KVM host's own is
    probed when its pool is made)."""
    hosts = [key.removeprefix("node ") for key, (_, d) in auth.items() if d is not None and key.startswith("node ")]
    if not hosts:
        return
    having = kernels.with_feature("nvme-auth")
    for name in dict.fromkeys([*([target] if target else []), *hosts]):
        if name not in r.nodes:
            continue
        i, node = r.nodes[name]
        boots = releases.kernel_of(node.kernel, node.release or r.topology.release)
        if "nvme-auth" not in kernels.of(boots).features:
            r.add(("nodes", i, "kernel"), f"node {name} takes part in DH-HMAC-CHAP (dhchap: in the nvme section), "
                  f"but boots kernel {boots}, which has no "
                  f"{kernels.FEATURES['nvme-auth']}", f"give it kernel: \"{having[0]}\"" if having
                  else "drop dhchap: from the nvme section")


def _namespace(r: Rules, at: Path, ns: NvmeNamespace, target: str, disks: dict[str, Disk],
               used_disks: dict[str, Path], paths: dict[str, Path]) -> None:
    if ns.kind == "file":
        if not ns.path or not ns.size or ns.disk:
            r.add(at, "a file namespace needs path and size (and no disk)", "add path: /nvme/ns1.img and size: 1G")
            return
        mounts = [d.mount for d in disks.values() if d.mount and d.filesystem != "none"]
        # a file nvmet serves is written by every admitted host: only inside a data disk of the
        # target, never a system file of the node (/etc/shadow as a namespace) nor its root disk
        if disks and not any(ns.path.startswith(m.rstrip("/") + "/") for m in mounts):
            r.add(at + ("path",), f"{ns.path} is not inside a mounted data disk of {target}",
                  f"put it under {' or '.join(m + '/' for m in mounts)}" if mounts
                  else f"give {target} a disk with filesystem: xfs and mount: /nvme, and use a path under it")
        if ns.path in paths:
            r.add(at + ("path",), f"{ns.path} already backs another namespace", "give each namespace its own file")
        paths.setdefault(ns.path, at)
        if posixpath.basename(ns.path) in ("", ".", ".."):
            r.add(at + ("path",), f"{ns.path} is not a file name", "use e.g. /nvme/ns1.img")
    elif not ns.disk or ns.path or ns.size:
        r.add(at, "a block namespace needs disk (a disk of the target node), and no path or size",
              "add disk: NAME (its size is the namespace's)")
    elif disks and ns.disk not in disks:
        r.add(at + ("disk",), f"target node {target} has no disk '{ns.disk}'",
              f"add it to its disks ({', '.join(disks) or 'none'})")
    elif disks and (disks[ns.disk].filesystem != "none" or disks[ns.disk].mount):
        r.add(at + ("disk",), f"disk {ns.disk} has a filesystem or a mount: the target would serve it while "
              "the node writes to it", "use a disk with filesystem: none and no mount")
    elif ns.disk in used_disks:
        r.add(at + ("disk",), f"disk {ns.disk} already backs another namespace", "give each namespace its own disk")
    if ns.kind == "block" and ns.disk:
        used_disks.setdefault(ns.disk, at)


def _hosts(r: Rules, base: Path, sub: NvmeSubsystem, auth: dict[str, tuple[Path, NvmeDhchap | None]]) -> None:
    if not sub.allowed_hosts and not sub.allow_any_host:
        r.add(base + ("allowed_hosts",), f"subsystem {sub.nqn} admits no host: with no allowed_hosts, nvmet refuses "
              "every host NQN", "add allowed_hosts: [{node: NAME}] (a node with role nvme-host) or a host NQN; "
              "allow_any_host: true admits every host")
    if sub.allowed_hosts and sub.allow_any_host:
        r.add(base + ("allow_any_host",), "allow_any_host: true admits every host, so allowed_hosts would mean nothing",
              "drop one of them")
    seen: set[str] = set()
    for hi, h in enumerate(sub.allowed_hosts):
        at = base + ("allowed_hosts", hi)
        if (h.nqn is None) == (h.node is None):
            r.add(at, "give a host NQN or node: NAME", "e.g. - {node: hv1} or - nqn.2014-08.org.nvmexpress:uuid:...")
            continue
        if h.node is not None and h.node != KVM:
            r.node_ref(at + ("node",), h.node, HOST_ROLE)
        key = h.nqn or ("the KVM host" if h.node == KVM else f"node {h.node}")
        if key in seen:
            r.add(at, f"{key} is listed twice", "list each host once")
        seen.add(key)
        _same_dhchap(r, at, key, h, auth)
        if h.dhchap is not None:
            _dhchap(r, at + ("dhchap",), h.dhchap)


def _same_dhchap(r: Rules, at: Path, key: str, h: NvmeHost, auth: dict[str, tuple[Path, NvmeDhchap | None]]) -> None:
    """nvmet keeps a host's keys on its host entry, for every subsystem that admits it: each
    listing of one host must say the same."""
    if key not in auth:
        auth[key] = (at, h.dhchap)
        return
    first, d = auth[key]
    if d != h.dhchap:
        r.add(at + ("dhchap",), f"{key} has another dhchap under {_dotted(first)}: nvmet keeps one set of keys per "
              "host NQN, asked for by every subsystem that admits it", f"give it the same dhchap: as at {_dotted(first)}")


def _dhchap(r: Rules, at: Path, d: NvmeDhchap) -> None:
    """One source for each key: generated, or literal (the host's key, and the controller's when bidirectional)."""
    if d.generate == (d.key is not None):
        r.add(at, "give the host's key one way", "write generate: true (the lab decides a key when the plan is "
              "made) or key: DHHC-1:00:...: (from `nvme gen-dhchap-key`), not both")
    if d.generate and d.ctrl_key is not None:
        r.add(at + ("ctrl_key",), "generate: true decides the controller's key too (with bidirectional: true)",
              "drop ctrl_key:, and write bidirectional: true")
    elif d.key is not None and d.bidirectional and d.ctrl_key is None:
        r.add(at + ("bidirectional",), "bidirectional authentication with a literal key needs the controller's key",
              "add ctrl_key: DHHC-1:00:...: (another key than key:), or use generate: true")
    elif d.key is not None and d.key == d.ctrl_key:
        r.add(at + ("ctrl_key",), "the controller's key is the host's key: each side must prove a key of its own",
              "give ctrl_key another key (nvme gen-dhchap-key makes one)")


def _ports(r: Rules, base: Path, sub: NvmeSubsystem) -> None:
    nets = {n.name for n in r.topology.networks}
    seen: set[tuple[str, int]] = set()
    for pi, p in enumerate(sub.ports):
        at = base + ("ports", pi)
        if p.network not in nets:
            r.add(at + ("network",), f"network '{p.network}' does not exist", f"use one of: {', '.join(sorted(nets))}")
        if (p.network, p.port) in seen:
            r.add(at, f"port {p.port} on {p.network} is listed twice", "list each network and TCP port once")
        seen.add((p.network, p.port))
    if len(sub.ports) == 2 and sub.ports[0].network == sub.ports[1].network:
        r.add(base + ("ports", 1, "network"), "both ports are on one network: a cut of that network takes both paths",
              "put the second port on another network (native NVMe multipath)")


def check_pool(r: Rules, path: Path, pool: Pool, s: Nvme) -> None:
    """A logical pool on a namespace, wired on a hypervisor node that connects to the target as an
    nvme-host, or on the KVM host where its kernel has nvme-tcp; either admitted by the
    namespace's subsystem (the KVM host as {node: kvm}: it connects with an NQN of its own)."""
    host = pool.host or KVM
    if host == KVM and not r.facts.kernel_nvme_tcp:
        r.add(path + ("host",), "a pool on an NVMe namespace on the KVM host needs nvme-tcp in this host's kernel, "
              "which it lacks (no nvme_tcp module loaded): this host cannot connect to the target",
              f"set host: to a node with roles hypervisor and {HOST_ROLE} (or load nvme-tcp here and validate again)")
        return
    if host != KVM and host not in r.nodes:
        return  # reported by the core
    if host != KVM and HOST_ROLE not in r.nodes[host][1].roles:
        r.add(path + ("host",), f"node {host} does not have role '{HOST_ROLE}': it would not connect to the target",
              f"add '{HOST_ROLE}' to nodes[{r.nodes[host][0]}].roles")
    found = [(sub, ns) for sub in s.subsystems for i, ns in enumerate(sub.namespaces)
             if pool.disk is None or (ns.name or f"ns{i + 1}") == pool.disk]
    # the KVM host connects with the NQN the plan gives {node: kvm}: allow_any_host gives it none
    admitting = [(sub, ns) for sub, ns in found
                 if (sub.allow_any_host and host != KVM) or any(h.node == host for h in sub.allowed_hosts)]
    who = "the KVM host" if host == KVM else f"node {host}"
    if not found:
        names = [ns.name or f"ns{i + 1}" for sub in s.subsystems for i, ns in enumerate(sub.namespaces)]
        r.add(path + ("disk",), f"no namespace is named '{pool.disk}'", f"use one of: {', '.join(names)}")
    elif not admitting:
        r.add(path + ("host",), f"no subsystem with {'namespace ' + pool.disk if pool.disk else 'a namespace'} admits "
              f"{who}", f"add {{node: {host}}} to that subsystem's allowed_hosts"
              + (" instead of allow_any_host (the KVM host connects with an NQN of its own)"
                 if host == KVM and any(sub.allow_any_host for sub, _ in found) else ""))


def check_block(r: Rules, at: Path, s: Nvme, ref: str | int, nodes: Sequence[str]) -> None:
    """Namespace ``ref`` (its name) as another backend's device on ``nodes``: each an nvme-host
    the namespace's subsystem admits."""
    subs = [sub for sub in s.subsystems if any(ns.name == ref for ns in sub.namespaces)]
    if not subs:
        names = [ns.name for sub in s.subsystems for ns in sub.namespaces if ns.name]
        r.add(at + ("namespace",), f"no namespace is named '{ref}'", f"use one of: {', '.join(names) or '(none named)'}")
        return
    for node in nodes:
        if node not in r.nodes:
            continue
        if HOST_ROLE not in r.nodes[node][1].roles:
            r.add(at, f"node {node} is not an NVMe host: it would not connect to the namespace",
                  f"add '{HOST_ROLE}' to nodes[{r.nodes[node][0]}].roles")
        elif not (subs[0].allow_any_host or any(h.node == node for h in subs[0].allowed_hosts)):
            r.add(at, f"subsystem {subs[0].nqn} does not admit node {node}", f"add {{node: {node}}} to its allowed_hosts")
