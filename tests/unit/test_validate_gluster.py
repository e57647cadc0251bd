"""Validation of the gluster: section (harness/backends/gluster/schema.py and rules.py): each failing
example is reported with its message, dotted field and line (marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, rule_params

SCHEMA_CASES = [
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        gluster:
          volumes:
            - name: v
              replika: 1 #<
              bricks: ['a:/b']
        """, "unknown key 'replika'", "gluster.volumes[0].replika", "did you mean 'replica'?", id="unknown-nested-key"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        gluster:
          volumes: [] #<
        """, "at least 1 item", "gluster.volumes", None, id="gluster-no-volumes"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        gluster:
          volumes:
            - name: 1vol #<
              replica: 1
              bricks: ['a:/b']
        """, "String should match pattern", "gluster.volumes[0].name", None, id="gluster-volume-name"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        gluster:
          volumes:
            - name: v
              replica: 0 #<
              bricks: ['a:/b']
        """, "greater than or equal to 1", "gluster.volumes[0].replica", None, id="gluster-replica-zero"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks: [] #<
        """, "at least 1 item", "gluster.volumes[0].bricks", None, id="gluster-no-bricks"),
]

RULE_CASES = [
    pytest.param("""
        lab: t
        nodes: [{name: g1, roles: [gluster]}]
        gluster:
          volumes:
            - {name: v, replica: 1, bricks: ['g1:/b1']}
            - {name: v, replica: 1, bricks: ['g1:/b2']} #<
        """, "duplicate volume name 'v'", "gluster.volumes[1].name", "ci", 2, id="gluster-duplicate-volume"),
    pytest.param("""
        lab: t
        nodes: [{name: g1, roles: [gluster]}]
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks:
                - g1/bricks/1 #<
        """, "brick 'g1/bricks/1' is not node:/absolute/path", "gluster.volumes[0].bricks[0]", "ci", id="brick-syntax"),
    pytest.param("""
        lab: t
        nodes:
          - {name: gluster1, roles: [gluster]}
          - {name: gluster2, roles: [gluster]}
        gluster:
          volumes:
            - name: v
              replica: 2
              bricks:
                - gluster1:/b
                - gluster3:/b #<
        """, "node 'gluster3' does not exist", "gluster.volumes[0].bricks[1]", "ci", id="brick-on-missing-node"),
    pytest.param("""
        lab: t
        nodes:
          - {name: g1, roles: [gluster]}
          - {name: g2, roles: [client]}
        gluster:
          volumes:
            - name: v
              replica: 2
              bricks:
                - g1:/b
                - g2:/b #<
        """, "node 'g2' does not have role 'gluster'", "gluster.volumes[0].bricks[1]", "ci", id="brick-node-without-role"),
    pytest.param("""
        lab: t
        nodes:
          - name: g1
            roles: [gluster]
            disks: [{name: b, size: 1G, filesystem: xfs, mount: /gluster/b1}]
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks:
                - g1:/gluster/b1 #<
        """, "brick /gluster/b1 is the mount point itself", "gluster.volumes[0].bricks[0]", "ci", id="brick-is-mount-point"),
    pytest.param("""
        lab: t
        nodes:
          - {name: g1, roles: [gluster]}
          - {name: g2, roles: [gluster]}
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks: ['g1:/b', 'g1:/b', 'g2:/b'] #<
        """, "the same brick is listed twice", "gluster.volumes[0].bricks", "ci", id="brick-listed-twice"),
    pytest.param("""
        lab: t
        nodes:
          - {name: g1, roles: [gluster]}
          - {name: g2, roles: [gluster]}
        gluster:
          volumes:
            - name: v
              replica: 3 #<
              bricks: ['g1:/b', 'g2:/b']
        """, "replica 3 does not divide the 2 bricks", "gluster.volumes[0].replica", "ci", id="replica-not-dividing"),
    pytest.param("""
        lab: t
        nodes:
          - {name: g1, roles: [gluster]}
          - {name: g2, roles: [gluster]}
        gluster:
          volumes:
            - name: v
              replica: 2
              bricks:
                - g1:/b1
                - g2:/b1
                - g1:/b2 #<
                - g1:/b3
        """, "replica set 1 has two bricks on node g1", "gluster.volumes[0].bricks[2]", "ci", id="replica-set-one-node"),
    pytest.param("""
        lab: t
        nodes: [{name: g1, roles: [gluster]}]
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks: ['g1:/b']
              options:
                network.ping-timeout: 5s #<
        """, "network.ping-timeout must be whole seconds", "gluster.volumes[0].options.network.ping-timeout", "ci",
        id="gluster-ping-timeout"),
    pytest.param("""
        lab: t
        nodes: [{name: g1, roles: [gluster]}]
        gluster: {volumes: [{name: v, replica: 1, bricks: ['g1:/b']}]}
        host:
          pools:
            - {name: p, type: dir, backend: gluster, volume: v, path: /srv/x} #<
        """, "a dir pool on gluster needs fuse_mount: true", "host.pools[0].fuse_mount", "ci", id="gluster-dir-without-fuse"),
    pytest.param("""
        lab: t
        nodes: [{name: g1, roles: [gluster]}]
        gluster: {volumes: [{name: v, replica: 1, bricks: ['g1:/b']}]}
        host:
          pools:
            - name: p
              type: gluster
              backend: gluster
              volume: w #<
        """, "gluster volume 'w' is not defined", "host.pools[0].volume", "ci", id="pool-undefined-gluster-volume"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "fix"), SCHEMA_CASES)
def test_schema_problem(text: str, fragment: str, field: str, fix: str) -> None:
    expect(text, fragment, field, fix=fix)


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
def test_rule_problem(text: str, fragment: str, field: str, profile: str, count: int) -> None:
    expect(text, fragment, field, profile, count=count)
