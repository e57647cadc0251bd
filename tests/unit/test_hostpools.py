"""The iface an iscsi pool logs in through is prepared before libvirt starts the pool."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.backends.iscsi import iscsi_iface, prepare_iscsi_iface
from harness.model import HostPoolPlan

POOL = HostPoolPlan(name="iscsi-pool", object="iscsi-pool", type="iscsi", backend="iscsi", path=None, volume=None,
                    fuse_mount=False, export=None, initiator="iqn.2019-12.com.packt:kvm1", rbd_pool=None, client=None,
                    secret=None, host="kvm1", disk=None, server="192.168.193.11")
IFACES = """default tcp,<empty>,<empty>,<empty>,<empty>
iser iser,<empty>,<empty>,<empty>,<empty>
"""


def test_iface_is_made_with_the_pools_iqn_then_the_target_discovered_through_it() -> None:
    calls: list[list[str]] = []

    def sh(cmd: list[str], timeout: float = 0) -> str:
        calls.append(cmd)
        return IFACES if cmd == ["iscsiadm", "-m", "iface"] else ""

    lab = SimpleNamespace(name="iscsi")
    prepare_iscsi_iface(lab, POOL, sh)
    iface = iscsi_iface(lab, POOL)
    assert iface == "storlab-iscsi-iscsi-pool"
    assert calls[1] == ["iscsiadm", "-m", "iface", "-I", iface, "-o", "new"]
    assert calls[2][-2:] == ["-v", POOL.initiator]
    assert calls[3] == ["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", POOL.server, "-I", iface]


def test_existing_iface_is_not_made_again() -> None:
    calls: list[list[str]] = []

    def sh(cmd: list[str], timeout: float = 0) -> str:
        calls.append(cmd)
        return IFACES + "storlab-iscsi-iscsi-pool tcp,<empty>,<empty>,<empty>,iqn.2019-12.com.packt:kvm1\n" \
            if cmd == ["iscsiadm", "-m", "iface"] else ""

    prepare_iscsi_iface(SimpleNamespace(name="iscsi"), POOL, sh)
    assert not any("new" in c for c in calls)


def test_down_removes_the_pools_iface_and_its_node_records(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.backends.iscsi as hp
    from harness.run import CommandResult

    calls: list[list[str]] = []
    present = IFACES + "storlab-iscsi-iscsi-pool tcp,<empty>,<empty>,<empty>,iqn.2019-12.com.packt:kvm1\n"

    def fake_run(argv: list[str], timeout: float = 0) -> CommandResult:
        calls.append(list(argv))
        return CommandResult(tuple(argv), 0, present if argv == ["iscsiadm", "-m", "iface"] else "", "", 0.0)

    monkeypatch.setattr(hp, "run", fake_run)
    lab = SimpleNamespace(name="iscsi")
    res = hp.remove_iscsi_iface(lab, POOL)
    assert res is not None and res.ok
    assert calls[1:] == [["iscsiadm", "-m", "node", "-I", "storlab-iscsi-iscsi-pool", "-o", "delete"],
                         ["iscsiadm", "-m", "iface", "-I", "storlab-iscsi-iscsi-pool", "-o", "delete"]]
    present = IFACES  # gone: nothing to do
    calls.clear()
    assert hp.remove_iscsi_iface(lab, POOL) is None
    assert calls == [["iscsiadm", "-m", "iface"]]
