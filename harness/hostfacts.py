"""What the machine running storlab can give a lab: memory, KVM, kernel features.

Detected once; unit tests pass a HostFacts of their own so validation is deterministic.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


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
    has_vagrant: bool
    has_lxc: bool

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
            has_vagrant=shutil.which("vagrant") is not None,
            has_lxc=shutil.which("lxc-start") is not None,
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
    "ci": HostFacts(24000, False, "profile ci", False, False, False, False, True, True),
    "kvm": HostFacts(65536, True, "profile kvm", True, True, True, True, True, True),
}
