"""Checks of ceph-osd-out: every OSD up and in, the cluster HEALTH_OK, the RBD pool's PGs all
active+clean. A cluster that is recovering gets a short while; one with an OSD missing does not."""

from __future__ import annotations

import json
from typing import Any

from harness.backends.ceph import planned
from harness.errors import WaitTimeout
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.run import wait_until

SETTLE = 60  # seconds a cluster whose OSDs are all back may take to finish peering and recovery


def admin(lab: Lab) -> Node:
    c = planned(lab.plan)
    return lab.node(c.admin[0] if c.admin else c.mons[0].name)


def ceph_json(lab: Lab, *args: str) -> Any:
    return json.loads(admin(lab).succeed(["ceph", *args, "-f", "json"], timeout=60))


def osds_missing(lab: Lab) -> list[str]:
    """OSDs that are not both up and in ('osd.2 on ceph-osd3: down, out'), plus OSD hosts without one."""
    tree = ceph_json(lab, "osd", "tree")["nodes"]
    host_of = {c: n["name"] for n in tree if n["type"] == "host" for c in n.get("children", [])}
    out = []
    for o in ceph_json(lab, "osd", "dump")["osds"]:
        if not (o["up"] and o["in"]):
            out.append(f"osd.{o['osd']} on {host_of.get(o['osd'], '?')}: {'up' if o['up'] else 'down'}, "
                       f"{'in' if o['in'] else 'out'}")
    hosts = set(host_of.values())
    out += [f"{h}: no OSD in the CRUSH map" for h in planned(lab.plan).osds if h not in hosts]
    return out


def settled(lab: Lab, observe: Any, what: str) -> None:
    """``observe()`` returns (ok, detail): wait up to SETTLE s for ok while every OSD is up and in;
    give up at once when one is not (no amount of waiting brings it back)."""
    last: list[str] = []

    def ok() -> bool:
        good, detail = observe()
        last[:] = [str(detail)]
        return bool(good)

    def hopeless() -> str | None:
        missing = osds_missing(lab)
        return "; ".join(missing) if missing else None
    try:
        wait_until(ok, timeout=SETTLE, interval=2, what=what, terminal=hopeless)
    except WaitTimeout:
        seen = last[0] if last else "nothing"
        missing = osds_missing(lab)
        why = f"and it cannot be while {'; '.join(missing)}" if missing else f"still so after {SETTLE}s"
        raise AssertionError(f"not {what}: {seen} ({why})") from None


def test_all_osds_up_and_in(lab: Lab) -> None:
    missing = osds_missing(lab)
    assert not missing, ("not every OSD is up and in: " + "; ".join(missing) +
                         " (see `ceph osd tree`, `ceph osd stat` and the OSD's unit on its node)")


def test_cluster_health_ok(lab: Lab) -> None:
    accepted = set(planned(lab.plan).accept_warnings)

    def observe() -> tuple[bool, str]:
        h = ceph_json(lab, "health")
        checks = {k: v.get("summary", {}).get("message", "") for k, v in h.get("checks", {}).items() if k not in accepted}
        return h.get("status") in ("HEALTH_OK", "HEALTH_WARN") and not checks, f"{h.get('status')} {checks}"
    settled(lab, observe, "HEALTH_OK (`ceph health detail`)")


def test_rbd_pool_pgs_active_clean(lab: Lab) -> None:
    pools = [p.name for p in planned(lab.plan).pools if p.application == "rbd"]
    assert pools, "the topology has no rbd pool"

    def observe() -> tuple[bool, str]:
        bad: dict[str, int] = {}
        total = 0
        for pool in pools:
            for pg in ceph_json(lab, "pg", "ls-by-pool", pool)["pg_stats"]:
                total += 1
                if pg["state"] != "active+clean":
                    bad[pg["state"]] = bad.get(pg["state"], 0) + 1
        return total > 0 and not bad, f"of {total} PGs of {', '.join(pools)}: {bad or 'none listed'}"
    settled(lab, observe, f"every PG of pool {', '.join(pools)} active+clean")
