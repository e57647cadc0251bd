"""LXC system containers running real systemd: the fast provider for hosts without usable KVM.

Each lab gets one bridge per network (no forwarding, no NAT), each node an overlay clone
of the golden rootfs, a fixed MAC and address, /dev/fuse, and its disks as file-backed
filesystems mounted on the host and bound into the container.
"""

from __future__ import annotations

import functools
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import log, paths
from harness.backends.base import backends
from harness.errors import CleanupReport, HarnessError
from harness.host import silence
from harness.plan.model import NodePlan, Plan
from harness.providers import hostdisks, image, nodefs
from harness.providers.base import Provider
from harness.providers.capabilities import Capabilities
from harness.providers.image import role_services
from harness.providers.lxc import freezer, links, reap, snapshots
from harness.providers.lxc.config import (
    CONTAINER_FAULTS,
    CONTAINER_FAULTS_REFUSED,
    CONTAINER_FAULTS_WITH_MODULE,
    CONTAINER_MASKS,
    FOOTPRINT,
    limits,
)
from harness.providers.lxc.reap import OWNER_FILE, lxcpath, owner_of
from harness.run import run, succeed


class LxcProvider(Provider):
    name = "lxc"
    capabilities = Capabilities(
        name="lxc", own_kernel=False, disk_devices=False, management_network=False, reserves_memory=False,
        freeze=True, snapshot=True, tool="lxc-start", install_hint="run ci/setup-host.sh", fast=True,
        footprint=FOOTPRINT, disk_budget=True, faults=CONTAINER_FAULTS, faults_with_module=CONTAINER_FAULTS_WITH_MODULE,
        faults_refused=CONTAINER_FAULTS_REFUSED, releases=("bookworm", "trixie"))

    def __init__(self, plan: Plan, labdir: Path) -> None:
        super().__init__(plan, labdir)
        self.lxcpath = lxcpath()
        self.nodesdir = labdir / "lxc"
        self.diskdir = labdir / "disks"

    @classmethod
    def reap_orphans(cls, live_labs: set[str], report: CleanupReport) -> None:
        reap.reap_orphans(live_labs, report)

    def cname(self, node: str) -> str:
        """The container's name: the plan's (a lab keeps the names it was made with), else the name
        this storlab gives (a container of the lab no longer in its plan)."""
        try:
            return self.plan.node(node).object
        except KeyError:
            return paths.obj_name(self.lab, node)

    def _lxc(self, tool: str, node: str, *args: str, timeout: float = 60, check: bool = False) -> Any:
        return run([tool, "-P", str(self.lxcpath), "-n", self.cname(node), *args], timeout=timeout, check=check)

    # -- disks ---------------------------------------------------------------------------
    def _disks(self, node: NodePlan) -> list[str]:
        entries = []
        if self.plan.disk_budget_mib and node.disks:
            hostdisks.hold_in_budget(self.labdir, self.diskdir, self.plan.disk_budget_mib)
        for d in node.disks:
            src = hostdisks.prepare(self.diskdir, node, d)
            if src is None:
                continue
            if d.filesystem == "none":
                entries.append(f"lxc.mount.entry = {src} dev/storlab/{d.name} none bind,create=file 0 0")
            elif d.mount:
                entries.append(f"lxc.mount.entry = {src} {d.mount.lstrip('/')} none bind,create=dir 0 0")
        return entries

    # -- nodes -----------------------------------------------------------------------------
    def _write_node(self, node: NodePlan, public_key: str, lower: Path) -> None:
        name = node.name
        upper = self.nodesdir / name / "upper"
        work = self.nodesdir / name / "work"
        # the node's files are root's inside it: no other host user may reach them (a setuid
        # program a node puts in its root filesystem is not runnable from the host)
        paths.private_dir(self.nodesdir)
        for d in (upper, work):
            d.mkdir(parents=True, exist_ok=True)
        # written from the host into what root in the node controls: never through a link it planted
        nodefs.write(upper, "root/.ssh/authorized_keys", public_key, mode=0o600, dir_mode=0o700)
        nodefs.write(upper, "etc/hostname", name + "\n")
        hosts = self.labdir / "files" / "nodes" / name / "etc/hosts"
        if hosts.exists():
            nodefs.write(upper, "etc/hosts", hosts.read_text())
        nodefs.mask(upper, "etc/systemd/system", CONTAINER_MASKS + role_services())
        cdir = self.lxcpath / self.cname(name)
        owner = owner_of(cdir)
        if owner not in (None, self.lab):
            raise HarnessError(f"container {cdir.name} belongs to lab {owner}; rename lab {self.lab} or node {name}")
        if owner is None and cdir.exists() and any(cdir.iterdir()):
            raise HarnessError(f"container {cdir.name} exists and was not made by storlab for lab {self.lab}; "
                               f"storlab touches only what it made: rename the lab or the node")
        cdir.mkdir(parents=True, exist_ok=True)
        (cdir / OWNER_FILE).write_text(self.lab + "\n")  # ownership: `down`/`reap` go by this, not by name
        logs = self.labdir / "logs"
        logs.mkdir(exist_ok=True)
        lines = [
            f"# storlab lab {self.lab}, node {name}",
            "lxc.include = /usr/share/lxc/config/common.conf",
            "lxc.arch = linux64",
            f"lxc.uts.name = {name}",
            f"lxc.rootfs.path = overlay:{lower}:{upper}",
            # privileged and unconfined: root in a node is root on the host, so LXC holds trusted labs
            # only (trust.py refuses students here; README "Who is root where")
            "lxc.apparmor.profile = unconfined",
            "lxc.autodev = 1",
            f"lxc.log.file = {logs / (name + '.lxc.log')}",
            "lxc.log.level = WARN",
            f"lxc.console.logfile = {logs / (name + '.console.log')}",
            "lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file,optional 0 0",
        ]
        for ni, net in enumerate(self.plan.networks):
            k = f"lxc.net.{ni}"
            lines += [f"{k}.type = veth", f"{k}.link = {net.bridge}", f"{k}.flags = up", f"{k}.name = eth{ni}",
                      f"{k}.hwaddr = {node.macs[net.name]}",
                      f"{k}.veth.pair = {paths.veth_name(self.lab, node.index, ni)}",
                      f"{k}.ipv4.address = {node.addresses[net.name]}/{net.prefix}"]
        needs = sorted({c for b in backends() for r in node.roles for c in b.syscalls.get(r, ())})
        if needs:  # e.g. NFS-Ganesha's VFS FSAL: open_by_handle_at, which LXC's default seccomp denies
            lines += [f"# storlab: unfiltered for {', '.join(needs)}", "lxc.seccomp.profile ="]
        lines += limits(node.memory, node.cpus)
        lines += self._disks(node)
        # one key = value per line: a value with a line break would add keys (hooks run as root)
        bad = [line for line in lines if "\n" in line or "\r" in line]
        if bad:
            raise HarnessError(f"{self.cname(name)}: refusing an LXC config line with a line break: {bad[0]!r}")
        (cdir / "config").write_text("\n".join(lines) + "\n")

    def create(self, public_key: str) -> None:
        lowers = {r: image.rootfs(image.key_for(r)) for r in {n.release for n in self.plan.nodes}}
        for release, lower in lowers.items():
            if not (lower.parent / "complete").exists():
                raise HarnessError(f"golden image of {release} missing at {lower.parent}; run `storlab image build`")
        if shutil.which("lxc-start") is None:
            raise HarnessError("lxc is not installed; run ci/setup-host.sh")
        links.make_bridges(self.plan)
        self._undo_interrupted_snapshot()
        for t in silence.tables_of(self.lab):  # a run killed while a node was hung: it is not hung now
            log.info(f"removing nft table bridge {t}: left by a hang that was never undone")
            silence.unsilence(t)
        for node in self.plan.nodes:
            if not self.is_running(node.name):
                self._write_node(node, public_key, lowers[node.release])
        for node in self.plan.nodes:
            if not self.is_running(node.name):
                self.start(node.name)

    def is_running(self, node: str) -> bool:
        if not (self.lxcpath / self.cname(node) / "config").exists():
            return False
        r = self._lxc("lxc-info", node, "-s", "-H", timeout=15)
        return r.ok and r.stdout.strip() in ("RUNNING", "FROZEN")

    def start(self, node: str) -> None:
        self.powered_at[node] = time.monotonic()
        r = self._lxc("lxc-start", node, "-d", timeout=60)
        if not r.ok:
            logf = self.labdir / "logs" / f"{node}.lxc.log"
            tail = logf.read_text()[-1500:] if logf.exists() else ""
            raise HarnessError(f"lxc-start {self.cname(node)} failed: {r.stderr.strip()}\n{tail}")

    def crash(self, node: str) -> None:
        self._lxc("lxc-stop", node, "-k", timeout=30, check=True)

    def freeze(self, node: str) -> None:
        self.freeze_all([node])

    def thaw(self, node: str) -> None:
        self.thaw_all([node])

    def thaw_all(self, nodes: list[str]) -> None:
        freezer.thaw_all(self._lxc, nodes)

    def freeze_all(self, nodes: list[str], timeout: float = 30) -> None:
        freezer.freeze_all(self._lxc, nodes, timeout)

    def hang_ports(self, node: str) -> list[str]:
        """A hang freezes the node and silences its veths' host ends on the lab's bridges."""
        return [paths.veth_name(self.lab, self.plan.node(node).index, ni) for ni in range(len(self.plan.networks))]

    def set_link(self, node: str, network: str, up: bool) -> None:
        ni = [n.name for n in self.plan.networks].index(network)
        veth = paths.veth_name(self.lab, self.plan.node(node).index, ni)
        succeed(["ip", "link", "set", veth, "up" if up else "down"], timeout=15)

    def console_log(self, node: str) -> str:
        out = ""
        for suffix in (".console.log", ".lxc.log"):
            f = self.labdir / "logs" / f"{node}{suffix}"
            if f.exists():
                out += f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}\n"
        return out

    # -- snapshots -------------------------------------------------------------------------
    def _state(self, node: str) -> str:
        r = self._lxc("lxc-info", node, "-s", "-H", timeout=15)
        return r.stdout.strip() if r.ok else "STOPPED"

    def snapshot(self, dest: Path) -> None:
        """Crash-consistent and online: every running node frozen (cgroup freezer) and every
        mounted data disk fsfrozen (flushed to its image) for the copy, then thawed; a node's
        root file system is its overlay upper layer (the golden image below is shared and
        read-only), its disks are sparse image files."""
        frozen: list[str] = []
        try:
            frozen = [node.name for node in self.plan.nodes if self._state(node.name) == "RUNNING"]
            self.freeze_all(frozen)
            with hostdisks.held_still(self.diskdir, self.plan.nodes):
                (dest / "disks").mkdir(parents=True)
                for node in self.plan.nodes:
                    snapshots.copy_tree(self.nodesdir / node.name / "upper", dest / "nodes" / node.name / "upper")
                hostdisks.save(self.diskdir, self.plan.nodes, dest / "disks")
        finally:
            self.thaw_all(frozen)

    def _undo_interrupted_snapshot(self, names: set[str] | None = None) -> None:
        """A snapshot killed half-way (SIGKILL skips its `finally`) leaves nodes frozen and data
        disks fsfrozen: such a lab answers no ssh and cannot be unmounted. Thaw what is ours."""
        nodes = sorted(names or {n.name for n in self.plan.nodes})
        # read from the freezer itself: lxc-info says RUNNING for a container frozen through it
        frozen = [n for n in nodes if (self.lxcpath / self.cname(n) / "config").exists()
                  and (c := freezer.control(self._lxc, n)) is not None and freezer.frozen(c)]
        if frozen:
            log.info(f"thawing {', '.join(frozen)}: left frozen by an interrupted snapshot")
            self.thaw_all(frozen)
        hostdisks.thaw_all(self.labdir)

    def restore(self, src: Path) -> None:
        self._undo_interrupted_snapshot()
        for node in self.plan.nodes:
            if self._state(node.name) != "STOPPED":
                self._lxc("lxc-stop", node.name, "-k", timeout=30, check=True)
        hostdisks.put_back(self.diskdir, self.plan.nodes, src / "disks")
        for node in self.plan.nodes:
            # into a new directory, then swapped in: never written over what root in the node left
            # there (a link it planted would take the copy onto the host)
            upper = self.nodesdir / node.name / "upper"
            fresh, old = upper.with_name("upper.restoring"), upper.with_name("upper.old")
            for d in (fresh, old):
                shutil.rmtree(d, ignore_errors=True)
            snapshots.copy_tree(src / "nodes" / node.name / "upper", fresh)
            if upper.exists():
                upper.rename(old)
            fresh.rename(upper)
            shutil.rmtree(old, ignore_errors=True)  # rmtree removes links, never what they point to
            work = self.nodesdir / node.name / "work"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
        for node in self.plan.nodes:
            self._disks(node)  # mounts the data disks again
            self.start(node.name)

    # -- teardown --------------------------------------------------------------------------
    def destroy(self) -> CleanupReport:
        rep = CleanupReport()

        def attempt(what: str, fn: Any) -> None:
            try:
                fn()
                rep.removed.append(what)
            except Exception as exc:  # keep going: report every item that could not be removed
                rep.failed.append((what, str(exc)))

        names = {n.name for n in self.plan.nodes} | self._containers_on_disk()
        self._undo_interrupted_snapshot(names)

        def stop(node: str, cdir: Path) -> None:
            if self.is_running(node):
                self._lxc("lxc-stop", node, "-k", timeout=60, check=True)
            shutil.rmtree(cdir)
        ours = [(node, cdir) for node in sorted(names)
                if (cdir := self.lxcpath / self.cname(node)).exists()
                and owner_of(cdir) == self.lab]  # same name, another lab's: not ours to stop
        # stopped at once (lxc-stop -k takes 0.6 s a container here, most of it waiting for the kill)
        with ThreadPoolExecutor(max_workers=max(1, len(ours)), thread_name_prefix="storlab-stop") as pool:
            for node, cdir in ours:
                pool.submit(attempt, f"container {self.cname(node)}", functools.partial(stop, node, cdir))
        for mnt in hostdisks.mounts_under(self.labdir):
            attempt(f"mount {mnt}", lambda mnt=mnt: succeed(["umount", mnt], timeout=60))
        for loop in hostdisks.loops_of(self.diskdir):
            attempt(f"loop {loop}", lambda loop=loop: succeed(["losetup", "-d", loop], timeout=30))
        for br in links.lab_links(self.plan):
            attempt(f"link {br}", lambda br=br: succeed(["ip", "link", "del", br], timeout=15))
        for t in silence.tables_of(self.lab):  # a node left hung
            attempt(f"nft table bridge {t}", lambda t=t: silence.unsilence(t))
        for d in (self.nodesdir, self.diskdir):
            if d.exists():
                attempt(f"dir {d}", lambda d=d: shutil.rmtree(d))
        return rep

    def _containers_on_disk(self) -> set[str]:
        """This lab's containers, by node: named like the lab's objects (storlab-LAB_NODE, or an older
        storlab's storlab-LAB-NODE, which lab 'a-b' matches too for lab 'a') and marked as this lab's."""
        if not self.lxcpath.is_dir():
            return set()
        planned = {n.object: n.name for n in self.plan.nodes}
        out = set()
        for p in self.lxcpath.iterdir():
            if paths.named_for(self.lab, p.name) and owner_of(p) == self.lab:
                out.add(planned.get(p.name) or p.name.removeprefix(paths.obj_prefix(self.lab))
                        .removeprefix(paths.legacy_obj_name(self.lab, "")))
        return out

    def leftovers(self) -> list[str]:
        left = [f"container {self.cname(n)}" for n in self._containers_on_disk()]
        left += [f"mount {m}" for m in hostdisks.mounts_under(self.labdir)]
        left += [f"loop {x}" for x in hostdisks.loops_of(self.diskdir)]
        left += [f"link {x}" for x in links.lab_links(self.plan)]
        left += [f"nft table bridge {t}" for t in silence.tables_of(self.lab)]
        left += [f"dir {d}" for d in (self.nodesdir, self.diskdir) if d.exists()]
        return left
