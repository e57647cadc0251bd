"""The clusterfs: section of a topology: a cluster filesystem (OCFS2 with its o2cb stack) on a
block device every listed node reaches (an iSCSI LUN or an NVMe namespace of the lab), mounted
on each of them, so that their libvirt dir pools share one store."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness.spec.topology import AbsPath, Name, Strict, allow

#: o2cb's cluster name: at most 16 letters, digits or underscores (o2cb_ctl refuses others)
ClusterName = Annotated[str, allow(r"[A-Za-z0-9_]{1,16}", "o2cb cluster name",
                                   "use at most 16 letters, digits or underscores, e.g. storlab")]


class SharedDevice(Strict):
    """Where the filesystem lives: a block device another backend of the lab serves, named the
    way that backend names them: LUN ``lun`` (its index under iscsi.luns) of the iSCSI target,
    or the NVMe namespace named ``namespace``."""
    backend: Name = Field(description="a backend serving block devices: iscsi or nvme")
    lun: int | None = Field(None, ge=0, le=255, description="iscsi: the LUN's index under iscsi.luns")
    namespace: Name | None = Field(None, description="nvme: the namespace's name")

    @property
    def ref(self) -> str | int | None:
        return self.lun if self.lun is not None else self.namespace


class ClusterFilesystem(Strict):
    name: Name = Field(description="the filesystem's label")
    device: SharedDevice
    mount: AbsPath = Field(description="where every node mounts it (a directory of its own under /srv, /mnt or "
                           "/var/lib/libvirt)")
    slots: int = Field(4, ge=2, le=32, description="node slots (how many nodes may mount it at once)")


class Clusterfs(Strict):
    filesystem: Literal["ocfs2", "gfs2"] = Field("ocfs2", description="ocfs2 (o2cb stack); gfs2 is refused with why")
    cluster: ClusterName = "storlab"
    network: Name = Field(description="the lab network the nodes' o2cb talks over (the interconnect)")
    port: int = Field(7777, ge=1024, le=65535, description="o2net's TCP port")
    nodes: list[Name] = Field(min_length=2, max_length=16, description="nodes with role clusterfs-node")
    heartbeat_threshold: int = Field(31, ge=3, le=600, description="O2CB_HEARTBEAT_THRESHOLD: disk heartbeats "
                                     "(2 s each) missed before a node is dead; (threshold - 1) * 2 s")
    idle_timeout_ms: int = Field(30000, ge=3000, le=600000, description="O2CB_IDLE_TIMEOUT_MS: a silent o2net "
                                 "connection is dead after this")
    keepalive_delay_ms: int = Field(2000, ge=1000, le=600000)
    reconnect_delay_ms: int = Field(2000, ge=1000, le=600000)
    filesystems: list[ClusterFilesystem] = Field(min_length=1, max_length=8)
