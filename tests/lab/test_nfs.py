"""NFS lab: the export as the topology gives it, root squashed to nobody, and a server
restart while a client keeps writing. The KVM host is the client, in userspace (libnfs),
so this runs on hosts without a kernel NFS client too. Select with `pytest -k nfs`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from typing import Any

import pytest

from harness.backends.nfs import planned
from harness.backends.nfs.plan import NfsPlan
from harness.backends.nfs.role import parse_exportfs, wait_out_of_grace
from harness.lab.lab import Lab
from harness.run import wait_until
from harness.testing.workload import Writer, block

pytestmark = pytest.mark.topology("nfs-userspace.yaml")
MARGIN = 20.0
# One 8 KiB nfs-cp. A write under way when the server stops can hang in libnfs's reconnect
# until this timeout, so "writes fail while the server is down" waits longer than it.
OP_TIMEOUT = 10.0


def nfs_plan(lab: Lab) -> NfsPlan:
    return planned(lab.plan)


def export(lab: Lab) -> tuple[Any, str]:
    nfs = nfs_plan(lab)
    return lab.node(nfs.server), nfs.exports[0].path


def nfs_url(lab: Lab, name: str) -> str:
    server, path = export(lab)
    return f"nfs://{server.address}{path}/{name}"


def nfs_put(url: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        subprocess.run(["nfs-cp", f.name, url], check=True, capture_output=True, timeout=OP_TIMEOUT)


def nfs_get(url: str) -> bytes:
    return subprocess.run(["nfs-cat", url], check=True, capture_output=True, timeout=30).stdout


@pytest.fixture
def serving(lab: Lab) -> Any:
    server, _ = export(lab)
    if nfs_plan(lab).implementation == "ganesha":
        wait_out_of_grace(server)
    return lab


def test_nfs_export_is_served_as_specified(serving: Any, hosts: dict[str, Any]) -> None:
    lab = serving
    server, path = export(lab)
    spec = nfs_plan(lab).exports[0]
    unit = "nfs-ganesha" if nfs_plan(lab).implementation == "ganesha" else "nfs-server"
    assert hosts[server.name].service(unit).is_running
    shown = server.succeed(["showmount", "-e", "--no-headers", "127.0.0.1"])
    assert any(line.split()[0] == path for line in shown.splitlines()), shown
    if nfs_plan(lab).implementation == "kernel":  # what nfsd really applies, from exportfs -v
        applied = parse_exportfs(server.succeed(["exportfs", "-v"]))[path]
        for client in spec.clients:
            assert set(spec.options) <= set(applied[client]), applied
        assert server.succeed(["cat", "/proc/fs/nfsd/nfsv4gracetime"]).strip() == str(nfs_plan(lab).grace_period)
    else:
        conf = server.succeed(["cat", "/etc/ganesha/ganesha.conf"])
        squash = "No_Root_Squash" if "no_root_squash" in spec.options else "Root_Squash"
        assert f"Squash = {squash};" in conf and f'Path = "{path}";' in conf
    listing = subprocess.run(["nfs-ls", f"nfs://{server.address}{path}"], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0, listing.stderr


def test_nfs_root_is_squashed_to_nobody(serving: Any, hosts: dict[str, Any]) -> None:
    lab = serving
    server, path = export(lab)
    name = f"squash-{int(time.time())}"
    data = os.urandom(70000)
    nfs_put(nfs_url(lab, name), data)  # as root (uid 0) on the client
    f = hosts[server.name].file(f"{path}/{name}")
    assert f.exists and f.uid == 65534 and f.gid == 65534, f"owner {f.uid}:{f.gid}, root was not squashed"
    assert nfs_get(nfs_url(lab, name)) == data
    assert hashlib.md5(data).hexdigest() == server.succeed(["md5sum", f"{path}/{name}"]).split()[0]


def test_nfs_server_restart_while_client_writes(serving: Any) -> None:
    lab = serving
    server, path = export(lab)
    prefix = f"w{int(time.time())}"
    unit = "nfs-ganesha.service" if nfs_plan(lab).implementation == "ganesha" else "nfs-server.service"
    names: dict[int, str] = {}

    def put(seq: int) -> None:
        name = f"{prefix}-{seq}-{time.monotonic_ns()}"  # a failed attempt may leave its file behind
        nfs_put(nfs_url(lab, name), block(seq, 8192))
        names[seq] = name

    with Writer("nfs", put, interval=0.1) as w:
        wait_until(lambda: len(w.log.acked) > 5, timeout=60, what="NFS writer running")
        with server.service_stopped(unit):
            t_down = time.monotonic()
            w.wait_refused(t_down, OP_TIMEOUT + MARGIN, f"writes did not fail while {unit} was stopped")
        t_up = time.monotonic()
        w.wait_acked(t_up, 90 + MARGIN, f"writes did not resume after {unit} started", interval=1)
        resumed = (w.log.first_ack_after(t_up) or t_up) - t_up
    print(f"NFS server restart: writes resumed {resumed:.1f}s after the server was back "
          f"({len(w.log.errors)} refused attempts meanwhile)")
    assert resumed <= 15 + MARGIN, "writes did not resume within the grace period plus margin"
    sums = dict(line.split()[::-1] for line in server.succeed(
        ["sh", "-c", f"cd {path} && md5sum {prefix}-*"]).splitlines())
    for _, seq in w.log.acked:
        assert sums.get(names[seq]) == hashlib.md5(block(seq, 8192)).hexdigest(), f"acknowledged write {seq} lost"
