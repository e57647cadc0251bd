"""Validation of the nfs: section (harness/backends/nfs/schema.py and rules.py): each failing
example is reported with its message, dotted field and line (marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, ok, problems_of, rule_params

#: a netfs pool on hv1 with client options {opts}, marked for the schema cases
POOL = """
    lab: t
    networks: [{{name: storage}}, {{name: storage2}}]
    nodes: [{{name: n1, roles: [nfs-server]}}, {{name: hv1, roles: [hypervisor]}}]
    nfs: {{server: n1, exports: [{{path: /srv/nfs}}]}}
    host:
      pools:
        - name: p
          type: netfs
          backend: nfs
          export: /srv/nfs
          path: /var/lib/libvirt/images/p
          host: hv1
          nfs: {opts} #<
    """

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
    # a pool's client options (host.pools[].nfs)
    pytest.param(POOL.format(opts="{version: 4}"), "version 4 leaves the minor version to the client and the server",
                 "host.pools[0].nfs.version", "write 4.0, 4.1 or 4.2", id="nfs-client-version-4"),
    pytest.param(POOL.format(opts="{version: 4.3}"), "Input should be '3', '4.0', '4.1' or '4.2'",
                 "host.pools[0].nfs.version", "did you mean '4.2'?", id="nfs-client-version-4.3"),
    pytest.param(POOL.format(opts="{version: '4.2,exec'}"), "Input should be '3', '4.0', '4.1' or '4.2'",
                 "host.pools[0].nfs.version", None, id="nfs-client-version-injection"),
    pytest.param(POOL.format(opts="{nconnect: 17}"), "nconnect=17: the Linux client opens 1 to 16 connections",
                 "host.pools[0].nfs.nconnect", "give 1 to 16", id="nfs-client-nconnect-17"),
    pytest.param(POOL.format(opts="{nconnect: 0}"), "nconnect=0", "host.pools[0].nfs.nconnect", "give 1 to 16",
                 id="nfs-client-nconnect-0"),
    pytest.param(POOL.format(opts="{nconnect: '4,exec'}"), "valid integer", "host.pools[0].nfs.nconnect", None,
                 id="nfs-client-nconnect-text"),
    pytest.param(POOL.format(opts="{vers: 3}"), "unknown key 'vers'", "host.pools[0].nfs.vers",
                 "did you mean 'version'?", id="nfs-client-unknown-key"),
    pytest.param(POOL.format(opts="{version: 4.1, trunk: ['storage 2']}"), "String should match pattern",
                 "host.pools[0].nfs.trunk[0]", None, id="nfs-client-trunk-network-name"),
]

#: a dir pool on an NFS mount, on {host}, with {extra} under it
DIR_POOL = """
    lab: t
    networks: [{{name: storage}}, {{name: storage2}}]
    nodes: [{{name: n1, roles: [nfs-server]}}, {{name: hv1, roles: [hypervisor]}}]
    nfs: {{server: n1, exports: [{{path: /srv/nfs}}]}}
    host:
      pools:
        - name: p
          type: dir
          backend: nfs
          export: /srv/nfs
          path: /var/lib/libvirt/images/p
          host: {host}
          {extra}
    """

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
    # client options and dir pools on an NFS mount
    pytest.param("""
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}, {name: g1, roles: [gluster]}]
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        gluster: {volumes: [{name: v, replica: 1, bricks: ['g1:/b/1']}]}
        host:
          pools:
            - name: p
              type: gluster
              backend: gluster
              volume: v
              nfs: {version: 3} #<
        """, "nfs: options are for pools on backend nfs, this pool is on gluster", "host.pools[0].nfs", "kvm",
        id="nfs-options-on-a-gluster-pool"),
    pytest.param(DIR_POOL.format(extra="", host="hv1").replace("export: /srv/nfs\n          ", "").replace(
        "- name: p", "- name: p #<"), "a dir pool on nfs sits on a mount of one of its exports", "host.pools[0]", "kvm",
        id="nfs-dir-pool-without-export"),
    pytest.param(DIR_POOL.format(extra="", host="kvm").replace("host: kvm", "host: kvm #<"),
                 "a dir pool on an NFS mount lives on a hypervisor node", "host.pools[0].host", "kvm",
                 id="nfs-dir-pool-on-the-kvm-host"),
    pytest.param(DIR_POOL.format(extra="", host="hv1").replace("path: /var/lib/libvirt/images/p", "path: /opt/p #<"),
                 "/opt/p is not a place for an NFS mount on a node", "host.pools[0].path", "kvm",
                 id="nfs-dir-pool-over-opt"),
    pytest.param(DIR_POOL.format(extra="nfs: {version: 4.1, trunk: [storage2]}", host="hv1").replace(
        "type: dir", "type: netfs").replace("trunk: [storage2]}", "trunk: [storage2]} #<"),
        "session trunking is built for dir pools on an NFS mount", "host.pools[0].nfs.trunk", "kvm",
        id="nfs-trunk-on-netfs"),
    pytest.param(DIR_POOL.format(extra="nfs: {version: 3, trunk: [storage2]} #<", host="hv1"),
                 "session trunking needs NFSv4.1 sessions; this mount is NFS 3", "host.pools[0].nfs.version", "kvm",
                 id="nfs-trunk-over-v3"),
    pytest.param(DIR_POOL.format(extra="nfs: #<\n            trunk: [storage2]", host="hv1"),
                 "this mount is NFS of a negotiated version", "host.pools[0].nfs", "kvm", id="nfs-trunk-no-version"),
    pytest.param(DIR_POOL.format(extra="nfs: {version: 4.2, trunk: [storage3]} #<", host="hv1"),
                 "network 'storage3' does not exist", "host.pools[0].nfs.trunk[0]", "kvm", id="nfs-trunk-no-network"),
    pytest.param(DIR_POOL.format(extra="nfs: {version: 4.2, trunk: [storage]} #<", host="hv1"),
                 "the mount is over storage (the first network) already", "host.pools[0].nfs.trunk[0]", "kvm",
                 id="nfs-trunk-first-network"),
    pytest.param(DIR_POOL.format(extra="nfs: {version: 4.2, trunk: [storage2, storage2]} #<", host="hv1"),
                 "network storage2 is listed twice", "host.pools[0].nfs.trunk[1]", "kvm", id="nfs-trunk-twice"),
    pytest.param(DIR_POOL.format(extra="nfs: {version: 4.2, nconnect: 2}", host="hv1").rstrip(" ") + """\
        - {name: q, type: netfs, backend: nfs, export: /srv/nfs, path: /var/lib/libvirt/images/q, host: hv1,
           nfs: {nconnect: 4}} #<
    """, "pools p and q both mount the NFS server from hv1 over NFS 4.2: the Linux client keeps one set of "
        "connections", "host.pools[1].nfs", "kvm", id="nfs-two-pools-one-client-two-nconnects"),
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
