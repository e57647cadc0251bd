"""What an Incus node and a lab's project are given: security settings (privileged for trusted
labs, an id map of its own for students), project restrictions, masked units, the files staged into
a node before its first boot, and how a custom volume is formatted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from harness import log
from harness.errors import HarnessError
from harness.plan.model import NodePlan, Plan
from harness.providers import image
from harness.providers.image import role_services
from harness.providers.incus.client import POOL, Incus
from harness.providers.lxc.config import CONTAINER_MASKS

#: inside a node: where a raw data disk's backing file lives (on its custom volume), and its name
#: under /dev/storlab (a symlink remade at every boot by systemd-tmpfiles)
RAW_DIR = "/var/lib/storlab-disks"
#: set on an instance once it has all its nics, disks and files (a killed `up` leaves it unset)
MADE_KEY = "user.storlab.made"
#: besides lxc's: binfmt_misc is the host kernel's, and an Incus container may not mount it
INCUS_MASKS = ["systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount"]


#: a golden image's alias on an Incus remote: storlab-golden-KEY
ALIAS_PREFIX = "storlab-golden-"


def image_alias(key: str | None = None) -> str:
    return f"{ALIAS_PREFIX}{key or image.content_key()}"


def isolation(untrusted: bool) -> dict[str, str]:
    """A node's security settings: privileged for trusted labs (every backend runs); for untrusted
    users unprivileged, with an id map of its own (root in it is an unprivileged id on the host
    that no other container shares), nesting off and Incus's default AppArmor and seccomp."""
    if not untrusted:  # root in the node is root on the host: trusted labs only (README "Who is root where")
        return {"security.privileged": "true"}
    return {"security.privileged": "false", "security.idmap.isolated": "true", "security.nesting": "false"}


def restrictions(untrusted: bool, disks: Path | None) -> dict[str, str]:
    """A lab's project is restricted to what storlab makes in it, so that a certificate trusted
    with the project (a class's gate) cannot do more: no host paths but the lab's own disk
    directory (``disks``; None on a remote: custom volumes only), no low-level options for an
    untrusted lab, and only unprivileged, isolated containers for it."""
    cfg = {"restricted": "true", "restricted.devices.nic": "managed", "restricted.devices.unix-block": "block",
           "restricted.devices.unix-char": "block", "restricted.devices.unix-hotplug": "block",
           "restricted.devices.usb": "block", "restricted.devices.pci": "block", "restricted.devices.gpu": "block",
           "restricted.devices.infiniband": "block", "restricted.devices.proxy": "block",
           "restricted.containers.nesting": "block", "restricted.virtual-machines.lowlevel": "block",
           "restricted.snapshots": "allow", "restricted.devices.disk": "allow" if disks else "managed"}
    if disks:
        cfg["restricted.devices.disk.paths"] = str(disks)
    if untrusted:
        cfg |= {"restricted.containers.privilege": "isolated", "restricted.containers.lowlevel": "block"}
    else:
        cfg |= {"restricted.containers.privilege": "allow", "restricted.containers.lowlevel": "allow"}
    return cfg


#: an unprivileged container's /sys is writable (its network namespace's), so systemd-networkd
#: waits for udev to initialise each link ("pending" for ever with udevd masked): udevd runs there
UDEV_UNITS = ("systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
              "systemd-udev-trigger.service")


def masks(untrusted: bool) -> list[str]:
    """The units masked in a node before its first boot (unprivileged: udev stays, see UDEV_UNITS)."""
    return [u for u in CONTAINER_MASKS + INCUS_MASKS if not (untrusted and u in UDEV_UNITS)]


def root_ids(instance: dict[str, Any]) -> tuple[int, int]:
    """The host uid and gid that an unprivileged instance's root is mapped to (from the id map
    Incus chose at creation, volatile.idmap.next)."""
    cfg = instance.get("config") or {}
    try:
        entries = json.loads(cfg.get("volatile.idmap.next") or cfg.get("volatile.idmap.current") or "[]")
        uid = next(int(e["Hostid"]) for e in entries if e.get("Isuid") and int(e["Nsid"]) == 0)
        gid = next(int(e["Hostid"]) for e in entries if e.get("Isgid") and int(e["Nsid"]) == 0)
    except (ValueError, KeyError, TypeError, StopIteration):
        raise HarnessError(f"instance {instance.get('name')}: no id map for its root in volatile.idmap.next "
                           f"(an unprivileged instance has one)") from None
    if uid == 0 or gid == 0:
        raise HarnessError(f"instance {instance.get('name')}: its root is the host's root: not unprivileged")
    return uid, gid


def networkd(iface: str, mac: str, address: str, prefix: int) -> str:
    return f"[Match]\nMACAddress={mac}\n\n[Link]\nName={iface}\n\n[Network]\nAddress={address}/{prefix}\nLinkLocalAddressing=no\n"


def stage(plan: Plan, labdir: Path, node: NodePlan, public_key: str) -> Path:
    """The files a node gets before its first boot: its key, name, hosts, addresses, masks."""
    d = labdir / "incus" / node.name
    shutil.rmtree(d, ignore_errors=True)
    ssh = d / "root/.ssh"
    ssh.mkdir(parents=True, mode=0o700)
    (ssh / "authorized_keys").write_text(public_key)
    (ssh / "authorized_keys").chmod(0o600)
    etc = d / "etc"
    etc.mkdir()
    (etc / "hostname").write_text(node.name + "\n")
    hosts = labdir / "files" / "nodes" / node.name / "etc/hosts"
    if hosts.exists():
        shutil.copy(hosts, etc / "hosts")
    (etc / "systemd/network").mkdir(parents=True)
    for ni, net in enumerate(plan.networks):
        (etc / f"systemd/network/10-storlab-eth{ni}.network").write_text(
            networkd(f"eth{ni}", node.macs[net.name], node.addresses[net.name], net.prefix))
    units = etc / "systemd/system"
    units.mkdir(parents=True)
    for unit in masks(plan.untrusted) + role_services():
        (units / unit).symlink_to("/dev/null")
    raw = [dd for dd in node.disks if dd.filesystem == "none"] if plan.remote else []
    if raw:
        (etc / "tmpfiles.d").mkdir()
        (etc / "tmpfiles.d/storlab-disks.conf").write_text(
            "d /dev/storlab 0755 root root -\n"
            + "".join(f"L+ /dev/storlab/{dd.name} - - - - {RAW_DIR}/{dd.name}/disk.img\n" for dd in raw))
    return d


def volume_filesystem(default: Incus, fs: str) -> list[str]:
    """The volume config that formats a custom volume as ``fs`` where the pool's driver can
    (block-backed drivers); a dir or btrfs pool gives its own filesystem, said in the log."""
    if fs == "none":
        return []
    driver = str((default.query(f"/1.0/storage-pools/{POOL}") or {}).get("driver", "?"))
    if driver in ("lvm", "ceph"):
        return [f"block.filesystem={fs}"]
    if driver == "zfs":
        return ["zfs.block_mode=true", f"block.filesystem={fs}"]
    log.info(f"note: Incus pool {POOL} on {default.where()} is {driver}: a data disk asked as {fs} is a "
             f"{driver} volume there (an lvm, zfs or ceph pool formats it as {fs})")
    return []
