"""The 5-node Ceph lab: real ceph-mon/mgr/osd daemons, cephx clients, and the KVM host's
libvirt rbd pool; an OSD node crashes under librbd writes, the only monitor goes away.

Select with `pytest -k ceph`."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from harness.backends.ceph import planned
from harness.backends.ceph.plan import CephHostPool, CephPlan
from harness.backends.ceph.role import osd_stopped, parse_auth, parse_health, parse_osd_tree
from harness.lab.lab import Lab
from harness.run import wait_until
from harness.testing.workload import Writer, block

pytestmark = pytest.mark.topology("ceph-5.yaml")

POOL = "KVMpool"
CLIENT = "client.KVMpool"
KEYRING = "/etc/ceph/ceph.client.KVMpool.keyring"
IMAGE = "vm1"
MARGIN = 15.0

# One librbd write as client.KVMpool: a new client each time, as a VM (re)connecting would be.
WRITE = """
import sys, hashlib, rados, rbd
seq = int(sys.argv[1]); data = hashlib.sha256(f"storlab-{seq}".encode()).digest() * 128
with rados.Rados(conffile="/etc/ceph/ceph.conf", rados_id="KVMpool",
                 conf={"keyring": sys.argv[2], "rados_mon_op_timeout": "10", "client_mount_timeout": "10",
                       "rados_osd_op_timeout": "60"}) as c:
    with c.open_ioctx(sys.argv[3]) as io, rbd.Image(io, sys.argv[4]) as img:
        img.write(data, seq * 4096); img.flush()
"""
READ = """
import sys, hashlib, rados, rbd
h = hashlib.md5()
with rados.Rados(conffile="/etc/ceph/ceph.conf", rados_id="KVMpool", conf={"keyring": sys.argv[1]}) as c:
    with c.open_ioctx(sys.argv[2]) as io, rbd.Image(io, sys.argv[3]) as img:
        for seq in map(int, sys.stdin.read().split()):
            h.update(img.read(seq * 4096, 4096))
print(h.hexdigest())
"""


def ceph_plan(lab: Lab) -> CephPlan:
    return planned(lab.plan)


def admin(lab: Lab) -> Any:
    return lab.node(ceph_plan(lab).admin[0])


def ceph_json(lab: Lab, *args: str) -> Any:
    return json.loads(admin(lab).succeed(["ceph", *args, "-f", "json"], timeout=60))


def wait_health_ok(lab: Lab, timeout: float = 240) -> None:
    accepted = ceph_plan(lab).accept_warnings
    wait_until(lambda: parse_health(admin(lab).succeed(["ceph", "-s", "-f", "json"], timeout=60), accepted)[0],
               timeout=timeout, interval=2, what="HEALTH_OK and all PGs active+clean")


@pytest.fixture(scope="module")
def client_keyring(lab: Lab) -> Any:
    """client.KVMpool's keyring on the admin node (written there by ceph itself, never moved)."""
    admin(lab).succeed(["ceph", "auth", "get", CLIENT, "-o", KEYRING])
    admin(lab).succeed(["chmod", "0600", KEYRING])
    yield KEYRING
    admin(lab).run(["rm", "-f", KEYRING], timeout=30)


def test_ceph_cluster_is_built_as_specified(lab: Lab, hosts: dict[str, Any]) -> None:
    c = ceph_plan(lab)
    wait_health_ok(lab)
    st = ceph_json(lab, "-s")
    # HEALTH_OK, or a warning the plan accepts by name (a release's own: trixie's mgr modules)
    assert st["health"]["status"] == "HEALTH_OK" or set(st["health"]["checks"]) <= set(c.accept_warnings), st["health"]
    assert sorted(st["quorum_names"]) == sorted(m.name for m in c.mons)
    tree = parse_osd_tree(admin(lab).succeed(["ceph", "osd", "tree", "-f", "json"]))
    assert sorted(o["host"] for o in tree.values()) == sorted(c.osds), tree
    assert all(o["status"] == "up" and o["reweight"] == 1 for o in tree.values()), tree
    want = next(p for p in c.pools if p.name == POOL)
    for key in ("size", "min_size", "pg_num"):
        got = ceph_json(lab, "osd", "pool", "get", POOL, key)[key]
        assert got == getattr(want, key), f"{POOL} {key} = {got}, topology says {getattr(want, key)}"
    assert "rbd" in ceph_json(lab, "osd", "pool", "application", "get", POOL)
    caps = parse_auth(admin(lab).succeed(["ceph", "auth", "get", CLIENT, "-f", "json"]))
    assert caps == next(cl.caps for cl in c.clients if cl.name == CLIENT)
    for name, host in hosts.items():
        has_admin_key = host.file("/etc/ceph/ceph.client.admin.keyring").exists
        assert has_admin_key == (name in c.admin), f"client.admin keyring on {name}: {has_admin_key}"
    for name in c.osds:
        assert hosts[name].service(f"ceph-osd@{next(i for i, o in tree.items() if o['host'] == name)}").is_running


def test_ceph_libvirt_rbd_pool_and_secret(lab: Lab, libvirt_conn: Any) -> None:
    import libvirt
    spec = next(p for p in lab.plan.host.pools if isinstance(p, CephHostPool) and p.type == "rbd")
    secret = libvirt_conn.secretLookupByUUIDString(spec.secret_uuid)
    assert "private='yes'" in secret.XMLDesc(0) or 'private="yes"' in secret.XMLDesc(0)
    with pytest.raises(libvirt.libvirtError):
        secret.value(0)  # a private secret cannot be read back through the API
    pool = libvirt_conn.storagePoolLookupByName(spec.object)
    assert pool.isActive() and pool.autostart()
    xml = pool.XMLDesc(0)
    for mon in spec.monitors:
        assert f"name='{mon}'" in xml or f'name="{mon}"' in xml
    assert "port='6789'" in xml or 'port="6789"' in xml
    pool.refresh(0)
    assert "vm1" in pool.listVolumes()
    vol = pool.createXML("<volume><name>libvirt-test</name><capacity unit='M'>64</capacity></volume>", 0)
    pool.refresh(0)
    assert "libvirt-test" in pool.listVolumes()
    assert vol.info()[1] == 64 * 2**20
    images = admin(lab).succeed(["rbd", "ls", POOL]).split()
    assert "libvirt-test" in images, "libvirt's volume is not an rbd image in the pool"
    vol.delete(0)
    pool.refresh(0)
    assert "libvirt-test" not in pool.listVolumes()


def test_ceph_client_key_is_confined_to_its_pool(lab: Lab, client_keyring: str) -> None:
    a = admin(lab)
    as_client = ["--id", "KVMpool", "--keyring", client_keyring]
    a.succeed(["rbd", *as_client, "create", f"{POOL}/capcheck", "--size", "8M"])
    assert "capcheck" in a.succeed(["rbd", *as_client, "ls", POOL]).split()
    a.succeed(["rbd", *as_client, "rm", f"{POOL}/capcheck"])
    a.succeed(["ceph", "osd", "pool", "create", "captest", "8"])
    try:
        a.succeed(["rbd", "pool", "init", "captest"])
        err = a.fail(["rbd", *as_client, "create", "captest/intruder", "--size", "8M"], timeout=60)
        assert "Operation not permitted" in err or "permission" in err.lower(), err
    finally:
        a.succeed(["ceph", "osd", "pool", "rm", "captest", "captest", "--yes-i-really-really-mean-it"])


def _writer(lab: Lab, keyring: str) -> Writer:
    a = admin(lab)
    return Writer("librbd", lambda seq: a.succeed(["python3", "-c", WRITE, str(seq), keyring, POOL, IMAGE], timeout=90),
                  interval=0.1)


def test_ceph_osd_node_crash_degrades_and_recovers(lab: Lab, client_keyring: str, host_side: Lab) -> None:
    wait_health_ok(lab)
    grace = float(ceph_plan(lab).heartbeat_grace)
    victim = ceph_plan(lab).osds[1]
    with _writer(lab, client_keyring) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=120, what="librbd writer running")
        t0 = time.monotonic()
        with lab.node(victim).crashed():
            def down() -> bool:
                tree = parse_osd_tree(admin(lab).succeed(["ceph", "osd", "tree", "-f", "json"]))
                return any(o["host"] == victim and o["status"] == "down" for o in tree.values())
            wait_until(down, timeout=grace + MARGIN + 30, interval=1, what=f"the OSD on {victim} reported down")
            detected = time.monotonic() - t0
            wait_until(lambda: w.log.first_ack_after(t0 + detected),
                       timeout=120, what="writes acknowledged with the OSD down (degraded)")
            st = ceph_json(lab, "-s")
            assert st["health"]["status"] != "HEALTH_OK", "cluster claims HEALTH_OK with an OSD down"
            t1 = time.monotonic()
    print(f"OSD on {victim}: reported down after {detected:.1f}s (grace {grace:.0f}s); "
          f"longest write stall {w.log.max_gap(t0, t1):.1f}s")
    assert detected <= grace + MARGIN
    assert w.log.max_gap(t0, t1) <= grace + MARGIN + 30
    assert not w.log.errors, f"librbd writes failed: {w.log.errors[:3]}"
    wait_health_ok(lab, timeout=300)
    seqs = sorted({s for _, s in w.log.acked})
    got = admin(lab).succeed(["python3", "-c", READ, client_keyring, POOL, IMAGE], input=" ".join(map(str, seqs)),
                             timeout=300).strip()
    want = hashlib.md5(b"".join(block(s) for s in seqs)).hexdigest()
    assert got == want, "data read back after recovery differs from what was acknowledged"
    admin(lab).succeed(["ceph", "osd", "pool", "scrub", POOL], timeout=60)


def test_ceph_killed_osd_is_marked_down_at_once_and_recovers(lab: Lab) -> None:
    """An OSD daemon that dies on a live node refuses its peers' connections: the monitors mark it
    down well within the heartbeat grace, and the cluster is whole again once it is started."""
    wait_health_ok(lab)
    grace = float(ceph_plan(lab).heartbeat_grace)
    victim = ceph_plan(lab).osds[0]

    def status() -> set[str]:
        tree = parse_osd_tree(admin(lab).succeed(["ceph", "osd", "tree", "-f", "json"]))
        return {o["status"] for o in tree.values() if o["host"] == victim}
    t0 = time.monotonic()
    with osd_stopped(lab.node(victim)):
        wait_until(lambda: status() == {"down"}, timeout=grace + MARGIN, interval=0.5, what=f"the OSD on {victim} down")
        detected = time.monotonic() - t0
        assert ceph_json(lab, "-s")["health"]["status"] != "HEALTH_OK", "HEALTH_OK with an OSD down"
    print(f"OSD on {victim} killed: marked down after {detected:.1f}s (heartbeat grace {grace:.0f}s)")
    assert detected < grace, "a dead OSD daemon was noticed no sooner than a dead node"
    wait_until(lambda: status() == {"up"}, timeout=120, interval=1, what=f"the OSD on {victim} up again")
    wait_health_ok(lab, timeout=300)


def test_ceph_single_monitor_is_a_single_point_of_failure(lab: Lab, client_keyring: str, host_side: Lab) -> None:
    wait_health_ok(lab)
    mons = ceph_plan(lab).mons
    if len(mons) != 1:
        pytest.skip("this topology has several monitors")
    a = admin(lab)
    mon = mons[0].name
    with lab.node(mon).service_stopped(f"ceph-mon@{mon}.service"):
        r = a.run(["ceph", "--connect-timeout", "8", "-s"], timeout=60)
        assert not r.ok, "ceph answered without its only monitor"
        r = a.run(["python3", "-c", WRITE, "200000", client_keyring, POOL, IMAGE], timeout=90)
        assert not r.ok, "a new client wrote without any monitor"
    a.wait_until_succeeds(["python3", "-c", WRITE, "200000", client_keyring, POOL, IMAGE], timeout=120,
                          what="writes through a new client once the monitor is back")
    wait_health_ok(lab)
