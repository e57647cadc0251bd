"""Validation of the iscsi: section (harness/backends/iscsi/schema.py and rules.py): each failing
example is reported with its message, dotted field and line (marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, rule_params

SCHEMA_CASES = [
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
        iscsi:
          target: a
          iqn: iqn.2020-01.com.example:t
          luns:
            - {kind: fileio, path: /x, size: lots} #<
        """, "'lots' is not a size", "iscsi.luns[0].size", None, id="bad-optional-size"),
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
]

RULE_CASES = [
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
          - name: i1
            roles: [iscsi-initiator] #<
        """, "iscsi-initiator needs iscsi_tcp, which this host's kernel lacks", "nodes[0].roles", "ci",
        id="iscsi-initiator-on-lxc"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "fix"), SCHEMA_CASES)
def test_schema_problem(text: str, fragment: str, field: str, fix: str) -> None:
    expect(text, fragment, field, fix=fix)


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
def test_rule_problem(text: str, fragment: str, field: str, profile: str, count: int) -> None:
    expect(text, fragment, field, profile, count=count)
