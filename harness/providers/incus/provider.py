"""Incus system containers: nodes on an engine that places, limits, snapshots and moves them,
on this host or on any Incus remote (a cluster too).

Each lab is an Incus project `storlab-LAB` whose limits are the lab's budget; its nodes are
privileged containers from the golden image (imported once per remote, by its content key);
its networks are Incus bridges with no NAT, no routing, no DHCP and no firewall rules, with
the host address of the plan; its data disks are custom volumes. All of a lab's nodes are on
one cluster member (lab networks are local to a member): the first node is placed by Incus,
the others follow it. Nodes are reached through `incus exec NODE -- sshd -i` (an ssh
ProxyCommand), so the control channel needs no route to the lab networks and survives a link
fault. Every object carries ``user.storlab.lab`` (harness.providers.incus.client.OWNER_KEY).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness import locks, log, paths
from harness.backends.base import backends
from harness.errors import CleanupReport, HarnessError
from harness.plan.model import NodePlan, Plan
from harness.providers import hostdisks, image
from harness.providers.base import Provider
from harness.providers.capabilities import Capabilities
from harness.providers.image import role_services
from harness.providers.incus import client as incus
from harness.providers.incus import projects
from harness.providers.incus.client import HOME_KEY, OWNER_KEY, POOL, Budget, Incus
from harness.providers.incus.projects import (
    owned_instances,
    owned_networks,
    owned_volumes,
    owns_project,
    record_remote,
    remove_lab,
)
from harness.providers.incus.remotes import REMOTES
from harness.providers.lxc.config import CONTAINER_MASKS, FOOTPRINT, PIDS_MAX
from harness.run import run, succeed

#: inside a node: where a raw data disk's backing file lives (on its custom volume), and its name
#: under /dev/storlab (a symlink remade at every boot by systemd-tmpfiles)
RAW_DIR = "/var/lib/storlab-disks"
#: set on an instance once it has all its nics, disks and files (a killed `up` leaves it unset)
MADE_KEY = "user.storlab.made"
#: besides lxc's: binfmt_misc is the host kernel's, and an Incus container may not mount it
INCUS_MASKS = ["systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount"]


def image_alias(key: str | None = None) -> str:
    return f"storlab-golden-{key or image.content_key()}"


def need(plan: Plan) -> Budget:
    return incus.need_of(plan.nodes)


def budget(plan: Plan) -> Budget:
    """The lab's budget: the plan's (`--budget`), else exactly what its nodes need."""
    b = plan.budget
    return Budget(b.instances, b.memory_mib, b.cpus, b.disk_gib) if b else need(plan)




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


class IncusProvider(Provider):
    name = "incus"
    capabilities = Capabilities(
        name="incus", own_kernel=False, disk_devices=False, management_network=False, reserves_memory=False,
        freeze=True, snapshot=True, tool="incus", install_hint="run ci/setup-host.sh --incus", fast=False,
        isolation="userns", footprint=FOOTPRINT, remotes=REMOTES)  # its containers cost what LXC's do

    def __init__(self, plan: Plan, labdir: Path) -> None:
        super().__init__(plan, labdir)
        self.project = incus.project_of(self.lab)
        remote, self.group = incus.split_remote(plan.remote)  # the cluster group Incus places the lab in
        self.api = Incus(remote, self.project)
        self.default = Incus(remote)  # networks and images live in the default project
        self.diskdir = labdir / "disks"  # data disks of a lab on this host's Incus

    # -- before anything is made -----------------------------------------------------------
    @classmethod
    def reap_orphans(cls, live_labs: set[str], report: CleanupReport) -> None:
        projects.reap_orphans(live_labs, report)

    @classmethod
    def preflight(cls, plan: Plan) -> None:
        """Refuse a lab its budget cannot hold, with the numbers, before anything is created."""
        over = budget(plan).over(need(plan))
        if over:
            raise HarnessError(f"lab {plan.lab} does not fit its Incus project's limits:\n  " + "\n  ".join(over)
                               + "\n  raise --budget or make the topology's nodes smaller")

    def ssh_proxy(self, node: str) -> str:
        """The node's sshd over `incus exec` (stdin/stdout): no route to the lab networks needed."""
        return shlex.join(["incus", "exec", self.api.ref(node), "--project", self.project, "--force-noninteractive",
                           "--", "/usr/sbin/sshd", "-i"])

    def host_reach(self) -> str | None:
        """Why this host cannot reach the lab's networks (None: it can, through the bridges' host address)."""
        if self.plan.remote:
            return (f"the lab's networks are on a member of Incus remote {self.api.remote}, not on this host; "
                    f"run storlab on that member (with --on incus) to get the KVM host's pools")
        return None

    def exec_route(self) -> tuple[str, str] | None:
        return (self.api.remote, self.project) if self.plan.remote and self.api.remote else None

    def location(self) -> str | None:
        """The cluster member holding the lab (None: not clustered, or no node yet)."""
        for node in self.plan.nodes:
            inst = self.api.maybe(f"/1.0/instances/{node.name}")
            if inst:
                return incus.location(inst)
        return None

    # -- lifecycle ---------------------------------------------------------------------------
    def create(self, public_key: str) -> None:
        why = self.api.reachable()
        if why:
            raise HarnessError(why)
        self.preflight(self.plan)
        if not (image.rootfs().parent / "complete").exists():
            raise HarnessError(f"golden image missing at {image.rootfs().parent}; run `storlab image build`")
        if self.api.remote:
            record_remote(self.api.remote)
        alias = self._image()
        self._project()
        target = self._placement()
        self._networks()
        self._thaw_frozen()
        for node in self.plan.nodes:
            inst = self.api.maybe(f"/1.0/instances/{node.name}")
            if inst is not None and (inst.get("config") or {}).get(MADE_KEY) != "true":
                # an `up` killed while it made this node: its nics, disks or files may be missing
                log.info(f"{node.name}: remaking the instance a killed `up` left half-made")
                self.api.run("delete", "--force", self.api.ref(node.name), timeout=120)
                inst = None
            if inst is None:
                target = self._make_node(node, public_key, alias, target)
            elif self.plan.remote is None:
                for d in node.disks:  # a resumed lab after a host reboot: mount its disks again
                    hostdisks.prepare(self.diskdir, node, d)
        for node in self.plan.nodes:
            if not self.is_running(node.name):
                self.start(node.name)
        for node in self.plan.nodes if self.plan.remote else ():
            raw = [d for d in node.disks if d.filesystem == "none"]
            for d in raw:  # the raw disk's backing file, sparse, on its volume (a no-op when it is there)
                self.api.run("exec", self.api.ref(node.name), "--", "truncate", "-s", str(d.size),
                             f"{RAW_DIR}/{d.name}/disk.img", timeout=60)

    def _image(self) -> str:
        """The golden image on the remote, imported once per content key (alias storlab-golden-KEY)."""
        alias = image_alias()
        with locks.allocation(timeout=900):  # one import at a time (two labs starting together)
            if self.default.maybe(f"/1.0/images/aliases/{alias}") is not None:
                return alias
            root = image.rootfs()
            with log.step(f"import golden image into {self.default.where()} as {alias}"), \
                    tempfile.TemporaryDirectory(dir=paths.image_dir(), prefix=".incus-") as tmp:
                meta = Path(tmp) / "metadata.yaml"
                meta.write_text(f"architecture: x86_64\ncreation_date: {int(time.time())}\nproperties:\n"
                                f"  description: storlab golden image {image.content_key()}\n  os: debian\n"
                                f"  release: bookworm\n")
                with tarfile.open(Path(tmp) / "meta.tar", "w") as tf:
                    tf.add(meta, arcname="metadata.yaml")
                succeed(["tar", "-C", str(root), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf",
                         str(Path(tmp) / "rootfs.tar"), "."], timeout=900)
                self.default.run("image", "import", str(Path(tmp) / "meta.tar"), str(Path(tmp) / "rootfs.tar"),
                                 *([self.default.ref()] if self.default.remote else []), "--alias", alias,
                                 timeout=1800)
        return alias

    def _project(self) -> None:
        proj = self.default.maybe(f"/1.0/projects/{self.project}")
        cfg = {OWNER_KEY: self.lab, HOME_KEY: paths.home_id(), **budget(self.plan).project_config(),
               **restrictions(self.plan.untrusted, None if self.plan.remote else self.labdir / "disks")}
        if proj is None:
            feats = {"features.images": "false", "features.profiles": "true", "features.storage.volumes": "true",
                     "features.storage.buckets": "true", "features.networks": "false"}
            self.default.run("project", "create", self.default.ref(self.project),
                             *[a for k, v in {**feats, **cfg}.items() for a in ("-c", f"{k}={v}")], timeout=60)
            return
        if incus.owner(proj) != self.lab or incus.home_of(proj) not in (None, paths.home_id()):
            raise HarnessError(f"Incus project {self.project} on {self.default.where()} exists and is not lab "
                               f"{self.lab}'s of this storlab home ({OWNER_KEY}={incus.owner(proj)}, {HOME_KEY}="
                               f"{incus.home_of(proj)}; this home is {paths.home_id()}); storlab touches only what it made: "
                               f"rename the lab or remove that project")

    def _placement(self) -> str | None:
        """Where the next node goes: the member the lab is on when it has nodes already (a resumed
        `up`), else `@GROUP` when a cluster group was named, else None (Incus places the first)."""
        clustered = self.default.clustered()
        if self.group and not clustered:
            raise HarnessError(f"--on ...@{self.group}: Incus on {self.default.where()} is not a cluster "
                               f"(cluster groups exist only on clusters)")
        if not clustered:
            return None
        return self.location() or (f"@{self.group}" if self.group else None)

    def _networks(self) -> None:
        clustered = self.default.clustered()
        for net in self.plan.networks:
            have = self.default.maybe(f"/1.0/networks/{net.bridge}")
            if have is not None:
                if incus.owner(have) != self.lab:
                    raise HarnessError(f"Incus network {net.bridge} exists and is not lab {self.lab}'s; storlab "
                                       f"touches only what it made: rename the lab or remove that network")
                if have.get("status") == "Created":
                    continue
                if not clustered:  # an `up` killed while incusd made it: remade whole (a cluster's pending
                    # per-member definitions are completed by the create below)
                    log.info(f"network {net.bridge} is {have.get('status')}: remaking it")
                    self.default.run("network", "delete", self.default.ref(net.bridge), timeout=120)
            # no NAT, no route off the lab, no DHCP/DNS daemon, no firewall rules; the host keeps its address
            # on a remote the bridge gets no address: this host is not there, and every member's bridge
            # would hold the same one (the host-side address serves this host's libvirt pools only)
            address = "none" if self.plan.remote else f"{net.host_address}/{net.prefix}"
            cfg = {"ipv4.address": address, "ipv4.nat": "false", "ipv4.routing": "false",
                   "ipv4.firewall": "false", "ipv4.dhcp": "false", "ipv6.address": "none", "ipv6.nat": "false",
                   "ipv6.firewall": "false", "dns.mode": "none", OWNER_KEY: self.lab,
                   "user.storlab.network": net.name}
            if clustered:  # a cluster network is defined on every member first, then created everywhere
                for m in self.default.members():
                    self.default.run("network", "create", self.default.ref(net.bridge), "--type", "bridge",
                                     "--target", m.name, check=False, timeout=60)
            self.default.run("network", "create", self.default.ref(net.bridge), "--type", "bridge",
                             *[f"{k}={v}" for k, v in cfg.items()], timeout=120)

    def _stage(self, node: NodePlan, public_key: str) -> Path:
        """The files a node gets before its first boot: its key, name, hosts, addresses, masks."""
        d = self.labdir / "incus" / node.name
        shutil.rmtree(d, ignore_errors=True)
        ssh = d / "root/.ssh"
        ssh.mkdir(parents=True, mode=0o700)
        (ssh / "authorized_keys").write_text(public_key)
        (ssh / "authorized_keys").chmod(0o600)
        etc = d / "etc"
        etc.mkdir()
        (etc / "hostname").write_text(node.name + "\n")
        hosts = self.labdir / "files" / "nodes" / node.name / "etc/hosts"
        if hosts.exists():
            shutil.copy(hosts, etc / "hosts")
        (etc / "systemd/network").mkdir(parents=True)
        for ni, net in enumerate(self.plan.networks):
            (etc / f"systemd/network/10-storlab-eth{ni}.network").write_text(
                networkd(f"eth{ni}", node.macs[net.name], node.addresses[net.name], net.prefix))
        units = etc / "systemd/system"
        units.mkdir(parents=True)
        for unit in masks(self.plan.untrusted) + role_services():
            (units / unit).symlink_to("/dev/null")
        raw = [dd for dd in node.disks if dd.filesystem == "none"] if self.plan.remote else []
        if raw:
            (etc / "tmpfiles.d").mkdir()
            (etc / "tmpfiles.d/storlab-disks.conf").write_text(
                "d /dev/storlab 0755 root root -\n"
                + "".join(f"L+ /dev/storlab/{dd.name} - - - - {RAW_DIR}/{dd.name}/disk.img\n" for dd in raw))
        return d

    def _make_node(self, node: NodePlan, public_key: str, alias: str, target: str | None) -> str | None:
        """Create one node (stopped) with its nics, volumes and files; returns the member it is on."""
        cfg = {"limits.memory": f"{node.memory}MiB", "limits.cpu": str(node.cpus), "limits.processes": str(PIDS_MAX),
               OWNER_KEY: self.lab, "user.storlab.node": node.name, **isolation(self.plan.untrusted)}
        needs = sorted({c for b in backends() for r in node.roles for c in b.syscalls.get(r, ())})
        if needs and not self.plan.untrusted:
            # e.g. NFS-Ganesha's VFS FSAL: open_by_handle_at, which the default seccomp policy denies
            # (trusted labs only: trust.check refuses such roles for students before anything is made)
            cfg["raw.lxc"] = "lxc.seccomp.profile ="
        argv = ["init", self.default.ref(alias), self.api.ref(node.name), "--no-profiles", "-s", POOL,
                "-d", f"root,size={incus.ROOT_GIB}GiB", *[a for k, v in cfg.items() for a in ("-c", f"{k}={v}")]]
        if target:
            argv += ["--target", target]
        with log.step(f"{node.name}: create instance" + (f" on {target}" if target else "")):
            self.api.run(*argv, timeout=600)
        inst = self.api.query(f"/1.0/instances/{node.name}")
        target = incus.location(inst) or target
        for ni, net in enumerate(self.plan.networks):
            self.api.run("config", "device", "add", self.api.ref(node.name), f"eth{ni}", "nic", f"network={net.bridge}",
                         f"name=eth{ni}", f"hwaddr={node.macs[net.name]}",
                         f"host_name={paths.veth_name(self.lab, node.index, ni)}", timeout=60)
        for d in node.disks:
            if self.plan.remote is None:
                # on this host: the same disks as the lxc provider (formatted as the topology says), as devices
                src = hostdisks.prepare(self.diskdir, node, d)
                if src is not None:
                    path = f"/dev/storlab/{d.name}" if d.filesystem == "none" else str(d.mount)
                    if self.plan.untrusted:  # its root is an unprivileged host id: the disk is handed to it
                        # (Incus refuses shift=true on the restricted disk paths that keep the lab's
                        # certificate off other host paths)
                        uid, gid = root_ids(inst)
                        os.chown(src, uid, gid, follow_symlinks=False)
                    self.api.run("config", "device", "add", self.api.ref(node.name), f"disk-{d.name}", "disk",
                                 f"source={src}", f"path={path}", timeout=60)
                continue
            # on a remote: custom volumes, on the member the node is on
            vol = f"{node.name}-{d.name}"
            if self.api.maybe(f"/1.0/storage-pools/{POOL}/volumes/custom/{vol}") is None:
                argv = ["storage", "volume", "create", self.api.ref(POOL), vol, f"size={-(-d.size // incus.GIB)}GiB",
                        f"{OWNER_KEY}={self.lab}", *self._volume_filesystem(d.filesystem)]
                self.api.run(*argv, *(["--target", target] if target else []), timeout=120)
            path = d.mount if d.filesystem != "none" and d.mount else f"{RAW_DIR}/{d.name}"
            self.api.run("config", "device", "add", self.api.ref(node.name), f"disk-{d.name}", "disk", f"pool={POOL}",
                         f"source={vol}", f"path={path}", timeout=60)
        stage = self._stage(node, public_key)
        self.api.run("file", "push", "-r", "-p", str(stage / "etc"), str(stage / "root"),
                     self.api.ref(f"{node.name}/"), timeout=120)
        self.api.run("config", "set", self.api.ref(node.name), f"{MADE_KEY}=true", timeout=60)
        return target

    def _volume_filesystem(self, fs: str) -> list[str]:
        """The volume config that formats a custom volume as ``fs`` where the pool's driver can
        (block-backed drivers); a dir or btrfs pool gives its own filesystem, said in the log."""
        if fs == "none":
            return []
        driver = str((self.default.query(f"/1.0/storage-pools/{POOL}") or {}).get("driver", "?"))
        if driver in ("lvm", "ceph"):
            return [f"block.filesystem={fs}"]
        if driver == "zfs":
            return ["zfs.block_mode=true", f"block.filesystem={fs}"]
        log.info(f"note: Incus pool {POOL} on {self.default.where()} is {driver}: a data disk asked as {fs} is a "
                 f"{driver} volume there (an lvm, zfs or ceph pool formats it as {fs})")
        return []

    # -- power and faults ----------------------------------------------------------------------
    def _status(self, node: str) -> str:
        inst = self.api.maybe(f"/1.0/instances/{node}")
        return str(inst.get("status", "Stopped")) if inst else "Missing"

    def is_running(self, node: str) -> bool:
        return self._status(node) in ("Running", "Frozen")

    def start(self, node: str) -> None:
        self.powered_at[node] = time.monotonic()
        self.api.run("start", self.api.ref(node), timeout=120)

    def crash(self, node: str) -> None:
        self.api.run("stop", "--force", self.api.ref(node), timeout=60)

    def freeze(self, node: str) -> None:
        self.api.run("pause", self.api.ref(node), timeout=60)

    def thaw(self, node: str) -> None:
        self.api.run("start", self.api.ref(node), timeout=60)

    def _thaw_frozen(self) -> None:
        """A snapshot killed half-way leaves nodes paused: thaw what is ours."""
        for node in self.plan.nodes:
            if self._status(node.name) == "Frozen":
                log.info(f"{node.name}: thawing (left paused by an interrupted snapshot)")
                self.thaw(node.name)
        hostdisks.thaw_all(self.labdir)

    def set_link(self, node: str, network: str, up: bool) -> None:
        """From the host side where the lab's bridges are on this host (the node's veth), else from
        inside the node (the control channel is `incus exec`, not the lab network, either way)."""
        ni = [n.name for n in self.plan.networks].index(network)
        veth = paths.veth_name(self.lab, self.node(node).index, ni)
        if not self.plan.remote and Path(f"/sys/class/net/{veth}").exists():
            succeed(["ip", "link", "set", veth, "up" if up else "down"], timeout=15)
        else:
            self.api.run("exec", self.api.ref(node), "--", "ip", "link", "set", f"eth{ni}", "up" if up else "down",
                         timeout=30)

    def console_log(self, node: str) -> str:
        out = ""
        for what, argv in (("console", ["console", self.api.ref(node), "--show-log"]),
                           ("incus info", ["info", self.api.ref(node), "--show-log"])):
            r = self.api.run(*argv, check=False, timeout=30)
            out += f"--- {what}\n{(r.stdout or r.stderr)[-4000:]}\n"
        return out

    # -- snapshots -------------------------------------------------------------------------------
    def _volumes(self) -> list[str]:
        return sorted(v["name"] for v in owned_volumes(self.api, self.lab))

    def snapshot(self, dest: Path) -> None:
        """Incus snapshots of every node and data volume under one name, taken with the running
        nodes paused (crash-consistent across the lab), recorded in ``dest``/incus.json."""
        snap = f"storlab-{uuid.uuid4().hex[:12]}"
        running = [n.name for n in self.plan.nodes if self._status(n.name) == "Running"]
        dest.mkdir(parents=True)
        (dest / "incus.json").write_text(json.dumps({"snapshot": snap, "nodes": [n.name for n in self.plan.nodes],
                                                     "volumes": self._volumes()}))
        try:
            for n in running:
                self.freeze(n)
            # disks on this host (none on a remote): flushed and held still for the copy
            with hostdisks.held_still(self.diskdir, self.plan.nodes):
                for name in (n.name for n in self.plan.nodes):
                    self.api.run("snapshot", "create", self.api.ref(name), snap, timeout=600)
                for v in self._volumes():
                    self.api.run("storage", "volume", "snapshot", "create", self.api.ref(POOL), v, snap, timeout=600)
                if self.plan.remote is None:
                    hostdisks.save(self.diskdir, self.plan.nodes, dest / "disks")
        finally:
            for n in running:
                self.thaw(n)

    def restore(self, src: Path) -> None:
        self._thaw_frozen()
        meta = json.loads((src / "incus.json").read_text())
        snap = meta["snapshot"]
        for n in self.plan.nodes:
            if self._status(n.name) != "Stopped":
                self.api.run("stop", "--force", self.api.ref(n.name), timeout=60)
        for n in meta["nodes"]:
            self.api.run("snapshot", "restore", self.api.ref(n), snap, timeout=600)
        for v in meta["volumes"]:
            self.api.run("storage", "volume", "snapshot", "restore", self.api.ref(POOL), v, snap, timeout=600)
        if self.plan.remote is None:
            hostdisks.put_back(self.diskdir, self.plan.nodes, src / "disks")
            for node in self.plan.nodes:
                for d in node.disks:
                    hostdisks.prepare(self.diskdir, node, d)
        for n in self.plan.nodes:
            self.start(n.name)

    def drop_snapshot(self, path: Path) -> None:
        try:
            meta = json.loads((path / "incus.json").read_text())
        except (OSError, ValueError):
            return
        for n in meta.get("nodes", []):
            self.api.run("snapshot", "delete", self.api.ref(n), meta["snapshot"], check=False, timeout=120)
        for v in meta.get("volumes", []):
            self.api.run("storage", "volume", "snapshot", "delete", self.api.ref(POOL), v, meta["snapshot"],
                         check=False, timeout=120)

    # -- teardown --------------------------------------------------------------------------------
    def destroy(self) -> CleanupReport:
        hostdisks.thaw_all(self.labdir)  # an interrupted snapshot may have left disks fsfrozen
        rep = remove_lab(self.api.remote, self.lab)

        def attempt(what: str, argv: list[str]) -> None:
            r = run(argv, timeout=60)
            (rep.removed.append(what) if r.ok else rep.failed.append((what, r.stderr.strip()[-300:])))

        for m in hostdisks.mounts_under(self.labdir):
            attempt(f"mount {m}", ["umount", m])
        for loop in hostdisks.loops_of(self.diskdir):
            attempt(f"loop {loop}", ["losetup", "-d", loop])
        for d in (self.labdir / "incus", self.diskdir):
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
                rep.removed.append(f"dir {d}")
        return rep

    def leftovers(self) -> list[str]:
        if self.api.reachable() is not None:
            return []  # nothing can be listed; destroy() reported why
        left = []
        if owns_project(self.default, self.lab):
            left += [f"instance {self.project}/{i['name']}" for i in owned_instances(self.api, self.lab)]
            left += [f"volume {self.project}/{v}" for v in self._volumes()]
            left.append(f"project {self.project}")
        left += [f"network {n}" for n in owned_networks(self.default, self.lab)]
        left += [f"mount {m}" for m in hostdisks.mounts_under(self.labdir)]
        left += [f"loop {x}" for x in hostdisks.loops_of(self.diskdir)]
        left += [f"dir {d}" for d in (self.labdir / "incus", self.diskdir) if d.exists()]
        return left
