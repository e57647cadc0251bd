"""What an LXC container is given and what it costs: the units masked in it (they need a kernel
of its own), its cgroup limits, and the measured footprint of a node (class sizing, matrix estimates;
Incus containers cost the same)."""

from __future__ import annotations

from pathlib import Path

from harness.providers.capabilities import Footprint

# Units that cannot work in a container sharing this host's kernel.
CONTAINER_MASKS = [
    "nvmf-autoconnect.service", "multipathd.service", "multipathd.socket", "iscsid.service", "iscsid.socket",
    "open-iscsi.service", "rtslib-fb-targetctl.service", "nfs-server.service", "nfs-kernel-server.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service", "systemd-modules-load.service",
    "sys-kernel-config.mount", "lvm2-monitor.service", "dm-event.socket", "dm-event.service",
    "lvm2-lvmpolld.socket", "blk-availability.service", "e2scrub_reap.service", "systemd-journald-audit.socket",
    "proc-fs-nfsd.mount", "nfs-blkmap.service", "nfs-idmapd.service", "nfs-mountd.service", "nfsdcld.service",
    "rpc-svcgssd.service", "rpc-gssd.service", "auth-rpcgss-module.service", "libvirt-guests.service",
    "ceph-crash.service",
]
#: processes (and threads) a node may run: a fork bomb in one node stops there (a busy Ceph OSD
#: runs ~70 threads, an idle node ~40 processes)
PIDS_MAX = 4096


def limits(memory_mib: int, cpus: int, unified: bool | None = None) -> list[str]:
    """The node's size as cgroup limits, so that one lab (one student) cannot starve the host or
    the other labs: memory (RAM; the page cache is reclaimed first) and CPU time (``cpus``
    CPUs' worth per period). cgroup v2 keys on a unified host, v1 keys on a hybrid one."""
    if unified is None:
        unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    quota = cpus * 100000
    if unified:
        return [f"lxc.cgroup2.memory.max = {memory_mib}M", f"lxc.cgroup2.cpu.max = {quota} 100000",
                f"lxc.cgroup2.pids.max = {PIDS_MAX}"]
    return [f"lxc.cgroup.memory.limit_in_bytes = {memory_mib}M", "lxc.cgroup.cpu.cfs_period_us = 100000",
            f"lxc.cgroup.cpu.cfs_quota_us = {quota}", f"lxc.cgroup.pids.max = {PIDS_MAX}"]


#: an idle node (systemd, journald, sshd, networkd): summed RSS, bench_nodes.py
BASE_MIB = 89
#: what a role adds to an idle node, summed RSS after `up` (bench_class.py, README)
ROLE_MIB = {"gluster": 53, "ceph-mon": 46, "ceph-mgr": 285, "ceph-osd": 60, "ceph-admin": 0,
            "nfs-server": 40, "iscsi-target": 10, "iscsi-initiator": 10, "client": 0, "hypervisor": 120}
UNKNOWN_ROLE_MIB = 64
#: a node's own files beside its data disks: overlay upper after up + its baseline snapshot
NODE_DISK_MIB = 60
#: measured bring-up (bench/RESULTS.md): ~2 s + ~5 s a node with roles
FOOTPRINT = Footprint(base_mib=BASE_MIB, role_mib=ROLE_MIB, unknown_role_mib=UNKNOWN_ROLE_MIB,
                      disk_mib=NODE_DISK_MIB, up_s=(2.0, 5.5))

#: the faults a container can be given (the incus provider's containers too): a network namespace and
#: processes of its own, but the host's kernel, block layer and clock. hang: frozen with its bridge
#: ports silenced from the host (harness.host.silence; on an Incus remote's lab it is refused at run
#: time: the bridges are not on this host); pause: SIGSTOP of a unit's processes; disk-full: the
#: data disk's filesystem filled from inside (harness.nodes.sysfaults)
CONTAINER_FAULTS = frozenset({"crash", "freeze", "hang", "link", "partition", "kill", "pause", "disk-full"})
CONTAINER_FAULTS_WITH_MODULE = {"netem": "sch_netem"}
CONTAINER_FAULTS_REFUSED = {
    "dm-flakey": "a container's data disks are filesystems the host mounts for it, not block devices, and "
                 "device-mapper is the host kernel's",
    "clock": "containers share the host's clock (a time namespace does not cover the wall clock)",
}
