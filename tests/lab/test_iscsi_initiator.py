"""The classic targetcli lab consumed by a kernel initiator node, as an oVirt/KVM host would:
sendtargets discovery, login over two portals, three LUNs of the right sizes through
dm-multipath, refusal of a wrong IQN and a wrong CHAP secret, and I/O that survives one portal
going down; and libvirt's kernel `iscsi` pool on a hypervisor node. Needs a node kernel with
iscsi_tcp: VMs (`-m vm`). Select with `pytest -k iscsi`."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest

from harness.backends.iscsi import planned
from harness.backends.iscsi.plan import IscsiPlan
from harness.backends.iscsi.target import planned_lun_sizes
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.run import wait_until
from harness.testing.workload import Writer, block

pytestmark = [pytest.mark.topology("iscsi.yaml"), pytest.mark.vm]
INTRUDER = "iqn.2019-12.com.example:intruder"


def iscsi_plan(lab: Lab) -> IscsiPlan:
    return planned(lab.plan)


def initiator(lab: Lab) -> Any:
    return lab.node(next(n.name for n in lab.plan.nodes if "iscsi-initiator" in n.roles))


def iqn(lab: Lab) -> str:
    return str(iscsi_plan(lab).iqn)


def portals(lab: Lab) -> list[str]:
    return list(iscsi_plan(lab).portal_addresses)


def mpath_maps(node: Any) -> dict[str, int]:
    """multipath map name -> number of active paths."""
    out: dict[str, int] = {}
    for dev in json.loads(node.succeed(["lsblk", "-J", "-o", "NAME,TYPE"]))["blockdevices"]:
        for child in dev.get("children", []):
            if child["type"] == "mpath":
                out[child["name"]] = out.get(child["name"], 0) + 1
    return out


@pytest.fixture(scope="module")
def logged_in(lab: Lab) -> Any:
    node = initiator(lab)
    node.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portals(lab)[0], "-I", "default"], timeout=60)
    node.succeed(["iscsiadm", "-m", "node", "-T", iqn(lab), "-I", "default", "--login"], timeout=120)
    wait_until(lambda: len(mpath_maps(node)) == len(iscsi_plan(lab).luns), timeout=120, interval=2,
               what="one multipath map per LUN")
    yield node
    node.run(["iscsiadm", "-m", "node", "-T", iqn(lab), "-I", "default", "--logout"], timeout=120)


def sessions(node: Any, target_iqn: str) -> int:
    return len([s for s in node.succeed(["iscsiadm", "-m", "session"]).splitlines() if target_iqn in s])


def test_iscsi_initiator_discovers_both_portals(lab: Lab, logged_in: Any) -> None:
    out = logged_in.succeed(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", portals(lab)[0]], timeout=60)
    found = {line.split(",")[0].rsplit(":", 1)[0] for line in out.splitlines() if iqn(lab) in line}
    assert found == set(portals(lab)), out
    out = logged_in.succeed(["iscsiadm", "-m", "session"])
    for portal in portals(lab):
        assert f"{portal}:3260" in out, f"no session over portal {portal}: {out}"


def test_iscsi_initiator_sees_three_luns_with_their_sizes(lab: Lab, logged_in: Any) -> None:
    want = sorted(planned_lun_sizes(lab.plan))
    devs = json.loads(logged_in.succeed(["lsblk", "-J", "-b", "-o", "NAME,SIZE,TYPE,TRAN"]))["blockdevices"]
    iscsi = sorted(int(d["size"]) for d in devs if d.get("tran") == "iscsi")
    n = sessions(logged_in, iqn(lab))  # one per portal
    assert n == len(portals(lab))
    assert iscsi == sorted(want * n), iscsi  # every LUN once per session
    assert sorted(mpath_maps(logged_in).values()) == [n] * len(want)


def test_iscsi_kernel_pool_on_a_hypervisor_node(lab: Lab, logged_in: Any) -> None:
    """libvirt's iscsi pool on kvm1 (kernel initiator, its own IQN) lists the three LUNs, and a
    volume of it is the target's LUN: bytes written there on kvm1 are read on initiator1."""
    spec = next(p for p in lab.plan.host.pools if p.type == "iscsi")
    kvm = lab.node(spec.host)
    conn = connect(node_uri(lab, spec.host))
    try:
        pool = conn.storagePoolLookupByName(spec.object)
        assert pool.isActive() and pool.autostart()
        assert f"<iqn name='{spec.initiator}'/>" in pool.XMLDesc(0)
        pool.refresh(0)
        vols = {v.name(): v for v in pool.listAllVolumes(0)}
        assert sorted(v.info()[1] for v in vols.values()) == sorted(planned_lun_sizes(lab.plan)), list(vols)
        paths = {v.path() for v in vols.values()}
        assert all(p.startswith("/dev/disk/by-path/") for p in paths), paths
        out = kvm.succeed(["iscsiadm", "-m", "session", "-P", "1"])
        assert f"Iface Initiatorname: {spec.initiator}" in out, out
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


def test_iscsi_initiator_with_another_iqn_is_refused(lab: Lab, logged_in: Any) -> None:
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


def test_iscsi_initiator_with_a_wrong_chap_secret_is_refused(lab: Lab, logged_in: Any) -> None:
    if not iscsi_plan(lab).chap:
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


def test_iscsi_multipath_survives_one_portal_going_down(lab: Lab, logged_in: Any) -> None:
    node = logged_in
    mp = sorted(mpath_maps(node))[0]
    second_net = lab.plan.networks[1].name
    target = iscsi_plan(lab).target
    write = ["dd", "if=/dev/urandom", f"of=/dev/mapper/{mp}", "bs=64k", "count=16", "oflag=direct", "status=none"]
    node.succeed(write, timeout=60)
    with lab.node(target).link_down(second_net):
        wait_until(lambda: "failed" in node.succeed(["multipath", "-ll", mp]), timeout=120, interval=2,
                   what=f"multipath to mark the {second_net} path of {mp} failed")
        node.succeed(write, timeout=120)  # I/O goes on over the remaining portal
        node.succeed(["dd", f"if=/dev/mapper/{mp}", "of=/dev/null", "bs=64k", "count=16", "iflag=direct", "status=none"],
                     timeout=120)
    wait_until(lambda: "failed" not in node.succeed(["multipath", "-ll", mp]), timeout=180, interval=2,
               what=f"both paths of {mp} active again")


def replacement_timeout(node: Any) -> int:
    """node.session.timeo.replacement_timeout of the logged-in sessions (iscsiadm calls it Recovery Timeout)."""
    out = node.succeed(["iscsiadm", "-m", "session", "-P", "2"])
    values = {int(v) for v in re.findall(r"Recovery Timeout:\s*(\d+)", out)}
    assert len(values) == 1, out
    return values.pop()


def io_survives(node: Any) -> float:
    """Seconds a path-less write survives before the application gets EIO: the session's
    replacement_timeout (multipathd sets it to fast_io_fail_tmo, 5 s), then dm-multipath
    queues for no_path_retry x polling_interval."""
    conf = node.succeed(["multipathd", "show", "config"])
    interval = int(re.search(r"\bpolling_interval (\d+)", conf).group(1))  # type: ignore[union-attr]
    overrides = re.search(r"^overrides \{(.*?)^\}", conf, re.M | re.S)  # the role sets it there: it beats the hwtable
    assert overrides, conf
    retry = re.search(r'\bno_path_retry "?(\w+)"?', overrides.group(1)).group(1)  # type: ignore[union-attr]
    queue = float("inf") if retry == "queue" else 0 if retry == "fail" else int(retry) * interval
    return replacement_timeout(node) + queue


def test_iscsi_sessions_recover_after_a_target_restart(lab: Lab, logged_in: Any) -> None:
    """The target restarts while the initiator writes through multipath: writes queue, none
    fails, the sessions log in again before queued I/O would be failed (replacement_timeout,
    then multipath's no_path_retry), and every acknowledged block reads back as written."""
    node = logged_in
    mp = sorted(mpath_maps(node))[0]
    limit = min(io_survives(node), 600)
    size = 65536
    base = 64  # blocks 64.. (4 MiB on): clear of what the other tests write at the start of the LUN

    def write(seq: int) -> None:
        node.succeed(["sh", "-c", f"base64 -d | dd of=/dev/mapper/{mp} bs={size} seek={base + seq} iflag=fullblock "
                      "oflag=direct status=none"], input=base64.b64encode(block(seq, size)).decode(), timeout=limit + 120)

    unit = "rtslib-fb-targetctl.service" if iscsi_plan(lab).implementation == "lio" else "tgt.service"
    with Writer("iscsi-mpath", write, interval=0.2) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=90, what="writes through multipath running")
        with lab.node(iscsi_plan(lab).target).service_stopped(unit):
            t_down = time.monotonic()
            wait_until(lambda: "active ready running" not in node.succeed(["multipath", "-ll", mp]), timeout=120,
                       interval=2, what=f"every path of {mp} to fail while the target is down")
        t_up = time.monotonic()

        def recovered() -> bool:
            out = node.succeed(["iscsiadm", "-m", "session", "-P", "1"])
            states = [line.split(":", 1)[1].strip() for line in out.splitlines() if "iSCSI Session State" in line]
            return bool(states) and all(s == "LOGGED_IN" for s in states)
        wait_until(recovered, timeout=limit, interval=1, what="every iSCSI session logged in again")
        back = time.monotonic() - t_up
        wait_until(lambda: len([1 for t, _ in w.log.acked if t > t_up]) > 5, timeout=120, what="writes flowing again")
    stall = w.log.max_gap(t_down, t_up + back)
    print(f"iSCSI target restart under multipath writes: sessions logged in {back:.1f}s after the target was back; "
          f"longest write stall {stall:.1f}s (target down {t_up - t_down:.1f}s, replacement_timeout "
          f"{replacement_timeout(node)}s, I/O queued up to {limit:.0f}s); "
          f"{len(w.log.acked)} writes acknowledged, {len(w.log.errors)} failed")
    assert not w.log.errors, f"writes failed during the restart: {w.log.errors[:3]}"
    assert stall < limit, f"writes stalled {stall:.1f}s, beyond the {limit:.0f}s multipath queues them"
    n = w.seq
    out = node.succeed(["sh", "-c", f"dd if=/dev/mapper/{mp} bs={size} skip={base} count={n} iflag=direct status=none"
                        " | base64 -w0"], timeout=120)
    data = base64.b64decode(out)
    lost = [seq for _, seq in w.log.acked if data[seq * size:(seq + 1) * size] != block(seq, size)]
    assert not lost, f"acknowledged writes {lost[:5]} read back differently after the restart"
