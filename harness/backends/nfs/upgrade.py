"""NFS's upgrade (Backend.upgrade): one server, so the upgrade is its restart on the new version
while clients keep their mounts: the server's daemon stopped, its packages replaced, started again
on the same exports (the rendered ganesha.conf or /etc/exports, kept), and the gate is the chaos
run's health: the service active and exporting every path (NFS-Ganesha out of its grace period).
NFSv4 clients reclaim their state in the grace period; the writers' checker says whether an
acknowledged write was lost."""

from __future__ import annotations

from harness.backends.base import LabContext, NodeView
from harness.backends.nfs import ganesha
from harness.backends.nfs.chaos import NfsChaos
from harness.backends.nfs.plan import of
from harness.plan.model import NodePlan, need
from harness.upgrade.support import Defaults

#: what an upgrade replaces, by implementation (kernel nfsd: the userspace half; the kernel is the node's)
PACKAGES = {"ganesha": ("nfs-ganesha", "nfs-ganesha-vfs"), "kernel": ("nfs-kernel-server", "nfs-common")}
UNITS = {"ganesha": "nfs-ganesha.service", "kernel": "nfs-server.service"}


class NfsUpgrade(Defaults):
    def _impl(self, lab: LabContext) -> str:
        return need(of(lab.plan), "the lab's nfs section").implementation

    def packages(self, node: NodePlan) -> tuple[str, ...]:
        # the plan's implementation is not at hand here: both sets are on the image; the one that
        # does not serve is upgraded with it (their shared libraries must agree anyway)
        return (*PACKAGES["ganesha"], *PACKAGES["kernel"]) if "nfs-server" in node.roles else ()

    def ready(self, lab: LabContext) -> str | None:
        return NfsChaos().health(lab)

    def stop(self, lab: LabContext, node: NodeView) -> None:
        node.succeed(["systemctl", "stop", UNITS[self._impl(lab)]], timeout=120)

    def start(self, lab: LabContext, node: NodeView) -> None:
        unit = UNITS[self._impl(lab)]
        if self._impl(lab) == "ganesha":  # the configuration the installed version reads (ganesha.py)
            installed = node.succeed(["dpkg-query", "-W", "-f", "${Version}", "nfs-ganesha"], timeout=30)
            section = need(of(lab.plan), "the lab's nfs section")
            node.ensure_file("/etc/ganesha/ganesha.conf", ganesha.conf(lab.plan, section, ganesha.major(installed)))
        node.succeed(["systemctl", "start", unit], timeout=120)
        node.wait_for_unit(unit, timeout=120)
