"""Base node set-up shared by every role: /etc/hosts with every lab node, network-online.target
waiting for the node's lab addresses, and the node's filesystems formatted and mounted where the
provider did not do it already."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from harness.backends.base import NodeView
from harness.errors import HarnessError
from harness.nodes.node import on_each

if TYPE_CHECKING:
    from harness.backends.base import LabContext

NAME = "base"
#: network-online.target waits for this unit: the image masks systemd-networkd-wait-online (it
#: would wait for links outside the lab), so the target was reached at once at boot, and an NFS
#: mount or a pool libvirtd autostarts could find "Network is unreachable" (trixie VMs did)
ONLINE_UNIT = "storlab-lab-online.service"
ONLINE_WAIT_S = 60


def online_unit(addresses: list[str]) -> str:
    """Done once each of ``addresses`` is on one of the node's links, or failed after ONLINE_WAIT_S
    (network-online.target only Wants it: a boot goes on, as with wait-online's own timeout)."""
    checks = " && ".join(f'ip -o addr show | grep -qF " {ipaddress.ip_address(a)}/"' for a in addresses) or "true"
    return ("# storlab: network-online.target waits for the lab's addresses on this node\n"
            "[Unit]\nDescription=storlab: the lab's addresses are up\nDefaultDependencies=no\n"
            "After=systemd-networkd.service\nBefore=network-online.target\n\n"
            f"[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/usr/bin/timeout {ONLINE_WAIT_S} /bin/sh -c 'until {checks}; do sleep 0.1; done'\n\n"
            "[Install]\nWantedBy=network-online.target\n")


def apply(lab: LabContext) -> None:
    def hosts(node: NodeView) -> None:
        node.ensure_file("/etc/hosts", (lab.files(node.name) / "etc/hosts").read_text())
        unit = online_unit(list(node.spec.addresses.values()))
        if node.ensure_file(f"/etc/systemd/system/{ONLINE_UNIT}", unit):
            node.succeed(["systemctl", "enable", ONLINE_UNIT], timeout=120)
    on_each(list(lab.nodes.values()), hosts, "/etc/hosts, network-online")


def prepare_disks(node: NodeView) -> None:
    for d in node.spec.disks:
        if not d.mount or d.filesystem == "none":
            continue
        if node.run(["mountpoint", "-q", d.mount], timeout=15).ok:
            continue  # the provider mounted it already (lxc), or an earlier run did
        dev = d.device
        if not dev:
            raise HarnessError(f"{node.name}: disk {d.name} has no device and is not mounted at {d.mount}")
        if not node.run(["blkid", dev], timeout=15).ok:
            node.succeed(["mkfs.xfs", "-q", "-f", dev] if d.filesystem == "xfs" else ["mkfs.ext4", "-q", "-F", dev])
        node.succeed(["mkdir", "-p", d.mount])
        line = f"{dev} {d.mount} {d.filesystem} defaults,nofail 0 2"
        node.succeed(["sh", "-c", 'grep -qsF "$1" /etc/fstab || echo "$1" >> /etc/fstab', "sh", line])
        node.succeed(["mount", d.mount])
