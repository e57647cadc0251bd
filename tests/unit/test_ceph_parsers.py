"""`ceph -s -f json` as a just-restarted mgr reports it: no PG states yet is not clean."""

from __future__ import annotations

import json

from harness.backends.ceph.role import parse_health


def status(pgs: list[tuple[str, int]], num_pgs: int, num_pools: int = 2, health: str = "HEALTH_OK") -> str:
    return json.dumps({"health": {"status": health, "checks": {}},
                       "pgmap": {"num_pgs": num_pgs, "num_pools": num_pools,
                                 "pgs_by_state": [{"state_name": s, "count": c} for s, c in pgs]}})


def test_all_active_clean_is_healthy() -> None:
    assert parse_health(status([("active+clean", 33)], 33), [])[0]


def test_no_pg_states_yet_is_not_healthy() -> None:
    assert not parse_health(status([], 33), [])[0]
    assert not parse_health(status([], 0), [])[0]  # pools exist, the mgr counted no PG yet


def test_some_pgs_unreported_or_unclean_is_not_healthy() -> None:
    assert not parse_health(status([("active+clean", 30)], 33), [])[0]
    assert not parse_health(status([("active+clean", 30), ("unknown", 3)], 33), [])[0]


def test_no_pools_no_pgs_is_healthy() -> None:
    assert parse_health(status([], 0, num_pools=0), [])[0]
