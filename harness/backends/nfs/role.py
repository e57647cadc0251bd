"""NFS role: kernel nfsd with /etc/exports where the node has its own kernel, NFS-Ganesha
(FSAL VFS) where it shares a host kernel without nfsd. Facts parse `exportfs -v`."""

from __future__ import annotations

import re

from harness.backends.base import LabContext, NodeView
from harness.backends.nfs.plan import NfsPlan, of
from harness.errors import HarnessError
from harness.nodes.roles.base import prepare_disks
from harness.run import wait_until


def parse_exportfs(text: str) -> dict[str, dict[str, list[str]]]:
    """`exportfs -v` -> {path: {client: [options]}} (long paths wrap onto the next line)."""
    out: dict[str, dict[str, list[str]]] = {}
    path = None
    for tok in re.findall(r"\S+", text):
        m = re.fullmatch(r"(.+?)\((.*)\)", tok)
        if m and path:
            out.setdefault(path, {})[m.group(1)] = m.group(2).split(",")
        elif tok.startswith("/"):
            path = tok
    return out


def ganesha_in_grace(log_text: str) -> bool:
    """From ganesha.log: is the server still in its grace period since its last start?"""
    start = log_text.rfind("NFS SERVER INITIALIZED")
    return start < 0 or log_text.find("NOT IN GRACE", start) < 0


def wait_out_of_grace(node: NodeView, timeout: float = 180) -> None:
    """Ganesha refuses creates/setattrs (NFS3ERR_JUKEBOX, NFS4ERR_GRACE) until grace ends."""
    wait_until(lambda: not ganesha_in_grace(node.succeed(["cat", "/var/log/ganesha/ganesha.log"])),
               timeout=timeout, interval=1, what=f"ganesha on {node.name} to leave its grace period")


def prepare_exports(node: NodeView, nfs: NfsPlan) -> None:
    prepare_disks(node)  # mounts what is not mounted yet
    for e in nfs.exports:
        node.succeed(["mkdir", "-p", e.path])
        # root is squashed to nobody: the export must be writable for it
        node.succeed(["chown", "nobody:nogroup", e.path])
        node.succeed(["chmod", "0775", e.path])


def apply(lab: LabContext) -> None:
    nfs = of(lab.plan)
    if nfs is None:
        return
    node = lab.node(nfs.server)
    prepare_exports(node, nfs)
    files = lab.files(node.name)
    if nfs.implementation == "ganesha":
        conf = (files / "etc/ganesha/ganesha.conf").read_text()
        if node.ensure_file("/etc/ganesha/ganesha.conf", conf):
            node.run(["systemctl", "try-restart", "nfs-ganesha.service"], timeout=60)
        node.enable_units(["rpcbind.service", "nfs-ganesha.service"], unmask=["rpcbind.socket"], timeout=60)
        want = {e.path for e in nfs.exports}

        def exported() -> bool:
            r = node.run(["showmount", "-e", "--no-headers", "127.0.0.1"], timeout=15)
            return r.ok and want <= {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
        wait_until(exported, timeout=60, what=f"ganesha on {node.name} exporting {', '.join(sorted(want))}")
        wait_out_of_grace(node)
    else:
        exports = (files / "etc/exports").read_text()
        node.ensure_file("/etc/exports", exports)
        if node.ensure_file("/etc/nfs.conf.d/storlab.conf", (files / "etc/nfs.conf.d/storlab.conf").read_text()):
            node.run(["systemctl", "try-restart", "nfs-server.service"], timeout=60)  # rpc.nfsd reads it at start
        # The golden image carries NFS-Ganesha too, whose package enables nfs-ganesha-lock.service
        # (a second rpc.statd) as WantedBy=nfs-server.service: started with nfs-server, the two
        # statds race for /var/lib/nfs/state and /run/rpc.statd.pid, and nfs-server's start waits
        # for rpc-statd up to its timeout (60 s and more under TCG). Kernel nfsd has its own statd.
        node.enable_units(["nfs-server.service"], unmask=["rpcbind.socket", "rpcbind.service",
                                                          "nfs-kernel-server.service"],
                          mask=["nfs-ganesha-lock.service", "nfs-ganesha.service"], timeout=60)
        grace = node.succeed(["cat", "/proc/fs/nfsd/nfsv4gracetime"]).strip()
        if grace != str(nfs.grace_period):
            raise HarnessError(f"{node.name}: nfsd runs with a {grace}s grace period, not the configured "
                               f"{nfs.grace_period}s (/etc/nfs.conf.d/storlab.conf not read?)")
        node.succeed(["exportfs", "-ra"])
        have = parse_exportfs(node.succeed(["exportfs", "-v"]))
        missing = [e.path for e in nfs.exports if e.path not in have]
        if missing:
            raise HarnessError(f"{node.name}: exportfs does not show {missing}: {have}")
