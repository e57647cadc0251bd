"""Wire the KVM host's libvirt storage pools to the lab's backends (libvirt-python), and
unwire them on `down`. Pool/volume XML comes from the plan's rendered files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import log
from .errors import CleanupReport, HarnessError
from .model import HostPoolPlan, need
from .run import CommandResult, run, succeed
from .secrets import chap_password
from .virt import connect

if TYPE_CHECKING:
    from .context import LabContext


def host_pools(lab: LabContext) -> list[HostPoolPlan]:
    return [p for p in lab.plan.host.pools if p.host == "kvm"]


def _mounted(path: str) -> str | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if f[1] == path:
            return f[2]
    return None


def fuse_mount(pool: HostPoolPlan) -> None:
    path = need(pool.path, f"pool {pool.name}: path")
    if _mounted(path):
        return
    os.makedirs(path, exist_ok=True)
    opts = "backup-volfile-servers=" + ":".join(pool.backup_servers) if pool.backup_servers else "defaults"
    succeed(["mount", "-t", "glusterfs", "-o", opts, f"{pool.server}:/{pool.volume}", path], timeout=60)


def wire(lab: LabContext) -> None:
    import libvirt
    try:
        _wire(lab)
    except libvirt.libvirtError as exc:
        raise HarnessError(f"libvirt: {exc}") from None


def node_uri(lab: LabContext, node: str) -> str:
    """libvirt on a hypervisor node of the lab, over ssh with the lab's own key."""
    return f"qemu+ssh://root@{lab.node(node).address}/system?keyfile={lab.key}&no_verify=1&no_tty=1"


def _wire(lab: LabContext) -> None:
    for host in dict.fromkeys(p.host for p in lab.plan.host.pools):
        if host == "kvm":
            _wire_on(lab, lab.plan.host.uri, lab.files("host"), host)
        else:  # pools needing a kernel feature the KVM host lacks live on a hypervisor node
            _wire_on(lab, node_uri(lab, host), lab.files(host), host)


def _wire_on(lab: LabContext, uri: str, files: Path, host: str) -> None:
    import libvirt
    conn = connect(uri)
    here = [p for p in lab.plan.host.pools if p.host == host]
    try:
        for p in here:
            with log.step(f"pool {p.name} ({p.type})" + ("" if host == "kvm" else f" on {host}")):
                if p.type == "dir" and p.fuse_mount:
                    fuse_mount(p)
                if p.type == "rbd":
                    ensure_secret(conn, lab, p, ceph_key(lab, need(p.client, f"pool {p.name}: client")), files)
                elif p.chap:
                    acl = next(a for a in need(lab.plan.iscsi, "iscsi section").acls if a.initiator == p.initiator)
                    ensure_secret(conn, lab, p, chap_password(lab, acl).encode(), files)
                if p.type == "iscsi":
                    prepare_iscsi_iface(lab, p, succeed if host == "kvm" else lab.node(host).succeed)
                xml = (files / "pools" / f"{p.name}.xml").read_text()
                try:
                    pool = conn.storagePoolLookupByName(p.name)
                except libvirt.libvirtError:
                    pool = conn.storagePoolDefineXML(xml, 0)
                    if p.type in ("fs", "logical"):  # a fresh lab disk: format it / make the VG
                        pool.build(libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE)
                    elif p.type in ("dir", "netfs"):
                        pool.build(0)
                if not pool.isActive():
                    start_pool(pool, p)
                pool.setAutostart(1)
                pool.refresh(0)
        names = {p.name for p in here}
        for v in lab.plan.host.volumes:
            if v.pool not in names:
                continue
            pool = conn.storagePoolLookupByName(v.pool)
            if v.name in pool.listVolumes():
                continue
            with log.step(f"volume {v.pool}/{v.name}" + ("" if host == "kvm" else f" on {host}")):
                xml = (files / "volumes" / v.pool / f"{v.name}.xml").read_text()
                pool.createXML(xml, 0)
    finally:
        conn.close()


def iscsi_iface(lab: LabContext, pool: HostPoolPlan) -> str:
    """The open-iscsi interface an iscsi pool logs in through; it carries the lab's name."""
    return f"storlab-{lab.name}-{pool.name}"[:64]


def prepare_iscsi_iface(lab: LabContext, pool: HostPoolPlan, sh: Callable[..., str]) -> None:
    """Make the iface (with the pool's <initiator> IQN) and its node records before libvirt
    starts the pool. libvirt writes the pool's CHAP into the node records that exist, and only
    then, finding no iface with that IQN, makes one and discovers the target through it: the
    new records lack the CHAP and the target refuses the login (libvirt 9.0). With the iface
    there first, libvirt uses it and its records get the CHAP like the others."""
    iface = iscsi_iface(lab, pool)
    if iface not in sh(["iscsiadm", "-m", "iface"], timeout=30).split():
        sh(["iscsiadm", "-m", "iface", "-I", iface, "-o", "new"], timeout=30)
    sh(["iscsiadm", "-m", "iface", "-I", iface, "-o", "update", "-n", "iface.initiatorname", "-v", pool.initiator],
       timeout=30)
    sh(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", pool.server, "-I", iface], timeout=60)


def _host_has_iface(lab: LabContext, pool: HostPoolPlan) -> bool:
    r = run(["iscsiadm", "-m", "iface"], timeout=30)
    return r.ok and iscsi_iface(lab, pool) in r.stdout.split()


def remove_iscsi_iface(lab: LabContext, pool: HostPoolPlan) -> CommandResult | None:
    """On the KVM host, after the pool is stopped: its node records and iface (lab nodes go with the lab)."""
    if not _host_has_iface(lab, pool):
        return None
    iface = iscsi_iface(lab, pool)
    run(["iscsiadm", "-m", "node", "-I", iface, "-o", "delete"], timeout=30)
    return run(["iscsiadm", "-m", "iface", "-I", iface, "-o", "delete"], timeout=30)


def start_pool(pool: Any, spec: HostPoolPlan) -> None:
    """Start a pool. An iSCSI target reports a UNIT ATTENTION (e.g. 'reported LUNs data has
    changed') once to a new initiator; libvirt does not retry it, so we do, boundedly."""
    import libvirt
    attempts = 3 if spec.type in ("iscsi", "iscsi-direct") else 1
    for attempt in range(1, attempts + 1):
        try:
            pool.create(0)
            return
        except libvirt.libvirtError as exc:
            if attempt == attempts or "UNIT_ATTENTION" not in str(exc):
                raise
            log.info(f"pool {spec.name}: {exc}; retrying ({attempt}/{attempts})")


def ceph_key(lab: LabContext, client: str) -> bytes:
    """The client's cephx key, read on the admin node; it travels as bytes, never in argv or logs."""
    import base64
    ceph = need(lab.plan.ceph, "ceph section")
    admin = lab.node((ceph.admin or tuple(m.name for m in ceph.mons))[0])
    key = admin.succeed(["ceph", "auth", "get-key", client]).strip()
    log.mask(key)
    return base64.b64decode(key)


def ensure_secret(conn: Any, lab: LabContext, pool: HostPoolPlan, value: bytes, files: Path) -> None:
    """Define the pool's private libvirt secret and set its value through the API."""
    import libvirt
    try:
        sec = conn.secretLookupByUUIDString(pool.secret_uuid)
    except libvirt.libvirtError:
        xml = (files / "secrets" / f"{pool.name}.xml").read_text()
        sec = conn.secretDefineXML(xml, 0)
    sec.setValue(value, 0)


def unwire(lab: LabContext) -> CleanupReport:
    rep = CleanupReport()
    pools = host_pools(lab)
    if not pools:
        return rep
    import libvirt
    try:
        conn = connect(lab.plan.host.uri)
    except HarnessError as exc:
        rep.failed.append(("libvirt connection", str(exc)))
        conn = None
    if conn is not None:
        try:
            for p in pools:
                try:
                    pool = conn.storagePoolLookupByName(p.name)
                except libvirt.libvirtError:
                    continue
                try:
                    if pool.isActive():
                        for v in lab.plan.host.volumes:
                            if v.pool == p.name and v.name in pool.listVolumes():
                                pool.storageVolLookupByName(v.name).delete(0)
                        pool.destroy()
                    pool.undefine()
                    rep.removed.append(f"pool {p.name}")
                except libvirt.libvirtError as exc:
                    rep.failed.append((f"pool {p.name}", str(exc)))
        except Exception:
            conn.close()
            raise
    if conn is not None:
        try:
            for p in pools:
                if p.secret_uuid:
                    try:
                        conn.secretLookupByUUIDString(p.secret_uuid).undefine()
                        rep.removed.append(f"secret {p.secret_uuid}")
                    except libvirt.libvirtError as exc:
                        if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                            rep.failed.append((f"secret {p.secret_uuid}", str(exc)))
        finally:
            conn.close()
    for p in pools:
        mnt = p.path if p.fuse_mount else None
        if mnt and _mounted(mnt):
            r = run(["umount", mnt], timeout=60)
            if not r.ok:
                r = run(["umount", "-l", mnt], timeout=60)
            (rep.removed.append(f"mount {mnt}") if r.ok else rep.failed.append((f"mount {mnt}", r.stderr)))
        if mnt and os.path.isdir(mnt) and not _mounted(mnt):
            with contextlib.suppress(OSError):
                os.rmdir(mnt)
        gone = remove_iscsi_iface(lab, p) if p.type == "iscsi" else None
        if gone is not None:
            what = f"iscsi iface {iscsi_iface(lab, p)}"
            (rep.removed.append(what) if gone.ok else rep.failed.append((what, gone.stderr)))
    return rep


def leftovers(lab: LabContext) -> list[str]:
    left = []
    for p in host_pools(lab):
        if p.fuse_mount and p.path and _mounted(p.path):
            left.append(f"mount {p.path}")
    left += [f"iscsi iface {iscsi_iface(lab, p)}" for p in host_pools(lab) if p.type == "iscsi" and _host_has_iface(lab, p)]
    r = run(["virsh", "-c", lab.plan.host.uri, "pool-list", "--all", "--name"], timeout=30)
    if r.ok:
        names = set(r.stdout.split())
        left += [f"pool {p.name}" for p in host_pools(lab) if p.name in names]
    r = run(["virsh", "-c", lab.plan.host.uri, "secret-list"], timeout=30)
    if r.ok:
        left += [f"secret {p.secret_uuid}" for p in host_pools(lab) if p.secret_uuid and p.secret_uuid in r.stdout]
    return left
