"""Wire the KVM host's libvirt storage pools to the lab's backends (libvirt-python), and
unwire them on `down`. Pool/volume XML comes from the plan's rendered files."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import log
from harness.backends.base import BLOCK_DEVICE_RE, SCSI_HOST_RE, Backend, get
from harness.errors import CleanupReport, HarnessError
from harness.host.facts import mount_at, mounted
from harness.host.virt import connect
from harness.plan.model import HostPoolPlan
from harness.run import run, succeed

if TYPE_CHECKING:
    from harness.backends.base import LabContext


def host_pools(lab: LabContext) -> list[HostPoolPlan]:
    return [p for p in lab.plan.host.pools if p.host == "kvm"]


def _backend(pool: HostPoolPlan) -> Backend[Any, Any] | None:
    return None if pool.backend == "local" else get(pool.backend)


def _key(p: HostPoolPlan) -> str:
    """How a pool is recorded among the things a lab owns."""
    return f"pool {p.object}" + ("" if p.host == "kvm" else f" on {p.host}")


def secret_mark(lab: LabContext) -> str:
    """The start of the description of every libvirt secret a lab defines (secret.xml.j2)."""
    return f"<description>storlab lab {lab.name}: "


def _secret_is_ours(lab: LabContext, sec: Any) -> bool:
    return secret_mark(lab) in sec.XMLDesc(0)


def conflicts(lab: LabContext) -> list[str]:
    """What on the KVM host has a name, uuid or path this lab's pools would take and is not this
    lab's: checked before `up` makes anything (a resumed `up` finds its own things and passes)."""
    pools = host_pools(lab)
    if not pools:
        return []
    import libvirt
    out = []
    conn = connect(lab.plan.host.uri)
    try:
        for p in pools:
            owned = lab.owns(_key(p))  # one read of the lab's state per pool
            try:
                conn.storagePoolLookupByName(p.object)
                if not owned:
                    out.append(f"libvirt pool {p.object} (not made by lab {lab.name}; remove or rename it)")
            except libvirt.libvirtError:
                pass
            if p.secret_uuid:
                try:
                    if not _secret_is_ours(lab, conn.secretLookupByUUIDString(p.secret_uuid)):
                        out.append(f"libvirt secret {p.secret_uuid} (another lab's or the host's: give pool "
                                   f"{p.name} another secret uuid, or run this topology as an instance with --name)")
                except libvirt.libvirtError:
                    pass
            b = _backend(p)
            out += b.pool_conflicts(lab, p) if b is not None else []
            if b is not None and b.mounts and p.fuse_mount and p.path:
                out += _fuse_conflicts(p.path)
            elif not owned and p.path and _taken_dir(p.path):
                out.append(f"{p.path} (exists with files in it or something mounted on it, and this lab did not make it: "
                           f"pick another path, or run the topology as an instance with --name)")
    finally:
        conn.close()
    return out


def _fuse_conflicts(path: str) -> list[str]:
    """A FUSE mount (whose files students write) goes only on an empty directory of its own,
    reached without a symbolic link; what is mounted there already, the backend judged."""
    if os.path.realpath(path) != path:
        return [f"{path} (is, or is under, a symbolic link, to {os.path.realpath(path)}: a lab's volume is mounted "
                "only where its path says; use a real directory)"]
    if mount_at(path) is not None:
        return []
    p = Path(path)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        return [f"{path} (exists with files in it: a FUSE mount there would hide them, and `down` would remove the "
                "directory; pick another path, or run the topology as an instance with --name)"]
    return []


def _taken_dir(path: str) -> bool:
    """Something at ``path`` a pool would take over: a mount, a file, or a directory with entries."""
    p = Path(path)
    return p.exists() and (mounted(path) is not None or not p.is_dir() or any(p.iterdir()))


#: pool types whose listing is slow: a gluster pool's refresh is a gfapi client whose glfs_fini waits
#: up to 10 s on glusterfs 10.3 and 11 for an rpc timer it cannot cancel (ci/gfapi/gfcancel.c, which
#: ci/setup-host.sh preloads into its libvirtd, takes the wait away); a revert skips the refresh where
#: the listing is the snapshot's already
SLOW_LISTING = ("gluster",)


def listings(lab: LabContext) -> dict[str, list[str]]:
    """What each of the lab's active pools on the KVM host lists now (saved with a snapshot)."""
    import libvirt
    conn = connect(lab.plan.host.uri)
    out: dict[str, list[str]] = {}
    try:
        for p in lab.plan.host.pools:
            if p.host != "kvm":
                continue
            try:
                pool = conn.storagePoolLookupByName(p.object)
            except libvirt.libvirtError:
                continue
            if pool.isActive():
                out[p.name] = sorted(pool.listVolumes())
    finally:
        conn.close()
    return out


def wire(lab: LabContext, listed: dict[str, list[str]] | None = None) -> None:
    """Define, start and fill the lab's pools; active pools are refreshed, except a slow-listing
    pool whose listing already equals ``listed`` (what it listed when a snapshot was taken)."""
    import libvirt
    try:
        _wire(lab, listed or {})
    except libvirt.libvirtError as exc:
        raise HarnessError(f"libvirt: {exc}") from None


def node_uri(lab: LabContext, node: str) -> str:
    """libvirt on a hypervisor node of the lab, over ssh with the lab's own key."""
    return f"qemu+ssh://root@{lab.node(node).address}/system?keyfile={lab.key}&no_verify=1&no_tty=1"


def _wire(lab: LabContext, listed: dict[str, list[str]]) -> None:
    for host in dict.fromkeys(p.host for p in lab.plan.host.pools):
        if host == "kvm":
            _wire_on(lab, lab.plan.host.uri, lab.files("host"), host, listed)
        else:  # pools needing a kernel feature the KVM host lacks live on a hypervisor node
            _wire_on(lab, node_uri(lab, host), lab.files(host), host, {})


def _wire_on(lab: LabContext, uri: str, files: Path, host: str, listed: dict[str, list[str]]) -> None:
    import libvirt
    conn = connect(uri)
    here = [p for p in lab.plan.host.pools if p.host == host]
    try:
        for p in here:
            with log.step(f"pool {p.name} ({p.type})" + ("" if host == "kvm" else f" on {host}")):
                # whose the pool is, first: nothing (a mount, an iscsi iface, a secret) is made for a
                # pool another made, and what is made is recorded before it is, so `down` releases it
                try:
                    pool = conn.storagePoolLookupByName(p.object)
                except libvirt.libvirtError:
                    pool = None
                if pool is not None and not lab.owns(_key(p)):
                    raise HarnessError(f"libvirt pool {p.object} exists and was not made by lab {lab.name}; "
                                       "storlab leaves it alone: remove or rename it")
                if pool is None:
                    lab.claim(_key(p))  # recorded before it exists: `down` finds it whatever happens next
                b = _backend(p)
                sh = succeed if host == "kvm" else lab.node(host).succeed
                if b is not None:
                    b.prepare_pool(lab, p, sh)
                    value = b.pool_secret(lab, p) if p.secret_uuid else None
                    if value is not None:
                        ensure_secret(conn, lab, p, value, files)
                if pool is None:
                    adapter = b.pool_adapter(lab, p, sh) if b is not None and p.type == "scsi" else None
                    pool = conn.storagePoolDefineXML(pool_xml(p, files, sh, adapter), 0)
                    _build(pool, p)
                # starting a pool lists its volumes; a refresh on top would list them twice, and a
                # gluster pool pays ~10 s for each listing without ci/gfapi's fix (glfs_fini's timer wait)
                if pool.isActive() and p.type in SLOW_LISTING and sorted(pool.listVolumes()) == listed.get(p.name):
                    log.info(f"pool {p.name}: lists what it listed at the snapshot; not refreshed (a {p.type} "
                             "listing costs ~10 s)")
                elif pool.isActive():
                    pool.refresh(0)  # a resumed `up` or a revert: see what is there now
                else:
                    start_pool(pool, p)
                pool.setAutostart(1)
            # a pool's volumes are made as soon as it runs, before the next pool starts: a pool
            # listing the same storage later in the topology (the native gluster pool behind
            # the FUSE dir pool) sees them at its start, without paying for a second listing
            _make_volumes(lab, pool, p, files, host)
    finally:
        conn.close()


def _build(pool: Any, p: HostPoolPlan) -> None:
    """What a new pool needs before it starts: a fresh lab disk formatted / its VG made, a fresh
    LUN given a GPT (a LUN with a partition table is refused, never overwritten), a directory."""
    import libvirt
    if p.type in ("fs", "logical"):
        pool.build(libvirt.VIR_STORAGE_POOL_BUILD_OVERWRITE)
    elif p.type == "disk":
        pool.build(libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)
    elif p.type in ("dir", "netfs"):
        pool.build(0)


def _make_volumes(lab: LabContext, pool: Any, p: HostPoolPlan, files: Path, host: str) -> None:
    have = set(pool.listVolumes())
    for v in lab.plan.host.volumes:
        if v.pool != p.name or v.name in have:
            continue
        with log.step(f"volume {v.pool}/{v.name}" + ("" if host == "kvm" else f" on {host}")):
            pool.createXML((files / "volumes" / v.pool / f"{v.name}.xml").read_text(), 0)


def pool_xml(p: HostPoolPlan, files: Path, sh: Callable[..., str], adapter: str | None = None) -> str:
    """The pool's XML as the plan rendered it, with what only the pool's host knows filled in: a
    scsi pool's ``adapter`` (its backend found it there), and a logical pool's stable device link
    (/dev/disk/by-...) replaced by the device it points at now: libvirt matches the volume group's
    PVs by the names `pvs` prints and follows no link ("cannot find any matching source devices
    for logical volume group"). Both are read from a node: checked against a pattern first."""
    xml = (files / "pools" / f"{p.name}.xml").read_text()
    if p.type == "scsi":
        return _with_adapter(p, xml, adapter)
    if p.type != "logical" or not p.device or not p.device.startswith("/dev/disk/by-"):
        return xml
    real = sh(["readlink", "-e", "--", p.device], timeout=30).strip()
    if not BLOCK_DEVICE_RE.fullmatch(real):
        raise HarnessError(f"pool {p.name}: {p.device} points at {real!r} on its host, which is not a device "
                           "name storlab expects (/dev/NAME or /dev/mapper/NAME)")
    root = ET.fromstring(xml)
    for dev in root.iterfind("./source/device"):
        if dev.get("path") == p.device:
            dev.set("path", real)
    return ET.tostring(root, encoding="unicode")


def _with_adapter(p: HostPoolPlan, xml: str, adapter: str | None) -> str:
    if adapter is None or not SCSI_HOST_RE.fullmatch(adapter):
        raise HarnessError(f"pool {p.name}: its SCSI host on {p.host} is {adapter!r}, not a name storlab expects "
                           "(hostN)")
    root = ET.fromstring(xml)
    found = root.findall("./source/adapter")
    if len(found) != 1:
        raise HarnessError(f"pool {p.name}: the plan's XML has {len(found)} <adapter> elements, not one")
    found[0].set("name", adapter)
    return ET.tostring(root, encoding="unicode")


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


def ensure_secret(conn: Any, lab: LabContext, pool: HostPoolPlan, value: bytes, files: Path) -> None:
    """Define the pool's private libvirt secret and set its value through the API."""
    import libvirt
    try:
        sec = conn.secretLookupByUUIDString(pool.secret_uuid)
    except libvirt.libvirtError:
        xml = (files / "secrets" / f"{pool.name}.xml").read_text()
        sec = conn.secretDefineXML(xml, 0)
    if not _secret_is_ours(lab, sec):  # never set the value of a secret another lab or the host uses
        raise HarnessError(f"libvirt secret {pool.secret_uuid} exists and is not lab {lab.name}'s; storlab leaves it alone")
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
                    pool = conn.storagePoolLookupByName(p.object)
                except libvirt.libvirtError:
                    continue
                if not lab.owns(_key(p)):
                    log.info(f"libvirt pool {p.object} was not made by lab {lab.name}: left alone")
                    continue
                try:
                    if pool.isActive():
                        for v in lab.plan.host.volumes:
                            if v.pool == p.name and v.name in pool.listVolumes():
                                pool.storageVolLookupByName(v.name).delete(0)
                        pool.destroy()
                    pool.undefine()
                    rep.removed.append(f"pool {p.object}")
                except libvirt.libvirtError as exc:
                    rep.failed.append((f"pool {p.object}", str(exc)))
        except Exception:
            conn.close()
            raise
    if conn is not None:
        try:
            for p in pools:
                if p.secret_uuid:
                    try:
                        sec = conn.secretLookupByUUIDString(p.secret_uuid)
                        if not _secret_is_ours(lab, sec):
                            log.info(f"libvirt secret {p.secret_uuid} is not lab {lab.name}'s: left alone")
                            continue
                        sec.undefine()
                        rep.removed.append(f"secret {p.secret_uuid}")
                    except libvirt.libvirtError as exc:
                        if exc.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                            rep.failed.append((f"secret {p.secret_uuid}", str(exc)))
        finally:
            conn.close()
    for p in pools:
        b = _backend(p)
        if b is not None and lab.owns(_key(p)):  # a mount or iface of a pool the lab did not make is not its own
            rep.merge(b.release_pool(lab, p))
    return rep


def leftovers(lab: LabContext) -> list[str]:
    left = [x for p in host_pools(lab) if (b := _backend(p)) is not None and lab.owns(_key(p))
            for x in b.pool_leftovers(lab, p)]
    r = run(["virsh", "-c", lab.plan.host.uri, "pool-list", "--all", "--name"], timeout=30)
    if r.ok:
        names = set(r.stdout.split())
        left += [f"pool {p.object}" for p in host_pools(lab) if p.object in names and lab.owns(_key(p))]
    for p in host_pools(lab):
        if p.secret_uuid:
            r = run(["virsh", "-c", lab.plan.host.uri, "secret-dumpxml", p.secret_uuid], timeout=30)
            if r.ok and secret_mark(lab) in r.stdout:
                left.append(f"secret {p.secret_uuid}")
    return left
