"""Validation: every schema check and every cross-reference rule has a failing example that
must be reported with its message, its dotted field and its line.

Each example marks the line the problem must point at with ``#<``; when the offending key is
absent, the problem points at the nearest enclosing key/item that exists, so the marker sits there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from validation import expect, ok, problems_of, rule_params, yaml_text

from harness.errors import TopologyError
from harness.host.facts import PROFILES, HostFacts
from harness.spec.validate import Resolved, validate_file, validate_text

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = sorted((REPO / "topologies").glob("*.yaml"))


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
    text = yaml_text("""
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
    topo, _ = validate_text(yaml_text("""
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
    # -- ceph -----------------------------------------------------------------------------------
    # -- nfs ------------------------------------------------------------------------------------
    # -- iscsi ----------------------------------------------------------------------------------
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
        nodes:
          - {name: a}
          - name: kvm1
            roles: [client, hypervisor] #<
        """, "a hypervisor node needs its own kernel", "nodes[1].roles", "kvm", id="hypervisor-on-lxc"),
    pytest.param("""
        lab: t
        provider: lxc
        nodes:
          - {name: a, kernel: "6.12"} #<
        """, "lxc nodes boot no kernel of their own", "nodes[0].kernel", "kvm", id="kernel-on-lxc"),
    pytest.param("""
        lab: t
        provider: vagrant
        nodes:
          - {name: a, kernel: 6.12} #<
        """, "write the kernel in quotes (kernel: \"6.12\")", "nodes[0].kernel", "kvm", id="kernel-unquoted"),
    pytest.param("""
        lab: t
        provider: vagrant
        nodes:
          - {name: a, kernel: "5.10"} #<
        """, "Input should be '6.1' or '6.12'", "nodes[0].kernel", "kvm", id="kernel-not-in-the-image"),
    pytest.param("""
        lab: t
        provider: vagrant #<
        nodes: [{name: a}]
        """, "vagrant is not installed on this host", "provider",
        dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start"})), id="vagrant-not-installed"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
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


def test_auto_provider_picks_vms_for_a_node_that_names_its_kernel() -> None:
    assert ok("lab: t\nnodes: [{name: a, kernel: \"6.12\"}]\n", "ci").provider == "vagrant"


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
    assert ok("provider: vagrant\n" + yaml_text(NFS_ISCSI), "ci") == Resolved("vagrant", {"nfs": "kernel", "iscsi": "lio"})


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
    text = yaml_text("""
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
    assert res.provider == ("vagrant" if topo.provider == "auto" else topo.provider)  # auto: VMs where KVM works
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
