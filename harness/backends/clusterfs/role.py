"""The clusterfs-node role: o2cb online on every node of the cluster (cluster.conf and its
timeouts), the shared device attached on each node by the backend serving it (iSCSI: logged in
over every portal, the multipath map; NVMe: the namespace's by-id link), the filesystem made
once (on the first node, only on a device with no filesystem) and mounted on every node."""

from __future__ import annotations

from harness.backends.base import BLOCK_DEVICE_RE, LabContext, NodeView, get
from harness.backends.clusterfs.plan import ClusterfsPlan, FilesystemPlan, of
from harness.errors import HarnessError
from harness.run import wait_until

UNITS = ["o2cb.service", "ocfs2.service"]


def online(node: NodeView, cfs: ClusterfsPlan) -> bool:
    """Is o2cb's cluster registered with this node in it, and its heartbeat set up?"""
    return node.run(["test", "-d", f"/sys/kernel/config/cluster/{cfs.cluster}/node/{node.name}"], timeout=15).ok


def start_o2cb(lab: LabContext, node: NodeView, cfs: ClusterfsPlan) -> None:
    files = lab.files(node.name)
    node.put("/etc/ocfs2/cluster.conf", (files / "etc/ocfs2/cluster.conf").read_text())
    node.put("/etc/default/o2cb", (files / "etc/default/o2cb").read_text())
    node.enable_units(["o2cb.service"], unmask=UNITS, timeout=120)
    if not online(node, cfs):  # a resumed `up` on a node whose o2cb started before cluster.conf changed
        node.succeed(["systemctl", "restart", "o2cb.service"], timeout=120)
    wait_until(lambda: online(node, cfs), timeout=60, what=f"{node.name}: o2cb cluster {cfs.cluster} online")


def device(lab: LabContext, node: NodeView, f: FilesystemPlan) -> str:
    """The shared device on ``node``, attached by the backend serving it."""
    dev = get(f.backend).attach_block(lab, node, f.ref)
    if not BLOCK_DEVICE_RE.fullmatch(dev):
        raise HarnessError(f"{node.name}: the device of cluster filesystem {f.name} is {dev!r}, not a device name "
                           "storlab expects (/dev/NAME or /dev/mapper/NAME)")
    return dev


def probe(node: NodeView, dev: str) -> str | None:
    """The filesystem blkid finds on ``dev`` ("" when it identifies none), None when it could not look."""
    r = node.run(["blkid", "-p", "-o", "value", "-s", "TYPE", "--", dev], timeout=30)
    return r.stdout.strip() if r.rc == 0 else "" if r.rc == 2 else None


def make_fs(lab: LabContext, node: NodeView, cfs: ClusterfsPlan, f: FilesystemPlan, dev: str) -> None:
    """mkfs.ocfs2 once in a lab's life: on a device with no filesystem, recorded in the lab's state
    when it succeeded. Once recorded (a resumed `up`, a converge after a node crashed) the OCFS2 is
    waited for, never made again: a map just assembled can read as empty for a moment (a trixie
    VM's blkid found nothing on a multipath map 0.3 s old, and the mkfs that followed failed only
    because the other node held the cluster lock). Anything else on the device is refused."""
    key = f"clusterfs {f.name} formatted"
    if lab.owns(key):
        def ocfs2() -> bool:
            return probe(node, dev) == "ocfs2"
        wait_until(ocfs2, timeout=120, interval=2.0,
                   what=f"{node.name}: the OCFS2 this lab made for {f.name} on {dev} (storlab never formats it twice)")
        return
    kind = probe(node, dev)
    if kind is None:
        raise HarnessError(f"{node.name}: blkid could not probe {dev} (cluster filesystem {f.name}); not formatting it")
    if kind == "ocfs2":
        lab.claim(key)  # made by a storlab that did not record it
        return
    if kind:
        raise HarnessError(f"{node.name}: {dev} (cluster filesystem {f.name}) holds a {kind} filesystem; storlab "
                           "formats only an empty shared device")
    node.succeed(["mkfs.ocfs2", "-q", "-N", str(f.slots), "-L", f.name, "--cluster-stack=o2cb",
                  f"--cluster-name={cfs.cluster}", "--", dev], timeout=300)
    lab.claim(key)


def mount(node: NodeView, f: FilesystemPlan, dev: str) -> None:
    if node.run(["findmnt", "-n", "-t", "ocfs2", "--mountpoint", f.mount], timeout=15).ok:
        return
    node.succeed(["mkdir", "-p", "--", f.mount], timeout=15)
    node.succeed(["mount", "-t", "ocfs2", "-o", "_netdev,noatime", "--", dev, f.mount], timeout=180)


def apply(lab: LabContext) -> None:
    cfs = of(lab.plan)
    if cfs is None:
        return
    nodes = [lab.node(n.name) for n in cfs.nodes]
    for node in nodes:
        start_o2cb(lab, node, cfs)
    for f in cfs.filesystems:
        devices = {node.name: device(lab, node, f) for node in nodes}
        make_fs(lab, nodes[0], cfs, f, devices[nodes[0].name])
        for node in nodes:
            mount(node, f, devices[node.name])
