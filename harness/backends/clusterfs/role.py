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


def make_fs(node: NodeView, cfs: ClusterfsPlan, f: FilesystemPlan, dev: str) -> None:
    """mkfs.ocfs2 on a device with no filesystem; an OCFS2 of this cluster is kept (a resumed
    `up`); anything else there is refused, never overwritten."""
    kind = node.run(["blkid", "-p", "-o", "value", "-s", "TYPE", "--", dev], timeout=30).stdout.strip()
    if kind == "ocfs2":
        return
    if kind:
        raise HarnessError(f"{node.name}: {dev} (cluster filesystem {f.name}) holds a {kind} filesystem; storlab "
                           "formats only an empty shared device")
    node.succeed(["mkfs.ocfs2", "-q", "-N", str(f.slots), "-L", f.name, "--cluster-stack=o2cb",
                  f"--cluster-name={cfs.cluster}", "--", dev], timeout=300)


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
        make_fs(nodes[0], cfs, f, devices[nodes[0].name])
        for node in nodes:
            mount(node, f, devices[node.name])
