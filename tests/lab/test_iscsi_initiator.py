"""The classic targetcli lab consumed by a kernel initiator node, as an oVirt/KVM host would:
sendtargets discovery, login over two portals, three LUNs of the right sizes through
dm-multipath, refusal of a wrong IQN and a wrong CHAP secret, and I/O that survives one portal
going down; and libvirt's kernel `iscsi` pool on a hypervisor node. Needs a node kernel with
iscsi_tcp: VMs (`-m vm`). Select with `pytest -k iscsi`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from harness.hostpools import connect, node_uri
from harness.roles.iscsi import planned_lun_sizes
from harness.run import wait_until

pytestmark = [pytest.mark.topology("iscsi.yaml"), pytest.mark.vm]
INTRUDER = "iqn.2019-12.com.example:intruder"


def initiator(lab: Any) -> Any:
    return lab.node(next(n["name"] for n in lab.plan["nodes"] if "iscsi-initiator" in n["roles"]))


def iqn(lab: Any) -> str:
    return str(lab.plan["iscsi"]["iqn"])


def portals(lab: Any) -> list[str]:
    return list(lab.plan["iscsi"]["portal_addresses"])


def mpath_maps(node: Any) -> dict[str, int]:
    """multipath map name -> number of active paths."""
    out = {}
    for dev in json.loads(node.succeed(["lsblk", "-J", "-o", "NAME,TYPE"]))["blockdevices"]:
        for child in dev.get("children", []):
            if child["type"] == "mpath":
                out[child["name"]] = out.get(child["name"], 0) + 1
    return out


@pytest.fixture(scope="module")
def logged_in(lab: Any) -> Any:
    node = initiator(lab)
    node.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portals(lab)[0], "-I", "default"], timeout=60)
    node.succeed(["iscsiadm", "-m", "node", "-T", iqn(lab), "-I", "default", "--login"], timeout=120)
    wait_until(lambda: len(mpath_maps(node)) == len(lab.plan["iscsi"]["luns"]), timeout=120, interval=2,
               what="one multipath map per LUN")
    yield node
    node.run(["iscsiadm", "-m", "node", "-T", iqn(lab), "-I", "default", "--logout"], timeout=120)


def sessions(node: Any, target_iqn: str) -> int:
    return len([s for s in node.succeed(["iscsiadm", "-m", "session"]).splitlines() if target_iqn in s])


def test_iscsi_initiator_discovers_both_portals(lab: Any, logged_in: Any) -> None:
    out = logged_in.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portals(lab)[0]], timeout=60)
    found = {line.split(",")[0].rsplit(":", 1)[0] for line in out.splitlines() if iqn(lab) in line}
    assert found == set(portals(lab)), out
    out = logged_in.succeed(["iscsiadm", "-m", "session"])
    for portal in portals(lab):
        assert f"{portal}:3260" in out, f"no session over portal {portal}: {out}"


def test_iscsi_initiator_sees_three_luns_with_their_sizes(lab: Any, logged_in: Any) -> None:
    want = sorted(planned_lun_sizes(lab.plan))
    devs = json.loads(logged_in.succeed(["lsblk", "-J", "-b", "-o", "NAME,SIZE,TYPE,TRAN"]))["blockdevices"]
    iscsi = sorted(int(d["size"]) for d in devs if d.get("tran") == "iscsi")
    n = sessions(logged_in, iqn(lab))  # one per portal
    assert n == len(portals(lab))
    assert iscsi == sorted(want * n), iscsi  # every LUN once per session
    assert sorted(mpath_maps(logged_in).values()) == [n] * len(want)


def test_iscsi_kernel_pool_on_a_hypervisor_node(lab: Any, logged_in: Any) -> None:
    """libvirt's iscsi pool on kvm1 (kernel initiator, its own IQN) lists the three LUNs, and a
    volume of it is the target's LUN: bytes written there on kvm1 are read on initiator1."""
    spec = next(p for p in lab.plan["host"]["pools"] if p["type"] == "iscsi")
    kvm = lab.node(spec["host"])
    conn = connect(node_uri(lab, spec["host"]))
    try:
        pool = conn.storagePoolLookupByName(spec["name"])
        assert pool.isActive() and pool.autostart()
        assert f"<iqn name='{spec['initiator']}'/>" in pool.XMLDesc(0)
        pool.refresh(0)
        vols = {v.name(): v for v in pool.listAllVolumes(0)}
        assert sorted(v.info()[1] for v in vols.values()) == sorted(planned_lun_sizes(lab.plan)), list(vols)
        paths = {v.path() for v in vols.values()}
        assert all(p.startswith("/dev/disk/by-path/") for p in paths), paths
        out = kvm.succeed(["iscsiadm", "-m", "session", "-P", "1"])
        assert f"Iface Initiatorname: {spec['initiator']}" in out, out
        last = max(vols.values(), key=lambda v: v.name())  # unit:0:0:N -> LUN N
        lun = int(last.name().rsplit(":", 1)[1])
        blocks = last.info()[1] // 65536 - 16  # the last MiB: other tests use the start of the LUNs
        kvm.succeed(["dd", "if=/dev/urandom", "of=/root/pattern", "bs=64k", "count=16", "status=none"])
        want = kvm.succeed(["md5sum", "/root/pattern"]).split()[0]
        kvm.succeed(["dd", "if=/root/pattern", f"of={last.path()}", "bs=64k", f"seek={blocks}", "oflag=direct",
                     "conv=notrunc", "status=none"], timeout=60)
    finally:
        conn.close()
    dev = f"/dev/disk/by-path/ip-{portals(lab)[0]}:3260-iscsi-{iqn(lab)}-lun-{lun}"
    got = logged_in.succeed(["sh", "-c", f"dd if={dev} bs=64k skip={blocks} count=16 iflag=direct status=none | md5sum"],
                            timeout=60).split()[0]
    assert got == want, f"LUN {lun} read on {logged_in.name} differs from what {kvm.name} wrote through the pool"


def test_iscsi_initiator_with_another_iqn_is_refused(lab: Any, logged_in: Any) -> None:
    node = logged_in
    node.succeed(["iscsiadm", "-m", "iface", "-I", "intruder", "-o", "new"])
    try:
        node.succeed(["iscsiadm", "-m", "iface", "-I", "intruder", "-o", "update", "-n", "iface.initiatorname", "-v", INTRUDER])
        node.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portals(lab)[0], "-I", "intruder"], timeout=60)
        err = node.fail(["iscsiadm", "-m", "node", "-T", iqn(lab), "-p", portals(lab)[0], "-I", "intruder", "--login"],
                        timeout=120)
        assert "authorization failure" in err.lower() or "not authorized" in err.lower() or "24" in err, err
    finally:
        node.run(["iscsiadm", "-m", "node", "-I", "intruder", "-o", "delete"], timeout=60)
        node.run(["iscsiadm", "-m", "iface", "-I", "intruder", "-o", "delete"], timeout=60)


def test_iscsi_initiator_with_a_wrong_chap_secret_is_refused(lab: Any, logged_in: Any) -> None:
    if not lab.plan["iscsi"]["chap"]:
        pytest.skip("the topology sets no CHAP")
    node = logged_in
    node.succeed(["iscsiadm", "-m", "iface", "-I", "wrongchap", "-o", "new"])
    try:
        node.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portals(lab)[0], "-I", "wrongchap"], timeout=60)
        node.succeed(["iscsiadm", "-m", "node", "-T", iqn(lab), "-p", portals(lab)[0], "-I", "wrongchap", "-o", "update",
                      "-n", "node.session.auth.password", "-v", "not-the-secret"])
        err = node.fail(["iscsiadm", "-m", "node", "-T", iqn(lab), "-p", portals(lab)[0], "-I", "wrongchap", "--login"],
                        timeout=120)
        assert "authentication failure" in err.lower() or "24" in err, err
    finally:
        node.run(["iscsiadm", "-m", "node", "-I", "wrongchap", "-o", "delete"], timeout=60)
        node.run(["iscsiadm", "-m", "iface", "-I", "wrongchap", "-o", "delete"], timeout=60)


def test_iscsi_multipath_survives_one_portal_going_down(lab: Any, logged_in: Any) -> None:
    node = logged_in
    mp = sorted(mpath_maps(node))[0]
    second_net = lab.plan["networks"][1]["name"]
    target = lab.plan["iscsi"]["target"]
    write = ["dd", "if=/dev/urandom", f"of=/dev/mapper/{mp}", "bs=64k", "count=16", "oflag=direct", "status=none"]
    node.succeed(write, timeout=60)
    with lab.link_down(target, second_net):
        wait_until(lambda: "failed" in node.succeed(["multipath", "-ll", mp]), timeout=120, interval=2,
                   what=f"multipath to mark the {second_net} path of {mp} failed")
        node.succeed(write, timeout=120)  # I/O goes on over the remaining portal
        node.succeed(["dd", f"if=/dev/mapper/{mp}", "of=/dev/null", "bs=64k", "count=16", "iflag=direct", "status=none"],
                     timeout=120)
    wait_until(lambda: "failed" not in node.succeed(["multipath", "-ll", mp]), timeout=180, interval=2,
               what=f"both paths of {mp} active again")


def test_iscsi_sessions_recover_after_a_target_restart(lab: Any, logged_in: Any) -> None:
    node = logged_in
    mp = sorted(mpath_maps(node))[0]
    node.succeed(["dd", "if=/dev/urandom", "of=/root/pattern", "bs=64k", "count=16", "status=none"])
    node.succeed(["dd", "if=/root/pattern", f"of=/dev/mapper/{mp}", "bs=64k", "oflag=direct", "status=none"], timeout=60)
    want = node.succeed(["md5sum", "/root/pattern"]).split()[0]
    unit = "rtslib-fb-targetctl.service" if lab.plan["iscsi"]["implementation"] == "lio" else "tgt.service"
    with lab.stopped_service(lab.plan["iscsi"]["target"], unit):
        wait_until(lambda: "active ready running" not in node.succeed(["multipath", "-ll", mp]), timeout=120,
                   interval=2, what=f"every path of {mp} to fail while the target is down")
    t0 = time.monotonic()

    def recovered() -> bool:
        out = node.succeed(["iscsiadm", "-m", "session", "-P", "1"])
        states = [line.split(":", 1)[1].strip() for line in out.splitlines() if "iSCSI Session State" in line]
        return bool(states) and all(s == "LOGGED_IN" for s in states)
    wait_until(recovered, timeout=150, interval=2, what="every iSCSI session logged in again")
    print(f"iSCSI sessions recovered {time.monotonic() - t0:.1f}s after the target came back")
    got = node.succeed(["sh", "-c", f"dd if=/dev/mapper/{mp} bs=64k count=16 iflag=direct status=none | md5sum"],
                       timeout=120).split()[0]
    assert got == want, "data written before the target restart differs after it"
