"""Gluster under chaos: two writers on the KVM host, one through qemu's gluster driver (libgfapi,
what the native `gluster` pool's guests use) and one through the FUSE mount (what a `dir` pool on
it uses), each on an image of its own in the volume; the lab is whole again when every brick is
online, the host's client is connected to every brick and nothing is left to heal."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.backends.base import LabContext, NodeView
from harness.backends.gluster.plan import GlusterHostPool, GlusterVolumePlan, of
from harness.backends.gluster.role import missing
from harness.chaos.checker import read_file_blocks
from harness.chaos.qemuio import QemuIo, QemuIoWriter, read_blocks
from harness.chaos.schedule import Event
from harness.chaos.support import WriteTarget
from harness.errors import HarnessError
from harness.testing.workload import BlockFileWriter

#: what a run id may be (it names files in the volume)
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
#: seconds beyond network.ping-timeout allowed for writes to resume after one server fault
MARGIN = 10.0
#: faults of one server (crashed, hung, cut off, its glusterd and bricks killed or paused) after
#: which writes go on to the others once the client has waited out network.ping-timeout
SERVER_FAULTS = frozenset({"crash", "hang", "freeze", "link", "partition", "partition-oneway", "kill", "pause"})
#: the volume options of the error-gen fault: the translator at the top of every client's graph (the
#: only place a running volume takes it: `posix`, under each brick, waits for a volume restart),
#: failing writes and fsyncs with that probability each (`random-failure` would instead fail one op
#: in 3-44, whatever the figure). The fops by their names (WRITE, FSYNC): glusterd also takes
#: "writev", the translators' function name, and the clients' translator then skips it with a
#: warning in its log (measured: only the fsyncs failed)
ERROR_GEN = {"debug.error-gen": "client", "debug.error-fops": "WRITE,FSYNC"}


def _fuse_pool(lab: LabContext) -> GlusterHostPool:
    pools = [p for p in lab.plan.host.pools if isinstance(p, GlusterHostPool) and p.fuse_mount and p.path]
    if not pools:
        raise HarnessError(f"lab {lab.name}: a gluster chaos run writes through the KVM host's clients: the topology "
                           f"needs a host pool with `fuse_mount: true` on the volume (see topologies/gluster-3.yaml)")
    return pools[0]


def _volume(lab: LabContext, pool: GlusterHostPool) -> GlusterVolumePlan:
    plan = of(lab.plan)
    vol = next((v for v in plan.volumes if v.name == pool.volume), None) if plan else None
    if vol is None:
        raise HarnessError(f"lab {lab.name}: pool {pool.name} names volume {pool.volume}, which the plan lacks")
    return vol


class GlusterChaos:
    def daemons(self, lab: LabContext) -> Mapping[str, tuple[str, ...]]:
        """glusterd.service on every gluster node: its cgroup holds the bricks and the self-heal
        daemon too, so a kill or pause of it takes the node's bricks with it."""
        return {n.name: ("glusterd.service",) for n in lab.plan.nodes if "gluster" in n.roles}

    def targets(self, lab: LabContext, run_dir: Path, run_id: str, sync: bool = True,
                span: int = 1 << 20) -> list[WriteTarget]:
        if not RUN_ID.fullmatch(run_id):
            raise HarnessError(f"run id {run_id!r}: lowercase letters, digits and '-'")
        pool = _fuse_pool(lab)
        mount = str(pool.path)
        gfapi, fuse = f"chaos-{run_id}-gfapi.img", f"chaos-{run_id}-fuse.img"
        for name in (gfapi, fuse):  # made through the mount, sparse: the writers fill them
            fd = os.open(os.path.join(mount, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.ftruncate(fd, span)
            os.close(fd)
        servers = [s for s in (pool.server, *pool.backup_servers) if s]
        opts: dict[str, str | int] = {"file.driver": "gluster", "file.volume": str(pool.volume), "file.path": gfapi,
                                      "file.debug": 0}
        for i, server in enumerate(servers):
            opts |= {f"file.server.{i}.type": "inet", f"file.server.{i}.host": server, f"file.server.{i}.port": 24007}
        client = QemuIo(opts, run_dir / "clients" / "gfapi.log")
        t_gfapi = f"{pool.volume}/{gfapi}"
        t_fuse = os.path.join(mount, fuse)
        fuse_op = BlockFileWriter(t_fuse, "fuse", span=span, sync=sync)
        return [
            WriteTarget("gfapi", f"qemu's gluster driver (libgfapi) on {t_gfapi}",
                        QemuIoWriter(client, "gfapi", t_gfapi, run_dir / "clients" / "gfapi.blk", span=span, sync=sync),
                        lambda where: read_blocks(opts, run_dir / "clients" / "gfapi-read.log", t_gfapi, where),
                        client.close, client.kill),
            WriteTarget("fuse", f"the FUSE mount: {t_fuse}", fuse_op,
                        lambda where: read_file_blocks(t_fuse, t_fuse, where), fuse_op.close),
        ]

    def health(self, lab: LabContext) -> str | None:
        node = next((n for n in lab.nodes.values() if "gluster" in n.roles and _answers(n)), None)
        if node is None:
            return "a gluster node that answers"
        host = lab.plan.networks[0].host_address
        for vol in (of(lab.plan).volumes if of(lab.plan) else ()):  # type: ignore[union-attr]
            if (why := volume_health(node, vol, host)) is not None:
                return why
        return None

    def bound(self, lab: LabContext, event: Event) -> float | None:
        vol = _volume(lab, _fuse_pool(lab))
        ping = float(vol.options.get("network.ping-timeout", 42))
        if event.kind in SERVER_FAULTS:  # the client waits out ping-timeout for that server, then goes on
            return ping + MARGIN
        if event.kind == "client-partition":  # the same, while the bricks it still reaches keep quorum
            lost = len(set(event.apart) & set(vol.nodes))
            return ping + MARGIN if vol.replica - lost >= vol.replica // 2 + 1 else None
        return None

    def faults(self) -> Mapping[str, Callable[[LabContext, Event], Callable[[], None]]]:
        return {"gluster-error-gen": error_gen}

    def remove(self, lab: LabContext, run_id: str) -> None:
        mount = str(_fuse_pool(lab).path)
        for name in (f"chaos-{run_id}-gfapi.img", f"chaos-{run_id}-fuse.img"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(mount, name))


def error_gen(lab: LabContext, e: Event) -> Callable[[], None]:
    """Gluster's own error injection on the writers' volume: each client's writes and fsyncs fail
    before they reach the volume, ``failure_pct`` of them, with the errors a real one gives
    (EIO, ENOSPC, EROFS, EBADF, ...). An fsync failing after its writes reached the bricks leaves
    them in doubt; the writers must not count a refused write as acknowledged, and qemu's gluster
    driver gives its image up (a client restart). The undo resets the options, and the clients
    take the graph without the translator."""
    vol = _volume(lab, _fuse_pool(lab))
    pct = round(e.params.get("failure_pct", 10))
    if not 0 < pct <= 100:
        raise HarnessError(f"{e.describe()}: failure_pct {pct} is not 1-100")
    node = lab.node(vol.nodes[0])
    opts = {**ERROR_GEN, "debug.error-failure": str(pct)}
    node.succeed(["gluster", "--mode=script", "volume", "set", vol.name, *(x for kv in opts.items() for x in kv)],
                 timeout=60)

    def undo() -> None:
        for key in opts:
            node.succeed(["gluster", "--mode=script", "volume", "reset", vol.name, key], timeout=60)
    return undo


def _answers(node: NodeView) -> bool:
    return node.run(["true"], timeout=10).ok


def volume_health(node: NodeView, vol: GlusterVolumePlan, host: str | None) -> str | None:
    """None when ``vol`` is whole (role.missing: every brick online, the KVM host's client at
    ``host`` connected to each, nothing to heal); entries in split-brain leave it as whole as it
    gets: the checker says what they cost."""
    return missing(node, vol.name, bricks=len(vol.bricks), replica=vol.replica, host=host, split_brain_ok=True)
