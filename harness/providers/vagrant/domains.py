"""This lab's objects in libvirt: the connection, and which domains and networks are the lab's
(a name is not enough: a hand-made or another tool's object may carry it), made and found again."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness import log, paths
from harness.errors import HarnessError
from harness.host.virt import connect
from harness.plan.model import Plan
from harness.providers.vagrant import box
from harness.providers.vagrant import spec as vagrantspec


class LabLibvirt:
    def __init__(self, plan: Plan, labdir: Path) -> None:
        self.plan = plan
        self.labdir = labdir
        self.lab = plan.lab
        self._conn: Any = None

    def conn(self) -> Any:
        if self._conn is None:
            self._conn = connect(vagrantspec.URI)
        return self._conn

    def domain_name(self, node: str) -> str:
        try:
            return str(self.plan.node(node).object)
        except KeyError:
            return paths.obj_name(self.lab, node)

    def vagrant_ids(self) -> set[str]:
        """UUIDs of the domains vagrant made for this lab (its own record, for domains made before the mark)."""
        return {p.read_text().strip() for p in (self.labdir / ".vagrant" / "machines").glob("*/libvirt/id")}

    def owned_domain(self, dom: Any) -> bool:
        """A node's domain, or the lab's build of a saved state (savedstate.build: named and marked
        as the lab's node state-KEY; its name, storlab-LAB_state_KEY, no node's can be)."""
        import libvirt
        by_name = {n.object: n.name for n in self.plan.nodes}
        node = by_name.get(dom.name())
        if node is None:
            if not dom.name().startswith(paths.obj_name(self.lab, "state", "")):
                return False  # by name first: another lab's domain may be going away meanwhile
            try:
                mark = vagrantspec.domain_mark(dom.XMLDesc(0))
            except libvirt.libvirtError:  # gone since it was listed
                return False
            return (mark is not None and mark[0] == self.lab and mark[1].startswith("state-")
                    and dom.name() == paths.obj_name(self.lab, "state", mark[1].removeprefix("state-")))
        return vagrantspec.domain_mark(dom.XMLDesc(0)) == (self.lab, node) or dom.UUIDString() in self.vagrant_ids()

    def planned_networks(self) -> dict[str, str]:
        """libvirt network name -> the bridge this lab gives it (the bridge name carries the lab's tag)."""
        return {n.libvirt_network: n.bridge for n in (*self.plan.networks, *([self.plan.mgmt] if self.plan.mgmt else []))}

    def owned_network(self, net: Any) -> bool:
        import libvirt
        bridge = self.planned_networks().get(net.name())
        if bridge is None:
            return False  # by name first: another lab's network may be going away meanwhile
        try:
            br = ET.fromstring(net.XMLDesc(0)).find("bridge")
        except libvirt.libvirtError:  # gone since it was listed
            return False
        return br is not None and br.get("name") == bridge

    def domain(self, node: str) -> Any:
        """The node's domain, if it is this lab's (a hand-made one with its name is not touched)."""
        import libvirt
        try:
            dom = self.conn().lookupByName(self.domain_name(node))
        except libvirt.libvirtError:
            return None
        return dom if self.owned_domain(dom) else None

    def domains(self) -> list[Any]:
        return [d for d in self.conn().listAllDomains(0) if self.owned_domain(d)]

    def networks(self) -> list[Any]:
        return [n for n in self.conn().listAllNetworks(0) if self.owned_network(n)]

    def ensure_pool(self) -> None:
        """The pool must exist before `vagrant up --parallel`: vagrant-libvirt would only create
        one named 'default', and racily from parallel machines."""
        import libvirt
        conn = self.conn()
        try:
            pool = conn.storagePoolLookupByName(box.STORAGE_POOL)
        except libvirt.libvirtError:
            log.info(f"defining libvirt storage pool '{box.STORAGE_POOL}' at {box.pool_path()}")
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{box.STORAGE_POOL}</name>"
                f"<target><path>{box.pool_path()}</path></target></pool>", 0)
            pool.build(0)
            pool.setAutostart(1)
        if not pool.isActive():
            pool.create(0)

    def ensure_network(self, name: str, xml: str) -> None:
        import libvirt
        conn = self.conn()
        want = ET.fromstring(xml)
        try:
            net = conn.networkLookupByName(name)
            if not self.owned_network(net):
                raise HarnessError(f"libvirt network {name} exists and is not lab {self.lab}'s (bridge); "
                                   "storlab leaves it alone: remove or rename it")
            have = ET.fromstring(net.XMLDesc(0))
            if net_key(have) != net_key(want):
                log.info(f"network {name}: redefining (was {net_key(have)}, want {net_key(want)})")
                if net.isActive():
                    net.destroy()
                net.undefine()
                raise LookupError
        except (libvirt.libvirtError, LookupError):
            net = conn.networkDefineXML(xml)
        if not net.isActive():
            net.create()

    def drop_all_snapshots(self) -> None:
        """Snapshot metadata first: a domain with snapshots cannot be undefined by vagrant."""
        for dom in self.domains():
            for snap in dom.listAllSnapshots(0):
                snap.delete(0)

    def conflicts(self) -> list[str]:
        """Domains and networks with this lab's names that are not this lab's."""
        import libvirt
        out = []
        for n in self.plan.nodes:
            try:
                dom = self.conn().lookupByName(n.object)
            except libvirt.libvirtError:
                continue
            if not self.owned_domain(dom):
                out.append(f"domain {n.object} (not made for lab {self.lab}: no storlab description, not vagrant's)")
        for name in self.planned_networks():
            try:
                net = self.conn().networkLookupByName(name)
            except libvirt.libvirtError:
                continue
            if not self.owned_network(net):
                out.append(f"network {name} (its bridge is not this lab's)")
        return out

def remove_domain(dom: Any, undefine_flags: int) -> None:
    """Power ``dom`` off and undefine it with ``undefine_flags``; a transient domain (a saved
    state's build) has no definition: destroy() alone removes it, and its undefine would fail."""
    persistent = dom.isPersistent()
    if dom.isActive():
        dom.destroy()
    if persistent:
        dom.undefineFlags(undefine_flags)


def net_key(root: ET.Element) -> tuple[str | None, ...]:
    """What must match for a defined network to be reused: bridge, address, netmask, forwarding, DHCP hosts."""
    br, ip, fwd = root.find("bridge"), root.find("ip"), root.find("forward")
    hosts = ",".join(sorted(f"{h.get('mac')}={h.get('ip')}" for h in root.findall("./ip/dhcp/host")))
    return (br.get("name") if br is not None else None,
            ip.get("address") if ip is not None else None, ip.get("netmask") if ip is not None else None,
            fwd.get("mode") if fwd is not None else None, hosts)
