"""Shared storage for two hypervisors (the clusterfs backend on topologies/shared-lun.yaml, VMs):
hv1 and hv2 log in to one iSCSI LUN and connect to one NVMe namespace of san1, each carrying an
OCFS2 filesystem (o2cb) mounted on both. A volume made through one hypervisor's dir pool is
listed by the other's and reads back there as written; a guest defined on one starts on the
other (cold move) and moves live between them; a crash of hv1 leaves hv2 writing once o2cb has
declared hv1 dead and replayed its journal, with nothing acknowledged lost, on either node.
Select with `pytest -k shared_lun` (marked `vm`)."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.clusterfs.plan import ClusterfsPlan, FilesystemPlan, of
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab import snapshots
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import need
from harness.run import wait_until
from harness.testing.workload import Writer, block, read_direct, write_direct

pytestmark = [pytest.mark.topology("shared-lun.yaml"), pytest.mark.vm]

SIZE = 4096
#: how long after o2hb's dead time a survivor's writes may still wait: o2dlm's recovery and the
#: replay of the dead node's journal (measured 13.8 s beyond a 20 s dead time under TCG)
STALL_MARGIN = 30.0
#: a file written, flushed and its directory entry flushed: acknowledged = on the shared disk
WRITE = ("import base64, os, sys; p = sys.argv[1]; data = base64.b64decode(sys.stdin.read()); "
         "fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644); os.write(fd, data); os.fsync(fd); os.close(fd); "
         "d = os.open(os.path.dirname(p), os.O_RDONLY); os.fsync(d); os.close(d)")
#: every file of a directory (name, then its content in base64), for the check after a fault
READ = ("import base64, os, sys; d = sys.argv[1]; "
        "[print(n, base64.b64encode(open(os.path.join(d, n), 'rb').read()).decode()) for n in sorted(os.listdir(d))]")


def cfs(lab: Lab) -> ClusterfsPlan:
    return need(of(lab.plan), "clusterfs section")


def fs(lab: Lab, name: str) -> FilesystemPlan:
    return next(f for f in cfs(lab).filesystems if f.name == name)


def pool_of(lab: Lab, fs_name: str, host: str) -> str:
    return next(p.object for p in lab.plan.host.pools if p.host == host and p.path == fs(lab, fs_name).mount)


@pytest.fixture(scope="module")
def conns(lab: Lab) -> Iterator[dict[str, Any]]:
    out = {n.name: connect(node_uri(lab, n.name)) for n in cfs(lab).nodes}
    yield out
    for c in out.values():
        with contextlib.suppress(Exception):  # a crashed hypervisor's connection is gone already
            c.close()


def test_shared_lun_every_node_mounts_every_filesystem(lab: Lab) -> None:
    plan = cfs(lab)
    names = [n.name for n in plan.nodes]
    live = f"/sys/kernel/config/cluster/{plan.cluster}"
    for name in names:  # o2cb runs with the topology's timeouts (a node is declared dead on them)
        node = lab.node(name)
        assert node.succeed(["cat", f"{live}/heartbeat/dead_threshold"]).strip() == str(plan.heartbeat_threshold)
        assert node.succeed(["cat", f"{live}/idle_timeout_ms"]).strip() == str(plan.idle_timeout_ms)
    for f in cfs(lab).filesystems:
        for name in names:
            node = lab.node(name)
            assert node.run(["findmnt", "-n", "-t", "ocfs2", "--mountpoint", f.mount]).ok, \
                f"{f.name} is not mounted (ocfs2) at {f.mount} on {name}"
        # the filesystem's own view: every node of the cluster has it mounted (its slot map)
        dev = lab.node(names[0]).succeed(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", f.mount]).strip()
        seen = lab.node(names[0]).succeed(["mounted.ocfs2", "-f", dev])
        assert all(n in seen for n in names), f"{f.name}: mounted.ocfs2 sees {seen!r}, not all of {names}"


@pytest.mark.parametrize("fs_name", ["vmstore", "nvstore"])
def test_shared_lun_a_volume_made_through_one_pool_is_the_others(lab: Lab, conns: dict[str, Any], fs_name: str) -> None:
    """A raw volume made through hv2's pool is listed by hv1's after a refresh; blocks written
    on hv2 (O_DIRECT, flushed) read back on hv1 as written, and the other way round."""
    a, b = (n.name for n in cfs(lab).nodes)
    name = f"moved-{fs_name}.raw"
    pa = conns[a].storagePoolLookupByName(pool_of(lab, fs_name, a))
    pb = conns[b].storagePoolLookupByName(pool_of(lab, fs_name, b))
    if name in pb.listVolumes():
        pb.storageVolLookupByName(name).delete(0)
    vol = pb.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>{16 * 2**20}</capacity>"
                       "<target><format type='raw'/></target></volume>", 0)
    try:
        pa.refresh(0)
        assert name in pa.listVolumes(), f"{a}'s pool does not list {name}, made through {b}'s"
        assert pa.storageVolLookupByName(name).info()[1] == 16 * 2**20
        path = vol.path()
        for seq in range(4):
            write_direct(lab.node(b), path, seq, block(seq, SIZE), SIZE)
        for seq in range(4, 8):
            write_direct(lab.node(a), path, seq, block(seq, SIZE), SIZE)
        for node in (a, b):
            content = read_direct(lab.node(node), path, 0, 8, SIZE)
            bad = [s for s in range(8) if content[s * SIZE:(s + 1) * SIZE] != block(s, SIZE)]
            assert not bad, f"blocks {bad} do not read back on {node} as written"
    finally:
        vol.delete(0)
    pa.refresh(0)
    assert name not in pa.listVolumes(), f"{name}, deleted through {b}, is still listed by {a}"


# -- guests on the shared store --------------------------------------------------------------
def guest_xml(lab: Lab, disk: str) -> str:
    """A guest that needs nothing but its disk: 64 MiB, no network; SeaBIOS finds no boot sector on
    the empty volume and waits, which is all a move needs (nested TCG boots nothing fast)."""
    return f"""<domain type='qemu'>
  <name>storlab-{lab.name}-tiny</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>"""


def _running(conn: Any, name: str) -> bool:
    import libvirt
    try:
        return bool(conn.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return False


def _remove(conn: Any, name: str) -> None:
    import libvirt
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    if dom.isPersistent():
        dom.undefine()


@pytest.fixture
def guest(lab: Lab, conns: dict[str, Any]) -> Iterator[str]:
    """The guest's XML (its disk: the qcow2 volume the topology makes through hv1's vmstore pool);
    whatever the test leaves running is removed from both hypervisors."""
    a, _ = (n.name for n in cfs(lab).nodes)
    vol = conns[a].storagePoolLookupByName(pool_of(lab, "vmstore", a)).storageVolLookupByName("shared.qcow2")
    xml = guest_xml(lab, vol.path())
    yield xml
    for c in conns.values():
        _remove(c, f"storlab-{lab.name}-tiny")


def test_shared_lun_a_guest_defined_on_one_starts_on_the_other(lab: Lab, conns: dict[str, Any], guest: str) -> None:
    a, b = (n.name for n in cfs(lab).nodes)
    name = f"storlab-{lab.name}-tiny"
    conns[a].defineXML(guest).create()
    assert _running(conns[a], name)
    _remove(conns[a], name)
    conns[b].defineXML(guest).create()
    assert _running(conns[b], name), f"{name} did not start on {b} from the shared volume"
    _remove(conns[b], name)


def test_shared_lun_live_migration(lab: Lab, conns: dict[str, Any], guest: str) -> None:
    """hv1 -> hv2 while it runs, memory over the storage network, the disk where it is (shared):
    the guest runs on hv2 and is gone from hv1."""
    import libvirt
    a, b = cfs(lab).nodes
    name = f"storlab-{lab.name}-tiny"
    dom = conns[a.name].defineXML(guest)
    dom.create()
    t0 = time.monotonic()
    dom.migrate3(conns[b.name], {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{b.address}"},
                 libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    took = time.monotonic() - t0
    print(f"live migration of a 64 MiB guest {a.name} -> {b.name} under TCG: {took:.1f}s")
    assert _running(conns[b.name], name), f"{name} is not running on {b.name} after the migration"
    assert not _running(conns[a.name], name), f"{name} still runs on {a.name}"


# -- a hypervisor crash ----------------------------------------------------------------------
def file_writer(node: Node, directory: str, timeout: float = 300) -> Writer:
    """Each write is a new file (a new directory entry: cluster locks) written and flushed."""
    def op(seq: int) -> None:
        node.succeed(["python3", "-c", WRITE, f"{directory}/{node.name}-{seq:06d}"],
                     input=base64.b64encode(block(seq, SIZE)).decode(), timeout=timeout)
    return Writer(f"ocfs2-{node.name}", op, interval=0.2)


def lost(node: Node, directory: str, writer: str, acked: list[int]) -> list[int]:
    """Acknowledged files of ``writer`` that ``node`` does not read back as written."""
    files = {}
    for line in node.succeed(["python3", "-c", READ, directory], timeout=120).splitlines():
        fname, _, data = line.partition(" ")
        files[fname] = base64.b64decode(data)
    return [s for s in acked if files.get(f"{writer}-{s:06d}") != block(s, SIZE)]


def test_shared_lun_a_hypervisor_crash_leaves_the_other_writing(lab: Lab) -> None:
    """Both write new files into one directory; hv1 is powered off. hv2's writes stall until o2cb
    declares hv1 dead ((threshold - 1) * 2 s of missed disk heartbeats) and hv2 replays hv1's
    journal, then go on. Every file either acknowledged is there afterwards, as written (hv1's
    through its replayed journal). Then hv1 is powered on and rejoins (the lab converges: its
    roles log it in, connect it and mount again) and reads what hv2 wrote meanwhile."""
    plan = cfs(lab)
    a, b = (lab.node(n.name) for n in plan.nodes)
    directory = f"{fs(lab, 'vmstore').mount}/crash-{int(time.time())}"
    b.succeed(["mkdir", "-p", directory])
    wa = file_writer(a, directory, timeout=60)  # the crashed node's last write fails within 60 s
    try:
        with file_writer(b, directory) as wb:
            wa.__enter__()
            try:
                wait_until(lambda: len(wa.log.acked) > 5 and len(wb.log.acked) > 5, timeout=180,
                           what="both hypervisors writing to the shared directory")
                a.crash()
                t_crash = time.monotonic()
                wb.wait_acked(t_crash + plan.dead_after, plan.dead_after + STALL_MARGIN,
                              f"{b.name}'s writes did not resume within o2cb's dead time + {STALL_MARGIN:.0f}s "
                              f"after {a.name} crashed")
                wait_until(lambda: len([1 for t, _ in wb.log.acked if t > t_crash]) > 10, timeout=120,
                           what=f"{b.name} writing on after the crash")
            finally:
                wa.stop(timeout=90)
            stall = wb.log.max_gap(t_crash, time.monotonic())
        dmesg = b.succeed(["sh", "-c", "dmesg | grep -iE 'o2hb|o2net|ocfs2|o2dlm' | tail -n 20"])
        acked_a = [s for t, s in wa.log.acked if t < t_crash]
        acked_b = [s for _, s in wb.log.acked]
        print(f"o2cb: hv crash -> {b.name}'s writes stalled {stall:.1f}s (o2hb declares death after "
              f"{plan.dead_after:.0f}s); {len(acked_a)} files of {a.name}, {len(acked_b)} of {b.name} acknowledged\n{dmesg}")
        assert stall > plan.dead_after / 2, f"no stall at the crash ({stall:.1f}s): did {a.name} hold any lock?"
        assert not wb.log.errors, f"{b.name}'s writes failed: {wb.log.errors[:3]}"
        assert lost(b, directory, a.name, acked_a) == [], f"files {a.name} acknowledged before its crash are lost"
        assert lost(b, directory, b.name, acked_b) == []
    finally:
        took = snapshots.converge(lab)
        print(f"{a.name} rejoined (booted, logged in, mounted) in {took:.0f}s")
    assert lost(a, directory, b.name, acked_b) == [], f"{a.name}, back, does not read what {b.name} wrote"
