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
import time
import uuid
from pathlib import Path

from harness import log, paths
from harness.backends.base import backends
from harness.errors import CleanupReport, HarnessError
from harness.host import silence
from harness.plan.model import NodePlan, Plan
from harness.providers import hostdisks
from harness.providers.base import Provider
from harness.providers.capabilities import Capabilities
from harness.providers.incus import client as incus
from harness.providers.incus import projects, settings, setup
from harness.providers.incus.client import OWNER_KEY, POOL, Incus
from harness.providers.incus.projects import (
    owned_instances,
    owned_networks,
    owns_project,
    record_remote,
    remove_lab,
    volume_names,
)
from harness.providers.incus.remotes import REMOTES
from harness.providers.incus.settings import MADE_KEY, RAW_DIR, isolation, root_ids
from harness.providers.incus.setup import budget, need
from harness.providers.lxc.config import (
    CONTAINER_FAULTS,
    CONTAINER_FAULTS_REFUSED,
    CONTAINER_FAULTS_WITH_MODULE,
    FOOTPRINT,
    PIDS_MAX,
)
from harness.providers.stale import Stale
from harness.run import run, succeed


class IncusProvider(Provider):
    name = "incus"
    capabilities = Capabilities(
        name="incus", own_kernel=False, disk_devices=False, management_network=False, reserves_memory=False,
        freeze=True, snapshot=True, tool="incus", install_hint="run ci/setup-host.sh --incus", fast=False,
        isolation="userns", footprint=FOOTPRINT, remotes=REMOTES,  # its containers cost what LXC's do
        faults=CONTAINER_FAULTS, faults_with_module=CONTAINER_FAULTS_WITH_MODULE, faults_refused=CONTAINER_FAULTS_REFUSED,
        releases=("bookworm", "trixie"))

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
    def stale_cache(cls, keep: set[str], in_use: set[str]) -> list[Stale]:
        return setup.stale_images(keep)

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
        if self.api.remote:
            record_remote(self.api.remote)
        aliases = {r: setup.golden_image(self.default, r) for r in sorted({n.release for n in self.plan.nodes})}
        setup.ensure_project(self.default, self.plan, self.labdir)
        target = self._placement()
        setup.ensure_networks(self.default, self.plan)
        self._thaw_frozen()
        for node in self.plan.nodes:
            inst = self.api.maybe(f"/1.0/instances/{node.name}")
            if inst is not None and (inst.get("config") or {}).get(MADE_KEY) != "true":
                # an `up` killed while it made this node: its nics, disks or files may be missing
                log.info(f"{node.name}: remaking the instance a killed `up` left half-made")
                self.api.run("delete", "--force", self.api.ref(node.name), timeout=120)
                inst = None
            if inst is None:
                target = self._make_node(node, public_key, aliases[node.release], target)
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
                        f"{OWNER_KEY}={self.lab}", *settings.volume_filesystem(self.default, d.filesystem)]
                self.api.run(*argv, *(["--target", target] if target else []), timeout=120)
            path = d.mount if d.filesystem != "none" and d.mount else f"{RAW_DIR}/{d.name}"
            self.api.run("config", "device", "add", self.api.ref(node.name), f"disk-{d.name}", "disk", f"pool={POOL}",
                         f"source={vol}", f"path={path}", timeout=60)
        stage = settings.stage(self.plan, self.labdir, node, public_key)
        self.api.run("file", "push", "-r", "-p", str(stage / "etc"), str(stage / "root"),
                     self.api.ref(f"{node.name}/"), timeout=120)
        self.api.run("config", "set", self.api.ref(node.name), f"{MADE_KEY}=true", timeout=60)
        return target

    # -- power and faults ----------------------------------------------------------------------
    def is_running(self, node: str) -> bool:
        return self.api.status(node) in ("Running", "Frozen")

    def start(self, node: str) -> None:
        self.powered_at[node] = time.monotonic()
        self.api.run("start", self.api.ref(node), timeout=120)

    def crash(self, node: str) -> None:
        self.api.run("stop", "--force", self.api.ref(node), timeout=60)

    def freeze(self, node: str) -> None:
        self.api.run("pause", self.api.ref(node), timeout=60)

    def thaw(self, node: str) -> None:
        self.api.run("start", self.api.ref(node), timeout=60)

    def hang_ports(self, node: str) -> list[str]:
        """A hang pauses the node and silences the host ends of its nics on the lab's bridges: the
        names storlab gave them (host_name=), checked against Incus's state of the node (a port
        this would not silence is refused rather than half hung). Only where the lab's bridges are
        on this host (not a lab on a remote)."""
        if self.plan.remote:
            raise HarnessError(f"hang {node}: the lab's bridges are on a member of Incus remote {self.api.remote}, "
                               "not on this host (run storlab there, or use freeze)")
        given = [paths.veth_name(self.lab, self.plan.node(node).index, ni) for ni in range(len(self.plan.networks))]
        state = self.api.query(f"/1.0/instances/{node}/state") or {}
        for ni, want in enumerate(given):
            got = incus.host_name(state, f"eth{ni}")
            if got is not None and got != want:
                raise HarnessError(f"hang {node}: Incus reports host veth {got!r} for eth{ni}, storlab gave {want}")
        return given

    def _thaw_frozen(self) -> None:
        """A snapshot killed half-way leaves nodes paused, a killed run hung ones silenced: thaw
        what is ours, lift the silence."""
        for t in silence.tables_of(self.lab):
            log.info(f"removing nft table bridge {t}: left by a hang that was never undone")
            silence.unsilence(t)
        for node in self.plan.nodes:
            if self.api.status(node.name) == "Frozen":
                log.info(f"{node.name}: thawing (left paused by an interrupted snapshot)")
                self.thaw(node.name)
        hostdisks.thaw_all(self.labdir)

    def set_link(self, node: str, network: str, up: bool) -> None:
        """From the host side where the lab's bridges are on this host (the node's veth), else from
        inside the node (the control channel is `incus exec`, not the lab network, either way)."""
        ni = [n.name for n in self.plan.networks].index(network)
        veth = paths.veth_name(self.lab, self.plan.node(node).index, ni)
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
    def snapshot(self, dest: Path) -> None:
        """Incus snapshots of every node and data volume under one name, taken with the running
        nodes paused (crash-consistent across the lab), recorded in ``dest``/incus.json."""
        snap = f"storlab-{uuid.uuid4().hex[:12]}"
        running = [n.name for n in self.plan.nodes if self.api.status(n.name) == "Running"]
        dest.mkdir(parents=True)
        (dest / "incus.json").write_text(json.dumps({"snapshot": snap, "nodes": [n.name for n in self.plan.nodes],
                                                     "volumes": volume_names(self.api, self.lab)}))
        try:
            for n in running:
                self.freeze(n)
            # disks on this host (none on a remote): flushed and held still for the copy
            with hostdisks.held_still(self.diskdir, self.plan.nodes):
                for name in (n.name for n in self.plan.nodes):
                    self.api.run("snapshot", "create", self.api.ref(name), snap, timeout=600)
                for v in volume_names(self.api, self.lab):
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
            if self.api.status(n.name) != "Stopped":
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
        for t in silence.tables_of(self.lab):  # a node left hung
            attempt(f"nft table bridge {t}", ["nft", "delete", "table", "bridge", t])
        return rep

    def leftovers(self) -> list[str]:
        if self.api.reachable() is not None:
            return []  # nothing can be listed; destroy() reported why
        left = []
        if owns_project(self.default, self.lab):
            left += [f"instance {self.project}/{i['name']}" for i in owned_instances(self.api, self.lab)]
            left += [f"volume {self.project}/{v}" for v in volume_names(self.api, self.lab)]
            left.append(f"project {self.project}")
        left += [f"network {n}" for n in owned_networks(self.default, self.lab)]
        left += [f"mount {m}" for m in hostdisks.mounts_under(self.labdir)]
        left += [f"loop {x}" for x in hostdisks.loops_of(self.diskdir)]
        left += [f"dir {d}" for d in (self.labdir / "incus", self.diskdir) if d.exists()]
        left += [f"nft table bridge {t}" for t in silence.tables_of(self.lab)]
        return left
