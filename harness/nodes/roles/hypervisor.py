"""Hypervisor role: libvirtd (and the kernel iSCSI initiator) on a lab node, so that pools
needing a kernel feature the KVM host lacks (netfs, iscsi, fs, logical) are wired inside the
lab and reached over qemu+ssh:// with the lab's key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.plan.model import Plan

if TYPE_CHECKING:
    from harness.backends.base import LabContext

NAME = "hypervisor"
UNITS = ["virtlogd.socket", "virtlockd.socket", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
         "libvirtd.service", "iscsid.socket", "iscsid.service", "open-iscsi.service", "rpcbind.socket", "rpcbind.service"]

NETWORK_DROPIN = ("# storlab: autostarted pools need the lab's network (harness.nodes.roles.base)\n"
                  "[Unit]\nWants=network-online.target\nAfter=network-online.target\n")

#: libvirt's host UUID from /etc/machine-id, each node's own (the identity step sets it on a restored
#: VM), rather than SMBIOS: VM nodes restored from one saved state share its SMBIOS UUID, and on
#: trixie (libvirt 11) a live migration between two was refused as "to the same host"
HOST_UUID = ("grep -q '^host_uuid_source' /etc/libvirt/libvirtd.conf || "
             "echo 'host_uuid_source = \"machine-id\"' >> /etc/libvirt/libvirtd.conf")


def applies(plan: Plan) -> bool:
    return any("hypervisor" in n.roles for n in plan.nodes)


def apply(lab: LabContext) -> None:
    for node in lab.nodes.values():
        if "hypervisor" not in node.roles:
            continue
        pools = [p for p in lab.plan.host.pools if p.host == node.name]
        iqn = next((p.initiator for p in pools if p.type == "iscsi"), None)
        if iqn:  # the kernel initiator logs in with the name the target's ACL expects
            node.put("/etc/iscsi/initiatorname.iscsi", f"InitiatorName={iqn}\n")
        # the pools libvirtd autostarts at boot (netfs, iscsi, gluster) reach over the lab's network
        node.ensure_file("/etc/systemd/system/libvirtd.service.d/storlab-network.conf", NETWORK_DROPIN)
        node.succeed(HOST_UUID)
        node.enable_units(["virtlogd.socket", "libvirtd.socket", "libvirtd.service"], unmask=UNITS, timeout=120)
        if iqn:
            node.succeed(["systemctl", "restart", "iscsid.service"])
