"""Validation of the clusterfs: section (harness/backends/clusterfs/schema.py and rules.py), of the
shared device it names (checked by the backend serving it: iscsi's check_block, nvme's) and of
dir pools on its mounts: each failing example is reported with its message, dotted field and line
(marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, ok, rule_params

HEAD = """
    lab: t
    networks: [{name: storage}]
    nodes:
      - name: san1
        roles: [iscsi-target, nvme-target]
        disks: [{name: lun, size: 1G}, {name: ns, size: 1G}]
      - {name: hv1, roles: [hypervisor, iscsi-initiator, nvme-host, clusterfs-node]}
      - {name: hv2, roles: [hypervisor, iscsi-initiator, nvme-host, clusterfs-node]}
    iscsi:
      target: san1
      implementation: lio
      iqn: iqn.2024-12.lab.storlab:shared
      portals: [storage]
      luns: [{kind: block, disk: lun}]
      acls: [{initiator: "iqn.2024-12.lab.storlab:hv1"}, {initiator: "iqn.2024-12.lab.storlab:hv2"}]
    nvme:
      target: san1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:shared
          namespaces: [{name: shared-ns, kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}, {node: hv2}]
          ports: [{network: storage}]
"""


def topo(section: str, tail: str = "") -> str:
    return HEAD + section + tail


GOOD = """
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}
        - {name: nvstore, device: {backend: nvme, namespace: shared-ns}, mount: /var/lib/libvirt/nvstore}
"""
POOLS = """
    host:
      pools:
        - {name: vm-hv1, type: dir, backend: clusterfs, path: /var/lib/libvirt/vmstore, host: hv1}
"""


def test_good_section_and_pool_pass_on_vms() -> None:
    assert ok(topo(GOOD, POOLS), "kvm").provider == "vagrant"


def test_containers_are_refused_for_want_of_ocfs2() -> None:
    p = expect("""
    lab: t
    provider: lxc
    networks: [{name: storage}]
    nodes:
      - {name: hv1, roles: [clusterfs-node]} #<
      - {name: hv2, roles: [clusterfs-node]}
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems: [{name: a, device: {backend: nvme, namespace: x}, mount: /srv/a}]
    """, "needs ocfs2, which this host's kernel lacks", "nodes[0].roles", "ci", count=3)
    assert "vagrant" in p.fix


RULE_CASES = [
    pytest.param(topo("""
    clusterfs:
      filesystem: gfs2 #<
      network: storage
      nodes: [hv1, hv2]
      filesystems: [{name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}]
    """), "GFS2 is not built", "clusterfs.filesystem", "kvm", id="gfs2-refused-with-why"),
    pytest.param(topo("""
    clusterfs:
      network: storage9 #<
      nodes: [hv1, hv2]
      filesystems: [{name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}]
    """), "network 'storage9' does not exist", "clusterfs.network", "kvm", id="no-such-network"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, san1] #<
      filesystems: [{name: vmstore, device: {backend: nvme, namespace: shared-ns}, mount: /var/lib/libvirt/vmstore}]
    """), "does not have role 'clusterfs-node'", "clusterfs.nodes[1]", "kvm", 3, id="node-without-the-role"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      keepalive_delay_ms: 30000 #<
      filesystems: [{name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}]
    """), "keepalive delay must be shorter", "clusterfs.keepalive_delay_ms", "kvm", id="keepalive-not-below-idle"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: vmstore, device: {backend: iscsi, lun: 0}, mount: /etc} #<
    """), "not a place for a shared filesystem", "clusterfs.filesystems[0].mount", "kvm", id="mount-over-etc"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: vmstore, slots: 1, device: {backend: iscsi, lun: 0}, mount: /srv/vmstore} #<
    """), "greater than or equal to 2", "clusterfs.filesystems[0].slots", "kvm", id="one-slot"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: a, device: {backend: iscsi, lun: 0}, mount: /srv/a}
        - {name: b, device: {backend: iscsi, lun: 0}, mount: /srv/b} #<
    """), "is on this device already", "clusterfs.filesystems[1].device", "kvm", id="two-on-one-lun"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: a, device: {backend: gluster, lun: 0}, mount: /srv/a} #<
    """), "serves no block device", "clusterfs.filesystems[0].device.backend", "kvm", id="backend-without-devices"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: a, device: {backend: iscsi, namespace: shared-ns}, mount: /srv/a} #<
    """), "is named by lun", "clusterfs.filesystems[0].device", "kvm", id="iscsi-named-by-namespace"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: a, device: {backend: iscsi, lun: 3}, mount: /srv/a} #<
    """), "the target has 1 LUNs", "clusterfs.filesystems[0].device.lun", "kvm", id="lun-out-of-range"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems:
        - {name: a, device: {backend: nvme, namespace: other}, mount: /srv/a} #<
    """), "no namespace is named 'other'", "clusterfs.filesystems[0].device.namespace", "kvm", id="no-such-namespace"),
    pytest.param(topo("""
    clusterfs:
      network: storage
      nodes: [hv1, hv2]
      filesystems: [{name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}]
    """, """
    host:
      pools:
        - {name: p, type: dir, backend: clusterfs, path: /var/lib/libvirt/other, host: hv1} #<
    """), "is not the mount of a cluster filesystem", "host.pools[0].path", "kvm", id="pool-not-on-a-mount"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
def test_rule(text: str, fragment: str, field: str, profile: str, count: int) -> None:
    expect(text, fragment, field, profile, count)


def test_a_node_not_admitted_to_the_namespace_is_named() -> None:
    text = topo(GOOD.replace("- {name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}\n", "")
                .replace("- {name: nvstore, device: {backend: nvme, namespace: shared-ns}, mount: /var/lib/libvirt/nvstore}",
                         "- {name: nvstore, device: {backend: nvme, namespace: shared-ns}, mount: /srv/nv} #<"))
    text = text.replace("allowed_hosts: [{node: hv1}, {node: hv2}]", "allowed_hosts: [{node: hv1}]")
    expect(text, "does not admit node hv2", "clusterfs.filesystems[0].device", "kvm")


NVSTORE = "- {name: nvstore, device: {backend: nvme, namespace: shared-ns}, mount: /var/lib/libvirt/nvstore}"


def test_an_initiator_without_an_acl_is_named() -> None:
    text = topo(GOOD.replace(NVSTORE + "\n", "")
                .replace("- {name: vmstore, device: {backend: iscsi, lun: 0}, mount: /var/lib/libvirt/vmstore}",
                         "- {name: vmstore, device: {backend: iscsi, lun: 0}, mount: /srv/vm} #<"))
    text = text.replace('acls: [{initiator: "iqn.2024-12.lab.storlab:hv1"}, {initiator: "iqn.2024-12.lab.storlab:hv2"}]',
                        'acls: [{initiator: "iqn.2024-12.lab.storlab:hv1"}]')
    expect(text, "no ACL for node hv2", "clusterfs.filesystems[0].device", "kvm")
