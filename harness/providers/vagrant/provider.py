"""vagrant-libvirt VMs: the faithful provider (each node runs its own Debian kernel).

create(): box (cached) -> storage pool and the lab's isolated libvirt networks, defined before
any machine -> `vagrant up --parallel` in the lab directory, watched: a node that shows no ssh
within a bound fails the step with the tail of its serial console instead of hanging.
Faults go straight to libvirt: crash = `virsh destroy`, link = domif-setlink, freeze = suspend.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness import log, paths
from harness.errors import CleanupReport, HarnessError, WaitTimeout
from harness.host.virt import connect
from harness.plan.model import Plan
from harness.providers.base import Provider
from harness.providers.capabilities import Capabilities, Footprint
from harness.providers.vagrant import box, reap
from harness.providers.vagrant import spec as vagrantspec
from harness.run import wait_until

POLL = 2.0
# the data-driven Vagrantfile every lab directory loads (package data; the top-level Vagrantfile links here)
VAGRANTFILE = Path(__file__).resolve().parent / "Vagrantfile"
#: in the lab directory: the libvirt volumes the lab made (see VagrantProvider._record)
VOLUME_RECORD = "libvirt-volumes.json"
#: a VM costs its memory plus the emulator (a 1 GiB TCG VM measured ~1.7 GiB RSS, KVM less) and its
#: root overlay, grown as it writes; a lab comes up in ~60 s a node in parallel + its roles (README
#: "Measured here")
FOOTPRINT = Footprint(overhead_mib={"tcg": 700, "kvm": 200}, disk_mib=2048, up_s=(110.0, 30.0))


def _vagrant_class() -> Any:
    try:
        import vagrant
    except ImportError as exc:
        raise HarnessError("python-vagrant is not installed (pip install python-vagrant)") from exc

    class Watched(vagrant.Vagrant):
        """python-vagrant builds the argv and parses machine-readable output; it has no timeout
        and swallows the process, so running the command is done here, bounded and watched."""

        watch: Any = None
        timeout: float = 600
        #: the running vagrant's process group id goes here, so a later `down` can stop a vagrant
        #: whose parent was killed (it runs in its own session and would carry on alone)
        pidfile: Path | None = None

        def _call_vagrant_command(self, args: list[str | None]) -> None:
            command = self._make_vagrant_command(args)  # type: ignore[no-untyped-call]
            with self.out_cm() as out:
                log.debug(f"$ {' '.join(command)} (in {self.root}, output in {getattr(out, 'name', '?')})")
                proc = subprocess.Popen(command, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
                if self.pidfile is not None:
                    self.pidfile.write_text(f"{proc.pid}\n")
                deadline = time.monotonic() + self.timeout
                try:
                    while True:
                        try:
                            rc = proc.wait(timeout=POLL)
                            break
                        except subprocess.TimeoutExpired:
                            pass
                        if self.watch is not None:
                            self.watch()  # raises to abort
                        if time.monotonic() > deadline:
                            raise HarnessError(f"`vagrant {' '.join(a for a in args if a)}` still running after "
                                               f"{self.timeout:.0f}s")
                except BaseException:
                    _kill_group(proc)
                    raise
                finally:
                    if self.pidfile is not None:
                        self.pidfile.unlink(missing_ok=True)
            if rc != 0:
                raise subprocess.CalledProcessError(rc, command)

    return Watched


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_orphan(pidfile: Path) -> str | None:
    """Stop the vagrant a killed `storlab up` left running (its pid file names the process group).
    Only a process that is still a vagrant in this lab directory is touched."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError, IndexError):
        pidfile.unlink(missing_ok=True)
        return None
    if cwd != str(pidfile.parent.parent) or not any(b"vagrant" in a for a in cmdline[:3]):
        pidfile.unlink(missing_ok=True)
        return None
    def gone() -> bool:
        try:  # a zombie has exited: its parent (now init) just has not reaped it yet
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return True
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        try:
            wait_until(gone, timeout=15, what=f"vagrant (pid {pid}) to exit after {sig.name}", interval=0.2)
            break
        except WaitTimeout:
            continue
    pidfile.unlink(missing_ok=True)
    return f"vagrant process group {pid}"


def _file_cm(path: Path) -> Any:
    import vagrant
    return vagrant.make_file_cm(str(path))  # type: ignore[no-untyped-call]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not written)"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")
    return text[-chars:] if text.strip() else f"({path} is empty)"


def vagrant_error(text: str, context: int = 3) -> str:
    """What went wrong in a vagrant log: the last run's final progress lines and every line
    after them except Ruby backtrace frames (vagrant puts the message above ~60 of those)."""
    last = text.rsplit("\n===== ", 1)[-1]
    lines = [ln for ln in last.splitlines() if ln.strip() and not re.match(r"\s*from /", ln)]
    progress = [i for i, ln in enumerate(lines) if ln.startswith(("==> ", "    "))]
    cut = progress[-1] + 1 if progress else 0
    before = [ln for ln in lines[:cut] if ln.startswith("==> ")][-context:]
    return "\n".join(before + lines[cut:])


def _port_open(addr: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.0):
            return True
    except OSError:
        return False


class VagrantProvider(Provider):
    name = "vagrant"
    capabilities = Capabilities(
        name="vagrant", own_kernel=True, disk_devices=True, management_network=True, reserves_memory=True,
        freeze=True, snapshot=True, tool="vagrant", install_hint="run ci/setup-host.sh --vm", fast=False,
        isolation="vm", footprint=FOOTPRINT)

    def __init__(self, plan: Plan, labdir: Path) -> None:
        super().__init__(plan, labdir)
        self.logs = labdir / "logs"
        self._conn: Any = None

    @classmethod
    def reap_orphans(cls, live_labs: set[str], report: CleanupReport) -> None:
        reap.reap_orphans(live_labs, report)

    # -- names ---------------------------------------------------------------------------
    def domain_name(self, node: str) -> str:
        try:
            return str(self.node(node).object)
        except KeyError:
            return paths.obj_name(self.lab, node)

    # -- ownership: a name is not enough (a hand-made or another tool's object may carry it) -----
    def _vagrant_ids(self) -> set[str]:
        """UUIDs of the domains vagrant made for this lab (its own record, for domains made before the mark)."""
        return {p.read_text().strip() for p in (self.labdir / ".vagrant" / "machines").glob("*/libvirt/id")}

    def _owned_domain(self, dom: Any) -> bool:
        by_name = {n.object: n.name for n in self.plan.nodes}
        node = by_name.get(dom.name())
        if node is None:
            return False
        return vagrantspec.domain_mark(dom.XMLDesc(0)) == (self.lab, node) or dom.UUIDString() in self._vagrant_ids()

    def _planned_networks(self) -> dict[str, str]:
        """libvirt network name -> the bridge this lab gives it (the bridge name carries the lab's tag)."""
        return {n.libvirt_network: n.bridge for n in (*self.plan.networks, *([self.plan.mgmt] if self.plan.mgmt else []))}

    def _owned_network(self, net: Any) -> bool:
        bridge = self._planned_networks().get(net.name())
        br = ET.fromstring(net.XMLDesc(0)).find("bridge")
        return bridge is not None and br is not None and br.get("name") == bridge

    def _planned_volumes(self) -> re.Pattern[str]:
        """The volumes vagrant-libvirt makes for this lab: each domain's root image and each data disk."""
        names = [re.escape(n.object) + r"(_\d+)?\.img" for n in self.plan.nodes]
        names += [re.escape(d.image) + r"\.qcow2" for n in self.plan.nodes for d in n.disks]
        return re.compile("|".join(names) or "(?!)")

    def _volume_names(self) -> list[str]:
        """The exact names of the volumes vagrant-libvirt makes first for this lab (root images, data disks)."""
        return [f"{n.object}.img" for n in self.plan.nodes] + [f"{d.image}.qcow2" for n in self.plan.nodes for d in n.disks]

    # A volume has no mark of its own: it is this lab's when one of the lab's (marked) domains uses
    # it, or the lab recorded it in VOLUME_RECORD: the paths its domains used (recorded during `up`
    # and before a teardown, so a volume a half-done teardown left is still known), and the planned
    # names that were free when `up` started (vagrant-libvirt makes a disk before the domain that
    # would show it; the lab lock keeps any other storlab from making that name meanwhile).
    def _record(self) -> dict[str, list[str]]:
        try:
            data = json.loads((self.labdir / VOLUME_RECORD).read_text())
        except (OSError, ValueError):
            return {"paths": [], "claimed": []}
        return {k: [str(x) for x in data.get(k, [])] for k in ("paths", "claimed")}

    def _write_record(self, record: dict[str, list[str]]) -> None:
        self.labdir.mkdir(parents=True, exist_ok=True)
        tmp = self.labdir / f".{VOLUME_RECORD}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({k: sorted(set(v)) for k, v in record.items()}, indent=2) + "\n")
        tmp.replace(self.labdir / VOLUME_RECORD)

    def _used_volumes(self) -> set[str]:
        """Paths of the disks this lab's (marked) domains use now."""
        return {src.get("file", "") for dom in self._domains()
                for src in ET.fromstring(dom.XMLDesc(0)).iterfind("./devices/disk/source")} - {""}

    def _record_volumes(self) -> None:
        """Add the disks this lab's domains use now to the lab's record."""
        record = self._record()
        used = self._used_volumes() - set(record["paths"])
        if used:
            record["paths"] += sorted(used)
            self._write_record(record)

    def _pool_volumes(self) -> list[Any]:
        import libvirt
        try:
            pool = self.conn().storagePoolLookupByName(box.STORAGE_POOL)
        except libvirt.libvirtError:
            return []
        if not pool.isActive():
            return []
        pool.refresh(0)
        return list(pool.listAllVolumes(0))

    def _claim_volumes(self) -> None:
        """Before `vagrant up`: record the lab's planned volume names that no volume has yet."""
        have = {v.name() for v in self._pool_volumes()}
        record = self._record()
        free = [n for n in self._volume_names() if n not in have and n not in record["claimed"]]
        if free:
            record["claimed"] += free
            self._write_record(record)

    def _owned_volume(self, vol: Any, record: dict[str, list[str]], used: set[str]) -> bool:
        if not self._planned_volumes().fullmatch(vol.name()):
            return False
        return vol.path() in used or vol.path() in record["paths"] or vol.name() in record["claimed"]

    def conflicts(self) -> list[str]:
        """Domains, networks and volumes with this lab's names that are not this lab's."""
        import libvirt
        out = []
        for n in self.plan.nodes:
            try:
                dom = self.conn().lookupByName(n.object)
            except libvirt.libvirtError:
                continue
            if not self._owned_domain(dom):
                out.append(f"domain {n.object} (not made for lab {self.lab}: no storlab description, not vagrant's)")
        for name in self._planned_networks():
            try:
                net = self.conn().networkLookupByName(name)
            except libvirt.libvirtError:
                continue
            if not self._owned_network(net):
                out.append(f"network {name} (its bridge is not this lab's)")
        record, used = self._record(), self._used_volumes()
        planned = self._planned_volumes()
        for vol in self._pool_volumes():
            if planned.fullmatch(vol.name()) and not self._owned_volume(vol, record, used):
                out.append(f"volume {box.STORAGE_POOL}/{vol.name()} (no domain of this lab uses it, and the lab "
                           "did not make it)")
        return out

    # -- libvirt -------------------------------------------------------------------------
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = connect(vagrantspec.URI)
        return self._conn

    def _domain(self, node: str) -> Any:
        """The node's domain, if it is this lab's (a hand-made one with its name is not touched)."""
        import libvirt
        try:
            dom = self.conn().lookupByName(self.domain_name(node))
        except libvirt.libvirtError:
            return None
        return dom if self._owned_domain(dom) else None

    def _ensure_pool(self) -> None:
        """The pool must exist before `vagrant up --parallel`: vagrant-libvirt would only create
        one named 'default', and racily from parallel machines."""
        import libvirt
        conn = self.conn()
        try:
            pool = conn.storagePoolLookupByName(box.STORAGE_POOL)
        except libvirt.libvirtError:
            log.info(f"defining libvirt storage pool '{box.STORAGE_POOL}' at {box.pool_path()}")
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{box.STORAGE_POOL}</name>"
                f"<target><path>{box.pool_path()}</path></target></pool>", 0)
            pool.build(0)
            pool.setAutostart(1)
        if not pool.isActive():
            pool.create(0)

    def _ensure_network(self, name: str, xml: str) -> None:
        import libvirt
        conn = self.conn()
        want = ET.fromstring(xml)
        try:
            net = conn.networkLookupByName(name)
            if not self._owned_network(net):
                raise HarnessError(f"libvirt network {name} exists and is not lab {self.lab}'s (bridge); "
                                   "storlab leaves it alone: remove or rename it")
            have = ET.fromstring(net.XMLDesc(0))
            if _net_key(have) != _net_key(want):
                log.info(f"network {name}: redefining (was {_net_key(have)}, want {_net_key(want)})")
                if net.isActive():
                    net.destroy()
                net.undefine()
                raise LookupError
        except (libvirt.libvirtError, LookupError):
            net = conn.networkDefineXML(xml)
        if not net.isActive():
            net.create()

    # -- create --------------------------------------------------------------------------
    def create(self, public_key: str) -> None:
        foreign = self.conflicts()
        if foreign:  # before vagrant makes anything: it would fail half-way, or take them over
            raise HarnessError(f"lab {self.lab}: libvirt already has objects with this lab's names that are not its "
                               "own (storlab leaves them alone; remove or rename them):\n  " + "\n  ".join(foreign))
        if shutil.which("vagrant") is None:
            raise HarnessError("vagrant is not installed; run ci/setup-host.sh --vm, or use provider: lxc")
        with log.step("vagrant box"):
            bx = box.build()
        spec = vagrantspec.spec(self.plan, self.labdir, bx)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.labdir / "vagrant.json").write_text(json.dumps(spec, indent=2) + "\n")
        (self.labdir / "Vagrantfile").write_text(vagrantspec.lab_vagrantfile(VAGRANTFILE))
        keys = self.labdir / "authorized_keys"
        keys.write_text(public_key if public_key.endswith("\n") else public_key + "\n")
        os.chmod(keys, 0o600)
        with log.step("libvirt: storage pool and isolated networks"):
            self._ensure_pool()
            for name, xml in vagrantspec.networks(self.plan, spec).items():
                self._ensure_network(name, xml)
        self._claim_volumes()
        try:
            self._up(spec)
        finally:  # also after a failed up: its domains' disks are the lab's to remove
            try:
                self._record_volumes()
            except Exception as exc:  # never hides why `up` failed; the teardown records them again
                log.info(f"could not record the lab's volumes: {exc}")

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
                dom = self._domain(name)
                active = bool(dom is not None and dom.isActive())
                if active and name not in powered:
                    powered[name] = self.powered_at[name] = now
                    log.info(f"{name}: powered on ({spec['driver']}) after {now - t0:.0f}s")
                elif not active and name in powered:
                    raise HarnessError(f"{name} ({m['domain']}) powered off during boot\n"
                                       f"--- serial console (tail)\n{_tail(Path(m['console_log']))}")
                if active and (_port_open(m["mgmt_ip"]) or _port_open(self.node(name).address)):
                    ssh_seen[name] = now
                    log.info(f"{name}: ssh port open {now - powered[name]:.0f}s after power-on")
                elif name in powered and now - powered[name] > bound:
                    hint = ("; guests hang on a nested (PVM) /dev/kvm: try STORLAB_ACCEL=tcg"
                            if spec["driver"] == "kvm" else "")
                    raise HarnessError(
                        f"{name} ({m['domain']}): no ssh {bound}s after power-on (accel {self.plan.accel}, "
                        f"libvirt driver {spec['driver']}){hint}\n--- serial console {m['console_log']} (tail)\n"
                        f"{_tail(Path(m['console_log']))}")

        with open(logf, "a") as fh:
            fh.write(f"\n===== {time.strftime('%F %T')} vagrant up --parallel ({', '.join(nodes)})\n")
        v = _vagrant_class()(root=str(self.labdir), env=box.vagrant_env(),
                             out_cm=_file_cm(logf), err_cm=_file_cm(logf))
        v.watch = watch
        v.pidfile = self.logs / "vagrant.pid"
        # box upload into the pool (first use) + boot of every node + provisioning, with room to spare
        v.timeout = 600 + bound * len(nodes)
        with log.step(f"vagrant up --parallel {', '.join(nodes)} (log: {logf})"):
            try:
                v._call_vagrant_command(["up", "--parallel", "--provider=libvirt", "--no-tty"])
            except subprocess.CalledProcessError as exc:
                consoles = "".join(f"\n--- {m['name']} serial console (tail)\n{_tail(Path(m['console_log']), 1500)}"
                                   for m in spec["machines"] if m["name"] not in ssh_seen)
                raise HarnessError(f"vagrant up failed (exit {exc.returncode}); log {logf}:\n"
                                   f"{vagrant_error(_tail(logf, 200_000))[-2500:]}{consoles}") from None
            except HarnessError as exc:
                raise HarnessError(f"{exc}\n--- vagrant log {logf} (last lines)\n"
                                   f"{vagrant_error(_tail(logf, 200_000))[-1500:]}") from None

    # -- power and faults ----------------------------------------------------------------
    def is_running(self, node: str) -> bool:
        dom = self._domain(node)
        return bool(dom is not None and dom.isActive())

    def _need(self, node: str) -> Any:
        dom = self._domain(node)
        if dom is None:
            raise HarnessError(f"{self.domain_name(node)} does not exist (lab {self.lab} not up?)")
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
            dom = self._domain(n.name)
            if dom is None:
                continue
            try:
                dom.snapshotLookupByName(token).delete(0)
            except libvirt.libvirtError:
                continue

    def _drop_all_snapshots(self) -> None:
        """Snapshot metadata first: a domain with snapshots cannot be undefined by vagrant."""
        for dom in self._domains():
            for snap in dom.listAllSnapshots(0):
                snap.delete(0)

    def set_link(self, node: str, network: str, up: bool) -> None:
        import libvirt
        dom = self._need(node)
        mac = self.node(node).macs[network].lower()
        for iface in ET.fromstring(dom.XMLDesc(0)).findall("./devices/interface"):
            m = iface.find("mac")
            if m is not None and m.get("address", "").lower() == mac:
                link = iface.find("link")
                if link is None:
                    link = ET.SubElement(iface, "link")
                link.set("state", "up" if up else "down")
                dom.updateDeviceFlags(ET.tostring(iface, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
                return
        raise HarnessError(f"{self.domain_name(node)} has no interface with MAC {mac} (network {network})")

    def console_log(self, node: str) -> str:
        out = f"--- {node}.console.log (serial ttyS0)\n{_tail(self.logs / f'{node}.console.log', 4000)}\n"
        up = self.logs / "vagrant-up.log"
        if up.exists():
            out += f"--- vagrant-up.log (last lines)\n{vagrant_error(_tail(up, 200_000))[-3000:]}\n"
        return out

    # -- teardown ------------------------------------------------------------------------
    def _domains(self) -> list[Any]:
        return [d for d in self.conn().listAllDomains(0) if self._owned_domain(d)]

    def _networks(self) -> list[Any]:
        return [n for n in self.conn().listAllNetworks(0) if self._owned_network(n)]

    def _volumes(self) -> list[Any]:
        """This lab's volumes: a planned name, and used by one of its domains or in its record."""
        record, used = self._record(), self._used_volumes()
        return [v for v in self._pool_volumes() if self._owned_volume(v, record, used)]

    def destroy(self) -> CleanupReport:
        import libvirt
        rep = CleanupReport()

        def attempt(what: str, fn: Any) -> None:
            try:
                fn()
                rep.removed.append(what)
            except Exception as exc:  # keep going: report every item that could not be removed
                rep.failed.append((what, str(exc).strip()[-600:]))

        stopped = stop_orphan(self.logs / "vagrant.pid")
        if stopped:
            log.info(f"stopped {stopped} left running by an interrupted `up`")
            rep.removed.append(stopped)
        try:
            self._record_volumes()  # before vagrant removes the domains that show which volumes are the lab's
        except Exception as exc:  # libvirt away: what was recorded during `up` still holds
            log.info(f"could not record the lab's volumes before its teardown: {exc}")
        try:
            self._drop_all_snapshots()
        except Exception as exc:  # undefine below still removes their metadata
            log.info(f"could not delete the lab's VM snapshots first: {exc}")
        if (self.labdir / ".vagrant").is_dir() and (self.labdir / "vagrant.json").exists() and shutil.which("vagrant"):
            def vagrant_destroy() -> None:
                logf = self.logs / "vagrant-destroy.log"
                self.logs.mkdir(parents=True, exist_ok=True)
                v = _vagrant_class()(root=str(self.labdir), env=box.vagrant_env(),
                                     out_cm=_file_cm(logf), err_cm=_file_cm(logf))
                v.timeout = 300
                try:
                    v._call_vagrant_command(["destroy", "-f", "--no-tty"])
                except subprocess.CalledProcessError as exc:
                    raise HarnessError(f"exit {exc.returncode}: {vagrant_error(_tail(logf, 200_000))[-800:]}") from None
            with log.step("vagrant destroy -f"):
                attempt("vagrant destroy", vagrant_destroy)
        # whatever vagrant left (or never knew about): straight from libvirt
        try:
            domains, networks = self._domains(), self._networks()
        except Exception as exc:  # libvirtd down: report, do not raise from a teardown
            rep.failed.append(("libvirt", str(exc)))
            return rep
        for dom in domains:
            def remove_domain(dom: Any = dom) -> None:
                if dom.isActive():
                    dom.destroy()
                flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                         | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                dom.undefineFlags(flags)
            attempt(f"domain {dom.name()}", remove_domain)
        try:
            volumes = self._volumes()
        except Exception as exc:  # the pool is broken: networks can still go
            rep.failed.append((f"pool {box.STORAGE_POOL}", str(exc)))
            volumes = []
        for vol in volumes:
            attempt(f"volume {box.STORAGE_POOL}/{vol.name()}", lambda vol=vol: vol.delete(0))
        if not any(what.startswith(("volume ", "pool ")) for what, _ in rep.failed):
            (self.labdir / VOLUME_RECORD).unlink(missing_ok=True)  # kept while a volume of the lab is left
        for net in networks:
            def remove_network(net: Any = net) -> None:
                if net.isActive():
                    net.destroy()
                net.undefine()
            attempt(f"network {net.name()}", remove_network)
        for f in (".vagrant", "Vagrantfile", "vagrant.json", "authorized_keys"):
            p = self.labdir / f
            if p.is_dir():
                attempt(f"dir {p}", lambda p=p: shutil.rmtree(p))
            elif p.exists():
                attempt(f"file {p}", p.unlink)
        return rep

    def leftovers(self) -> list[str]:
        try:
            left = [f"domain {d.name()}" for d in self._domains()]
            left += [f"network {n.name()}" for n in self._networks()]
            left += [f"volume {box.STORAGE_POOL}/{v.name()}" for v in self._volumes()]
        except Exception as exc:  # unknown is not empty: report it as a leftover
            return [f"libvirt unreachable: {exc}"]
        if (self.labdir / ".vagrant").is_dir():
            left.append(f"dir {self.labdir / '.vagrant'}")
        return left


def _net_key(root: ET.Element) -> tuple[str | None, ...]:
    """What must match for a defined network to be reused: bridge, address, netmask, forwarding, DHCP hosts."""
    br, ip, fwd = root.find("bridge"), root.find("ip"), root.find("forward")
    hosts = ",".join(sorted(f"{h.get('mac')}={h.get('ip')}" for h in root.findall("./ip/dhcp/host")))
    return (br.get("name") if br is not None else None,
            ip.get("address") if ip is not None else None, ip.get("netmask") if ip is not None else None,
            fwd.get("mode") if fwd is not None else None, hosts)
