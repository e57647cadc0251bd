"""Turn a validated topology into a concrete plan: subnets, addresses, MACs, disks, object
names and the config files each role will install, written to the lab directory."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import re
import subprocess
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness import paths
from harness.backends.base import PlanInputs, backends, get
from harness.errors import HarnessError, TopologyError
from harness.host.facts import HostFacts
from harness.plan.model import (
    DiskPlan,
    HostPlan,
    HostPoolPlan,
    HostVolumePlan,
    MgmtPlan,
    NetworkPlan,
    NodePlan,
    Plan,
    pool_section,
)
from harness.plan.model import model as plan_model
from harness.providers.capabilities import available
from harness.spec.topology import NAME_RE, Pool, Topology
from harness.spec.validate import Resolved, validate_located
from harness.spec.yamlload import Located, load_file

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("harness.plan", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=False,
    # libvirt's pool, volume and secret XML: every value escaped (it is allow-listed already)
    autoescape=jinja2.select_autoescape(enabled_extensions=("xml.j2",), default_for_string=False),
)


def used_subnets(exclude_lab: str | None = None, others: list[Plan] | None = None) -> set[ipaddress.IPv4Network]:
    """Subnets other labs hold (from their plans, read here unless given) and those routed on this host."""
    used: set[ipaddress.IPv4Network] = set()
    for other in other_plans(exclude_lab) if others is None else others:
        for n in (*other.networks, *([other.mgmt] if other.mgmt else [])):
            with contextlib.suppress(ValueError):
                used.add(ipaddress.IPv4Network(n.cidr))
    used |= _libvirt_network_subnets(exclude_prefix=paths.obj_name(exclude_lab, "") if exclude_lab else None)
    own = {paths.bridge_name(exclude_lab, i) for i in range(16)} if exclude_lab else set()
    try:
        out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
        for r in json.loads(out or "[]"):
            dst = r.get("dst", "")
            if dst and dst != "default" and "/" in dst and r.get("dev") not in own:
                used.add(ipaddress.IPv4Network(dst, strict=False))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return used


LIBVIRT_NETWORK_DIRS = (Path("/etc/libvirt/qemu/networks"), Path("/run/libvirt/network"))


def _libvirt_network_subnets(exclude_prefix: str | None,
                             dirs: tuple[Path, ...] = LIBVIRT_NETWORK_DIRS) -> set[ipaddress.IPv4Network]:
    """Subnets of libvirt networks defined on this host, also inactive ones (no route yet):
    vagrant-libvirt finds networks by address, so a lab subnet must not equal any of them."""
    import xml.etree.ElementTree as ET
    out: set[ipaddress.IPv4Network] = set()
    for d in dirs:
        for f in (sorted(d.glob("*.xml")) if d.is_dir() else []):
            try:
                root = ET.parse(f).getroot()
                if exclude_prefix and (root.findtext("name") or "").startswith(exclude_prefix):
                    continue
                for ip in root.iter("ip"):
                    addr, mask = ip.get("address"), ip.get("netmask") or ip.get("prefix")
                    if addr and mask and ip.get("family", "ipv4") == "ipv4":
                        out.add(ipaddress.IPv4Network(f"{addr}/{mask}", strict=False))
            except (OSError, ET.ParseError, ValueError):
                continue
    return out


def allocate_subnet(lab: str, net: str, taken: set[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A /24 in 192.168.100.0-192.168.227.0 chosen from the lab+network name, skipping taken ones."""
    start = zlib.crc32(f"{lab}/{net}".encode()) % 128
    for k in range(128):
        cand = ipaddress.IPv4Network(f"192.168.{100 + (start + k) % 128}.0/24")
        if not any(cand.overlaps(t) for t in taken):
            return cand
    raise RuntimeError("no free /24 left in 192.168.100.0-192.168.227.255")


def make_plan(topo: Topology, resolved: Resolved, topo_file: str, taken: set[ipaddress.IPv4Network],
              facts: HostFacts | None = None, accel: str | None = None,
              preset: dict[str, str] | None = None, instance_of: str | None = None) -> Plan:
    """``preset`` maps network name -> cidr already handed to this lab (a resumed `up`);
    its key "@mgmt" is the vagrant management network's. ``instance_of`` names the lab the
    file describes when this lab is an instance of it (`--name`)."""
    lab = topo.lab
    preset = preset or {}
    taken = set(taken)
    networks = _networks(topo, preset, taken)
    caps = available()[resolved.provider]
    mgmt = management_network(lab, networks, taken, preset.get("@mgmt")) if caps.management_network else None
    if mgmt:
        taken.add(ipaddress.IPv4Network(mgmt.cidr))
    nodes = _nodes(topo, caps.disk_devices, networks)
    sections: dict[str, Any] = {}
    if mgmt:
        sections["mgmt"] = mgmt
    for b in backends():
        section = b.of(topo)
        if section is not None:
            sections[b.name] = b.plan(PlanInputs(lab, networks, nodes, resolved.implementation(b.name)), section)
    if instance_of:
        sections["instance_of"] = instance_of
    partial = plan_model()(lab=lab, topology=str(Path(topo_file).resolve()), provider=resolved.provider,
                   accel="kvm" if (accel == "kvm" or (accel is None and facts and facts.kvm_usable)) else "tcg",
                   networks=networks, nodes=nodes, tag=paths.tag(lab), host=HostPlan(uri=topo.host.uri, pools=(), volumes=()),
                   **sections)
    return partial.with_(host=_host(topo, partial, instance_of))


def _networks(topo: Topology, preset: dict[str, str], taken: set[ipaddress.IPv4Network]) -> tuple[NetworkPlan, ...]:
    for n in topo.networks:
        if n.cidr:
            taken.add(ipaddress.IPv4Network(n.cidr))
    out = []
    for i, n in enumerate(topo.networks):
        if n.cidr or n.name in preset:
            cidr = ipaddress.IPv4Network(n.cidr or preset[n.name])
        else:
            cidr = allocate_subnet(topo.lab, n.name, taken)
        taken.add(cidr)
        out.append(NetworkPlan(name=n.name, cidr=str(cidr), prefix=cidr.prefixlen, host_address=str(cidr.network_address + 1),
                               bridge=paths.bridge_name(topo.lab, i), libvirt_network=paths.obj_name(topo.lab, n.name)))
    return tuple(out)


def _addresses(topo: Topology, ni: int, networks: tuple[NetworkPlan, ...], placed: list[NodePlan]) -> dict[str, str]:
    """A node's address on each network: the topology's, else .11 + node index upwards, then
    wrapping round to .2; never the network, .1 or broadcast, nor one another node holds."""
    node = topo.nodes[ni]
    addrs: dict[str, str] = {}
    for net_i, net in enumerate(networks):
        explicit = (node.address if net_i == 0 else None) or node.addresses.get(net.name)
        if explicit:
            addrs[net.name] = explicit
    for net in networks:
        if net.name in addrs:
            continue
        cidr = ipaddress.IPv4Network(net.cidr)
        in_use = {a for x in placed for a in x.addresses.values()} | set(addrs.values())
        in_use |= {x.address for x in topo.nodes if x.address} | {a for x in topo.nodes for a in x.addresses.values()}
        last = cidr.num_addresses - 1
        order = itertools.chain(range(11 + ni, last), range(2, min(11 + ni, last)))
        free = next((a for a in (str(cidr.network_address + k) for k in order) if a not in in_use), None)
        if free is None:
            raise HarnessError(f"network {net.name} ({cidr}) has no free address for node {node.name}")
        addrs[net.name] = free
    return addrs


def _nodes(topo: Topology, disk_devices: bool, networks: tuple[NetworkPlan, ...]) -> tuple[NodePlan, ...]:
    lab = topo.lab
    placed: list[NodePlan] = []
    for ni, node in enumerate(topo.nodes):
        addrs = _addresses(topo, ni, networks, placed)
        disks = tuple(DiskPlan(
            name=d.name, size=d.size, filesystem=d.filesystem, mount=d.mount,
            # vagrant-libvirt attaches extra disks as vdb, vdc, ... in order
            device=f"/dev/vd{chr(ord('b') + di)}" if disk_devices else None,
            image=paths.obj_name(lab, f"{node.name}-{d.name}")) for di, d in enumerate(node.disks))
        placed.append(NodePlan(
            name=node.name, index=ni, roles=tuple(node.roles), cpus=node.cpus, memory=node.memory,
            address=addrs[networks[0].name], addresses=addrs,
            macs={net.name: paths.mac(lab, node.name, net.name) for net in networks},
            disks=disks, object=paths.obj_name(lab, node.name),
            release=node.release or topo.release,
            # only where the topology picks one: a plan without it boots the default kernel
            **({"kernel": node.kernel} if node.kernel else {})))
    return tuple(placed)


def _secret_uuid(lab: str, p: Pool, instance_of: str | None) -> str:
    """The topology's uuid (e.g. the one nova.conf names), except in an instance, whose secrets
    must not be another lab's: derived from the lab name, like one the topology leaves out."""
    if p.secret and p.secret.uuid and not instance_of:
        return p.secret.uuid
    given = p.secret.uuid if p.secret and p.secret.uuid else p.name
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"storlab:{lab}:secret:{given}"))


def kvm_path(p: Pool, lab: str, instance_of: str | None) -> str | None:
    """Where a pool on the KVM host lives: the topology's path, with -LAB for an instance."""
    if (p.host or "kvm") != "kvm" or not p.path:
        return None
    return f"{p.path}-{lab}" if instance_of else p.path


def _pool(topo: Topology, plan: Plan, p: Pool, instance_of: str | None) -> HostPoolPlan:
    """A host pool with what its backend resolves to (servers, target, secrets, device)."""
    extra: dict[str, Any] = {}
    if p.backend != "local":
        b = get(p.backend)
        section = b.planned(plan)
        if section is not None:
            extra.update(b.pool_extras(plan, section, p, _secret_uuid(topo.lab, p, instance_of)))
    host = p.host or "kvm"
    # on the KVM host, shared with other labs and the host's own pools, the libvirt pool carries the
    # lab's name; on a hypervisor node of the lab it keeps the topology's
    extra["object"] = paths.obj_name(topo.lab, p.name) if host == "kvm" else p.name
    if host == "kvm" and p.path:
        extra["path"] = kvm_path(p, topo.lab, instance_of)
    if p.type in ("fs", "logical") and host != "kvm" and p.backend == "local":  # a backend's pool: its device
        hn = plan.node(host)
        disk = next((d for d in hn.disks if d.name == p.disk), hn.disks[0] if hn.disks else None)
        extra["device"] = disk.device if disk else None
    # the core's fields; a pool's LUN is its backend's to resolve (pool_extras) and stays out of the
    # others' plans; a backend's options (host.pools[].nfs) reach the plan as what it resolves them to
    core = p.model_dump(include=set(Pool.model_fields) - {"lun"})
    return pool_section(p.backend)(**{**core, "host": host, **extra})


def _squashes(topo: Topology, p: Pool) -> bool:
    if p.backend == "local":
        return False
    b = get(p.backend)
    section = b.of(topo)
    return section is not None and b.squashes(section, p)


def _host(topo: Topology, plan: Plan, instance_of: str | None) -> HostPlan:
    pools = tuple(_pool(topo, plan, p, instance_of) for p in topo.host.pools)
    types = {p.name: p.type for p in pools}
    squashing = {p.name for p in topo.host.pools if _squashes(topo, p)}
    return HostPlan(uri=topo.host.uri, pools=pools,
                    volumes=tuple(HostVolumePlan(**v.model_dump(), pool_type=types[v.pool], squashed=v.pool in squashing)
                                  for v in topo.host.volumes))


def management_network(lab: str, networks: tuple[NetworkPlan, ...], taken: set[ipaddress.IPv4Network],
                       preset: str | None = None) -> MgmtPlan:
    """vagrant-libvirt's management network: isolated (no forwarding), DHCP only, one per lab.
    Vagrant reaches the VMs through it; the harness and the tests use the lab networks."""
    if any(n.name == "mgmt" for n in networks):
        raise HarnessError(f"lab {lab}: the network name 'mgmt' is reserved for the VM management network "
                           f"(libvirt network {paths.obj_name(lab, 'mgmt')}); rename that network")
    cidr = ipaddress.IPv4Network(preset) if preset else allocate_subnet(lab, "mgmt", taken)
    hosts = list(itertools.islice(cidr.hosts(), 1, None))
    return MgmtPlan(name="mgmt", cidr=str(cidr), prefix=cidr.prefixlen, netmask=str(cidr.netmask),
                    host_address=str(cidr.network_address + 1), dhcp_start=str(hosts[0]), dhcp_end=str(hosts[-1]),
                    bridge=paths.bridge_name(lab, len(networks)), libvirt_network=paths.obj_name(lab, "mgmt"))


def render(plan: Plan) -> dict[str, str]:
    """Every config file the plan implies: relative path -> content."""
    files: dict[str, str] = {}
    for node in plan.nodes:
        files[f"nodes/{node.name}/etc/hosts"] = _env.get_template("hosts.j2").render(plan=plan, node=node)
    for b in backends():
        section = b.planned(plan)
        if section is not None:
            files.update(b.render(plan, section))
    for p in plan.host.pools:
        where = "host" if p.host == "kvm" else f"nodes/{p.host}"
        files[f"{where}/pools/{p.name}.xml"] = _env.get_template("pool.xml.j2").render(plan=plan, pool=p)
        if p.secret_uuid:  # an rbd pool, or an iscsi pool whose ACL has CHAP
            files[f"{where}/secrets/{p.name}.xml"] = _env.get_template("secret.xml.j2").render(plan=plan, pool=p)
    where_of = {p.name: "host" if p.host == "kvm" else f"nodes/{p.host}" for p in plan.host.pools}
    for v in plan.host.volumes:  # next to the pool: on the KVM host or on the pool's hypervisor node
        files[f"{where_of[v.pool]}/volumes/{v.pool}/{v.name}.xml"] = _env.get_template("volume.xml.j2").render(vol=v)
    return files


def write(plan: Plan, directory: Path) -> dict[str, str]:
    """Write plan.json and the rendered files under ``directory``; returns the files."""
    paths.private_dir(directory)  # a lab's keys, secrets, nodes and disks are for root (its owner) alone
    files = render(plan)
    tmp = directory / "plan.json.tmp"
    tmp.write_text(plan.to_json())
    tmp.replace(directory / "plan.json")
    root = (directory / "files").resolve()
    for rel, content in files.items():
        target = directory / "files" / rel
        if not target.resolve().is_relative_to(root):  # names are allow-listed; this is the last guard
            raise HarnessError(f"rendered file {rel!r} would be written outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return files


@dataclass(frozen=True)
class Loaded:
    """A validated topology, its located data (for problems found when the plan is made) and, for
    an instance (`--name`), the name of the lab the file describes."""
    topo: Topology
    res: Resolved
    loc: Located
    instance_of: str | None = None


def load_topology(file: str, facts: HostFacts, provider: str | None = None, name: str | None = None,
                  release: str | None = None) -> Loaded:
    """Read and validate a topology file. ``provider`` and ``release`` override the file's (a node
    naming its own release keeps it), validated as if it said so; ``name`` makes the lab an instance
    of the file under that name (its own networks, nodes, pools and paths): one topology, many labs."""
    if name is not None and not re.fullmatch(NAME_RE, name):
        raise HarnessError(f"--name {name!r}: a lab name is 1-31 lower-case letters, digits and '-', "
                           f"starting with a letter")
    loc = load_file(file)
    instance_of = None
    if isinstance(loc.data, dict):
        lab = name or loc.data.get("lab")
        existing = paths.lab_dir(lab) / "plan.json" if isinstance(lab, str) and re.fullmatch(NAME_RE, lab) else None
        if not provider and existing is not None and existing.exists():
            provider = Plan.load(existing).provider  # a resumed lab stays on the provider it was made on
        loc.data.update({k: v for k, v in (("provider", provider), ("release", release)) if v})
        if name and name != loc.data.get("lab"):
            instance_of = str(loc.data.get("lab"))
            loc.data["lab"] = name
    topo, res = validate_located(loc, facts)
    return Loaded(topo, res, loc, instance_of)


def plan_for(loaded: Loaded, facts: HostFacts) -> Plan:
    """The plan of a validated topology; a lab that exists keeps its subnets (and must come from
    the same file and provider). Explicit cidrs must be free of what this host routes and other
    labs hold, and the KVM host's pool paths free of other labs' pools: checked here, against the
    same look-up the allocation uses (callers hold the allocation lock around this)."""
    topo, res, loc = loaded.topo, loaded.res, loaded.loc
    others = other_plans(exclude_lab=topo.lab)  # read once: subnets, tags and host paths come from them
    taken = used_subnets(exclude_lab=topo.lab, others=others)
    clashes = [loc.problem(("networks", i, "cidr"), f"{n.cidr} overlaps {t}, which this host routes or another lab holds",
                           "leave cidr out (a free /24 is chosen) or pick a subnet nothing here uses")
               for i, n in enumerate(topo.networks) if n.cidr
               for t in [next((t for t in taken if ipaddress.IPv4Network(n.cidr).overlaps(t)), None)] if t is not None]
    same_tag = [o.lab for o in others if o.tag == paths.tag(topo.lab)]
    if same_tag:  # bridge and veth names carry the tag: the two labs would take each other's links
        clashes.append(loc.problem(("lab",), f"lab name {topo.lab} has the same short tag ({paths.tag(topo.lab)}) as lab "
                                   f"{same_tag[0]}, which is on this host", "choose another lab name (or --name)"))
    held = host_paths_held(others)
    for i, p in enumerate(topo.host.pools):
        path = kvm_path(p, topo.lab, loaded.instance_of)
        if path is not None and path in held:
            clashes.append(loc.problem(("host", "pools", i, "path"), f"{path} on this host is lab {held[path]}'s pool",
                                       f"run this topology as an instance (storlab up --name NAME: its paths get -NAME), "
                                       f"`storlab down {held[path]}`, or pick another path"))
    if clashes:
        raise TopologyError(clashes)
    existing = paths.lab_dir(topo.lab) / "plan.json"
    preset: dict[str, str] = {}
    if existing.exists():
        old = Plan.load(existing)
        if old.topology != str(Path(loc.file).resolve()):
            raise HarnessError(f"lab '{topo.lab}' already exists from {old.topology}; "
                               f"run `storlab down {topo.lab}` first or rename the lab")
        if old.provider != res.provider:
            raise HarnessError(f"lab '{topo.lab}' exists with provider {old.provider}; "
                               f"run `storlab down {topo.lab}` first")
        preset = {n.name: n.cidr for n in old.networks}  # a resumed lab keeps its subnets
        if old.mgmt:
            preset["@mgmt"] = old.mgmt.cidr
    return make_plan(topo, res, loc.file, taken, facts, preset=preset, instance_of=loaded.instance_of)


def load_plan(file: str, facts: HostFacts, provider: str | None = None, name: str | None = None) -> Plan:
    return plan_for(load_topology(file, facts, provider, name), facts)


def other_plans(exclude_lab: str | None = None) -> list[Plan]:
    """The plans of the other labs on this host (an unreadable one is skipped)."""
    out = []
    labs = paths.home() / "labs"
    for p in sorted(labs.glob("*/plan.json")) if labs.is_dir() else []:
        if p.parent.name == exclude_lab:
            continue
        try:
            out.append(Plan.load(p))
        except (OSError, HarnessError):
            continue
    return out


def host_paths_held(others: list[Plan]) -> dict[str, str]:
    """Paths of the KVM host's pools that other labs' plans hold: path -> lab."""
    return {pool.path: o.lab for o in others for pool in o.host.pools if pool.host == "kvm" and pool.path}
