"""The clusterfs section of a plan: o2cb's cluster (each node's number and address on the
interconnect network, the timeouts) and each filesystem with the block device it is on (the
backend serving it and that backend's name for it; the backend attaches it on each node)."""

from __future__ import annotations

from harness.backends.base import PlanInputs
from harness.backends.clusterfs.schema import Clusterfs
from harness.plan.model import Frozen, HostPoolPlan, Plan


class ClusterNodePlan(Frozen):
    name: str
    number: int  # o2cb's node number
    address: str  # on the interconnect network


class FilesystemPlan(Frozen):
    name: str
    mount: str
    slots: int
    backend: str  # the backend serving the device
    ref: str | int  # its name for the device (a LUN index, a namespace name)


class ClusterfsPlan(Frozen):
    cluster: str
    network: str
    port: int
    heartbeat_threshold: int
    idle_timeout_ms: int
    keepalive_delay_ms: int
    reconnect_delay_ms: int
    nodes: tuple[ClusterNodePlan, ...]
    filesystems: tuple[FilesystemPlan, ...]

    @property
    def dead_after(self) -> float:
        """Seconds of missed disk heartbeats before o2hb declares a node dead."""
        return (self.heartbeat_threshold - 1) * 2.0


class ClusterfsHostPool(HostPoolPlan):
    """A dir pool on a cluster filesystem's mount on one of its nodes."""
    filesystem: str | None = None


def make(inputs: PlanInputs, s: Clusterfs) -> ClusterfsPlan:
    nodes = tuple(ClusterNodePlan(name=n, number=i, address=inputs.node(n).addresses[s.network])
                  for i, n in enumerate(s.nodes))
    filesystems = tuple(FilesystemPlan(name=f.name, mount=f.mount, slots=f.slots, backend=f.device.backend,
                                       ref=f.device.ref if f.device.ref is not None else "") for f in s.filesystems)
    return ClusterfsPlan(cluster=s.cluster, network=s.network, port=s.port, heartbeat_threshold=s.heartbeat_threshold,
                         idle_timeout_ms=s.idle_timeout_ms, keepalive_delay_ms=s.keepalive_delay_ms,
                         reconnect_delay_ms=s.reconnect_delay_ms, nodes=nodes, filesystems=filesystems)


def of(plan: Plan) -> ClusterfsPlan | None:
    return plan.section("clusterfs", ClusterfsPlan)
