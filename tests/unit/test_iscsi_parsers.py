"""tgtadm output as tgt 1.0.85 prints it (lab iscsi-userspace), parsed."""

from __future__ import annotations

from harness.backends.iscsi.target import parse_tgt_show

SHOW = """Target 1: iqn.2019-12.com.packt:target1
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.2019-12.com.packt:PacktStratis01 alias: kvm
            Connection: 0
                IP Address: 192.168.131.1
    LUN information:
        LUN: 0
            Type: controller
            Size: 0 MB, Block size: 1
        LUN: 1
            Type: disk
            Size: 1074 MB, Block size: 512
    Account information:
        labuser
        mutualuser (outgoing)
    ACL information:
        192.0.2.1
        iqn.2019-12.com.packt:PacktStratis01
"""


def test_acl_keeps_iqns_and_addresses_not_key_value_lines() -> None:
    t = parse_tgt_show(SHOW)["iqn.2019-12.com.packt:target1"]
    assert t["acls"] == ["192.0.2.1", "iqn.2019-12.com.packt:PacktStratis01"]
    assert t["users"] == ["labuser", "mutualuser"]
    assert t["luns"] == {1: 1074 * 1000**2}
