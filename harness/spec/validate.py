"""Validate a topology file: schema errors plus cross-reference rules, all reported at once."""

from __future__ import annotations

import difflib
import ipaddress
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from harness.backends.base import KERNEL_FEATURES, Backend, Implementation, backends
from harness.errors import Problem, TopologyError
from harness.host.facts import HostFacts
from harness.providers.capabilities import Capabilities
from harness.spec import releases
from harness.spec.pools import PoolRules
from harness.spec.topology import NAME_RE, Topology
from harness.spec.topology import model as topology_model
from harness.spec.yamlload import Located, load_file, load_text

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Resolved:
    """Decisions validation makes that the plan needs: the provider, and for each backend with
    implementations (section name -> implementation) what `implementation: auto` came to."""

    provider: str
    implementations: dict[str, str] = field(default_factory=dict)

    def implementation(self, backend: str) -> str | None:
        return self.implementations.get(backend)


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
    model: Any = topology_model()
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
                pattern = str(e.get("ctx", {}).get("pattern", ""))
                fix = ("use lower-case letters, digits and '-', starting with a letter" if pattern == NAME_RE
                       else f"write it to match {pattern}")
            out.append(loc.problem(path, msg, fix))
    return out


class _Rules(PoolRules):
    """Cross-reference rules. Each appends to self.problems; none stops the others."""

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
                if not any(cidr.subnet_of(r) for r in RFC1918):
                    what = next((f": it is {name}" for r, name in SPECIAL_NETS if cidr.overlaps(r)), "")
                    self.add(("networks", i, "cidr"), f"{cidr} is not a private network{what} (lab traffic stays on "
                             "this host, in RFC 1918 space)",
                             "use a subnet of 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, or leave cidr out")
                elif cidr.prefixlen < MIN_PREFIX:
                    self.add(("networks", i, "cidr"), f"{cidr} is too big for a lab network ({cidr.num_addresses} "
                             f"addresses; at most a /{MIN_PREFIX}): its bridge would shadow the host's own routes there",
                             f"use a /24 (or at most a /{MIN_PREFIX}), e.g. {next(cidr.subnets(new_prefix=24))}")
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
            release = node.release or self.t.release
            if node.kernel and node.kernel not in releases.of(release).kernels:
                carried = releases.of(release).kernels
                self.add(("nodes", i, "kernel"), f"{release} carries kernel {' and '.join(carried)}, not {node.kernel}",
                         f"use kernel: \"{carried[0]}\" or remove kernel: (the release's own)")
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
    def backends(self) -> None:
        for b in backends():
            section = b.of(self.t)
            if section is not None:
                b.check(self, section)
                continue
            lonely = sorted({r for n in self.t.nodes for r in n.roles if r in b.section_roles})
            if lonely:
                self.add(("nodes",), f"nodes have role(s) {', '.join(lonely)} but there is no {b.name}: section",
                         f"add a {b.name}: section or remove the role(s)")

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
        if "hypervisor" in roles or any(n.kernel for n in self.t.nodes):
            return True
        for b in backends():
            if any(r in roles and not f.kernel(feature) for r, feature in b.role_kernel.items()):
                return True
            impl = self._chosen(b)
            if impl is not None and impl.kernel is not None and not f.kernel(impl.kernel):
                return True
        return False

    def _chosen(self, b: Backend[Any, Any]) -> Implementation | None:
        """The implementation a backend's section names (None for auto, or no section)."""
        section = b.of(self.t)
        name = getattr(section, "implementation", "auto") if section is not None else "auto"
        return next((i for i in b.implementations if i.name == name), None)

    def kernel_features(self, caps: Capabilities) -> dict[str, str]:
        """Resolve each backend's `implementation: auto`, and report what the nodes' kernel lacks."""
        shared = not caps.own_kernel  # nodes have what this host's kernel has
        own = next((c.name for c in self.caps.values() if c.own_kernel), "one whose nodes have their own kernel")
        why = f"the {caps.name} provider shares this host's kernel"

        def has(impl: Implementation) -> bool:
            return impl.kernel is None or not shared or self.facts.kernel(impl.kernel)
        chosen: dict[str, str] = {}
        for b in backends():
            if b.of(self.t) is None or not b.implementations:
                continue
            impl = self._chosen(b)
            if impl is None:
                impl = next((i for i in b.implementations if has(i)), b.implementations[-1])
            elif not has(impl):
                userspace = next((i.name for i in b.implementations if i.kernel is None), None)
                lacks = KERNEL_FEATURES.get(impl.kernel or "", impl.kernel)
                self.add((b.name, "implementation"), f"{impl.label} is not available: {why}, which has no {lacks}",
                         (f"use implementation: {userspace} (userspace) or " if userspace else "use ") + f"provider: {own}")
            chosen[b.name] = impl.name
        if shared:
            role_kernel = {r: feature for b in backends() for r, feature in b.role_kernel.items()}
            for i, n in enumerate(self.t.nodes):
                if n.kernel:
                    self.add(("nodes", i, "kernel"), f"{caps.name} nodes boot no kernel of their own: they share "
                             "this host's", f"remove kernel: or use provider: {own}")
                if "hypervisor" in n.roles:
                    self.add(("nodes", i, "roles"),
                             "a hypervisor node needs its own kernel (kvm/nfs client), containers have none",
                             f"use provider: {own} for this topology")
                for r in n.roles:
                    if r in role_kernel and not self.facts.kernel(role_kernel[r]):
                        self.add(("nodes", i, "roles"),
                                 f"{r} needs {role_kernel[r]}, which this host's kernel lacks ({caps.name} shares it)",
                                 f"use provider: {own}")
        for path, rel in [(("release",), self.t.release)] + [(("nodes", i, "release"), n.release)
                                                              for i, n in enumerate(self.t.nodes) if n.release]:
            if rel not in caps.releases:
                other = next((c.name for c in self.caps.values() if rel in c.releases), None)
                self.add(path, f"the {caps.name} provider has no {rel} image yet (it has: {', '.join(caps.releases)})",
                         f"use release: {caps.releases[0]}" + (f", or provider: {other}" if other else ""))
        if not self.facts.has(caps.tool):
            other = next((c.name for c in self.caps.values() if c is not caps and self.facts.has(c.tool)), None)
            self.add(("provider",), f"{caps.name} is not installed on this host ({caps.tool} not found)",
                     caps.install_hint + (f", or use provider: {other}" if other else ""))
        return chosen


#: the only address space a lab network may take: RFC 1918 private ranges (Python's is_private also
#: says yes to 0.0.0.0/8, 240.0.0.0/4, 198.18.0.0/15, the TEST-NETs and more)
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
#: the largest lab network: a /16 (65536 addresses) is far more than a lab's nodes; bigger is surely
#: a mistake, and the bridge's route would shadow whatever else the host reaches in that range
MIN_PREFIX = 16
#: what a refused range is, to say so (first match wins)
SPECIAL_NETS = tuple((ipaddress.IPv4Network(n), what) for n, what in (
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
    ("198.18.0.0/15", "the benchmark range (198.18.0.0/15)"), ("100.64.0.0/10", "carrier-grade NAT space"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"), ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"), ("192.0.0.0/24", "IETF protocol assignments")))

def validate_located(loc: Located, facts: HostFacts) -> tuple[Topology, Resolved]:
    if not isinstance(loc.data, dict):
        raise TopologyError([loc.problem((), "a topology must be a mapping (lab:, nodes:, ...)",
                                         "see topologies/gluster-3.yaml")])
    try:
        topo = topology_model().model_validate(loc.data)
    except ValidationError as exc:
        raise TopologyError(_schema_problems(loc, exc)) from None
    r = _Rules(loc, topo, facts)
    caps = r.provider()
    r.networks()
    r.node_basics()
    r.memory(caps)
    r.backends()
    r.pools()
    implementations = r.kernel_features(caps)
    if r.problems:
        raise TopologyError(r.problems)
    return topo, Resolved(caps.name, implementations)


def validate_file(path: str, facts: HostFacts | None = None) -> tuple[Topology, Resolved]:
    return validate_located(load_file(path), facts or HostFacts.detect())


def validate_text(text: str, facts: HostFacts, file: str = "<test>.yaml") -> tuple[Topology, Resolved]:
    return validate_located(load_text(text, file), facts)
