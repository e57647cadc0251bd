"""Will a class fit on this host? Per-node figures each provider measured on this project's
machines (its Capabilities.footprint), summed per student and compared with what the host has
free, before anything is created."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.providers.capabilities import Footprint, available

#: kept free for the host itself
HOST_RESERVE_MIB = 1024
#: inotify instances one system container takes (its systemd, journald, udevd, logind, dbus, ...):
#: measured 297 open with 27 gluster containers up (11 each) and 0 after; a class of gluster-3 seats
#: on LXC failed from about its 13th container at the host's default 128
INOTIFY_PER_CONTAINER = 12
INOTIFY_LIMIT = "/proc/sys/fs/inotify/max_user_instances"


@dataclass(frozen=True)
class NodeNeed:
    name: str
    memory_mib: int  # expected resident memory
    limit_mib: int  # the most it may take (cgroup limit / VM size)
    disk_mib: int  # data disks at their full size + the node's own files
    files_mib: int = 0  # the node's own files alone


def node_need(name: str, roles: list[str], memory_mib: int, disks_mib: int, provider: str, accel: str = "tcg") -> NodeNeed:
    """What a node of ``provider`` costs, from the footprint its provider measured (Capabilities)."""
    caps = available().get(provider)
    fp = caps.footprint if caps else Footprint()
    if fp.base_mib is not None:  # shares the host's memory: what its roles use, up to its limit
        expected = fp.base_mib + sum(fp.role_mib.get(r, fp.unknown_role_mib) for r in roles)
        return NodeNeed(name, min(expected, memory_mib), memory_mib, disks_mib + fp.disk_mib, fp.disk_mib)
    vm = memory_mib + fp.overhead_mib.get(accel, fp.overhead_mib.get("tcg", 0))
    return NodeNeed(name, vm, vm, disks_mib + fp.disk_mib, fp.disk_mib)


@dataclass(frozen=True)
class Fit:
    students: int
    fits: int  # how many students the host holds
    per_student_mib: int
    per_student_disk_mib: int
    free_mib: int
    free_disk_mib: int
    cpus: int
    per_student_cpus: int

    @property
    def ok(self) -> bool:
        return self.fits >= self.students

    def explain(self) -> str:
        need_m, need_d = self.students * self.per_student_mib, self.students * self.per_student_disk_mib
        text = (f"{self.students} students x {self.per_student_mib} MiB memory = {need_m} MiB "
                f"(free for labs: {self.free_mib} MiB); x {self.per_student_disk_mib} MiB disk = {need_d} MiB "
                f"(free: {self.free_disk_mib} MiB); {self.students * self.per_student_cpus} node CPUs on {self.cpus} host CPUs")
        return text if self.ok else f"{text}: {self.fits} students fit on this host"


def fit(students: int, nodes: list[NodeNeed], free_mib: int, free_disk_mib: int, cpus: int | None = None,
        reserve_mib: int = HOST_RESERVE_MIB, node_cpus: int | None = None, disk_budget_mib: int | None = None) -> Fit:
    """How many students fit. ``disk_budget_mib``: what each student's data disks may really take
    (--disk-budget), counted instead of their full sizes (the nodes' own files still count)."""
    per_m = sum(n.memory_mib for n in nodes)
    per_d = sum(n.disk_mib for n in nodes) if disk_budget_mib is None else \
        disk_budget_mib + sum(n.files_mib for n in nodes)
    usable = max(0, free_mib - reserve_mib)
    fits = min(usable // per_m if per_m else students, free_disk_mib // per_d if per_d else students)
    return Fit(students=students, fits=int(fits), per_student_mib=per_m, per_student_disk_mib=per_d, free_mib=usable,
               free_disk_mib=free_disk_mib, cpus=cpus or os.cpu_count() or 1, per_student_cpus=node_cpus or len(nodes))


def host_free(path: str) -> tuple[int, int]:
    """(MemAvailable MiB, free disk MiB at ``path``)."""
    avail = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) // 1024
    st = os.statvfs(path)
    return avail, st.f_bavail * st.f_frsize // (1024 * 1024)


def inotify_in_use() -> int:
    """inotify instances open on this host now (every process's, counted once per descriptor)."""
    n = 0
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            n += sum(1 for fd in fd_dir.iterdir() if _link(fd) == "anon_inode:inotify")
        except OSError:  # the process ended, or is not ours to read
            continue
    return n


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def inotify_room(containers: int, limit_file: str = INOTIFY_LIMIT, in_use: int | None = None) -> str | None:
    """Why ``containers`` more system containers would run out of this host's inotify instances
    (their systemd dies at boot), None when they fit."""
    try:
        limit = int(Path(limit_file).read_text())
    except (OSError, ValueError):
        return None
    used = inotify_in_use() if in_use is None else in_use
    need = containers * INOTIFY_PER_CONTAINER
    if used + need <= limit:
        return None
    return (f"{containers} system containers need about {need} inotify instances and {used} of this host's {limit} "
            f"(fs.inotify.max_user_instances) are in use; raise it: sysctl -w fs.inotify.max_user_instances="
            f"{max(8192, used + need)} (ci/setup-host.sh --class does)")
