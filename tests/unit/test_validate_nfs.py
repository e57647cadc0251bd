"""Validation of the nfs: section (harness/backends/nfs/schema.py and rules.py): each failing
example is reported with its message, dotted field and line (marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, ok, problems_of, rule_params

SCHEMA_CASES = [
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        nfs:
          server: a
          implementation: ganesh #<
          exports: [{path: /x}]
        """, "Input should be 'auto', 'kernel' or 'ganesha'", "nfs.implementation", "did you mean 'ganesha'?",
        id="nfs-implementation-literal"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        nfs: #<
          exports: [{path: /x}]
        """, "required field 'server' is missing", "nfs.server", "add 'server:'", id="missing-nested"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        nfs:
          server: a
          exports: [] #<
        """, "at least 1 item", "nfs.exports", None, id="nfs-no-exports"),
]

RULE_CASES = [
    pytest.param("""
        lab: t
        nodes: #<
          - {name: n, roles: [nfs-server]}
        """, "nodes have role(s) nfs-server but there is no nfs: section", "nodes", "ci", id="nfs-role-without-section"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs2 #<
          exports: [{path: /srv/nfs}]
        """, "node 'nfs2' does not exist", "nfs.server", "ci", id="nfs-server-missing"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1}]
        nfs:
          server: nfs1 #<
          exports: [{path: /srv/nfs}]
        """, "node 'nfs1' does not have role 'nfs-server'", "nfs.server", "ci", id="nfs-server-without-role"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs1
          exports:
            - path: srv/nfs #<
        """, "path 'srv/nfs' is not a plain absolute path", "nfs.exports[0].path", "ci", id="nfs-relative-path"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs1
          exports:
            - {path: /srv/nfs}
            - {path: /srv/nfs, clients: ['10.0.0.0/8']} #<
        """, "path /srv/nfs exported twice", "nfs.exports[1].path", "ci", 2, id="nfs-exported-twice"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs1
          exports:
            - path: /srv/nfs
              clients: ['*']
              options: [rw, sync, no_root_squash] #<
        """, "export to '*' with no_root_squash gives root on the export to anyone", "nfs.exports[0].options", "ci",
        id="nfs-star-no-root-squash"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs1
          exports:
            - path: /srv/nfs
              options: [rw, ro, sync] #<
        """, "options 'rw' and 'ro' contradict each other", "nfs.exports[0].options", "ci", id="nfs-rw-ro"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs1
          exports:
            - path: /srv/nfs
              options: [rw, async, sync] #<
        """, "options 'sync' and 'async' contradict each other", "nfs.exports[0].options", "ci", id="nfs-sync-async"),
    pytest.param("""
        lab: t
        nodes: [{name: nfs1, roles: [nfs-server]}]
        nfs:
          server: nfs1
          exports:
            - path: /srv/nfs
              options: [rw, sync, root_squash, no_root_squash] #<
        """, "options 'root_squash' and 'no_root_squash' contradict each other", "nfs.exports[0].options", "ci",
        id="nfs-squash-contradiction"),
    pytest.param("""
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        host:
          pools:
            - name: p
              type: netfs
              backend: nfs
              export: /srv/nfs2 #<
              path: /mnt/p
        """, "'/srv/nfs2' is not an export of nfs.exports", "host.pools[0].export", "kvm", id="pool-undefined-nfs-export"),
    pytest.param("""
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs:
          server: n1
          exports: [{path: /srv/nfs}]
          lease_time: 30
          grace_period: 20 #<
        """, "grace period 20s is shorter than the lease time 30s", "nfs.grace_period", "kvm", id="nfs-grace-below-lease"),
    pytest.param("""
        lab: t
        provider: lxc
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs:
          server: n1
          implementation: kernel #<
          exports: [{path: /srv/nfs}]
        """, "kernel nfsd is not available: the lxc provider shares this host's kernel", "nfs.implementation", "ci",
        id="kernel-nfsd-on-lxc"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "fix"), SCHEMA_CASES)
def test_schema_problem(text: str, fragment: str, field: str, fix: str) -> None:
    expect(text, fragment, field, fix=fix)


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
def test_rule_problem(text: str, fragment: str, field: str, profile: str, count: int) -> None:
    expect(text, fragment, field, profile, count=count)


NFS_STAR = """
    lab: t
    nodes: [{name: nfs1, roles: [nfs-server]}]
    nfs:
      server: nfs1
      exports:
        - path: /srv/nfs
          clients: ['*']
          options: [rw, sync, no_root_squash]
          allow_insecure: {insecure}
    """


def test_allow_insecure_permits_star_with_no_root_squash() -> None:
    assert ok(NFS_STAR.replace("{insecure}", "true")).implementation("nfs") == "ganesha"
    # and the same file with allow_insecure: false is refused (so the switch is what matters)
    probs = problems_of(NFS_STAR.replace("{insecure}", "false"))
    assert [p.field for p in probs] == ["nfs.exports[0].options"]


def test_star_with_root_squash_is_fine() -> None:
    ok(NFS_STAR.replace("{insecure}", "false").replace("no_root_squash", "root_squash"))
