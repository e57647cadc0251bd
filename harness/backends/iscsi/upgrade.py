"""iSCSI's upgrade (Backend.upgrade): one target, so the upgrade is its restart on the new version
while initiators stay logged in and retry: the target's daemon (tgt) or its saved LIO configuration
service stopped, the packages replaced, started again on the same configuration, and the gate is the
chaos run's health (the service active, the KVM host logged in again and seeing the LUN)."""

from __future__ import annotations

from harness.backends.base import LabContext, NodeView
from harness.backends.iscsi.chaos import IscsiChaos
from harness.backends.iscsi.plan import of
from harness.plan.model import NodePlan, need
from harness.upgrade.support import Defaults

#: what an upgrade replaces on a target (both implementations' tools are on the image)
PACKAGES = ("tgt", "targetcli-fb")
UNITS = {"tgt": "tgt.service", "lio": "rtslib-fb-targetctl.service"}


class IscsiUpgrade(Defaults):
    def _unit(self, lab: LabContext) -> str:
        return UNITS[need(of(lab.plan), "the lab's iscsi section").implementation]

    def packages(self, node: NodePlan) -> tuple[str, ...]:
        return PACKAGES if "iscsi-target" in node.roles else ()

    def ready(self, lab: LabContext) -> str | None:
        return IscsiChaos().health(lab)

    def stop(self, lab: LabContext, node: NodeView) -> None:
        unit = self._unit(lab)
        if unit == "tgt.service":
            # tgt's own stop waits for initiators to log out, which a host writing to a LUN never
            # does (seen: `systemctl stop tgt` still waiting after 120 s): tgtd is killed, as its
            # forced stop does; what it acknowledged is in the backing file, and initiators log in again
            node.succeed(["systemctl", "kill", "--signal=SIGKILL", unit], timeout=60)
            node.run(["systemctl", "stop", unit], timeout=60)
            return
        node.succeed(["systemctl", "stop", unit], timeout=120)

    def start(self, lab: LabContext, node: NodeView) -> None:
        node.succeed(["systemctl", "start", self._unit(lab)], timeout=120)
        node.wait_for_unit(self._unit(lab), timeout=120)
