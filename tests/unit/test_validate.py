"""Validation: every schema check and every cross-reference rule has a failing example that
must be reported with its message, its dotted field and its line.

Each example marks the line the problem must point at with ``#<``; when the offending key is
absent, the problem points at the nearest enclosing key/item that exists, so the marker sits there.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from harness.errors import Problem, TopologyError
from harness.host.facts import PROFILES, HostFacts
from harness.spec.validate import Resolved, validate_file, validate_text

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = sorted((REPO / "topologies").glob("*.yaml"))
MARK = "#<"


def _yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _marked_line(text: str) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if MARK in line]
    assert len(lines) == 1, f"example must mark exactly one line with {MARK!r}"
    return lines[0]


def _facts(profile: str | HostFacts) -> HostFacts:
    return PROFILES[profile] if isinstance(profile, str) else profile


def problems_of(text: str, profile: str | HostFacts = "ci") -> list[Problem]:
    with pytest.raises(TopologyError) as ei:
        validate_text(_yaml(text), _facts(profile))
    problems = ei.value.problems
    assert problems, "TopologyError without problems"
    return problems


def expect(text: str, fragment: str, field: str, profile: str | HostFacts = "ci", count: int = 1,
           fix: str | None = None) -> Problem:
    """``text`` fails with exactly ``count`` problems, one of which has ``fragment`` in its message,
    the dotted ``field`` and the line marked in ``text``."""
    text = _yaml(text)
    line = _marked_line(text)
    problems = problems_of(text, profile)
    listing = "\n".join(f"  line {p.line}: [{p.field}] {p.message}" for p in problems)
    hits = [p for p in problems if fragment in p.message and p.field == field and p.line == line]
    assert hits, f"expected [{field}] at line {line} with {fragment!r}; got:\n{listing}"
    assert len(problems) == count, f"expected {count} problem(s), got:\n{listing}"
    p = hits[0]
    assert p.file == "<test>.yaml"
    assert p.column is not None and p.column >= 1
    if fix is not None:
        assert fix in p.fix, f"fix {p.fix!r} lacks {fix!r}"
    return p


def ok(text: str, profile: str | HostFacts = "ci") -> Resolved:
    return validate_text(_yaml(text), _facts(profile))[1]


# ---------------------------------------------------------------------------------------------
# YAML level
# ---------------------------------------------------------------------------------------------

def test_yaml_syntax_error_reports_line_and_column() -> None:
    text = "lab: t\nnodes:\n  - name: a\n    roles: [gluster\n    memory: 512\n"
    probs = problems_of(text)
    assert len(probs) == 1
    p = probs[0]
    assert "YAML syntax error" in p.message
    assert (p.line, p.column) == (5, 11)  # the ':' that ends the unterminated flow sequence
    assert p.field == ""
    assert "<test>.yaml:5:11" in str(p)


def test_yaml_bad_indentation_reports_its_line() -> None:
    text = "lab: t\nnodes:\n  - name: a\n   cpus: 2\n"
    p = problems_of(text)[0]
    assert "YAML syntax error" in p.message
    assert p.line == 4


def test_duplicate_yaml_key() -> None:
    p = expect("""
        lab: t
        nodes:
          - name: a
            memory: 512
            cpus: 1
            memory: 1024 #<
        """, "duplicate key 'memory' (first at line 4)", "nodes[0].memory", fix="remove one")
    assert p.column == 5


def test_duplicate_top_level_key() -> None:
    expect("""
        lab: t
        nodes: [{name: a}]
        lab: u #<
        """, "duplicate key 'lab' (first at line 1)", "lab")


def test_topology_must_be_a_mapping() -> None:
    probs = problems_of("- lab: t\n- nodes: []\n")
    assert len(probs) == 1
    assert "must be a mapping" in probs[0].message
    assert probs[0].line == 1


def test_empty_file_is_not_a_topology() -> None:
    assert "must be a mapping" in problems_of("# nothing\n")[0].message


def test_unreadable_file_is_a_topology_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(TopologyError) as ei:
        validate_file(str(missing), PROFILES["ci"])
    assert "cannot read file" in ei.value.problems[0].message
    assert ei.value.problems[0].file == str(missing)


def test_validate_file_reports_the_file_name(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("lab: t\nnodes:\n  - name: a\n    cpus: 0\n")
    with pytest.raises(TopologyError) as ei:
        validate_file(str(f), PROFILES["ci"])
    (p,) = ei.value.problems
    assert (p.file, p.line, p.field) == (str(f), 4, "nodes[0].cpus")
    assert str(p).startswith(f"{f}:4:")


# ---------------------------------------------------------------------------------------------
# Schema (topology.py field checks)
# ---------------------------------------------------------------------------------------------

SCHEMA_CASES = [
    pytest.param("""
        lab: t
        nodes:
          - name: a
            memroy: 512 #<
        """, "unknown key 'memroy'", "nodes[0].memroy", "did you mean 'memory'?", id="unknown-key-suggestion"),
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
        zzzzzz: 1 #<
        """, "unknown key 'zzzzzz'", "zzzzzz", "valid keys here: lab, description, provider", id="unknown-key-no-match"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            roles: [gluster, glusterr] #<
        """, "Input should be 'gluster'", "nodes[0].roles[1]", "did you mean 'gluster'?", id="role-literal"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d, size: 1G, filesystem: xf} #<
        """, "Input should be 'xfs', 'ext4' or 'none'", "nodes[0].disks[0].filesystem", "did you mean 'xfs'?",
        id="filesystem-literal"),
    pytest.param("""
        lab: t
        provider: vagarnt #<
        nodes: [{name: a}]
        """, "Input should be 'auto', 'incus', 'lxc' or 'vagrant'", "provider", "did you mean 'vagrant'?", id="provider-enum"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: netf, path: /x} #<
        """, "Input should be 'dir'", "host.pools[0].type", "did you mean 'netfs'?", id="pool-type-literal"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: dir, backend: lokal, path: /x} #<
        """, "Input should be 'gluster'", "host.pools[0].backend", "did you mean 'local'?", id="pool-backend-literal"),
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
        iscsi:
          target: a
          implementation: lioo #<
          iqn: iqn.2020-01.com.example:t
          luns: [{kind: fileio, path: /x, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "Input should be 'auto', 'lio' or 'tgt'", "iscsi.implementation", "did you mean 'lio'?",
        id="iscsi-implementation-literal"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        iscsi:
          target: a
          iqn: iqn.2020-01.com.example:t
          luns:
            - {kind: filio, path: /x, size: 1G} #<
        """, "Input should be 'fileio', 'block' or 'lvm'", "iscsi.luns[0].kind", "did you mean 'fileio'?", id="lun-kind-literal"),
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
        host:
          pools: [{name: p, type: dir, path: /x}]
          volumes:
            - {pool: p, name: v, size: 1G, format: qcow} #<
        """, "Input should be 'qcow2' or 'raw'", "host.volumes[0].format", "did you mean 'qcow2'?", id="volume-format-literal"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools: [{name: p, type: dir, path: /x}]
          volumes:
            - {pool: p, name: v, size: 1G, allocation: sparce} #<
        """, "Input should be 'sparse' or 'preallocated'", "host.volumes[0].allocation", "did you mean 'sparse'?",
        id="volume-allocation-literal"),
    pytest.param("""
        description: no lab #<
        nodes: [{name: a}]
        """, "required field 'lab' is missing", "lab", "add 'lab:'", id="missing-lab"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        nfs: #<
          exports: [{path: /x}]
        """, "required field 'server' is missing", "nfs.server", "add 'server:'", id="missing-nested"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d} #<
        """, "required field 'size' is missing", "nodes[0].disks[0].size", None, id="missing-disk-size"),
    pytest.param("""
        lab: Lab_1 #<
        nodes: [{name: a}]
        """, "String should match pattern", "lab", "lower-case letters", id="lab-name-pattern"),
    pytest.param("""
        lab: t
        nodes:
          - name: Node1 #<
        """, "String should match pattern", "nodes[0].name", "lower-case letters", id="node-name-pattern"),
    pytest.param("""
        lab: t
        networks:
          - name: 9net #<
        nodes: [{name: a}]
        """, "String should match pattern", "networks[0].name", None, id="network-name-pattern"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: Data, size: 1G} #<
        """, "String should match pattern", "nodes[0].disks[0].name", None, id="disk-name-pattern"),
    pytest.param("""
        lab: t
        networks:
          - name: storage
            cidr: 192.168.60.1/24 #<
        nodes: [{name: a}]
        """, "'192.168.60.1/24' is not an IPv4 network", "networks[0].cidr", None, id="cidr-host-bits"),
    pytest.param("""
        lab: t
        networks:
          - name: storage
            cidr: fd00::/64 #<
        nodes: [{name: a}]
        """, "is not an IPv4 network", "networks[0].cidr", None, id="cidr-ipv6"),
    pytest.param("""
        lab: t
        networks:
          - name: storage
            cidr: 192.168.60.0/30 #<
        nodes: [{name: a}]
        """, "network too small; use at most /29", "networks[0].cidr", None, id="cidr-too-small"),
    pytest.param("""
        lab: t
        networks: [] #<
        nodes: [{name: a}]
        """, "at least 1 item", "networks", None, id="no-networks"),
    pytest.param("""
        lab: t
        nodes: [] #<
        """, "at least 1 item", "nodes", None, id="no-nodes"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d, size: 1G, filesystem: xfs, mount: srv/data} #<
        """, "path 'srv/data' is not a plain absolute path", "nodes[0].disks[0].mount", None, id="relative-mount"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d, size: 2X} #<
        """, "'2X' is not a size", "nodes[0].disks[0].size", None, id="bad-size"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d, size: yes} #<
        """, "a size must be a number", "nodes[0].disks[0].size", None, id="bool-size"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        iscsi:
          target: a
          iqn: iqn.2020-01.com.example:t
          luns:
            - {kind: fileio, path: /x, size: lots} #<
        """, "'lots' is not a size", "iscsi.luns[0].size", None, id="bad-optional-size"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools: [{name: p, type: dir, path: /x}]
          volumes:
            - {pool: p, name: v, size: 1 gig} #<
        """, "'1 gig' is not a size", "host.volumes[0].size", None, id="bad-volume-size"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            cpus: 0 #<
        """, "greater than or equal to 1", "nodes[0].cpus", None, id="cpus-zero"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            cpus: 65 #<
        """, "less than or equal to 64", "nodes[0].cpus", None, id="cpus-too-many"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            memory: 0 #<
        """, "node memory of 0 MiB is less than 128 MiB", "nodes[0].memory", None, id="memory-zero"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            memory: lots #<
        """, "'lots' is not a size", "nodes[0].memory", None, id="memory-not-a-size"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        nfs:
          server: a
          exports: [] #<
        """, "at least 1 item", "nfs.exports", None, id="nfs-no-exports"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        iscsi:
          target: a
          iqn: iqn.2020-01.com.example:t
          luns: [] #<
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "at least 1 item", "iscsi.luns", None, id="iscsi-no-luns"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        iscsi:
          target: a
          iqn: iqn.2020-01.com.example:t
          luns: [{kind: fileio, path: /x, size: 1G}]
          acls:
            - initiator: iqn.2020-01.com.example:i
              chap: {username: '', generate: true} #<
        """, "CHAP username ''", "iscsi.acls[0].chap.username", None, id="chap-empty-username"),
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
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - name: p
              type: rbd
              secret: {uuid: not-a-uuid} #<
        """, "badly formed hexadecimal UUID string", "host.pools[0].secret.uuid", None, id="secret-uuid"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: -p, type: dir, path: /x} #<
        """, "String should match pattern", "host.pools[0].name", None, id="pool-name-pattern"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            roles: gluster #<
        """, "valid list", "nodes[0].roles", None, id="roles-not-a-list"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "fix"), SCHEMA_CASES)
def test_schema_problem(text: str, fragment: str, field: str, fix: str | None) -> None:
    expect(text, fragment, field, fix=fix)


def test_many_schema_problems_reported_at_once() -> None:
    text = _yaml("""
        lab: t
        provider: qemu
        nodes:
          - name: a
            cpus: 0
            colour: blue
          - name: B
            disks: [{name: d, size: 1X}]
        """)
    fields = {p.field: p.line for p in problems_of(text)}
    assert fields == {"provider": 2, "nodes[0].cpus": 5, "nodes[0].colour": 6, "nodes[1].name": 7,
                      "nodes[1].disks[0].size": 8}


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "10.255.1.0/24", "172.31.0.0/16", "192.168.0.0/16", "192.168.60.0/29"])
def test_private_networks_of_a_sane_size_pass(cidr: str) -> None:
    ok(f"lab: t\nnetworks: [{{name: storage, cidr: {cidr}}}]\nnodes: [{{name: a}}]\n")


def test_size_and_memory_units() -> None:
    topo, _ = validate_text(_yaml("""
        lab: t
        nodes:
          - name: a
            memory: 2G
            disks: [{name: d, size: 1.5G}, {name: e, size: 512M}, {name: f, size: 16777216}]
          - name: b
            memory: '768'
          - name: c
            memory: 1536
        """), PROFILES["ci"])
    assert [n.memory for n in topo.nodes] == [2048, 768, 1536]
    assert [d.size for d in topo.nodes[0].disks] == [3 * 2**29, 512 * 2**20, 16 * 2**20]


# ---------------------------------------------------------------------------------------------
# Cross-reference rules (validate._Rules)
# ---------------------------------------------------------------------------------------------

RULE_CASES = [
    # -- networks -------------------------------------------------------------------------------
    pytest.param("""
        lab: t
        networks:
          - name: storage
          - name: storage #<
        nodes: [{name: a}]
        """, "duplicate network name 'storage'", "networks[1].name", "ci", id="duplicate-network"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
          - {name: backend, cidr: 192.168.60.128/25} #<
        nodes: [{name: a}]
        """, "192.168.60.128/25 overlaps networks[0] (192.168.60.0/24)", "networks[1].cidr", "ci", id="overlapping-networks"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/29} #<
        nodes: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}, {name: f}]
        """, "has room for 5 node addresses; the lab has 6 nodes", "networks[0].cidr", "ci", id="network-too-small-for-nodes"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 0.0.0.0/8} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-this-network"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 240.0.0.0/4} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-reserved-class-e"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 198.18.0.0/15} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-benchmark"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 224.1.0.0/24} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-multicast"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 127.0.0.0/24} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-loopback"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 169.254.10.0/24} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-link-local"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 100.64.0.0/24} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-shared-cgnat"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.0.2.0/24} #<
        nodes: [{name: a}]
        """, "is not a private network", "networks[0].cidr", "ci", id="cidr-test-net"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 10.0.0.0/8} #<
        nodes: [{name: a}]
        """, "too big for a lab network", "networks[0].cidr", "ci", id="cidr-rfc1918-but-huge"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 172.16.0.0/12} #<
        nodes: [{name: a}]
        """, "too big for a lab network", "networks[0].cidr", "ci", id="cidr-rfc1918-12-huge"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 10.0.0.0/15} #<
        nodes: [{name: a}]
        """, "too big for a lab network", "networks[0].cidr", "ci", id="cidr-slash-15"),
    # -- nodes and addresses --------------------------------------------------------------------
    pytest.param("""
        lab: t
        nodes:
          - name: a
          - name: b
          - name: a #<
        """, "duplicate node name 'a' (also nodes[0])", "nodes[2].name", "ci", id="duplicate-node"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            roles: [client, client] #<
        """, "role(s) listed twice: client", "nodes[0].roles", "ci", id="duplicate-role"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d, size: 1G}
              - {name: d, size: 2G} #<
        """, "duplicate disk name 'd'", "nodes[0].disks[1].name", "ci", 2, id="duplicate-disk"),
    pytest.param("""
        lab: t
        nodes:
          - name: a
            disks:
              - {name: d, size: 1G, mount: /data} #<
        """, "a disk with a mount point needs a filesystem", "nodes[0].disks[0].filesystem", "ci", id="mount-without-fs"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            addresses:
              backend: 192.168.61.10 #<
        """, "network 'backend' does not exist", "nodes[0].addresses.backend", "ci", id="address-unknown-network"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            address: 192.168.60.300 #<
        """, "'192.168.60.300' is not an IPv4 address", "nodes[0].address", "ci", id="address-not-ipv4"),
    pytest.param("""
        lab: t
        networks:
          - name: storage
        nodes:
          - name: a
            address: 192.168.60.10 #<
        """, "static address 192.168.60.10 on network 'storage' that has no cidr", "nodes[0].address", "ci",
        id="address-without-cidr"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            address: 192.168.61.10 #<
        """, "address 192.168.61.10 is outside network 'storage' (192.168.60.0/24)", "nodes[0].address", "ci",
        id="address-outside-network"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
          - {name: backend, cidr: 192.168.70.0/24}
        nodes:
          - name: a
            addresses: {backend: 192.168.60.20} #<
        """, "address 192.168.60.20 is outside network 'backend' (192.168.70.0/24)", "nodes[0].addresses.backend", "ci",
        id="second-network-address-outside"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            address: 192.168.60.0 #<
        """, "address 192.168.60.0 is reserved", "nodes[0].address", "ci", id="reserved-network-address"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            address: 192.168.60.1 #<
        """, "address 192.168.60.1 is reserved", "nodes[0].address", "ci", id="reserved-host-address"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            address: 192.168.60.255 #<
        """, "address 192.168.60.255 is reserved", "nodes[0].address", "ci", id="reserved-broadcast"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - {name: a, address: 192.168.60.20}
          - {name: b, address: 192.168.60.20} #<
        """, "address 192.168.60.20 is already used by nodes[0] (a)", "nodes[1].address", "ci", id="duplicate-address"),
    pytest.param("""
        lab: t
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - name: a
            address: 192.168.60.20
            addresses:
              storage: 192.168.60.21 #<
        """, "the address on 'storage' is given twice", "nodes[0].addresses.storage", "ci", id="address-given-twice"),
    # -- memory ---------------------------------------------------------------------------------
    pytest.param("""
        lab: t
        nodes:
          - name: a
            memory: 32G #<
        """, "32768 MiB is more than this host has (24000 MiB)", "nodes[0].memory", "ci", id="node-memory-over-host"),
    pytest.param("""
        lab: t
        provider: vagrant
        nodes: #<
          - {name: a, memory: 12000}
          - {name: b, memory: 12000}
        """, "the vagrant nodes need 24000 MiB together; this host has 24000 MiB", "nodes", "ci", id="vagrant-memory-sum"),
    # -- gluster --------------------------------------------------------------------------------
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
    # -- ceph -----------------------------------------------------------------------------------
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
    # -- nfs ------------------------------------------------------------------------------------
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
    # -- iscsi ----------------------------------------------------------------------------------
    pytest.param("""
        lab: t
        nodes: #<
          - {name: t1, roles: [iscsi-target]}
        """, "nodes have role(s) iscsi-target but there is no iscsi: section", "nodes", "ci", id="iscsi-role-without-section"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-13.com.example:target1 #<
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "'iqn.2019-13.com.example:target1' is not an RFC 3720 iqn name", "iscsi.iqn", "ci", id="iqn-bad-month"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.Example:target1 #<
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "is not an RFC 3720 iqn name", "iscsi.iqn", "ci", id="iqn-upper-case"),
    pytest.param("""
        lab: t
        nodes: [{name: t1}]
        iscsi:
          target: t1 #<
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "node 't1' does not have role 'iscsi-target'", "iscsi.target", "ci", id="iscsi-target-without-role"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t2 #<
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "node 't2' does not exist", "iscsi.target", "ci", id="iscsi-target-missing"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          portals:
            - storage
            - backend #<
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "portal network 'backend' does not exist", "iscsi.portals[1]", "ci", id="iscsi-portal-network"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
          luns:
            - {kind: fileio, size: 1G} #<
        """, "a fileio LUN needs path and size", "iscsi.luns[0]", "ci", id="fileio-lun-without-path"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
          luns:
            - {kind: block} #<
        """, "a block LUN needs disk", "iscsi.luns[0]", "ci", id="block-lun-without-disk"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target], disks: [{name: lun1, size: 1G}]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
          luns:
            - {kind: block, disk: lun2} #<
        """, "target node t1 has no disk 'lun2'", "iscsi.luns[0].disk", "ci", id="block-lun-unknown-disk"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target], disks: [{name: lvm, size: 1G}]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
          luns:
            - {kind: lvm, disk: lvm, vg: vg0, size: 1G} #<
        """, "an lvm LUN needs disk, vg, lv and size", "iscsi.luns[0]", "ci", id="lvm-lun-incomplete"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target], disks: [{name: lvm, size: 1G}]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
          luns:
            - {kind: lvm, disk: pv, vg: vg0, lv: l0, size: 1G} #<
        """, "target node t1 has no disk 'pv'", "iscsi.luns[0].disk", "ci", id="lvm-lun-unknown-disk"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - initiator: iqn.19-12.com.example:init1 #<
        """, "'iqn.19-12.com.example:init1' is not an RFC 3720 iqn name", "iscsi.acls[0].initiator", "ci",
        id="acl-iqn-two-digit-year"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - initiator: iqn.2019-12.com.example:init1
            - initiator: iqn.2019-12.com.example:init1 #<
        """, "initiator listed twice", "iscsi.acls[1].initiator", "ci", 2, id="acl-twice"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - initiator: iqn.2019-12.com.example:init1
              chap: {username: u, password: abcdefghijklm, generate: true} #<
        """, "give exactly one of password, password_file or generate: true", "iscsi.acls[0].chap", "ci",
        id="chap-password-and-generate"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - initiator: iqn.2019-12.com.example:init1
              chap: {username: u} #<
        """, "give exactly one of password, password_file or generate: true", "iscsi.acls[0].chap", "ci", id="chap-no-secret"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - initiator: iqn.2019-12.com.example:init1
              chap:
                username: u
                password: short #<
        """, "CHAP secret is 5 characters; initiators need 12 to 16", "iscsi.acls[0].chap.password", "ci", id="chap-too-short"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - initiator: iqn.2019-12.com.example:init1
              chap:
                username: u
                password: abcdefghijklmnopq #<
        """, "CHAP secret is 17 characters; initiators need 12 to 16", "iscsi.acls[0].chap.password", "ci", id="chap-too-long"),
    # -- host pools -----------------------------------------------------------------------------
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: dir, path: /var/spool/cron/crontabs} #<
          volumes: [{pool: p, name: root, size: 1M, format: raw}]
        """, "not a place for a pool of a lab on this host", "host.pools[0].path", "ci", id="pool-dir-over-crontabs"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: dir, path: /srv} #<
        """, "must be one of its own under", "host.pools[0].path", "ci", id="pool-dir-is-a-root"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: dir, path: /srv/a}
            - {name: p, type: dir, path: /srv/b} #<
        """, "pool name 'p' already used by host.pools[0]", "host.pools[1].name", "ci", id="pool-duplicate-name"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p1, type: dir, path: /var/lib/libvirt/images/x}
            - name: p2
              type: dir
              path: /var/lib/libvirt/images/x #<
        """, "target path /var/lib/libvirt/images/x already used by host.pools[0]", "host.pools[1].path", "ci",
        id="pool-same-path"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: dir} #<
        """, "a dir pool needs 'path'", "host.pools[0]", "ci", id="pool-needs-path"),
    pytest.param("""
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        host:
          pools:
            - {name: p, type: netfs, backend: nfs, path: /mnt/p} #<
        """, "a netfs pool needs 'export'", "host.pools[0]", "kvm", id="netfs-needs-export"),
    pytest.param("""
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        host:
          pools:
            - name: p
              type: netfs
              backend: local #<
              export: /srv/nfs
              path: /mnt/p
        """, "a netfs pool cannot use backend 'local'", "host.pools[0].backend", "kvm", id="pool-type-backend-mismatch"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - name: p
              type: rbd
              backend: ceph #<
              rbd_pool: x
              client: client.x
        """, "backend 'ceph' is not defined in this topology", "host.pools[0].backend", "ci", id="pool-backend-undefined"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools:
            - name: p
              type: dir
              path: /srv/storlab/x
              fuse_mount: true #<
        """, "fuse_mount is for dir pools on a gluster volume", "host.pools[0].fuse_mount", "ci",
        id="fuse-mount-without-gluster"),
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
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example_init"}]
        host:
          pools:
            - name: p
              type: iscsi-direct
              backend: iscsi
              initiator: iqn.2019-12.com.example_init #<
        """, "'iqn.2019-12.com.example_init' is not an RFC 3720 iqn name", "host.pools[0].initiator", "ci", 2,
        id="pool-initiator-iqn"),  # and the same bad name in the ACL
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: 'iqn.2019-12.com.example:init1'}]
        host:
          pools:
            - name: p
              type: iscsi-direct
              backend: iscsi
              initiator: iqn.2019-12.com.example:init2 #<
        """, "initiator iqn.2019-12.com.example:init2 is not in iscsi.acls", "host.pools[0].initiator", "ci",
        id="pool-initiator-not-in-acls"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools: [{name: KVMpool, min_size: 2}]
          clients: [{name: client.kvm, caps: {mon: allow r}}]
        host:
          pools:
            - name: p
              type: rbd
              backend: ceph
              rbd_pool: kvmpool #<
              client: client.kvm
        """, "ceph pool 'kvmpool' is not defined", "host.pools[0].rbd_pool", "ci", id="rbd-undefined-pool"),
    pytest.param("""
        lab: t
        nodes:
          - {name: m, roles: [ceph-mon, ceph-mgr]}
          - {name: o1, roles: [ceph-osd]}
          - {name: o2, roles: [ceph-osd]}
        ceph:
          pools: [{name: KVMpool, min_size: 2}]
          clients: [{name: client.kvm, caps: {mon: allow r}}]
        host:
          pools:
            - name: p
              type: rbd
              backend: ceph
              rbd_pool: KVMpool
              client: client.libvirt #<
        """, "ceph client 'client.libvirt' is not defined", "host.pools[0].client", "ci", id="rbd-undefined-client"),
    pytest.param("""
        lab: t
        nodes: [{name: a, roles: [client]}]
        host:
          pools:
            - name: p
              type: dir
              path: /x
              host: a #<
        """, "node 'a' does not have role 'hypervisor'", "host.pools[0].host", "kvm", id="pool-host-not-hypervisor"),
    pytest.param("""
        lab: t
        nodes: [{name: kvm1, roles: [hypervisor]}]
        host:
          pools:
            - name: p
              type: dir
              path: /x
              host: kvm2 #<
        """, "node 'kvm2' does not exist", "host.pools[0].host", "kvm", id="pool-host-missing"),
    pytest.param("""
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        host:
          pools:
            - name: p
              type: netfs #<
              backend: nfs
              export: /srv/nfs
              path: /mnt/p
        """, "netfs needs an NFS client in the KVM host's kernel", "host.pools[0].type", "ci", id="netfs-on-host-without-client"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        host:
          pools:
            - name: p
              type: iscsi #<
              backend: iscsi
              initiator: iqn.2019-12.com.example:init1
        """, "an iscsi pool needs iscsi_tcp in the KVM host's kernel", "host.pools[0].type", "ci",
        id="iscsi-on-host-without-iscsi-tcp"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi: #<
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
        """, "a target without ACLs admits no initiator on LIO and every initiator on tgt", "iscsi.acls", "ci",
        id="iscsi-without-acls"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls:
            - {initiator: "iqn.2019-12.com.example:a", chap: {username: a, generate: true}}
            - {initiator: "iqn.2019-12.com.example:b"} #<
        """, "this ACL has no CHAP while others do", "iscsi.acls[1]", "ci", id="iscsi-chap-on-some-acls"),
    pytest.param("""
        lab: t
        nodes:
          - {name: t1, roles: [iscsi-target]}
          - {name: kvm1, roles: [hypervisor, iscsi-initiator]}
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        host:
          pools:
            - name: p
              type: iscsi
              backend: iscsi
              initiator: iqn.2019-12.com.example:init1
              host: kvm1 #<
        """, "its own sessions to the target take the same /dev/disk/by-path names", "host.pools[0].host", "kvm",
        id="iscsi-pool-on-an-initiator-node"),
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
        nodes: [{name: a}]
        host:
          pools:
            - {name: p, type: fs, path: /mnt/fs} #<
        """, "a fs pool needs a block device, which the KVM host cannot give it", "host.pools[0].host", "kvm",
        id="fs-pool-on-kvm-host"),
    pytest.param("""
        lab: t
        nodes: [{name: kvm1, roles: [hypervisor]}]
        host:
          pools:
            - name: p
              type: logical
              path: /dev/vg0
              host: kvm1 #<
        """, "node kvm1 has no disk for this logical pool", "host.pools[0].host", "kvm", id="logical-pool-on-diskless-node"),
    pytest.param("""
        lab: t
        nodes: [{name: kvm1, roles: [hypervisor], disks: [{name: d1, size: 1G}, {name: d2, size: 1G}]}]
        host:
          pools:
            - {name: p1, type: fs, path: /mnt/fs, host: kvm1}
            - {name: p2, type: logical, path: /dev/vg0, host: kvm1, disk: d1} #<
        """, "disk d1 of kvm1 is already used by host.pools[0]", "host.pools[1].disk", "kvm",
        id="two-pools-on-one-disk"),
    pytest.param("""
        lab: t
        nodes: [{name: kvm1, roles: [hypervisor], disks: [{name: d1, size: 1G}]}]
        host:
          pools:
            - {name: p1, type: fs, path: /mnt/fs, host: kvm1, disk: d9} #<
        """, "node kvm1 has no disk 'd9'", "host.pools[0].disk", "kvm", id="pool-disk-missing"),
    pytest.param("""
        lab: t
        nodes: [{name: a}]
        host:
          pools: [{name: p, type: dir, path: /srv/x}]
          volumes:
            - {pool: p, name: v1, size: 1G}
            - pool: q #<
              name: v2
              size: 1G
        """, "pool 'q' does not exist", "host.volumes[1].pool", "ci", id="volume-unknown-pool"),
    pytest.param("""
        lab: t
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:i"}]
        host:
          pools:
            - {name: p, type: iscsi-direct, backend: iscsi, initiator: 'iqn.2019-12.com.example:i'}
          volumes:
            - {pool: p, name: v1, size: 1G, format: raw} #<
        """, "libvirt cannot create volumes in a iscsi-direct pool", "host.volumes[0].pool", "ci", id="volume-in-iscsi-pool"),
    pytest.param("""
        lab: t
        nodes: [{name: g1, roles: [gluster]}]
        gluster: {volumes: [{name: v, replica: 1, bricks: ['g1:/b']}]}
        host:
          pools:
            - {name: p, type: gluster, backend: gluster, volume: v}
          volumes:
            - {pool: p, name: v1.qcow2, size: 1G} #<
        """, "libvirt cannot create volumes in a gluster pool", "host.volumes[0].pool", "ci", id="volume-in-gluster-pool"),
    # -- kernel features and providers ----------------------------------------------------------
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
    pytest.param("""
        lab: t
        provider: lxc
        nodes: [{name: t1, roles: [iscsi-target]}]
        iscsi:
          target: t1
          implementation: lio #<
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "LIO (targetcli) is not available", "iscsi.implementation", "ci", id="lio-on-lxc"),
    pytest.param("""
        lab: t
        provider: lxc
        nodes:
          - {name: a}
          - name: kvm1
            roles: [client, hypervisor] #<
        """, "a hypervisor node needs its own kernel", "nodes[1].roles", "kvm", id="hypervisor-on-lxc"),
    pytest.param("""
        lab: t
        provider: lxc
        nodes:
          - name: i1
            roles: [iscsi-initiator] #<
        """, "iscsi-initiator needs iscsi_tcp, which this host's kernel lacks", "nodes[0].roles", "ci",
        id="iscsi-initiator-on-lxc"),
    pytest.param("""
        lab: t
        provider: vagrant #<
        nodes: [{name: a}]
        """, "vagrant is not installed on this host", "provider",
        dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start"})), id="vagrant-not-installed"),
]


def _rule_params() -> list:  # type: ignore[type-arg]
    out = []
    for p in RULE_CASES:
        text, fragment, field, profile, *count = p.values
        out.append(pytest.param(text, fragment, field, profile, count[0] if count else 1, id=p.id))
    return out


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), _rule_params())
def test_rule_problem(text: str, fragment: str, field: str, profile: str | HostFacts, count: int) -> None:
    expect(text, fragment, field, profile, count=count)


def test_missing_node_gets_a_suggestion() -> None:
    p = expect("""
        lab: t
        nodes:
          - {name: gluster1, roles: [gluster]}
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks: ['glustr1:/b'] #<
        """, "node 'glustr1' does not exist", "gluster.volumes[0].bricks[0]")
    assert p.fix == "did you mean 'gluster1'?"


def test_node_without_role_fix_names_the_node_index() -> None:
    p = expect("""
        lab: t
        nodes:
          - {name: a}
          - {name: g2}
        gluster:
          volumes:
            - name: v
              replica: 1
              bricks: ['g2:/b'] #<
        """, "node 'g2' does not have role 'gluster'", "gluster.volumes[0].bricks[0]")
    assert p.fix == "add 'gluster' to nodes[1].roles"


# ---------------------------------------------------------------------------------------------
# The passing side of rules: the same constructs without the mistake are accepted
# ---------------------------------------------------------------------------------------------

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


def test_netfs_on_host_accepted_with_kernel_nfs_client() -> None:
    text = """
        lab: t
        nodes: [{name: n1, roles: [nfs-server]}]
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        host:
          pools:
            - {name: p, type: netfs, backend: nfs, export: /srv/nfs, path: /mnt/p}
        """
    assert ok(text, "kvm").provider == "vagrant"
    assert [p.field for p in problems_of(text, "ci")] == ["host.pools[0].type"]


def test_netfs_on_hypervisor_node_accepted_without_host_nfs_client() -> None:
    res = ok("""
        lab: t
        nodes:
          - {name: n1, roles: [nfs-server]}
          - {name: kvm1, roles: [hypervisor]}
        nfs: {server: n1, exports: [{path: /srv/nfs}]}
        host:
          pools:
            - {name: p, type: netfs, backend: nfs, export: /srv/nfs, path: /mnt/p, host: kvm1}
        """, "ci")
    assert res == Resolved("vagrant", {"nfs": "kernel"})


def test_same_pool_path_on_different_hosts_is_fine() -> None:
    ok("""
        lab: t
        nodes: [{name: kvm1, roles: [hypervisor]}]
        host:
          pools:
            - {name: p1, type: dir, path: /var/lib/libvirt/images/x}
            - {name: p2, type: dir, path: /var/lib/libvirt/images/x, host: kvm1}
        """, "kvm")


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


def test_memory_sum_only_matters_for_vms() -> None:
    nodes = "nodes: [{name: a, memory: 12000}, {name: b, memory: 12000}]\n"
    assert ok("lab: t\nprovider: lxc\n" + nodes).provider == "lxc"
    assert [p.field for p in problems_of("lab: t\nprovider: vagrant\n" + nodes)] == ["nodes"]


def test_memory_fits_on_bigger_host() -> None:
    ok("lab: t\nprovider: vagrant\nnodes: [{name: a, memory: 32G}]\n", "kvm")


def test_kernel_implementations_on_lxc_when_the_host_has_them() -> None:
    res = ok("""
        lab: t
        provider: lxc
        nodes:
          - {name: n1, roles: [nfs-server]}
          - {name: t1, roles: [iscsi-target]}
        nfs: {server: n1, implementation: kernel, exports: [{path: /srv/nfs}]}
        iscsi:
          target: t1
          implementation: lio
          iqn: iqn.2019-12.com.example:target1
          luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
          acls: [{initiator: "iqn.2019-12.com.example:init1"}]
        """, "kvm")
    assert res == Resolved("lxc", {"nfs": "kernel", "iscsi": "lio"})


# ---------------------------------------------------------------------------------------------
# Provider and implementation resolution
# ---------------------------------------------------------------------------------------------

GLUSTER = """
    lab: t
    nodes:
      - {name: g1, roles: [gluster]}
      - {name: g2, roles: [gluster]}
      - {name: g3, roles: [gluster]}
    gluster:
      volumes: [{name: v, replica: 3, bricks: ['g1:/b', 'g2:/b', 'g3:/b']}]
    """

NFS_ISCSI = """
    lab: t
    nodes:
      - {name: n1, roles: [nfs-server]}
      - {name: t1, roles: [iscsi-target]}
    nfs: {server: n1, exports: [{path: /srv/nfs}]}
    iscsi:
      target: t1
      iqn: iqn.2019-12.com.example:target1
      luns: [{kind: fileio, path: /iscsi/l0.img, size: 1G}]
      acls: [{initiator: "iqn.2019-12.com.example:init1"}]
    """


def test_auto_provider_ci_gluster_is_lxc() -> None:
    assert ok(GLUSTER, "ci") == Resolved("lxc")


def test_auto_provider_ci_hypervisor_is_vagrant() -> None:
    text = GLUSTER.replace("      - {name: g3, roles: [gluster]}\n",
                           "      - {name: g3, roles: [gluster]}\n      - {name: kvm1, roles: [hypervisor]}\n")
    assert "kvm1" in text
    assert ok(text, "ci") == Resolved("vagrant")


def test_auto_provider_ci_iscsi_initiator_is_vagrant() -> None:
    assert ok("lab: t\nnodes: [{name: i1, roles: [iscsi-initiator]}]\n", "ci").provider == "vagrant"
    # but with iscsi_tcp in the shared kernel, containers do
    facts = dataclasses.replace(PROFILES["ci"], kernel_iscsi_tcp=True)
    assert ok("lab: t\nnodes: [{name: i1, roles: [iscsi-initiator]}]\n", facts).provider == "lxc"


def test_auto_provider_ci_explicit_kernel_nfs_is_vagrant() -> None:
    text = NFS_ISCSI.replace("nfs: {server: n1,", "nfs: {server: n1, implementation: kernel,")
    assert ok(text, "ci") == Resolved("vagrant", {"nfs": "kernel", "iscsi": "lio"})


def test_auto_provider_kvm_is_vagrant() -> None:
    assert ok(GLUSTER, "kvm") == Resolved("vagrant")


def test_auto_implementations_on_lxc_ci() -> None:
    assert ok(NFS_ISCSI, "ci") == Resolved("lxc", {"nfs": "ganesha", "iscsi": "tgt"})


def test_auto_implementations_on_vagrant() -> None:
    assert ok(NFS_ISCSI, "kvm") == Resolved("vagrant", {"nfs": "kernel", "iscsi": "lio"})
    assert ok("provider: vagrant\n" + _yaml(NFS_ISCSI), "ci") == Resolved("vagrant", {"nfs": "kernel", "iscsi": "lio"})


def test_explicit_provider_is_kept() -> None:
    assert ok("lab: t\nprovider: lxc\nnodes: [{name: a}]\n", "kvm").provider == "lxc"
    assert ok("lab: t\nprovider: vagrant\nnodes: [{name: a}]\n", "ci").provider == "vagrant"


def test_userspace_implementations_stay_on_vagrant() -> None:
    text = NFS_ISCSI.replace("nfs: {server: n1,", "nfs: {server: n1, implementation: ganesha,").replace(
        "  target: t1\n", "  target: t1\n      implementation: tgt\n")
    assert ok(text, "kvm") == Resolved("vagrant", {"nfs": "ganesha", "iscsi": "tgt"})


# ---------------------------------------------------------------------------------------------
# All problems at once
# ---------------------------------------------------------------------------------------------

def test_many_rule_problems_reported_at_once() -> None:
    text = _yaml("""
        lab: t
        provider: lxc
        networks:
          - {name: storage, cidr: 192.168.60.0/24}
        nodes:
          - {name: a, address: 192.168.60.1, roles: [gluster]}
          - {name: b, roles: [client]}
          - {name: b, roles: [hypervisor]}
        gluster:
          volumes:
            - {name: v, replica: 2, bricks: ['a:/b', 'c:/b', 'a:/d']}
        nfs:
          server: a
          exports: [{path: /x, clients: ['*'], options: [rw, ro, no_root_squash]}]
        host:
          pools:
            - {name: p, type: dir, path: /srv/x}
          volumes:
            - {pool: q, name: v, size: 1G}
        """)
    got = sorted((p.line, p.field, p.message.split(" (")[0].split(";")[0]) for p in problems_of(text))
    assert got == [
        (6, "nodes[0].address", "address 192.168.60.1 is reserved"),
        (8, "nodes[2].name", "duplicate node name 'b'"),
        (8, "nodes[2].roles", "a hypervisor node needs its own kernel"),
        (11, "gluster.volumes[0].bricks[1]", "node 'c' does not exist"),
        (11, "gluster.volumes[0].replica", "replica 2 does not divide the 3 bricks"),
        (13, "nfs.server", "node 'a' does not have role 'nfs-server'"),
        (14, "nfs.exports[0].options", "export to '*' with no_root_squash gives root on the export to anyone"),
        (14, "nfs.exports[0].options", "options 'rw' and 'ro' contradict each other"),
        (19, "host.volumes[0].pool", "pool 'q' does not exist"),
    ]


# ---------------------------------------------------------------------------------------------
# The shipped topologies
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", TOPOLOGIES, ids=[p.stem for p in TOPOLOGIES])
def test_shipped_topology_validates_on_kvm_profile(path: Path) -> None:
    topo, res = validate_file(str(path), PROFILES["kvm"])
    assert res.provider == "vagrant"
    assert topo.lab


def test_topologies_exist() -> None:
    assert {p.stem for p in TOPOLOGIES} >= {"gluster-3", "ceph-5", "nfs", "iscsi", "full"}


@pytest.mark.parametrize("stem", ["gluster-3", "ceph-5"])
def test_container_topologies_validate_on_ci_profile(stem: str) -> None:
    _topo, res = validate_file(str(REPO / "topologies" / f"{stem}.yaml"), PROFILES["ci"])
    assert res == Resolved("lxc")


def test_vm_topologies_resolve_to_vagrant_on_ci_profile() -> None:
    for stem, expected in [("nfs", Resolved("vagrant", {"nfs": "kernel"})),
                           ("iscsi", Resolved("vagrant", {"iscsi": "lio"})),
                           ("full", Resolved("vagrant", {"nfs": "kernel", "iscsi": "lio"}))]:
        assert validate_file(str(REPO / "topologies" / f"{stem}.yaml"), PROFILES["ci"])[1] == expected, stem
