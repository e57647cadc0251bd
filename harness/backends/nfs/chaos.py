"""NFS under chaos: one writer on the KVM host through qemu's nfs driver (libnfs, NFSv3: what a
guest disk on an export uses where the host mounts nothing) on a file of its own in the first
writable export that admits the host. The file is made on the server, owned by the export's
anonymous uid (root is squashed to it: libnfs would speak as uid 0), and the writer speaks as that
uid, so it writes with or without root_squash. The lab is whole again when the server's daemon is
active, every export is served and the grace period after a restart is over.

With one server, a fault of it stops every write for as long as it lasts: the promise is how soon
writes resume after (support.outage_bound), not that they go on."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from harness import log
from harness.backends.base import LabContext, NodeView
from harness.backends.nfs.plan import NfsExportPlan, NfsPlan, of
from harness.backends.nfs.role import ganesha_in_grace, parse_exportfs
from harness.chaos.qemuio import QemuIo, QemuIoWriter, read_blocks
from harness.chaos.schedule import Event
from harness.chaos.support import WriteTarget, boot_allowance, cuts_off, outage_bound
from harness.errors import HarnessError
from harness.nodes.verbs import data_path
from harness.plan.model import need

#: what a run id may be (it names the file in the export)
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
#: seconds after the server is back (and out of its grace period, after a restart) for writes to
#: resume: libnfs reconnects at once (it retries without pause, for ever: libnfs 4.0's default),
#: then the write is sent again
MARGIN = 15.0
#: the uid and gid root is squashed to, kernel nfsd's default and ganesha.conf's Anonymous_Uid
NOBODY = 65534
_ID = re.compile(r"[0-9]{1,9}")


def planned(lab: LabContext) -> NfsPlan:
    return need(of(lab.plan), "nfs section")


def server_units(nfs: NfsPlan) -> tuple[str, ...]:
    """The server's daemons a kill or pause can take: NFS-Ganesha's process. Kernel nfsd has none
    (its threads are the kernel's: `systemctl kill nfs-server` signals nothing, and a pause pauses
    nothing); its node is faulted instead."""
    return ("nfs-ganesha.service",) if nfs.implementation == "ganesha" else ()


def _admits(clients: tuple[str, ...], host: str) -> bool:
    """Does an export with ``clients`` admit the KVM host's address (a host name: the server decides)?"""
    for c in clients:
        if c == "*":
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(c, strict=False):
                return True
        except ValueError:
            if not re.fullmatch(r"[0-9./]+", c):
                return True
    return False


def export(lab: LabContext) -> NfsExportPlan:
    nfs, host = planned(lab), lab.plan.networks[0].host_address
    for e in nfs.exports:
        if "ro" not in e.options and _admits(e.clients, host):
            return e
    raise HarnessError(f"lab {lab.name}: an NFS chaos run writes from the KVM host ({host}): no export is writable "
                       f"by it (give one `options: [rw, ...]` and `clients: [lab]`, as topologies/nfs-userspace.yaml)")


def anonymous(e: NfsExportPlan) -> tuple[int, int]:
    """(uid, gid) root is squashed to on ``e``: its anonuid=/anongid= options, else nobody."""
    opts = dict(o.split("=", 1) for o in e.options if "=" in o)
    ids = [opts.get(k, str(NOBODY)) for k in ("anonuid", "anongid")]
    if not all(_ID.fullmatch(i) for i in ids):
        raise HarnessError(f"export {e.path}: anonuid/anongid {ids} are not numbers")
    return int(ids[0]), int(ids[1])


def image_path(e: NfsExportPlan, run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise HarnessError(f"run id {run_id!r}: lowercase letters, digits and '-'")
    return data_path(f"{e.path.rstrip('/')}/chaos-{run_id}.img")


def parse_showmount(text: str) -> set[str]:
    """The exported paths of `showmount -e --no-headers` (one `PATH CLIENTS` a line)."""
    return {line.split()[0] for line in text.splitlines() if line.strip()}


class NfsChaos:
    def daemons(self, lab: LabContext) -> Mapping[str, tuple[str, ...]]:
        nfs = planned(lab)
        units = server_units(nfs)
        return {nfs.server: units} if units else {}

    def targets(self, lab: LabContext, run_dir: Path, run_id: str, sync: bool = True,
                span: int = 1 << 20) -> list[WriteTarget]:
        nfs, e = planned(lab), export(lab)
        path, (uid, gid) = image_path(e, run_id), anonymous(e)
        opts: dict[str, str | int] = {"file.driver": "nfs", "file.server.type": "inet", "file.server.host": nfs.address,
                                      "file.path": path, "file.user": uid, "file.group": gid}
        qio = QemuIo(opts, run_dir / "clients" / "nfs.log")  # its options checked before anything is made
        # one command (one round trip to a VM): a sparse file the squashed writer owns, put on the
        # server's disk before the first write (else a crash loses the file itself, and every
        # write in it reads as unreadable instead of as the block it lost)
        lab.node(nfs.server).succeed(["sh", "-c", 'truncate -s "$1" -- "$3" && chown "$2" -- "$3" && chmod 0600 -- "$3" '
                                      '&& sync -- "$3"',
                                      "sh", str(int(span)), f"{uid}:{gid}", path], timeout=120)
        target = f"{nfs.address}:{path}"
        return [WriteTarget("nfs", f"qemu's nfs driver (libnfs, NFSv3, uid {uid}) on {target}",
                            QemuIoWriter(qio, "nfs", target, run_dir / "clients" / "nfs.blk", span=span, sync=sync),
                            lambda where: read_blocks(opts, run_dir / "clients" / "nfs-read.log", target, where),
                            qio.close, qio.kill)]

    def health(self, lab: LabContext) -> str | None:
        nfs = planned(lab)
        node = lab.node(nfs.server)
        unit = "nfs-ganesha.service" if nfs.implementation == "ganesha" else "nfs-server.service"
        if not node.run(["systemctl", "is-active", "--quiet", unit], timeout=15).ok:
            return f"{unit} active on {node.name}"
        want = {e.path for e in nfs.exports}
        if nfs.implementation == "ganesha":
            return _ganesha_health(node, want)
        return _kernel_health(node, want)

    def bound(self, lab: LabContext, event: Event) -> float | None:
        """The fault's duration + MARGIN (+ the grace period after a restart, TCP's backoff after a
        silent fault, a container's boot after a crash) for a fault that keeps the server away;
        None for the others (nothing reasoned) and for a VM's crash (its boot is promised nothing)."""
        nfs = planned(lab)
        if not cuts_off(event, nfs.server, server_units(nfs)):
            return None
        return outage_bound(event, MARGIN, boot_allowance(lab.plan), restart=nfs.grace_period)

    def faults(self) -> Mapping[str, Callable[[LabContext, Event], Callable[[], None]]]:
        return {}  # no error injection of its own yet: the node faults only

    def remove(self, lab: LabContext, run_id: str) -> None:
        nfs = planned(lab)
        path = image_path(export(lab), run_id)
        r = lab.node(nfs.server).run(["rm", "-f", "--", path], timeout=120)
        if not r.ok:
            log.info(f"chaos: {nfs.server}:{path} left behind: {r}")


def _kernel_health(node: NodeView, want: set[str]) -> str | None:
    r = node.run(["exportfs", "-v"], timeout=15)
    missing = sorted(want - set(parse_exportfs(r.stdout))) if r.ok else sorted(want)
    if missing:
        return f"nfsd on {node.name} exporting {', '.join(missing)}"
    # exportfs -v lists what its table (etab, on the root disk) says, also when the directory is
    # not there to serve (its disk not mounted yet after a boot, or lost with a crash)
    gone = [p for p in sorted(want) if not node.run(["test", "-d", p], timeout=15).ok]
    if gone:
        return f"{', '.join(gone)} on {node.name} (exported, but not there)"
    # reading the file answers Y once nfsd's grace period is over (new state is refused until then)
    grace = node.run(["cat", "/proc/fs/nfsd/v4_end_grace"], timeout=15)
    if grace.ok and grace.stdout.strip() == "N":
        return f"nfsd on {node.name} to end its grace period"
    return None


def _ganesha_health(node: NodeView, want: set[str]) -> str | None:
    r = node.run(["showmount", "-e", "--no-headers", "127.0.0.1"], timeout=15)
    missing = sorted(want - parse_showmount(r.stdout)) if r.ok else sorted(want)
    if missing:
        return f"ganesha on {node.name} exporting {', '.join(missing)}"
    # its log says when it is out of grace (the role's wait reads it too); the tail holds its last start
    r = node.run(["tail", "-n", "20000", "/var/log/ganesha/ganesha.log"], timeout=15)
    return None if r.ok and not ganesha_in_grace(r.stdout) else f"ganesha on {node.name} to leave its grace period"
