"""Gluster: a replicated volume on the lab's gluster nodes, a `gluster` host pool or a dir pool
on its FUSE mount. Everything about Gluster is in this package:

- schema.py  the topology's gluster: section (volumes, bricks, options)
- rules.py   what validation checks of it (bricks on gluster nodes, replica sets across nodes)
- plan.py    its section of the plan (auth.allow: lab resolved to the lab network)
- upgrade.py its rolling and offline upgrade (gates, op-version, the 10 -> 11 checksum problem)
- role.py    bringing it up on the nodes (glusterd, trusted pool, volumes), the parsers of the
             gluster CLI's --xml, health checks and the backend's faults (a brick killed)
- this file  the Backend that ties them together, and the host-pool wiring (FUSE mount)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from harness import log
from harness.backends.base import Backend, LabContext, Path_, PlanInputs, RoleStep, Rules
from harness.backends.gluster import plan, role, rules
from harness.backends.gluster.chaos import GlusterChaos
from harness.backends.gluster.plan import GlusterHostPool, GlusterPlan, of
from harness.backends.gluster.schema import Gluster
from harness.backends.gluster.upgrade import GlusterUpgrade
from harness.errors import CleanupReport, HarnessError
from harness.host.facts import mount_at, mounted
from harness.plan.model import Plan, need
from harness.run import run, succeed, wait_until
from harness.spec.topology import Pool


class GlusterBackend(Backend[Gluster, GlusterPlan, GlusterHostPool]):
    name = "gluster"
    order = 10
    section = Gluster
    plan_section = GlusterPlan
    pool_section = GlusterHostPool
    roles = ("gluster",)
    host_privilege: ClassVar[dict[str, str]] = {
        "gluster": "Gluster bricks need trusted.* extended attributes, which Linux grants only to "
                   "CAP_SYS_ADMIN in the host's user namespace"}
    pool_types = ("gluster",)
    mounts = True
    packages = ("glusterfs-server", "glusterfs-client")
    services = ("glusterd.service",)
    reconfigurable = ("gluster.volumes.*.options",)

    def check(self, r: Rules, section: Gluster) -> None:
        rules.check(r, section)

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Gluster) -> None:
        if pool.volume and pool.volume not in {v.name for v in section.volumes}:
            r.add(path + ("volume",), f"gluster volume '{pool.volume}' is not defined", "use a volume from gluster.volumes")

    def plan(self, inputs: PlanInputs, section: Gluster) -> GlusterPlan:
        return plan.make(inputs, section)

    def pool_extras(self, plan: Plan, section: GlusterPlan, pool: Pool, secret_uuid: str) -> dict[str, object]:
        vol = next(v for v in section.volumes if v.name == pool.volume)
        servers = [plan.node(n).address for n in vol.nodes]
        return {"server": servers[0], "backup_servers": tuple(servers[1:])}

    def steps(self, plan: Plan) -> list[RoleStep]:
        return [("gluster", role.apply)]

    def reconfigure(self, lab: LabContext, before: Plan) -> list[str]:
        return role.reconfigure(lab, of(before))

    def prepare_pool(self, lab: LabContext, pool: GlusterHostPool, sh: Callable[..., str]) -> None:
        if pool.type == "dir" and pool.fuse_mount:
            # the FUSE client's log goes with the lab (by default it stays in /var/log/glusterfs)
            fuse_mount(pool, lab.logs / f"glusterfs-{pool.name}.log")

    def pool_conflicts(self, lab: LabContext, pool: GlusterHostPool) -> list[str]:
        if not pool.fuse_mount or not pool.path:
            return []
        m = mount_at(pool.path)
        if m is None or _ours(pool, m[0]):
            return []
        return [f"mount {pool.path} (of {m[0]}, not this lab's volume)"]

    def release_pool(self, lab: LabContext, pool: GlusterHostPool) -> CleanupReport:
        rep = CleanupReport()
        mnt = pool.path if pool.fuse_mount else None
        m = mount_at(mnt) if mnt else None
        if mnt and m and not _ours(pool, m[0]):
            log.info(f"{mnt} is a mount of {m[0]}, not of lab {lab.name}'s volume: left alone")
            return rep
        if mnt and mounted(mnt):
            r = run(["umount", mnt], timeout=60)
            if not r.ok:
                r = run(["umount", "-l", mnt], timeout=60)
            (rep.removed.append(f"mount {mnt}") if r.ok else rep.failed.append((f"mount {mnt}", r.stderr)))
        if mnt and os.path.isdir(mnt) and not mounted(mnt):
            with contextlib.suppress(OSError):
                os.rmdir(mnt)
        return rep

    def pool_leftovers(self, lab: LabContext, pool: GlusterHostPool) -> list[str]:
        m = mount_at(pool.path) if pool.fuse_mount and pool.path else None
        return [f"mount {pool.path}"] if m and _ours(pool, m[0]) else []

    def chaos(self) -> GlusterChaos:
        return GlusterChaos()

    def upgrade(self) -> GlusterUpgrade:
        return GlusterUpgrade()

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        if "gluster" not in roles:
            return []
        # `heal VOL info` takes 10 s per volume when a brick is down (glusterfs 10): the heal
        # count answers at once. One command each: a hung peer stalls `status`, not `info`
        return [["gluster", "peer", "status"], ["gluster", "volume", "info"], ["gluster", "volume", "status"],
                ["sh", "-c", "vols=$(gluster volume list) || { echo \"$vols\"; exit 1; }; for v in $vols; do "
                 "echo \"== pending heals of $v\"; gluster volume heal \"$v\" statistics heal-count; done"]]


def _ours(pool: GlusterHostPool, source: str) -> bool:
    """Is a mount of ``source`` (server:/volume) this pool's volume, from this lab's servers?"""
    server, _, volume = source.partition(":/")
    return volume == pool.volume and server in {pool.server, *pool.backup_servers}


def fuse_mount(pool: GlusterHostPool, log_file: Path | None = None) -> None:
    """The pool's volume mounted on the KVM host at the pool's path (with backup volfile servers)."""
    path = need(pool.path, f"pool {pool.name}: path")
    m = mount_at(path)
    if m is not None:
        if not _ours(pool, m[0]):
            raise HarnessError(f"{path} is a mount of {m[0]}, not of this lab's volume; storlab leaves it alone")
        # after the bricks come back (a revert, a restart) the client reconnects on its own timer
        # (every 3 s): the pool is refreshed once the mount answers again
        wait_until(lambda: _answers(path), timeout=60, what=f"the FUSE mount {path} to answer again (client reconnect)")
        return
    os.makedirs(path, exist_ok=True)
    if os.path.islink(path) or os.listdir(path):  # checked by hostpools.conflicts before `up`; again here
        raise HarnessError(f"{path} is a symbolic link or not empty: the lab's volume is not mounted over it")
    # students write the volume's files: no setuid program or device node of theirs works on the host
    opts = ["nosuid", "nodev"] + (["backup-volfile-servers=" + ":".join(pool.backup_servers)] if pool.backup_servers else [])
    opts += [f"log-file={log_file}"] if log_file else []
    succeed(["mount", "-t", "glusterfs", "-o", ",".join(opts), f"{pool.server}:/{pool.volume}", path], timeout=60)


def _answers(path: str) -> bool:
    try:
        os.listdir(path)
        return True
    except OSError:
        return False


def planned(plan: Plan) -> GlusterPlan:
    """The lab's gluster section (a lab without one is an error here)."""
    return need(of(plan), "gluster section")
