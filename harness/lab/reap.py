"""Reap: labs whose lease ended or whose owner died mid-way, and lab-marked objects (containers,
libvirt domains and networks, Incus projects, links) whose lab directory is gone. Only this home's:
another storlab home's objects are named in the log and left alone."""

from __future__ import annotations

import json
import re
import shutil
import time
import xml.etree.ElementTree as ET

from harness import locks, log, paths
from harness.errors import CleanupReport, HarnessError
from harness.host.virt import connect
from harness.lab.lab import Lab, _pid_alive, list_labs
from harness.providers.incus.provider import orphans as incus_orphans
from harness.providers.incus.provider import remotes_used as incus_remotes_used
from harness.providers.incus.provider import remove_lab as incus_remove_lab
from harness.providers.lxc.provider import lxcpath, owner_of
from harness.providers.vagrant import spec as vagrantspec
from harness.run import run


def reap() -> CleanupReport:
    """Remove labs whose `up`/test owner died mid-way, and lab-named objects with no lab at all."""
    rep = CleanupReport()
    for name in list_labs():
        if locks.is_held_elsewhere(name):
            continue  # its owner is alive and at work on it
        try:
            lab = Lab.load(name)
        except HarnessError as exc:  # one unreadable lab does not stop the others
            rep.failed.append((f"lab {name}", str(exc)))
            continue
        st = lab.state()
        why, label = None, []
        if lab.expired():
            why = f"its lease ended at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['expires']))}"
            label = [f"lab {name} (expired)"]
        elif st.get("status") in ("creating", "destroying", "destroy-failed", "in-use") and \
                not _pid_alive(st.get("owner_pid")):
            why = f"{st.get('status')}, owner {st.get('owner_pid')} gone"
        if why is None:
            continue
        log.info(f"reap: lab {name}: {why}")
        try:
            sub = lab.down()
        except HarnessError as exc:  # e.g. LabBusy: taken by another process since; the other labs go on
            rep.failed.append((f"lab {name}", str(exc)))
            continue
        rep.removed += [*label, *sub.removed]
        rep.failed += sub.failed
    # orphans: containers and links carrying a storlab name whose lab directory is gone
    labs = set(list_labs())
    if lxcpath().is_dir():
        for c in lxcpath().iterdir():
            owner = owner_of(c)
            if c.name.startswith("storlab-") and owner is not None and owner not in labs:
                run(["lxc-stop", "-k", "-P", str(lxcpath()), "-n", c.name], timeout=60)
                shutil.rmtree(c, ignore_errors=True)
                rep.removed.append(f"orphan container {c.name}")
    _reap_libvirt(labs, rep)
    for remote in incus_remotes_used():
        for orphan in incus_orphans(labs, remote):
            log.info(f"reap: Incus project storlab-{orphan} on {remote or 'this host'}: its lab directory is gone")
            sub = incus_remove_lab(remote, orphan)
            rep.removed += sub.removed
            rep.failed += sub.failed
    for link in json.loads(run(["ip", "-j", "link", "show"], timeout=15).stdout or "[]"):
        mark = paths.alias_owner(str(link.get("ifalias", "")))
        if mark is None or mark[0] in labs:
            continue
        if whose := paths.other_home(mark[1]):
            log.info(f"reap: link {link['ifname']} of lab {mark[0]} is {whose}: not this home's to remove")
            continue
        r = run(["ip", "link", "del", link["ifname"]], timeout=15)
        (rep.removed.append(f"orphan link {link['ifname']}") if r.ok else rep.failed.append((link["ifname"], r.stderr)))
    return rep


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


def _reap_libvirt(labs: set[str], rep: CleanupReport) -> None:
    """Domains and networks marked as a lab's whose lab is gone, with the domains' own disk volumes;
    nothing that merely has a storlab-like name (a hand-made `storlab-something` stays)."""
    try:
        import libvirt

        conn = connect()
    except Exception:  # no libvirt here: nothing of ours can be in it
        return
    try:
        for dom in conn.listAllDomains(0):
            mark = vagrantspec.domain_mark(dom.XMLDesc(0))
            owner = mark[0] if mark else None
            if owner is None or owner in labs:
                continue
            if whose := paths.other_home(vagrantspec.domain_home(dom.XMLDesc(0))):
                log.info(f"reap: domain {dom.name()} of lab {owner} is {whose}: not this home's to remove")
                continue
            disks = [s.get("file", "") for s in ET.fromstring(dom.XMLDesc(0)).iterfind("./devices/disk/source")]
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
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
            if net.UUIDString() != vagrantspec.network_uuid(net.name(), paths.home_id()):
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
