"""Ceph's upgrade (Backend.upgrade), as its upgrade notes and ceph-ansible's rolling_update say:
`noout` set first (an OSD host down for its upgrade is not rebalanced away), then the monitors and
managers host by host with quorum kept, then the OSDs one host at a time, each only once every PG is
active+clean again; once every daemon runs the new release, `require-osd-release` raised to it and
`noout` cleared, and HEALTH_OK awaited. Clients (the admin node's CLI, the KVM host's librbd) stay
on what they have: an older client against newer daemons is what Ceph supports and what is tested."""

from __future__ import annotations

import json
import re

from harness.backends.base import LabContext, NodeView
from harness.backends.ceph.chaos import health
from harness.backends.ceph.role import admin_node
from harness.errors import HarnessError
from harness.plan.model import NodePlan
from harness.run import wait_until
from harness.upgrade.support import Defaults

#: role -> the packages of its daemons (the admin node's client tools are not upgraded: a client)
PACKAGES = {"ceph-mon": ("ceph-mon", "ceph-common"), "ceph-mgr": ("ceph-mgr", "ceph-common"),
            "ceph-osd": ("ceph-osd", "ceph-common")}
RANK = {"ceph-mon": 0, "ceph-mgr": 1, "ceph-osd": 2}
#: while servers are being upgraded the gate accepts the flag set for it, and, once every OSD runs
#: the new release, the warning that require-osd-release is still the old one (finish raises it).
#: The new release's own manager-module warning (MGR_MODULE_DEPENDENCY) is in ceph.chaos.HARMLESS,
#: which health() always accepts: finish says it rather than waiting it away.
UPGRADING = ("OSDMAP_FLAGS", "OSD_UPGRADE_FINISHED")
#: a daemon's version line in `ceph versions`: "ceph version 18.2.7 (...) reef (stable)"
_RELEASE = re.compile(r"^ceph version \S+ \(\S+\) ([a-z]+) \(")


def release_names(versions_json: str) -> dict[str, set[str]]:
    """`ceph versions -f json` -> {daemon type: {release names running}} (overall left out)."""
    data = json.loads(versions_json)
    out: dict[str, set[str]] = {}
    for kind, lines in data.items():
        if kind == "overall" or not isinstance(lines, dict):
            continue
        out[kind] = {m.group(1) for line in lines if (m := _RELEASE.match(line))}
    return out


class CephUpgrade(Defaults):
    def rank(self, node: NodePlan) -> int:
        return min((RANK[r] for r in node.roles if r in RANK), default=9)

    def packages(self, node: NodePlan) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for r in node.roles for p in PACKAGES.get(r, ())))

    def ready(self, lab: LabContext) -> str | None:
        admin = admin_node(lab)
        # the daemons themselves first: right after a restart `ceph -s` may still show the health
        # from before it (a monitor back in quorum, before its OSDs reported)
        r = admin.run(["ceph", "osd", "stat", "-f", "json", "--connect-timeout", "10"], timeout=30)
        if not r.ok:
            return f"`ceph osd stat` to answer on {admin.name}"
        st = json.loads(r.stdout)
        if st.get("num_up_osds") != st.get("num_osds") or st.get("num_in_osds") != st.get("num_osds"):
            return f"every OSD up and in (now {st.get('num_up_osds')} up, {st.get('num_in_osds')} in of {st.get('num_osds')})"
        return health(lab, UPGRADING)

    def begin(self, lab: LabContext) -> list[str]:
        admin_node(lab).succeed(["ceph", "osd", "set", "noout"], timeout=60)
        return ["noout set (an OSD host down for its upgrade is not rebalanced away)"]

    def stop(self, lab: LabContext, node: NodeView) -> None:
        node.succeed(["systemctl", "stop", "ceph.target"], timeout=300)

    def start(self, lab: LabContext, node: NodeView) -> None:
        # every ceph unit the node had enabled (its mon, mgr or OSDs) comes back with the target
        node.succeed(["systemctl", "start", "ceph.target"], timeout=300)

    def finish(self, lab: LabContext) -> list[str]:
        admin = admin_node(lab)
        running = release_names(admin.succeed(["ceph", "versions", "-f", "json"], timeout=60))
        releases = set().union(*running.values()) if running else set()
        if len(releases) != 1:
            raise HarnessError(f"ceph daemons run {running} after the upgrade: not one release to require")
        release = releases.pop()
        admin.succeed(["ceph", "osd", "require-osd-release", release], timeout=120)
        admin.succeed(["ceph", "osd", "unset", "noout"], timeout=60)
        wait_until(lambda: health(lab) is None, timeout=300, interval=2,
                   what="ceph HEALTH_OK after the upgrade")
        detail = admin.succeed(["ceph", "health", "detail"], timeout=60).strip()
        return [f"require-osd-release {release}", "noout cleared; " + (
            "HEALTH_OK" if detail.startswith("HEALTH_OK")
            else "healthy but for " + "".join(c for c in detail.splitlines()[0][:300] if c.isprintable()))]
