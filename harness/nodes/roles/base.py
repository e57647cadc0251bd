"""Base node set-up shared by every role: /etc/hosts with every lab node, and the node's
filesystems formatted and mounted where the provider did not do it already."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.backends.base import NodeView
from harness.errors import HarnessError
from harness.nodes.node import on_each

if TYPE_CHECKING:
    from harness.backends.base import LabContext

NAME = "base"


def apply(lab: LabContext) -> None:
    def hosts(node: NodeView) -> None:
        node.ensure_file("/etc/hosts", (lab.files(node.name) / "etc/hosts").read_text())
    on_each(list(lab.nodes.values()), hosts, "/etc/hosts")


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
