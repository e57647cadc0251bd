"""What the machine running storlab can give a lab: memory, KVM, kernel features.

Detected once; unit tests pass a HostFacts of their own so validation is deterministic.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: host commands worth knowing about (node providers' tools)
TOOLS = ("vagrant", "lxc-start", "incus")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


@dataclass(frozen=True)
class HostFacts:
    mem_mib: int
    kvm_usable: bool
    kvm_reason: str
    kernel_nfsd: bool
    kernel_nfs_client: bool
    kernel_lio: bool
    kernel_iscsi_tcp: bool
    #: host commands found on PATH (providers name the one they need in their capabilities)
    tools: frozenset[str]
    #: the NVMe over TCP target (nvmet + nvmet-tcp) and host (nvme-tcp)
    kernel_nvmet: bool = False
    kernel_nvme_tcp: bool = False
    #: OCFS2 (the filesystem with its o2cb cluster stack) and ZFS
    kernel_ocfs2: bool = False
    kernel_zfs: bool = False

    def has(self, tool: str) -> bool:
        return tool in self.tools

    def kernel(self, feature: str) -> bool:
        """A kernel feature by name: nfsd, nfs_client, lio, iscsi_tcp, nvmet, nvme_tcp, ocfs2, zfs."""
        value = getattr(self, f"kernel_{feature}", None)
        if not isinstance(value, bool):
            raise KeyError(f"unknown kernel feature {feature!r}")
        return value

    @classmethod
    def detect(cls) -> HostFacts:
        mem = 0
        for line in _read("/proc/meminfo").splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
        filesystems = _read("/proc/filesystems")
        usable, reason = kvm_status()
        return cls(
            mem_mib=mem,
            kvm_usable=usable,
            kvm_reason=reason,
            kernel_nfsd="nfsd" in filesystems,
            kernel_nfs_client="\tnfs\n" in filesystems or "\tnfs4\n" in filesystems,
            kernel_lio=os.path.isdir("/sys/kernel/config/target") or os.path.isdir("/sys/module/target_core_mod"),
            kernel_iscsi_tcp=os.path.isdir("/sys/module/iscsi_tcp"),
            tools=frozenset(t for t in TOOLS if shutil.which(t)),
            # loaded (or built in with parameters): this host loads no modules, so what is not there stays away
            kernel_nvmet=os.path.isdir("/sys/module/nvmet_tcp") and os.path.isdir("/sys/module/nvmet"),
            kernel_nvme_tcp=os.path.isdir("/sys/module/nvme_tcp"),
            kernel_ocfs2="\tocfs2\n" in filesystems and os.path.isdir("/sys/module/ocfs2_stack_o2cb"),
            kernel_zfs="\tzfs\n" in filesystems,
        )


def kvm_status() -> tuple[bool, str]:
    """Is hardware acceleration usable? STORLAB_ACCEL=kvm|tcg overrides detection.

    A nested PVM hypervisor (kvm_pvm) exposes /dev/kvm but stock guest kernels hang
    under it, so its presence counts as "not usable".
    """
    forced = os.environ.get("STORLAB_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced == "kvm", f"STORLAB_ACCEL={forced}"
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm is missing"
    if os.path.isdir("/sys/module/kvm_pvm"):
        return False, "/dev/kvm is a nested PVM hypervisor (kvm_pvm); guests hang under it"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible"
    return True, "/dev/kvm usable"


# Used by unit tests and `storlab validate --host-profile`: a typical machine of each kind.
PROFILES = {
    "ci": HostFacts(mem_mib=24000, kvm_usable=False, kvm_reason="profile ci", kernel_nfsd=False, kernel_nfs_client=False,
                    kernel_lio=False, kernel_iscsi_tcp=False, tools=frozenset({"vagrant", "lxc-start"}),
                    kernel_nvmet=False, kernel_nvme_tcp=False, kernel_ocfs2=False, kernel_zfs=False),
    "kvm": HostFacts(mem_mib=65536, kvm_usable=True, kvm_reason="profile kvm", kernel_nfsd=True, kernel_nfs_client=True,
                     kernel_lio=True, kernel_iscsi_tcp=True, tools=frozenset({"vagrant", "lxc-start"}),
                     kernel_nvmet=True, kernel_nvme_tcp=True, kernel_ocfs2=True, kernel_zfs=False),
}


def mounted(path: str) -> str | None:
    """The filesystem type mounted at ``path`` on this host, None when nothing is."""
    m = mount_at(path)
    return m[1] if m else None


def mount_at(path: str) -> tuple[str, str] | None:
    """(source, filesystem type) of what is mounted at ``path`` on this host (the last mount wins)."""
    found = None
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if f[1] == path:
            found = (f[0], f[2])
    return found


def loaded_modules(names: tuple[str, ...] = ("sch_netem", "dm_mod", "dm_flakey")) -> frozenset[str]:
    """Which of the kernel modules ``names`` this host has loaded (or built in with parameters):
    the faults containers can be given depend on them (they share this kernel)."""
    return frozenset(n for n in names if os.path.isdir(f"/sys/module/{n}"))
