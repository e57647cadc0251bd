"""Validation of the host pools on an iSCSI target wired on a hypervisor node (logical, disk, scsi,
mpath: harness/backends/iscsi/pool_rules.py) and of zfs pools (refused everywhere, with the
reason): each failing example is reported with its message, dotted field and line (marked
``#<``, see validation.py), and with a fix that says what to write."""

from __future__ import annotations

import pytest
from validation import expect, ok, yaml_text

#: a target with two LUNs on two portals, and kvm1 logging in to it with the first ACL
BASE = """
lab: t
networks: [{name: storage}, {name: storage2}]
nodes:
  - {name: t1, roles: [iscsi-target], disks: [{name: d0, size: 1G}, {name: d1, size: 1G}]}
  - {name: kvm1, roles: [hypervisor, iscsi-initiator]}
iscsi:
  target: t1
  implementation: lio
  iqn: iqn.2024-12.lab.storlab:t
  portals: [storage, storage2]
  luns: [{kind: block, disk: d0}, {kind: block, disk: d1}]
  acls: [{initiator: "iqn.2024-12.lab.storlab:kvm1"}]
"""


def lab(host: str) -> str:
    """BASE with ``host`` (a host: section, indented as in the file) after it."""
    return yaml_text(BASE) + yaml_text(host)


CASES = [
    pytest.param("""
        host:
          pools:
            - {name: lvm, type: logical, backend: iscsi, lun: 2, path: /dev/vg, host: kvm1} #<
        """, "the target has 2 LUNs (0 to 1)", "host.pools[0].lun", "index under iscsi.luns", id="lun-out-of-range"),
    pytest.param("""
        host:
          pools:
            - {name: gpt, type: disk, backend: iscsi, host: kvm1} #<
        """, "a disk pool on the iSCSI target takes one LUN whole", "host.pools[0]", "add lun: N", id="disk-without-lun"),
    pytest.param("""
        host:
          pools:
            - {name: gpt, type: disk, backend: iscsi, lun: 1} #<
        """, "a disk pool on the iSCSI target is wired on a hypervisor node of the lab", "host.pools[0].host",
        "set host: to a node with roles hypervisor and iscsi-initiator", id="lun-pool-without-host"),
    pytest.param("""
        host:
          pools:
            - {name: all, type: scsi, backend: iscsi, host: kvm} #<
        """, "a scsi pool on the iSCSI target is wired on a hypervisor node", "host.pools[0].host",
        "set host: to a node with roles hypervisor and iscsi-initiator", id="scsi-on-the-kvm-host"),
    pytest.param("""
        host:
          pools:
            - {name: all, type: scsi, backend: iscsi, lun: 1, host: kvm1} #<
        """, "a scsi pool lists the LUNs of the node's session (under /dev/disk/by-path): it takes no lun",
        "host.pools[0].lun", "drop lun:", id="scsi-with-lun"),
    pytest.param("""
        host:
          pools:
            - {name: lvm, type: logical, backend: iscsi, lun: 0, path: /dev/vg, host: kvm1}
            - {name: gpt, type: disk, backend: iscsi, lun: 0, host: kvm1} #<
        """, "LUN 0 is taken whole by host.pools[0] (lvm) already", "host.pools[1].lun",
        "give each logical or disk pool a LUN of its own", id="two-pools-on-one-lun"),
    pytest.param("""
        host:
          pools:
            - {name: a, type: mpath, backend: iscsi, host: kvm1}
            - {name: b, type: mpath, backend: iscsi, host: kvm1} #<
        """, "host.pools[0] (a) is a mpath pool on kvm1 already", "host.pools[1].type", "keep one of them",
        id="two-mpath-pools-on-one-node"),
    pytest.param("""
        host:
          pools:
            - {name: mpathb, type: disk, backend: iscsi, lun: 1, host: kvm1} #<
        """, "multipathd names other LUNs mpathb", "host.pools[0].name", "lun-mpathb", id="map-named-like-mpathb"),
    pytest.param("""
        host:
          pools:
            - {name: gpt, type: disk, backend: iscsi, lun: 1, host: kvm1, initiator: "iqn.2024-12.lab.storlab:kvm1"} #<
        """, "logs in with its node's own IQN and CHAP", "host.pools[0].initiator", "drop initiator:",
        id="node-pool-with-initiator"),
    pytest.param("""
        host:
          pools:
            - {name: gpt, type: disk, backend: iscsi, lun: 1, host: kvm1, path: /dev/gpt} #<
        """, "a disk pool takes no path: its volumes are the partitions of its LUN's map", "host.pools[0].path",
        "drop path:", id="disk-with-path"),
    pytest.param("""
        host:
          pools:
            - {name: gpt, type: disk, backend: iscsi, disk: d1, host: kvm1} #<
        """, "disk names a disk of a node; a pool on the iSCSI target takes a LUN of it", "host.pools[0].disk",
        "write lun: N", id="disk-pool-names-a-disk"),
    pytest.param("""
        host:
          pools:
            - {name: gpt, type: disk, backend: iscsi, lun: 1, host: kvm1}
          volumes:
            - {pool: gpt, name: gpt1, size: 64M}
            - {pool: gpt, name: vm2, size: 64M} #<
        """, "volume 2 of gpt is partition 2, gpt2", "host.volumes[1].name", "name it gpt2",
        id="disk-volume-not-its-partition-name"),
    pytest.param("""
        host:
          pools:
            - {name: all, type: scsi, backend: iscsi, host: kvm1}
          volumes:
            - {pool: all, name: v, size: 64M} #<
        """, "libvirt cannot create volumes in a scsi pool", "host.volumes[0].pool",
        "its volumes are the LUNs of its SCSI host", id="volume-in-a-scsi-pool"),
    pytest.param("""
        host:
          pools:
            - {name: maps, type: mpath, backend: iscsi, host: kvm1}
          volumes:
            - {pool: maps, name: v, size: 64M} #<
        """, "libvirt cannot create volumes in a mpath pool", "host.volumes[0].pool",
        "use a logical or disk pool on a LUN", id="volume-in-an-mpath-pool"),
    pytest.param("""
        host:
          pools:
            - {name: zpool, type: zfs, host: kvm1} #<
        """, "a zfs pool is not built: it needs ZFS (not in Debian's kernel: zfs-dkms is in contrib), which the "
        "image's mirror does not carry", "host.pools[0].type", "use type: logical", id="zfs-on-a-node"),
    pytest.param("""
        host:
          pools:
            - {name: zpool, type: zfs, backend: iscsi, path: /tank} #<
        """, "this host's kernel lacks it too", "host.pools[0].type", "use type: logical", id="zfs-on-the-kvm-host"),
    pytest.param("""
        host:
          pools:
            - {name: d, type: dir, path: /var/lib/libvirt/images/d, lun: 0} #<
        """, "lun names a LUN of a target; backend 'local' serves none", "host.pools[0].lun", "use backend: iscsi",
        id="lun-on-a-local-pool"),
]


@pytest.mark.parametrize(("host", "fragment", "field", "fix"), CASES)
def test_node_pool_problem(host: str, fragment: str, field: str, fix: str) -> None:
    expect(lab(host), fragment, field, "kvm", fix=fix)


def test_the_node_must_log_in_as_an_initiator() -> None:
    text = lab("""
        host:
          pools:
            - {name: lvm, type: logical, backend: iscsi, lun: 0, path: /dev/vg, host: kvm1} #<
        """).replace("roles: [hypervisor, iscsi-initiator]", "roles: [hypervisor]")
    expect(text, "node kvm1 is not an iSCSI initiator: it would not log in to the target", "host.pools[0].host", "kvm",
           fix="add 'iscsi-initiator' to nodes[1].roles")


def test_an_mpath_pool_says_it_needs_multipathd() -> None:
    text = lab("""
        host:
          pools:
            - {name: maps, type: mpath, backend: iscsi, host: kvm1} #<
        """).replace("roles: [hypervisor, iscsi-initiator]", "roles: [hypervisor]")
    expect(text, "nor run the multipathd whose maps the pool lists", "host.pools[0].host", "kvm",
           fix="add 'iscsi-initiator' to nodes[1].roles")


def test_the_node_needs_an_acl_of_its_own() -> None:
    """The i-th initiator node takes the i-th ACL: a second initiator node has none here."""
    text = lab("""
        host:
          pools:
            - {name: lvm, type: logical, backend: iscsi, lun: 0, path: /dev/vg, host: kvm2} #<
        """).replace("  - {name: kvm1, roles: [hypervisor, iscsi-initiator]}\n",
                     "  - {name: kvm1, roles: [hypervisor, iscsi-initiator]}\n"
                     "  - {name: kvm2, roles: [hypervisor, iscsi-initiator]}\n")
    expect(text, "the target has no ACL for node kvm2", "host.pools[0].host", "kvm", fix="add an ACL for it under iscsi.acls")


def test_zfs_is_one_problem_with_its_reason() -> None:
    """Nothing else of a zfs pool is worth a problem: no backend, path or host noise around it."""
    expect(lab("""
        host:
          pools:
            - {name: zpool, type: zfs, backend: nfs, path: /etc, host: nowhere} #<
        """), "a zfs pool is not built", "host.pools[0].type", "kvm")


def test_a_pool_on_each_node_type_passes() -> None:
    res = ok(lab("""
        host:
          pools:
            - {name: lvm, type: logical, backend: iscsi, lun: 0, path: /dev/vg, host: kvm1}
            - {name: gpt2, type: disk, backend: iscsi, lun: 1, host: kvm1}
            - {name: all, type: scsi, backend: iscsi, host: kvm1}
            - {name: maps, type: mpath, backend: iscsi, host: kvm1}
          volumes:
            - {pool: lvm, name: lv1, size: 64M}
            - {pool: gpt2, name: gpt2p1, size: 64M}
            - {pool: gpt2, name: gpt2p2, size: 64M}
        """), "kvm")
    assert res is not None


def test_a_lun_must_be_an_index() -> None:
    expect(lab("""
        host:
          pools:
            - {name: lvm, type: logical, backend: iscsi, lun: -1, path: /dev/vg, host: kvm1} #<
        """), "greater than or equal to 0", "host.pools[0].lun", "kvm")
