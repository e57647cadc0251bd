"""vagrant-libvirt VMs: the faithful provider (each node runs its own Debian kernel).

create(): box (cached) -> storage pool and the lab's isolated libvirt networks, defined before
any machine -> the nodes, restored from saved states of the booted box (restored.py, with
libvirt-python: vagrant has no restore), or with `--cold-boot` (plan.cold_boot) booted by
`vagrant up --parallel` in the lab directory, watched: a node that shows no ssh within a bound
fails the step with the tail of its serial console instead of hanging.
Faults go straight to libvirt: crash = `virsh destroy`, link = domif-setlink, freeze = hang = suspend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from harness import log
from harness.errors import CleanupReport, HarnessError
from harness.plan.model import Plan
from harness.providers.base import Provider
from harness.providers.capabilities import FAULTS, Capabilities, Footprint
from harness.providers.stale import Stale
from harness.providers.vagrant import box, reap, savedstate
from harness.providers.vagrant import spec as vagrantspec
from harness.providers.vagrant.domains import LabLibvirt, remove_domain
from harness.providers.vagrant.process import file_cm, port_open, stop_orphan, tail, vagrant_class, vagrant_error
from harness.providers.vagrant.restored import Restorer
from harness.providers.vagrant.volumes import LabVolumes

VAGRANTFILE = Path(__file__).resolve().parent / "Vagrantfile"
#: a VM costs its memory plus the emulator (a 1 GiB TCG VM measured ~1.7 GiB RSS, KVM less) and its
#: root overlay, grown as it writes; restored from a saved state, a lab's nodes are ssh-ready with
#: their identity in ~10 s + ~2.5 s a node, before its roles (bench/bench_vmstart.py: 3 nodes 15 s
#: under TCG; booted cold, 100-130 s; see bench/RESULTS.md)
FOOTPRINT = Footprint(overhead_mib={"tcg": 700, "kvm": 200}, disk_mib=2048, up_s=(10.0, 2.5))


def _attempt(rep: CleanupReport, what: str, fn: Callable[[], Any]) -> None:
    try:
        fn()
        rep.removed.append(what)
    except Exception as exc:  # keep going: report every item that could not be removed
        rep.failed.append((what, str(exc).strip()[-600:]))


class VagrantProvider(Provider):
    name = "vagrant"
    capabilities = Capabilities(
        name="vagrant", own_kernel=True, disk_devices=True, management_network=True, reserves_memory=True,
        freeze=True, snapshot=True, tool="vagrant", install_hint="run ci/setup-host.sh --vm", fast=False,
        isolation="vm", footprint=FOOTPRINT, faults=frozenset(FAULTS),  # a kernel, disks and a clock of its own
        releases=("bookworm", "trixie"))

    def __init__(self, plan: Plan, labdir: Path) -> None:
        super().__init__(plan, labdir)
        self.logs = labdir / "logs"
        #: the lab's domains and networks in libvirt, and its volumes
        self.libvirt = LabLibvirt(plan, labdir)
        self.volumes = LabVolumes(self.libvirt)

    @classmethod
    def reap_orphans(cls, live_labs: set[str], report: CleanupReport) -> None:
        reap.reap_orphans(live_labs, report)

    @classmethod
    def stale_cache(cls, keep: set[str], in_use: set[str]) -> list[Stale]:
        if shutil.which("vagrant") is None:
            raise HarnessError("vagrant is not installed (no boxes)")
        return box.stale(keep) + savedstate.stale(in_use)

    def conflicts(self) -> list[str]:
        """Domains, networks and volumes with this lab's names that are not this lab's."""
        return self.libvirt.conflicts() + self.volumes.conflicts()

    # -- create --------------------------------------------------------------------------
    def create(self, public_key: str) -> None:
        foreign = self.conflicts()
        if foreign:  # before vagrant makes anything: it would fail half-way, or take them over
            raise HarnessError(f"lab {self.lab}: libvirt already has objects with this lab's names that are not its "
                               "own (storlab leaves them alone; remove or rename them):\n  " + "\n  ".join(foreign))
        if shutil.which("vagrant") is None:
            raise HarnessError("vagrant is not installed; run ci/setup-host.sh --vm, or use provider: lxc")
        with log.step("vagrant box"):
            boxes = {r: box.build(release=r) for r in sorted({n.release for n in self.plan.nodes})}
        spec = vagrantspec.spec(self.plan, self.labdir, boxes)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.labdir / "vagrant.json").write_text(json.dumps(spec, indent=2) + "\n")
        (self.labdir / "Vagrantfile").write_text(vagrantspec.lab_vagrantfile(VAGRANTFILE))
        keys = self.labdir / "authorized_keys"
        keys.write_text(public_key if public_key.endswith("\n") else public_key + "\n")
        os.chmod(keys, 0o600)
        with log.step("libvirt: storage pool and isolated networks"):
            self.libvirt.ensure_pool()
            for name, xml in vagrantspec.networks(self.plan, spec).items():
                self.libvirt.ensure_network(name, xml)
        self.volumes.claim()
        try:
            if self.plan.cold_boot:
                self._up(spec)
            else:
                self._restore(spec, boxes, public_key)
        finally:  # also after a failed up: its domains' disks are the lab's to remove
            try:
                self.volumes.record_used()
            except Exception as exc:  # never hides why `up` failed; the teardown records them again
                log.info(f"could not record the lab's volumes: {exc}")

    def _restore(self, spec: dict[str, Any], boxes: Mapping[str, box.Box], public_key: str) -> None:
        r = Restorer(self.libvirt, spec, boxes, self.logs)
        uuids = r.restore_all(self.powered_at)
        r.identities(uuids, public_key, self.powered_at)

    def _up(self, spec: dict[str, Any]) -> None:
        logf = self.logs / "vagrant-up.log"
        bound = vagrantspec.boot_bound(self.plan)
        nodes = [m["name"] for m in spec["machines"]]
        powered: dict[str, float] = {}
        ssh_seen: dict[str, float] = {}
        t0 = time.monotonic()

        def watch() -> None:
            now = time.monotonic()
            for m in spec["machines"]:
                name = m["name"]
                if name in ssh_seen:
                    continue
                dom = self.libvirt.domain(name)
                active = bool(dom is not None and dom.isActive())
                if active and name not in powered:
                    powered[name] = self.powered_at[name] = now
                    log.info(f"{name}: powered on ({spec['driver']}) after {now - t0:.0f}s")
                elif not active and name in powered:
                    raise HarnessError(f"{name} ({m['domain']}) powered off during boot\n"
                                       f"--- serial console (tail)\n{tail(Path(m['console_log']))}")
                if active and (port_open(m["mgmt_ip"]) or port_open(self.plan.node(name).address)):
                    ssh_seen[name] = now
                    log.info(f"{name}: ssh port open {now - powered[name]:.0f}s after power-on")
                elif name in powered and now - powered[name] > bound:
                    hint = ("; guests hang on a nested (PVM) /dev/kvm: try STORLAB_ACCEL=tcg"
                            if spec["driver"] == "kvm" else "")
                    raise HarnessError(
                        f"{name} ({m['domain']}): no ssh {bound}s after power-on (accel {self.plan.accel}, "
                        f"libvirt driver {spec['driver']}){hint}\n--- serial console {m['console_log']} (tail)\n"
                        f"{tail(Path(m['console_log']))}")

        with open(logf, "a") as fh:
            fh.write(f"\n===== {time.strftime('%F %T')} vagrant up --parallel ({', '.join(nodes)})\n")
        v = vagrant_class()(root=str(self.labdir), env=box.vagrant_env(),
                             out_cm=file_cm(logf), err_cm=file_cm(logf))
        v.watch = watch
        v.pidfile = self.logs / "vagrant.pid"
        # box upload into the pool (first use) + boot of every node + provisioning, with room to spare
        v.timeout = 600 + bound * len(nodes)
        with log.step(f"vagrant up --parallel {', '.join(nodes)} (log: {logf})"):
            try:
                v._call_vagrant_command(["up", "--parallel", "--provider=libvirt", "--no-tty"])
            except subprocess.CalledProcessError as exc:
                consoles = "".join(f"\n--- {m['name']} serial console (tail)\n{tail(Path(m['console_log']), 1500)}"
                                   for m in spec["machines"] if m["name"] not in ssh_seen)
                raise HarnessError(f"vagrant up failed (exit {exc.returncode}); log {logf}:\n"
                                   f"{vagrant_error(tail(logf, 200_000))[-2500:]}{consoles}") from None
            except HarnessError as exc:
                raise HarnessError(f"{exc}\n--- vagrant log {logf} (last lines)\n"
                                   f"{vagrant_error(tail(logf, 200_000))[-1500:]}") from None

    # -- power and faults ----------------------------------------------------------------
    def is_running(self, node: str) -> bool:
        dom = self.libvirt.domain(node)
        return bool(dom is not None and dom.isActive())

    def _need(self, node: str) -> Any:
        dom = self.libvirt.domain(node)
        if dom is None:
            raise HarnessError(f"{self.libvirt.domain_name(node)} does not exist (lab {self.lab} not up?)")
        return dom

    def boot_floor(self) -> float:
        return float(vagrantspec.boot_bound(self.plan))

    def start(self, node: str) -> None:
        dom = self._need(node)
        if not dom.isActive():
            self.powered_at[node] = time.monotonic()
            dom.create()

    def crash(self, node: str) -> None:
        dom = self._need(node)
        if dom.isActive():
            dom.destroy()  # = virsh destroy: hard power-off

    def freeze(self, node: str) -> None:
        self._need(node).suspend()

    def thaw(self, node: str) -> None:
        self._need(node).resume()

    def hang_ports(self, node: str) -> None:
        """None: a suspended VM is hung already (qemu stops, its NICs answer nothing), so a hang is
        a freeze. Frames sent to it wait in its tap's queue (up to txqueuelen) and reach it when it
        resumes, as a real NIC's receive ring would hold them for a machine that comes back."""
        return None

    # -- snapshots: internal qcow2 snapshots, memory included ------------------------------
    def snapshot(self, dest: Path) -> None:
        """Every domain paused together, then an internal snapshot of each (all its qcow2 disks
        and its memory), then resumed: a revert resumes the nodes where they were, no boot."""
        token = f"storlab-{os.urandom(6).hex()}"
        doms = [self._need(n.name) for n in self.plan.nodes]
        paused = [d for d in doms if d.isActive() and d.info()[0] == 1]  # VIR_DOMAIN_RUNNING
        made: list[Any] = []
        try:
            for d in paused:
                d.suspend()
            for d in doms:
                made.append(d.snapshotCreateXML(f"<domainsnapshot><name>{token}</name><description>storlab lab "
                                                f"{self.lab}</description></domainsnapshot>", 0))
        except Exception:
            for snap in made:
                snap.delete(0)
            raise
        finally:
            for d in paused:
                d.resume()
        dest.mkdir(parents=True)
        (dest / "libvirt-snapshot").write_text(token + "\n")

    def restore(self, src: Path) -> None:
        import libvirt
        token = (src / "libvirt-snapshot").read_text().strip()
        for n in self.plan.nodes:
            dom = self._need(n.name)
            self.powered_at[n.name] = time.monotonic()
            dom.revertToSnapshot(dom.snapshotLookupByName(token), libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)

    def drop_snapshot(self, path: Path) -> None:
        import libvirt
        f = path / "libvirt-snapshot"
        if not f.exists():
            return
        token = f.read_text().strip()
        for n in self.plan.nodes:
            dom = self.libvirt.domain(n.name)
            if dom is None:
                continue
            try:
                dom.snapshotLookupByName(token).delete(0)
            except libvirt.libvirtError:
                continue

    def set_link(self, node: str, network: str, up: bool) -> None:
        import libvirt
        dom = self._need(node)
        mac = self.plan.node(node).macs[network].lower()
        for iface in ET.fromstring(dom.XMLDesc(0)).findall("./devices/interface"):
            m = iface.find("mac")
            if m is not None and m.get("address", "").lower() == mac:
                link = iface.find("link")
                if link is None:
                    link = ET.SubElement(iface, "link")
                link.set("state", "up" if up else "down")
                dom.updateDeviceFlags(ET.tostring(iface, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
                return
        raise HarnessError(f"{self.libvirt.domain_name(node)} has no interface with MAC {mac} (network {network})")

    def console_log(self, node: str) -> str:
        out = f"--- {node}.console.log (serial ttyS0)\n{tail(self.logs / f'{node}.console.log', 4000)}\n"
        up = self.logs / "vagrant-up.log"
        if up.exists():
            out += f"--- vagrant-up.log (last lines)\n{vagrant_error(tail(up, 200_000))[-3000:]}\n"
        return out

    # -- teardown ------------------------------------------------------------------------
    def destroy(self) -> CleanupReport:
        rep = CleanupReport()
        stopped = stop_orphan(self.logs / "vagrant.pid")
        if stopped:
            log.info(f"stopped {stopped} left running by an interrupted `up`")
            rep.removed.append(stopped)
        try:
            self.volumes.record_used()  # before vagrant removes the domains that show which volumes are the lab's
        except Exception as exc:  # libvirt away: what was recorded during `up` still holds
            log.info(f"could not record the lab's volumes before its teardown: {exc}")
        try:
            self.libvirt.drop_all_snapshots()
        except Exception as exc:  # undefine below still removes their metadata
            log.info(f"could not delete the lab's VM snapshots first: {exc}")
        if (self.labdir / ".vagrant").is_dir() and (self.labdir / "vagrant.json").exists() and shutil.which("vagrant"):
            with log.step("vagrant destroy -f"):
                _attempt(rep, "vagrant destroy", self._vagrant_destroy)
        self._remove_from_libvirt(rep)  # whatever vagrant left (or never knew about)
        for f in (".vagrant", "Vagrantfile", "vagrant.json", "authorized_keys"):
            p = self.labdir / f
            if p.is_dir():
                _attempt(rep, f"dir {p}", partial(shutil.rmtree, p))
            elif p.exists():
                _attempt(rep, f"file {p}", p.unlink)
        return rep

    def _vagrant_destroy(self) -> None:
        logf = self.logs / "vagrant-destroy.log"
        self.logs.mkdir(parents=True, exist_ok=True)
        v = vagrant_class()(root=str(self.labdir), env=box.vagrant_env(), out_cm=file_cm(logf), err_cm=file_cm(logf))
        v.timeout = 300
        try:
            v._call_vagrant_command(["destroy", "-f", "--no-tty"])
        except subprocess.CalledProcessError as exc:
            raise HarnessError(f"exit {exc.returncode}: {vagrant_error(tail(logf, 200_000))[-800:]}") from None

    def _remove_from_libvirt(self, rep: CleanupReport) -> None:
        """The lab's domains, volumes and networks, straight from libvirt."""
        import libvirt
        try:
            domains, networks = self.libvirt.domains(), self.libvirt.networks()
        except Exception as exc:  # libvirtd down: report, do not raise from a teardown
            rep.failed.append(("libvirt", str(exc)))
            return
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for dom in domains:
            _attempt(rep, f"domain {dom.name()}", partial(remove_domain, dom, flags))
        try:
            volumes = self.volumes.all()
        except Exception as exc:  # the pool is broken: networks can still go
            rep.failed.append((f"pool {box.STORAGE_POOL}", str(exc)))
            volumes = []
        for vol in volumes:
            _attempt(rep, f"volume {box.STORAGE_POOL}/{vol.name()}", partial(vol.delete, 0))
        if not any(what.startswith(("volume ", "pool ")) for what, _ in rep.failed):
            self.volumes.forget()  # kept while a volume of the lab is left
        for net in networks:
            def remove_network(net: Any = net) -> None:
                if net.isActive():
                    net.destroy()
                net.undefine()
            _attempt(rep, f"network {net.name()}", remove_network)

    def leftovers(self) -> list[str]:
        try:
            left = [f"domain {d.name()}" for d in self.libvirt.domains()]
            left += [f"network {n.name()}" for n in self.libvirt.networks()]
            left += [f"volume {box.STORAGE_POOL}/{v.name()}" for v in self.volumes.all()]
        except Exception as exc:  # unknown is not empty: report it as a leftover
            return [f"libvirt unreachable: {exc}"]
        if (self.labdir / ".vagrant").is_dir():
            left.append(f"dir {self.labdir / '.vagrant'}")
        return left
