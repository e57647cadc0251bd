"""Protocol x host pool type, one cell at a time (matrices/pools.yaml):

    pytest --matrix matrices/pools.yaml tests/lab/test_pool_matrix.py

For every libvirt pool of the cell's lab: defined, active and autostarted; a volume made (by
libvirt where the pool type makes volumes, else an existing LUN); written by qemu-io through the
pool's own protocol and read back. Without --matrix the module runs on gluster-3.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from typing import Any

import pytest

from harness.backends.base import backends
from harness.backends.ceph.plan import CephHostPool
from harness.backends.gluster.plan import GlusterHostPool
from harness.backends.nfs.mountstats import mount_at
from harness.backends.nfs.plan import NfsHostPool
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.run import succeed

from .test_iscsi import qemu_io as iscsi_qemu_io

pytestmark = pytest.mark.topology("gluster-3.yaml")

PROBE = "mxprobe"
PATTERN = "0x5a"
MAKES_VOLUMES = ("dir", "fs", "netfs", "logical", "rbd")


def qemu_io(argv: list[str], run: Any = None) -> str:
    cmds = ["-c", f"write -P {PATTERN} 0 1M", "-c", f"read -P {PATTERN} 0 1M"]
    if run is not None:  # on a hypervisor node of the lab
        out: str = run([*argv[:1], *cmds, *argv[1:]], timeout=120)
        assert "Pattern verification failed" not in out and "read 1048576/1048576" in out, f"qemu-io: {out}"
        return out
    r = subprocess.run([*argv[:1], *cmds, *argv[1:]], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout and "read 1048576/1048576" in r.stdout, \
        f"qemu-io: {r.stdout} {r.stderr}"
    return r.stdout


def rbd_io(lab: Lab, spec: CephHostPool, image: str) -> str:
    """qemu-io on the host through librbd, as the pool's cephx client, its key in a 0600 keyring file."""
    backend = next(b for b in backends() if spec.type in b.pool_types)
    key = backend.pool_secret(lab, spec)
    assert key is not None, "no cephx key for the pool's client"
    client = str(spec.client).removeprefix("client.")
    with tempfile.TemporaryDirectory(prefix="storlab-rbd-") as d:
        keyring, conf = os.path.join(d, "keyring"), os.path.join(d, "ceph.conf")
        with open(os.open(keyring, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
            fh.write(f"[client.{client}]\n\tkey = {base64.b64encode(key).decode()}\n")  # libvirt's value: the decoded key
        with open(conf, "w") as fh:
            fh.write(f"[global]\nmon_host = {','.join(spec.monitors)}\nkeyring = {keyring}\n")
        opts = f"driver=raw,file.driver=rbd,file.pool={spec.rbd_pool},file.image={image},file.user={client},file.conf={conf}"
        return qemu_io(["qemu-io", "--image-opts", opts])


def nfs_mount_as_asked(spec: NfsHostPool, run: Any, record_property: Any) -> None:
    """The pool's NFS mount speaks the version the cell asked for (the matrix's nfs axis)."""
    m = mount_at(run or succeed, str(spec.path))  # on its hypervisor node, or on the KVM host
    assert m is not None, f"{spec.name}: no NFS mount at {spec.path}"
    assert not spec.version or m.version == spec.version, f"{spec.name}: NFS {m.version}, the cell asked {spec.version}"
    assert m.nconnect == spec.connections, f"{spec.name}: nconnect={m.nconnect}, the cell asked {spec.connections}"
    record_property("nfs_version", m.version)


def test_pool_matrix_every_pool_takes_a_volume_and_io(lab: Lab, record_property: Any) -> None:
    assert lab.plan.host.pools, "the cell's lab has no host pool"
    for spec in lab.plan.host.pools:
        uri = lab.plan.host.uri if spec.host == "kvm" else node_uri(lab, spec.host)
        run = None if spec.host == "kvm" else lab.node(spec.host).succeed
        if isinstance(spec, NfsHostPool):
            nfs_mount_as_asked(spec, run, record_property)
        conn = connect(uri)
        try:
            pool = conn.storagePoolLookupByName(spec.object)
            assert pool.isActive() and pool.autostart(), f"{spec.name}: not active+autostart"
            made = None
            if spec.type in MAKES_VOLUMES:
                if PROBE in pool.listVolumes():
                    pool.storageVolLookupByName(PROBE).delete(0)
                # an export that squashes root (netfs, or dir on an NFS mount): the file is nobody's, as
                # `up` makes planned volumes (else libvirt chowns it to root, which the export refuses)
                perms = ("<permissions><owner>65534</owner><group>65534</group><mode>0660</mode></permissions>"
                         if spec.backend == "nfs" else "")
                made = pool.createXML(f"<volume><name>{PROBE}</name><capacity unit='M'>16</capacity>"
                                      f"<target><format type='raw'/>{perms}</target></volume>"
                                      if spec.type != "rbd" else
                                      f"<volume><name>{PROBE}</name><capacity unit='M'>16</capacity></volume>", 0)
                pool.refresh(0)
                assert PROBE in pool.listVolumes(), f"{spec.name}: the volume made is not listed"
            if spec.type == "rbd":
                rbd_io(lab, lab.plan.pool(spec.name, CephHostPool), PROBE)
            elif spec.type == "gluster":  # libvirt makes no volume here: qemu-img does, through gfapi
                url = f"gluster://{lab.plan.pool(spec.name, GlusterHostPool).server}/{spec.volume}/{PROBE}"
                subprocess.run(["qemu-img", "create", "-f", "raw", url, "16M"], capture_output=True, timeout=120, check=True)
                pool.refresh(0)
                assert PROBE in pool.listVolumes(), f"{spec.name}: does not list what gfapi made"
                qemu_io(["qemu-io", "-f", "raw", url])
                made = pool.storageVolLookupByName(PROBE)
            elif spec.type == "iscsi-direct":
                iscsi_qemu_io(lab, 1, f"write -P {PATTERN} 0 1M", f"read -P {PATTERN} 0 1M")
            else:  # a local path: a file (dir, fs, netfs) or a device (logical, iscsi)
                vol = made or pool.storageVolLookupByName(sorted(pool.listVolumes())[0])
                qemu_io(["qemu-io", "-f", "raw", vol.path()], run)
            if made is not None:
                made.delete(0)
        finally:
            conn.close()
