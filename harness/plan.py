"""Turn a validated topology into a concrete plan: subnets, addresses, MACs, disks, object
names and the config files each role will install, written to the lab directory."""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
import uuid
import zlib
from pathlib import Path
from typing import Any, Literal, cast

import jinja2

from . import paths
from .capabilities import available
from .errors import HarnessError, TopologyError
from .hostfacts import HostFacts
from .model import (
    AclPlan,
    CephClientPlan,
    CephPlan,
    CephPoolPlan,
    ChapPlan,
    DiskPlan,
    GlusterPlan,
    GlusterVolumePlan,
    HostPlan,
    HostPoolPlan,
    HostVolumePlan,
    IscsiPlan,
    LunPlan,
    MgmtPlan,
    MonPlan,
    NetworkPlan,
    NfsExportPlan,
    NfsPlan,
    NodePlan,
    Plan,
)
from .topology import Topology
from .validate import Resolved, validate_located
from .yamlload import Located, load_file

# what validation resolved `implementation: auto` to (pydantic checks the value again)
NfsImpl = Literal["kernel", "ganesha"]
IscsiImpl = Literal["lio", "tgt"]

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("harness", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=False,
)


def used_subnets(exclude_lab: str | None = None) -> set[ipaddress.IPv4Network]:
    """Subnets other labs hold (from their plans) and those routed on this host."""
    used: set[ipaddress.IPv4Network] = set()
    labs = paths.home() / "labs"
    if labs.is_dir():
        for p in labs.glob("*/plan.json"):
            if p.parent.name == exclude_lab:
                continue
            try:
                other = Plan.load(p)
                for n in (*other.networks, *([other.mgmt] if other.mgmt else [])):
                    used.add(ipaddress.IPv4Network(n.cidr))
            except (OSError, ValueError, HarnessError):
                continue
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
              preset: dict[str, str] | None = None) -> Plan:
    """``preset`` maps network name -> cidr already handed to this lab (a resumed `up`);
    its key "@mgmt" is the vagrant management network's."""
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
    if topo.gluster:
        sections["gluster"] = _gluster(topo.gluster, networks[0], nodes)
    if topo.nfs:
        sections["nfs"] = _nfs(topo.nfs, resolved, nodes, networks[0])
    if topo.iscsi:
        sections["iscsi"] = _iscsi(topo.iscsi, resolved, nodes)
    if topo.ceph:
        sections["ceph"] = _ceph(lab, topo.ceph, nodes, networks[0])
    partial = Plan(lab=lab, topology=str(Path(topo_file).resolve()), provider=resolved.provider,
                   accel="kvm" if (accel == "kvm" or (accel is None and facts and facts.kvm_usable)) else "tcg",
                   networks=networks, nodes=nodes, tag=paths.tag(lab), host=HostPlan(uri=topo.host.uri, pools=(), volumes=()),
                   **sections)
    return partial.with_(host=_host(topo, partial))


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
            disks=disks, object=paths.obj_name(lab, node.name)))
    return tuple(placed)


def _gluster(g: Any, lab_net: NetworkPlan, nodes: tuple[NodePlan, ...]) -> GlusterPlan:
    def option(k: str, val: str | int | bool) -> str:
        if k == "auth.allow" and val == "lab":
            return lab_clients(lab_net, nodes)
        return "on" if val is True else "off" if val is False else str(val)
    return GlusterPlan(volumes=tuple(GlusterVolumePlan(
        name=v.name, replica=v.replica, bricks=tuple(v.bricks), nodes=tuple(dict.fromkeys(b.split(":")[0] for b in v.bricks)),
        options={k: option(k, val) for k, val in v.options.items()}) for v in g.volumes))


def _nfs(nfs: Any, resolved: Resolved, nodes: tuple[NodePlan, ...], lab_net: NetworkPlan) -> NfsPlan:
    server = next(n for n in nodes if n.name == nfs.server)
    return NfsPlan(server=nfs.server, implementation=cast(NfsImpl, resolved.nfs_impl), address=server.address,
                   grace_period=nfs.grace_period, lease_time=nfs.lease_time,
                   exports=tuple(NfsExportPlan(path=e.path, options=tuple(e.options),
                                               clients=tuple(lab_net.cidr if c == "lab" else c for c in e.clients))
                                 for e in nfs.exports))


def _iscsi(iscsi: Any, resolved: Resolved, nodes: tuple[NodePlan, ...]) -> IscsiPlan:
    tnode = next(n for n in nodes if n.name == iscsi.target)
    disk_dev = {d.name: d.device for d in tnode.disks}
    portals = tuple(a for net, a in tnode.addresses.items() if "*" in iscsi.portals or net in iscsi.portals)
    acls = tuple(AclPlan(initiator=a.initiator, chap=ChapPlan(
        username=a.chap.username, secret_name=f"chap-{a.initiator.split(':')[-1]}", password_file=a.chap.password_file,
        generate=a.chap.generate, literal=a.chap.password is not None) if a.chap else None) for a in iscsi.acls)
    luns = tuple(LunPlan(**lun.model_dump(),
                         device=disk_dev.get(lun.disk or "") or (f"/dev/storlab/{lun.disk}" if lun.disk else None))
                 for lun in iscsi.luns)
    return IscsiPlan(target=iscsi.target, implementation=cast(IscsiImpl, resolved.iscsi_impl), iqn=iscsi.iqn,
                     portal_addresses=portals, acls=acls, chap=any(a.chap for a in acls), luns=luns)


def _ceph(lab: str, ceph: Any, nodes: tuple[NodePlan, ...], lab_net: NetworkPlan) -> CephPlan:
    def having(role: str) -> tuple[NodePlan, ...]:
        return tuple(n for n in nodes if role in n.roles)
    return CephPlan(
        fsid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"storlab:{lab}:ceph")),
        mons=tuple(MonPlan(name=m.name, address=m.address) for m in having("ceph-mon")),
        mgrs=tuple(n.name for n in having("ceph-mgr")), osds=tuple(n.name for n in having("ceph-osd")),
        admin=tuple(n.name for n in having("ceph-admin")), public_network=lab_net.cidr, osd_disk=ceph.osd_disk,
        osd_pool_default_size=ceph.osd_pool_default_size, heartbeat_grace=ceph.heartbeat_grace,
        pools=tuple(CephPoolPlan(**p.model_dump()) for p in ceph.pools),
        clients=tuple(CephClientPlan(**c.model_dump()) for c in ceph.clients),
        accept_warnings=tuple(ceph.accept_warnings))


def _secret_uuid(lab: str, p: Any) -> str:
    return str(p.secret.uuid if p.secret and p.secret.uuid else uuid.uuid5(uuid.NAMESPACE_URL, f"storlab:{lab}:secret:{p.name}"))


def _pool(topo: Topology, plan: Plan, p: Any) -> HostPoolPlan:
    """A host pool with what its backend resolves to (servers, target, secrets, device)."""
    extra: dict[str, Any] = {}
    if p.backend == "gluster" and plan.gluster:
        vol = next(v for v in plan.gluster.volumes if v.name == p.volume)
        servers = [plan.node(n).address for n in vol.nodes]
        extra.update(server=servers[0], backup_servers=tuple(servers[1:]))
    elif p.backend == "nfs" and plan.nfs:
        extra.update(server=plan.nfs.address)
    elif p.backend == "iscsi" and plan.iscsi:
        extra.update(server=plan.iscsi.portal_addresses[0], target_iqn=plan.iscsi.iqn)
        # when the target demands CHAP from this initiator, libvirt must log in with a secret
        acl = next((a for a in plan.iscsi.acls if a.initiator == p.initiator), None)
        extra["chap"] = acl.chap if acl else None
        if extra["chap"]:
            extra["secret_uuid"] = _secret_uuid(topo.lab, p)
    elif p.backend == "ceph" and plan.ceph:
        extra.update(monitors=tuple(m.address for m in plan.ceph.mons), secret_uuid=_secret_uuid(topo.lab, p))
    host = p.host or "kvm"
    if p.type in ("fs", "logical") and host != "kvm":
        hn = plan.node(host)
        disk = next((d for d in hn.disks if d.name == p.disk), hn.disks[0] if hn.disks else None)
        extra["device"] = disk.device if disk else None
    return HostPoolPlan(**{**p.model_dump(), "host": host, **extra})


def _host(topo: Topology, plan: Plan) -> HostPlan:
    pools = tuple(_pool(topo, plan, p) for p in topo.host.pools)
    types = {p.name: p.type for p in pools}
    squashing = {p.name for p in pools if p.type == "netfs" and topo.nfs and any(
        e.path == p.export and "no_root_squash" not in e.options for e in topo.nfs.exports)}
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


def lab_clients(net: NetworkPlan, nodes: tuple[NodePlan, ...]) -> str:
    """auth.allow takes addresses and '*' wildcards, not CIDRs: the lab network as a wildcard
    where the prefix allows it, else every node address plus the host's bridge address."""
    cidr = ipaddress.IPv4Network(net.cidr)
    if cidr.prefixlen in (8, 16, 24):
        octets = str(cidr.network_address).split(".")[: cidr.prefixlen // 8]
        return ".".join(octets + ["*"] * (4 - len(octets)))
    return ",".join([net.host_address] + [n.addresses[net.name] for n in nodes])


def render(plan: Plan) -> dict[str, str]:
    """Every config file the plan implies: relative path -> content."""
    files: dict[str, str] = {}
    for node in plan.nodes:
        files[f"nodes/{node.name}/etc/hosts"] = _env.get_template("hosts.j2").render(plan=plan, node=node)
    if plan.nfs:
        srv = plan.nfs.server
        if plan.nfs.implementation == "ganesha":
            files[f"nodes/{srv}/etc/ganesha/ganesha.conf"] = _env.get_template("ganesha.conf.j2").render(plan=plan, nfs=plan.nfs)
        else:
            files[f"nodes/{srv}/etc/exports"] = _env.get_template("exports.j2").render(plan=plan, nfs=plan.nfs)
            files[f"nodes/{srv}/etc/nfs.conf.d/storlab.conf"] = _env.get_template("nfs.conf.j2").render(plan=plan, nfs=plan.nfs)
    if plan.iscsi:
        tgt = plan.iscsi.target
        if plan.iscsi.implementation == "tgt":
            files[f"nodes/{tgt}/etc/tgt/conf.d/storlab.conf"] = _env.get_template("tgt.conf.j2").render(
                plan=plan, iscsi=plan.iscsi)
        else:
            files[f"nodes/{tgt}/root/storlab-targetcli.txt"] = _env.get_template("targetcli.j2").render(
                plan=plan, iscsi=plan.iscsi)
    if plan.ceph:
        conf = _env.get_template("ceph.conf.j2").render(plan=plan, ceph=plan.ceph)
        for n in plan.nodes:
            if any(r.startswith("ceph-") for r in n.roles):
                files[f"nodes/{n.name}/etc/ceph/ceph.conf"] = conf
    for p in plan.host.pools:
        where = "host" if p.host == "kvm" else f"nodes/{p.host}"
        files[f"{where}/pools/{p.name}.xml"] = _env.get_template("pool.xml.j2").render(plan=plan, pool=p)
        if p.type == "rbd" or p.chap:
            files[f"{where}/secrets/{p.name}.xml"] = _env.get_template("secret.xml.j2").render(plan=plan, pool=p)
    where_of = {p.name: "host" if p.host == "kvm" else f"nodes/{p.host}" for p in plan.host.pools}
    for v in plan.host.volumes:  # next to the pool: on the KVM host or on the pool's hypervisor node
        files[f"{where_of[v.pool]}/volumes/{v.pool}/{v.name}.xml"] = _env.get_template("volume.xml.j2").render(vol=v)
    return files


def write(plan: Plan, directory: Path) -> dict[str, str]:
    """Write plan.json and the rendered files under ``directory``; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
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


def load_topology(file: str, facts: HostFacts, provider: str | None = None) -> tuple[Topology, Resolved, Located]:
    """Read and validate a topology file (``provider`` overrides the file's, validated as if it said
    so); the located data comes back too, for problems found when the plan is made."""
    loc = load_file(file)
    if provider and isinstance(loc.data, dict):
        loc.data["provider"] = provider
    topo, res = validate_located(loc, facts)
    return topo, res, loc


def plan_for(topo: Topology, res: Resolved, loc: Located, facts: HostFacts) -> Plan:
    """The plan of a validated topology; a lab that exists keeps its subnets (and must come from
    the same file and provider). Explicit cidrs must be free of what this host routes and other
    labs hold: checked here, against the same look-up the allocation uses (callers hold the
    allocation lock around this)."""
    taken = used_subnets(exclude_lab=topo.lab)
    clashes = [loc.problem(("networks", i, "cidr"), f"{n.cidr} overlaps {t}, which this host routes or another lab holds",
                           "leave cidr out (a free /24 is chosen) or pick a subnet nothing here uses")
               for i, n in enumerate(topo.networks) if n.cidr
               for t in [next((t for t in taken if ipaddress.IPv4Network(n.cidr).overlaps(t)), None)] if t is not None]
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
    return make_plan(topo, res, loc.file, taken, facts, preset=preset)


def load_plan(file: str, facts: HostFacts, provider: str | None = None) -> Plan:
    topo, res, loc = load_topology(file, facts, provider)
    return plan_for(topo, res, loc, facts)
