"""Plan -> what vagrant-libvirt and libvirt need for a lab of VMs: pure data, no I/O.

The provider writes spec() to <lab>/vagrant.json; the top-level Vagrantfile only applies it, so
every decision about domains, networks, disks and keys is made (and unit-tested) here.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from harness import paths
from harness.errors import HarnessError
from harness.plan.model import DiskPlan, MgmtPlan, NetworkPlan, NodePlan, Plan, need
from harness.providers.vagrant.box import CMDLINE, STORAGE_POOL, Box

MiB = 2**20
URI = "qemu:///system"


def driver(plan: Plan) -> str:
    """libvirt domain type: 'kvm' only where hardware acceleration works, else TCG ('qemu')."""
    return "kvm" if plan.accel == "kvm" else "qemu"


def boot_bound(plan: Plan) -> int:
    """Seconds from power-on to an open ssh port before a node counts as hung. Measured: ~50 s for
    one VM under TCG, more when VMs share the 2 cores; a KVM guest boots in seconds."""
    n = len(plan.nodes)
    return (240 + 60 * n) if driver(plan) == "qemu" else 120


def mgmt_address(plan: Plan, node: NodePlan) -> str:
    """Fixed management address per node (a DHCP reservation), .11 + node index like the lab networks."""
    cidr = ipaddress.IPv4Network(need(plan.mgmt, "the management network").cidr)
    return str(cidr.network_address + 11 + node.index)


def disk_size(size: int) -> str:
    """vagrant-libvirt/fog take '<n><unit>'; a bare number would mean GiB."""
    return f"{-(-size // MiB)}M"


#: made at every boot before the mounts: each mounted data disk as a device-mapper device
DM_UNIT = """[Unit]
Description=storlab: the data disks as device-mapper devices (a fault may swap their table)
DefaultDependencies=no
After=systemd-udevd.service systemd-modules-load.service
Before=local-fs-pre.target
Wants=local-fs-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/storlab-dm

[Install]
WantedBy=local-fs-pre.target
"""


def dm_script(disks: tuple[DiskPlan, ...]) -> str:
    """/usr/local/sbin/storlab-dm: a linear device-mapper device over each mounted data disk (the
    disk as it is), unless it exists. Node.flakey swaps its table for dm-flakey and back under the
    mounted filesystem; without it the disk would have to be unmounted first."""
    lines = ["#!/bin/sh", "# storlab: the data disks as device-mapper devices (linear), made before the mounts",
             "set -eu", "modprobe dm_mod",
             'mk() { [ -e "/dev/mapper/$1" ] || dmsetup create "$1" --table "0 $(blockdev --getsz "$2") linear $2 0"; }']
    for d in disks:
        if d.filesystem != "none" and d.mount:
            lines.append(f"mk {shlex.quote(d.dm_name)} {shlex.quote(need(d.device, f'disk {d.name}: device'))}")
    return "\n".join(lines) + "\n"


def provision_script(name: str, disks: tuple[DiskPlan, ...]) -> str:
    """Run once by vagrant as root after the first boot: the lab key replaces the box's build key
    (uploaded just before by the file provisioner), the hostname, and disks that the topology gives
    a filesystem and mount point formatted and mounted, as the lxc provider hands them over: each
    on a device-mapper device of its own (dm_script), made again at every boot by storlab-dm.service."""
    lines = [
        "set -eu",
        "chmod 0700 /root/.ssh && chmod 0600 /root/.ssh/authorized_keys",
        f"echo {shlex.quote(name)} > /etc/hostname",
        f"hostname {shlex.quote(name)}",
    ]
    mounted = [d for d in disks if d.filesystem != "none" and d.mount]
    if mounted:
        lines += [f"printf %s {shlex.quote(dm_script(disks))} > /usr/local/sbin/storlab-dm",
                  "chmod 0755 /usr/local/sbin/storlab-dm",
                  f"printf %s {shlex.quote(DM_UNIT)} > /etc/systemd/system/storlab-dm.service",
                  # enabled by hand and started: a new unit is loaded when first asked for, and each
                  # daemon-reload (`systemctl enable` makes one) took ~2.8 s under TCG
                  "mkdir -p /etc/systemd/system/local-fs-pre.target.wants",
                  "ln -sf /etc/systemd/system/storlab-dm.service /etc/systemd/system/local-fs-pre.target.wants/",
                  "systemctl start storlab-dm.service"]
    for d in mounted:
        dev, mnt, fs = shlex.quote(f"/dev/mapper/{d.dm_name}"), shlex.quote(need(d.mount, "mount")), d.filesystem
        mkfs = "mkfs.xfs -q -f" if fs == "xfs" else "mkfs.ext4 -q -F"
        # nofail: a VM whose data disk is missing still boots (and is reachable); nofail alone also
        # drops the mount's order before local-fs.target, and a daemon (nfsd) then started on the
        # empty mount point while the disk was still being mounted: the order is asked for again
        fstab = (f"/dev/mapper/{d.dm_name} {d.mount} {fs} defaults,nofail,x-systemd.requires=storlab-dm.service,"
                 "x-systemd.before=local-fs.target 0 2")
        lines += [
            f"blkid {dev} >/dev/null 2>&1 || {mkfs} {dev}",
            f"mkdir -p {mnt}",
            f"grep -qs {shlex.quote(' ' + need(d.mount, 'mount') + ' ')} /etc/fstab || echo {shlex.quote(fstab)} >> /etc/fstab",
            f"mountpoint -q {mnt} || mount {mnt}",
        ]
    return "\n".join(lines) + "\n"


def domain_description(lab: str, node: str, home: str) -> str:
    """What a lab's domain says it is: storlab removes only domains that say so (or vagrant made);
    ``home``: the storlab home that made it (paths.home_id), so `reap` elsewhere leaves it alone."""
    return f"storlab lab {lab} node {node} home {home}"


_MARK = re.compile(r"storlab lab ([a-z][a-z0-9-]*) node ([a-z][a-z0-9-]*)(?: home ([0-9a-f]{16}))?")


def domain_mark(xml: str) -> tuple[str, str] | None:
    """(lab, node) from a domain's XML when its description is one domain_description wrote."""
    m = _MARK.fullmatch(ET.fromstring(xml).findtext("description") or "")
    return (m.group(1), m.group(2)) if m else None


def domain_home(xml: str) -> str | None:
    """The storlab home a marked domain was made by (None: unmarked, or an older storlab's)."""
    m = _MARK.fullmatch(ET.fromstring(xml).findtext("description") or "")
    return m.group(3) if m else None


def machine(plan: Plan, node: NodePlan, labdir: Path) -> dict[str, Any]:
    name, domain = node.name, node.object
    if not domain.endswith(name):
        raise ValueError(f"domain {domain} does not end with the node name {name}")
    nets = []
    for net in plan.networks:
        cidr = ipaddress.IPv4Network(net.cidr)
        nets.append({"network_name": net.libvirt_network, "ip": node.addresses[net.name],
                     "netmask": str(cidr.netmask), "mac": node.macs[net.name]})
    disks = []
    for d in node.disks:
        if not d.device:
            raise ValueError(f"node {name} disk {d.name} has no device (plan made for another provider?)")
        disks.append({"device": d.device.removeprefix("/dev/"), "size": disk_size(d.size),
                      "volume": d.image + ".qcow2"})
    return {
        "name": name, "domain": domain, "domain_prefix": domain[: len(domain) - len(name)],
        "description": domain_description(plan.lab, name, paths.home_id()),
        "cpus": node.cpus, "memory": node.memory,
        "mgmt_mac": paths.mac(plan.lab, name, "mgmt"), "mgmt_ip": mgmt_address(plan, node),
        "console_log": str(labdir / "logs" / f"{name}.console.log"),
        "networks": nets, "disks": disks, "provision": provision_script(name, node.disks),
    }


def spec(plan: Plan, labdir: Path, boxes: Mapping[str, Box]) -> dict[str, Any]:
    """What the Vagrantfile reads. ``boxes``: the box of each release the plan's nodes run (release -> box)."""
    if plan.provider != "vagrant" or plan.mgmt is None:
        raise ValueError(f"plan for lab {plan.lab} is not a vagrant plan (provider {plan.provider})")
    mgmt = plan.mgmt
    box = boxes[plan.nodes[0].release]  # the default; each machine names its own
    return {
        "lab": plan.lab, "uri": URI, "driver": driver(plan), "box": box.name,
        "cmdline": CMDLINE,
        "storage_pool": STORAGE_POOL, "boot_timeout": boot_bound(plan) + 60,
        # the lab key first; the boxes' build keys only until the provisioner replaced it
        "ssh_private_keys": [str(labdir / "id_ed25519"), *dict.fromkeys(str(b.build_key) for b in boxes.values())],
        "authorized_keys": str(labdir / "authorized_keys"),
        "management": {"network_name": mgmt.libvirt_network, "address": mgmt.cidr,
                       "mode": "none", "guest_ipv6": "no"},
        "machines": [machine(plan, n, labdir) | {"box": boxes[n.release].name,
                                                 "kernel": str(boxes[n.release].kernel(n.kernel)),
                                                 "initrd": str(boxes[n.release].initrd(n.kernel))}
                     for n in plan.nodes],
    }


def network_uuid(name: str, home: str) -> str:
    """The UUID storlab gives the libvirt network ``name`` it makes for a lab of storlab home
    ``home``: the network's ownership mark (libvirt 9.0 networks hold no description or metadata),
    so that `reap` in another home, seeing a network of a lab it does not know, leaves it alone."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"storlab:network:{home}:{name}"))


def network_xml(plan: Plan, net: NetworkPlan | MgmtPlan, hosts: list[dict[str, Any]] | None = None) -> str:
    """An isolated libvirt network (no <forward>: nothing leaves the host). DHCP only on the
    management network, with a fixed address per node; DNS off everywhere."""
    cidr = ipaddress.IPv4Network(net.cidr)
    lines = ["<network>", f"  <name>{net.libvirt_network}</name>",
             f"  <uuid>{network_uuid(net.libvirt_network, paths.home_id())}</uuid>",
             f"  <bridge name={quoteattr(net.bridge)} stp='off' delay='0'/>",
             "  <dns enable='no'/>",
             # netmask, not prefix: vagrant-libvirt matches existing networks by address and netmask
             f"  <ip address={quoteattr(net.host_address)} netmask={quoteattr(str(cidr.netmask))}>"]
    if hosts is not None:
        if not isinstance(net, MgmtPlan):
            raise HarnessError(f"network {net.name}: only the management network has DHCP hosts")
        lines.append("    <dhcp>")
        lines.append(f"      <range start={quoteattr(net.dhcp_start)} end={quoteattr(net.dhcp_end)}/>")
        lines += [f"      <host mac={quoteattr(h['mgmt_mac'])} name={quoteattr(h['name'])} ip={quoteattr(h['mgmt_ip'])}/>"
                  for h in hosts]
        lines.append("    </dhcp>")
    lines += ["  </ip>", "</network>", ""]
    return "\n".join(lines)


def networks(plan: Plan, spec_: dict[str, Any]) -> dict[str, str]:
    """libvirt network name -> XML, management network first."""
    mgmt = need(plan.mgmt, "the management network")
    out = {mgmt.libvirt_network: network_xml(plan, mgmt, spec_["machines"])}
    for net in plan.networks:
        out[net.libvirt_network] = network_xml(plan, net)
    return out


def lab_vagrantfile(toplevel: Path) -> str:
    """The lab directory's own Vagrantfile, so `vagrant status` works there."""
    return "\n".join([
        "# storlab lab Vagrantfile (written by harness/providers/vagrant/provider.py): this lab's plan,",
        "# then the data-driven top-level Vagrantfile.",
        'ENV["STORLAB_PLAN"] = File.expand_path("plan.json", __dir__)',
        f"load {json.dumps(str(toplevel))}",
        "",
    ])
