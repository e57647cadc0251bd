"""An OSD daemon stopped and the OSD marked out: the cluster serves the RBD pool degraded (one
replica short on every PG) and says HEALTH_WARN."""

from __future__ import annotations

import json

from harness.backends.ceph import planned
from harness.backends.ceph.role import osd_ids, parse_health
from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.run import wait_until

TITLE = "A Ceph OSD is down and out: the RBD pool runs degraded"
BACKEND = "ceph"
TOPOLOGY = "ceph-5.yaml"  # the topology it was written for (topologies/)


def admin(lab: Lab) -> Node:
    """Where client.admin's keyring is: the admin node, else the first monitor."""
    c = planned(lab.plan)
    return lab.node(c.admin[0] if c.admin else c.mons[0].name)


def victim(lab: Lab) -> tuple[Node, str]:
    """The last OSD node and the id of its (first) OSD."""
    node = lab.node(planned(lab.plan).osds[-1])
    ids = osd_ids(node)
    if not ids:
        raise HarnessError(f"{node.name}: no OSD data directory under /var/lib/ceph/osd")
    return node, ids[0]


def osd_state(ceph: Node, osd_id: str) -> tuple[bool, bool]:
    """(up, in) of one OSD from the OSD map."""
    dump = json.loads(ceph.succeed(["ceph", "osd", "dump", "-f", "json"], timeout=60))
    osd = next(o for o in dump["osds"] if str(o["osd"]) == osd_id)
    return bool(osd["up"]), bool(osd["in"])


def break_lab(lab: Lab) -> None:
    ceph = admin(lab)
    node, osd_id = victim(lab)
    lab.mark(f"training: stop ceph-osd@{osd_id} on {node.name} and mark osd.{osd_id} out")
    node.succeed(["systemctl", "stop", f"ceph-osd@{osd_id}.service"], timeout=120)  # a clean stop: no restart
    ceph.succeed(["ceph", "osd", "out", osd_id], timeout=60)
    wait_until(lambda: osd_state(ceph, osd_id) == (False, False), timeout=60, interval=1,
               what=f"osd.{osd_id} down and out in the OSD map")
    # the PGs re-peer without it (stale for a few seconds, then undersized+degraded): the cluster
    # says so once they have, with a check of its own (a trixie cluster warns from the start, of
    # manager modules its plan accepts: that warning is not the loss)
    accepted = set(planned(lab.plan).accept_warnings)

    def reported() -> bool:
        checks = json.loads(ceph.succeed(["ceph", "health", "-f", "json"], timeout=60)).get("checks", {})
        return bool(set(checks) - accepted)
    wait_until(reported, timeout=120, interval=1, what=f"the cluster to report the loss of osd.{osd_id} (HEALTH_WARN)")


def solve(lab: Lab) -> None:
    ceph = admin(lab)
    node, osd_id = victim(lab)
    node.succeed(["systemctl", "reset-failed", f"ceph-osd@{osd_id}.service"], timeout=60)
    node.succeed(["systemctl", "start", f"ceph-osd@{osd_id}.service"], timeout=120)
    node.wait_for_unit(f"ceph-osd@{osd_id}.service", timeout=120)
    ceph.succeed(["ceph", "osd", "in", osd_id], timeout=60)
    wait_until(lambda: osd_state(ceph, osd_id) == (True, True), timeout=120, interval=1,
               what=f"osd.{osd_id} up and in")
    accepted = planned(lab.plan).accept_warnings

    def healthy() -> bool:
        ok, summary = parse_health(ceph.succeed(["ceph", "-s", "-f", "json"], timeout=60), accepted)
        if not ok:
            raise HarnessError(summary)  # the last observation, should the wait run out
        return True
    wait_until(healthy, timeout=300, interval=1, what="HEALTH_OK with every PG active+clean")
