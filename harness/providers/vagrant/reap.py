"""The sweep of libvirt domains and networks (with the domains' own disk volumes) marked as a lab's
of this storlab home whose lab directory is gone, and how a network's lab is read from it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from harness import log, paths
from harness.errors import CleanupReport
from harness.host.virt import connect
from harness.providers.vagrant import spec
from harness.providers.vagrant.domains import remove_domain


def network_owner(name: str, xml: str) -> str | None:
    """The lab a network is, by its name and its bridge (the ownership mark: the bridge carries the
    lab's tag). storlab-LAB_NET names its lab; an older storlab's storlab-LAB-NET could be any lab
    whose name ends at one of its '-': the one whose bridge it uses."""
    br = ET.fromstring(xml).find("bridge")
    bridge = br.get("name", "") if br is not None else ""

    def bridged(lab: str) -> bool:
        return bool(re.fullmatch(rf"{re.escape(paths.bridge_prefix(lab))}\d+", bridge))
    lab = paths.lab_of(name)
    if lab is not None:
        return lab if bridged(lab) else None
    rest = name.removeprefix(paths.PREFIX) if name.startswith(paths.PREFIX) else ""
    for i, ch in enumerate(rest):
        if ch == "-" and rest[:i] and bridged(rest[:i]):
            return rest[:i]
    return None


def reap_orphans(labs: set[str], rep: CleanupReport) -> None:
    """Domains and networks marked as a lab's whose lab is gone, with the domains' own disk volumes;
    nothing that merely has a storlab-like name (a hand-made `storlab-something` stays)."""
    try:
        import libvirt

        conn = connect()
    except Exception:  # no libvirt here: nothing of ours can be in it
        return
    try:
        for dom in conn.listAllDomains(0):
            mark = spec.domain_mark(dom.XMLDesc(0))
            owner = mark[0] if mark else None
            if owner is None or owner in labs:
                continue
            if whose := paths.other_home(spec.domain_home(dom.XMLDesc(0))):
                log.info(f"reap: domain {dom.name()} of lab {owner} is {whose}: not this home's to remove")
                continue
            disks = [s.get("file", "") for s in ET.fromstring(dom.XMLDesc(0)).iterfind("./devices/disk/source")]
            try:
                remove_domain(dom, libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                rep.removed.append(f"orphan domain {dom.name()} (lab {owner})")
            except libvirt.libvirtError as exc:
                rep.failed.append((f"domain {dom.name()}", str(exc)))
                continue
            for path in disks:
                try:
                    vol = conn.storageVolLookupByPath(path)
                except libvirt.libvirtError:
                    continue
                # the domain's own disk (it is marked as the lab's) in storlab's pool, named as the lab's
                # objects are now or were named by an older storlab
                if vol.storagePoolLookupByVolume().name() == "storlab" and paths.named_for(owner, vol.name()):
                    try:
                        vol.delete(0)
                        rep.removed.append(f"orphan volume {vol.name()}")
                    except libvirt.libvirtError as exc:
                        rep.failed.append((f"volume {vol.name()}", str(exc)))
        for net in conn.listAllNetworks(0):
            owner = network_owner(net.name(), net.XMLDesc(0))
            if owner is None or owner in labs:
                continue
            if net.UUIDString() != spec.network_uuid(net.name(), paths.home_id()):
                log.info(f"reap: network {net.name()} is lab {owner}'s, not made by this storlab home (its UUID "
                         "is not this home's mark): not this home's to remove")
                continue
            try:
                if net.isActive():
                    net.destroy()
                net.undefine()
                rep.removed.append(f"orphan network {net.name()} (lab {owner})")
            except libvirt.libvirtError as exc:
                rep.failed.append((f"network {net.name()}", str(exc)))
    finally:
        conn.close()
