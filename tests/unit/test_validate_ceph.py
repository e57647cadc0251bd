"""Validation of the ceph: section (harness/backends/ceph/schema.py and rules.py): each failing
example is reported with its message, dotted field and line (marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, ok, problems_of, rule_params

SCHEMA_CASES = [
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          pools:
            - {name: p, application: rdb} #<
        """, "Input should be 'rbd', 'cephfs' or 'rgw'", "ceph.pools[0].application", "did you mean 'rbd'?",
        id="ceph-application-literal"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          clients:
            - name: client.x
              caps: {mom: allow r} #<
        """, "Input should be 'mon', 'osd', 'mgr' or 'mds'", "ceph.clients[0].caps.mom", "did you mean 'mon'?",
        id="ceph-caps-key-literal"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          pools:
            - {name: p, pg_num: 0} #<
        """, "greater than or equal to 1", "ceph.pools[0].pg_num", None, id="ceph-pg-num-zero"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          pools:
            - {name: p, size: 0} #<
        """, "greater than or equal to 1", "ceph.pools[0].size", None, id="ceph-pool-size-zero"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          osd_pool_default_size: 0 #<
        """, "greater than or equal to 1", "ceph.osd_pool_default_size", None, id="ceph-default-size-zero"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          heartbeat_grace: 0 #<
        """, "greater than or equal to 1", "ceph.heartbeat_grace", None, id="ceph-heartbeat-zero"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        ceph:
          clients:
            - name: admin #<
              caps: {mon: allow r}
        """, "String should match pattern", "ceph.clients[0].name", None, id="ceph-client-name"),
]

RULE_CASES = [
    pytest.param("""
        lab: t
        nodes: #<
          - {name: m, roles: [ceph-mon, ceph-mgr]}
        """, "nodes have role(s) ceph-mgr, ceph-mon but there is no ceph: section", "nodes", "ci",
        id="ceph-roles-without-section"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
        ceph: #<
          osd_pool_default_size: 1
        """, "ceph needs at least one node with role ceph-mon", "ceph", "ci", id="ceph-no-mon"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m1, roles: [ceph-mon, ceph-mgr]}
          - {name: m2, roles: [ceph-mon]}
          - {name: o1, roles: [ceph-osd]}
        ceph: #<
          osd_pool_default_size: 1
        """, "2 monitors: an even count gains no fault tolerance", "ceph", "ci", id="ceph-even-mons"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon]}
          - {name: o1, roles: [ceph-osd]}
        ceph: #<
          osd_pool_default_size: 1
        """, "ceph needs a node with role ceph-mgr", "ceph", "ci", id="ceph-no-mgr"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
        ceph: #<
          osd_pool_default_size: 1
        """, "ceph needs nodes with role ceph-osd", "ceph", "ci", id="ceph-no-osd"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
        ceph:
          osd_pool_default_size: 2 #<
        """, "default size 2 > 1 OSD hosts", "ceph.osd_pool_default_size", "ci", id="ceph-default-size-over-osds"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd], disks: [{name: osd, size: 4G}]}
          - {name: o2, roles: [ceph-osd], disks: [{name: data, size: 4G}]}
        ceph:
          osd_disk: osd #<
        """, "OSD node o2 has no disk 'osd'", "ceph.osd_disk", "ci", id="ceph-osd-disk-missing"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools:
            - {name: p, size: 2, min_size: 2}
            - {name: p, size: 2, min_size: 2} #<
        """, "duplicate pool 'p'", "ceph.pools[1].name", "ci", 2, id="ceph-duplicate-pool"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools:
            - name: p
              size: 3 #<
        """, "pool size 3 needs 3 OSD hosts; the lab has 2", "ceph.pools[0].size", "ci", id="ceph-pool-size-over-osds"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools:
            - name: p
              size: 2
              min_size: 1 #<
        """, "min_size 1 acknowledges writes held by a single copy", "ceph.pools[0].min_size", "ci", id="ceph-min-size-1"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools:
            - name: p #<
              size: 2
        """, "min_size 1 acknowledges writes held by a single copy", "ceph.pools[0].min_size", "ci",
        id="ceph-min-size-implied-by-size-2"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools:
            - name: p
              size: 2
              min_size: 3 #<
        """, "min_size 3 > size 2", "ceph.pools[0].min_size", "ci", id="ceph-min-size-over-size"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools: [{name: KVMpool, size: 2, min_size: 2}]
          clients:
            - name: client.kvm
              caps:
                mon: allow r
                osd: allow rwx pool=KVMPool #<
        """, "cap names pool 'KVMPool' which is not defined", "ceph.clients[0].caps.osd", "ci", id="ceph-cap-undefined-pool"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "fix"), SCHEMA_CASES)
def test_schema_problem(text: str, fragment: str, field: str, fix: str) -> None:
    expect(text, fragment, field, fix=fix)


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
def test_rule_problem(text: str, fragment: str, field: str, profile: str, count: int) -> None:
    expect(text, fragment, field, profile, count=count)


@pytest.mark.parametrize(("size", "min_size", "accepted"), [
    (3, None, True),    # implied min_size 2
    (2, 2, True),
    (2, None, False),   # implied min_size 1
    (3, 1, False),
])
def test_ceph_min_size(size: int, min_size: int | None, accepted: bool) -> None:
    pool = f"{{name: p, size: {size}" + (f", min_size: {min_size}" if min_size else "") + "}"
    text = f"""
        lab: t
        nodes:
          - {{name: m, roles: [ceph-mon, ceph-mgr]}}
          - {{name: o1, roles: [ceph-osd]}}
          - {{name: o2, roles: [ceph-osd]}}
          - {{name: o3, roles: [ceph-osd]}}
        ceph:
          pools: [{pool}]
        """
    if accepted:
        ok(text)
    else:
        assert [p.field for p in problems_of(text)] == ["ceph.pools[0].min_size"]
