"""A lab's lifecycle as data: plan -> image -> nodes -> roles -> host pools, with state
persisted after every step so `up` resumes, `down` always finishes and `reap` finds orphans."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import locks, log, paths
from harness.backends.base import backends
from harness.errors import CleanupReport, HarnessError, LabStateError
from harness.host import firewall
from harness.host import pools as hostpools
from harness.host.facts import HostFacts
from harness.lab import evidence, secrets, trust
from harness.nodes.node import Node, on_each
from harness.nodes.roles import base as base_role
from harness.nodes.roles import hypervisor
from harness.plan import planner as planmod
from harness.plan.model import Plan
from harness.providers import base as providers
from harness.providers import image
from harness.run import succeed

#: seconds an idle persistent ssh connection to a node stays open
SSH_PERSIST = 120
#: a restart may take this many times the boot measured at `up` (a slower day, a loaded host)
BOOT_FACTOR = 3
#: the snapshot `up` ends with, where the provider can snapshot: `reset` goes back to it
BASELINE = "up"
SNAPSHOT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
PUBKEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._:+-]{1,100})?")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name: str = plan.lab
        self.dir = paths.lab_dir(self.name)
        self.provider = providers.get(plan.provider)(plan, self.dir)
        self.nodes = {n.name: Node(n, self.ssh_config, self.provider, timeline=self) for n in plan.nodes}
        self.timeline: list[tuple[float, str]] = []

    # -- files -----------------------------------------------------------------------------
    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    def files(self, where: str) -> Path:
        """Rendered files for a node (by name) or for the KVM host ('host')."""
        return self.dir / "files" / ("host" if where == "host" else f"nodes/{where}")

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def logfile(self) -> Path:
        return self.logs / "storlab.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def save_state(self, **changes: Any) -> None:
        self.update_state(lambda st: st.update(changes))

    def update_state(self, change: Callable[[dict[str, Any]], object]) -> None:
        """Read, change and write state.json under a lock: nodes restarted side by side record
        their boots from threads at once, and another process may set a lease meanwhile."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".state.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one open file each: threads of one process exclude each other too
            st = self.state()
            change(st)
            st.update(lab=self.name, provider=self.plan.provider, topology=self.plan.topology, updated=time.time())
            tmp = self.dir / f".state.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_text(json.dumps(st, indent=2))
            tmp.replace(self.state_file)

    def owns(self, thing: str) -> bool:
        return thing in self.state().get("owned", [])

    def claim(self, thing: str) -> None:
        self.update_state(lambda st: None if thing in st.setdefault("owned", []) else st["owned"].append(thing))

    @classmethod
    def load(cls, name: str) -> Lab:
        p = paths.lab_dir(name) / "plan.json"
        if not p.exists():
            known = ", ".join(list_labs()) or "none"
            raise LabStateError(f"no lab named '{name}' (labs here: {known})")
        return cls(Plan.load(p))

    @classmethod
    def from_topology(cls, file: str, provider: str | None = None, facts: HostFacts | None = None,
                      name: str | None = None, remote: str | None = None, budget: str | None = None,
                      untrusted: bool = False, klass: str | None = None) -> Lab:
        """The lab a topology file describes; with ``name``, an instance of it under that name.
        ``remote`` and ``budget`` place it on an engine remote (`--on incus:REMOTE`) with limits
        (`--budget`); ``untrusted``: its users are not this host's admins (students, see trust.py);
        ``klass``: the id of the class making it. A plan the provider cannot hold, or cannot hold
        for untrusted users, is refused before anything is written."""
        facts = facts or HostFacts.detect()
        loaded = planmod.load_topology(file, facts, provider, name)
        locks.hold(loaded.topo.lab)  # before anything is written: a lab being built by another process is left alone
        with locks.allocation():  # subnets are chosen from what other labs' plans hold: one at a time
            plan = planmod.place(planmod.plan_for(loaded, facts), remote, budget, untrusted, klass)
            trust.check(plan)
            providers.get(plan.provider).preflight(plan)
            d = paths.lab_dir(plan.lab)
            planmod.write(plan, d)
        secrets.decide(plan, loaded.topo, d / "secrets")
        return cls(plan)

    def where(self) -> str:
        """Where the lab's nodes are: this host, or an engine remote and its member (recorded at up)."""
        member = self.state().get("location")
        if not self.plan.remote and not member:
            return "this host"
        return ":".join(x for x in (self.plan.remote or "local", member) if x)

    def pools_here(self) -> bool:
        """Whether the lab has KVM-host pools and this host can reach the lab's networks for them."""
        return bool(self.plan.host.pools) and self.provider.host_reach() is None

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            raise LabStateError(f"lab {self.name} has no node '{name}' (nodes: {', '.join(self.nodes)})")
        return self.nodes[name]

    # -- ssh -------------------------------------------------------------------------------
    def ensure_key(self) -> str:
        if not self.key.exists():
            succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"storlab-{self.name}", "-f", str(self.key)],
                    timeout=30)
        os.chmod(self.key, 0o600)
        self.write_ssh_config()
        return (self.key.with_suffix(".pub")).read_text()

    def authorize(self, public_key: str) -> None:
        """Let another key log in as root on every node from `up` on (a student's key): one plain
        public key line, no authorized_keys options (they would widen what the key may do)."""
        key = public_key.strip()
        if not PUBKEY_RE.fullmatch(key):
            raise HarnessError("an authorized key must be one public key line: 'ssh-ed25519 AAAA... [comment]' "
                               "(no options, no line breaks)")
        extra = self.dir / "authorized_keys.extra"
        have = extra.read_text().splitlines() if extra.exists() else []
        if key not in have:
            extra.write_text("\n".join([*have, key]) + "\n")

    def authorized_keys(self) -> str:
        """The lab's own key, then any key authorized for it (what every node's root accepts)."""
        extra = self.dir / "authorized_keys.extra"
        own = self.ensure_key()
        return own if not extra.exists() else own.rstrip("\n") + "\n" + extra.read_text()

    def ssh_config_text(self) -> str:
        # One persistent connection per node (ControlMaster): under TCG an ssh handshake costs
        # 2-7 s, so a command per handshake turns a role into minutes. `down` and crash() close them.
        control = paths.ssh_control_dir(self.name)
        out = [f"# storlab lab {self.name}: ssh -F {self.ssh_config} NODE"]
        for n in self.plan.nodes:
            out += [f"Host {n.name} {self.name}-{n.name}", f"  HostName {n.address}", "  User root",
                    f"  IdentityFile {self.key}", "  IdentitiesOnly yes",
                    # host keys pinned per lab: learnt when a node first answers, checked ever after
                    "  StrictHostKeyChecking accept-new", f"  UserKnownHostsFile {self.dir / 'known_hosts'}",
                    "  HostKeyAlgorithms ssh-ed25519", "  LogLevel ERROR", "  ConnectTimeout 5",
                    "  ServerAliveInterval 5", "  ServerAliveCountMax 3",
                    "  ControlMaster auto", f"  ControlPath {control}/%h", f"  ControlPersist {SSH_PERSIST}"]
            proxy = self.provider.ssh_proxy(n.name)
            out += [f"  ProxyCommand {proxy}", ""] if proxy else [""]
        return "\n".join(out)

    def write_ssh_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        paths.ssh_control_dir(self.name).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ssh_config.write_text(self.ssh_config_text())

    def close_connections(self) -> None:
        """Stop the lab's persistent ssh connections (nothing of a lab outlives `down`)."""
        for node in self.nodes.values():
            node.close_connection()
        shutil.rmtree(paths.ssh_control_dir(self.name), ignore_errors=True)

    # -- lifecycle -------------------------------------------------------------------------
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        out: list[tuple[str, Callable[[], None]]] = [
            ("image", lambda: self._image()),
            ("nodes", self._nodes),
            ("ready", self._ready),
        ]
        out.append((f"role {base_role.NAME}", self._role_step(base_role.apply)))
        out += [(f"role {name}", self._role_step(apply)) for b in backends() if b.planned(self.plan) is not None
                for name, apply in b.steps(self.plan)]
        if hypervisor.applies(self.plan):
            out.append((f"role {hypervisor.NAME}", self._role_step(hypervisor.apply)))
        if self.plan.host.pools:
            out.append(("host pools", self._host_pools))
        return out

    def _host_pools(self) -> None:
        why = self.provider.host_reach()
        if why:
            log.info(f"skipped: {why}")
            return
        hostpools.wire(self)

    def _role_step(self, apply: Callable[[Any], None]) -> Callable[[], None]:
        def step() -> None:
            apply(self)
        return step

    def _image(self) -> None:
        image.build()

    def bridges(self) -> list[str]:
        """The lab's bridges on this host (its networks' and a VM lab's management network's)."""
        return [n.bridge for n in self.plan.networks] + ([self.plan.mgmt.bridge] if self.plan.mgmt else [])

    def _nodes(self) -> None:
        firewall.ensure(self.bridges(), required=self.plan.untrusted)  # before a node exists: it reaches no host
        self.provider.create(self.authorized_keys())
        where = self.provider.location()
        if where:
            self.save_state(location=where)
            log.info(f"lab {self.name}: nodes on {where}")

    def _ready(self) -> None:
        floor = self.provider.boot_floor()
        log.info(f"boot bound {floor:.0f}s per node (declared by provider {self.plan.provider}, accel "
                 f"{self.plan.accel}); restarts will be bounded by {BOOT_FACTOR} x the boot measured now")
        for node in self.nodes.values():
            with log.step(f"{node.name}: wait for ssh and systemd"):
                node.wait_booted(floor)

    def booted(self, node: str, seconds: float) -> None:
        """Record a measured boot (power-on -> systemd ready): restarts are bounded by it."""
        self.update_state(lambda st: st.setdefault("boot_seconds", {}).update({node: seconds}))

    def boot_bound(self, node: str) -> tuple[float, str]:
        """How long a (re)boot of ``node`` may take before it counts as hung, and why: the
        provider's declared floor, or BOOT_FACTOR x this lab's own measured boot if longer."""
        floor = self.provider.boot_floor()
        measured = self.state().get("boot_seconds", {})
        slowest = max(measured.values(), default=0.0)
        took = float(measured.get(node, slowest))
        if took * BOOT_FACTOR > floor:
            return took * BOOT_FACTOR, f"{BOOT_FACTOR} x the {took:.0f}s {node} took to boot at up"
        why = f"measured {took:.0f}s at up" if took else "no boot measured yet"
        return floor, f"provider {self.plan.provider}'s declared floor ({why})"

    def up(self, keep_on_failure: bool = False, owner_pid: int | None = None) -> None:
        locks.hold(self.name)
        log.add_logfile(self.logfile)
        log.info(f"lab {self.name}: provider {self.plan.provider}, {len(self.nodes)} nodes; log: {self.logfile}")
        # a lab that got past its first step before is someone's work (a student's nodes): a resume
        # that fails never removes it, only a first `up` that fails removes what it made
        resumed = bool(self.state().get("steps_done"))
        self.save_state(status="creating", owner_pid=owner_pid or os.getpid(), owner_host=socket.gethostname(),
                        created=self.state().get("created") or time.time())
        done: list[str] = []
        timings: dict[str, float] = {}
        try:
            with log.step(f"lab {self.name}: up"):
                conflicts = hostpools.conflicts(self)
                if conflicts:  # before anything is made: storlab touches only what it made
                    raise HarnessError(f"lab {self.name}: the KVM host already has what this lab would make, and it is "
                                       "not this lab's (storlab leaves it alone):\n  " + "\n  ".join(conflicts))
                for name, fn in self.steps():
                    t = time.monotonic()
                    with log.step(name):
                        fn()
                    timings[name] = round(time.monotonic() - t, 2)
                    done.append(name)
                    self.save_state(steps_done=done, timings=timings)
                # the baseline `reset` returns to: taken where it is cheap (LXC: 0.4 s); a VM's
                # snapshot saves its memory, so VM labs take it when asked (`storlab snapshot LAB up`,
                # `storlab class up` does)
                if self.provider.capabilities.snapshot and self.provider.capabilities.fast and \
                        BASELINE not in self.snapshots():
                    timings["baseline snapshot"] = self.snapshot(BASELINE)
                    self.save_state(timings=timings)
        except BaseException as exc:
            evidence = self.collect_evidence(repr(exc))
            log.info(f"lab {self.name}: up failed; evidence in {evidence}")
            if keep_on_failure or resumed:
                self.save_state(status="failed", owner_pid=None)
                why = "it was made before this `up` (its nodes hold work)" if resumed else "for debugging"
                log.info(f"lab kept {why}: `storlab up` continues it, `storlab down {self.name}` removes it")
            else:
                saved = self._save_evidence_outside(evidence)
                self.down()
                log.info(f"lab {self.name} removed after the failure; evidence kept in {saved}")
            raise
        self.save_state(status="up", owner_pid=owner_pid)

    def down(self) -> CleanupReport:
        """Remove everything this lab created. Continues past failures and reports them."""
        locks.hold(self.name)
        self.save_state(status="destroying")
        rep = CleanupReport()
        with log.step(f"lab {self.name}: down"):
            try:
                sub = hostpools.unwire(self)
                rep.removed += sub.removed
                rep.failed += sub.failed
            except Exception as exc:
                rep.failed.append(("host pools", str(exc)))
            self.close_connections()
            firewall.forget(self.bridges())
            sub = self.provider.destroy()
            rep.removed += sub.removed
            rep.failed += sub.failed
            if not rep.failed:  # keep the lab's directory (its plan, its state) while anything of it is left
                rep.failed += [(item, "still present after down") for item in self.provider.leftovers()]
            if not rep.failed:
                shutil.rmtree(self.dir, ignore_errors=True)
                locks.release(self.name)
            else:
                self.save_state(status="destroy-failed", failures=rep.failed)
        for what, why in rep.failed:
            log.info(f"  could not remove {what}: {why}")
        return rep

    def leftovers(self) -> list[str]:
        left = self.provider.leftovers() + hostpools.leftovers(self)
        if self.dir.exists():
            left.append(f"dir {self.dir}")
        return left

    # -- snapshots, reset, lease -----------------------------------------------------------
    def snapshots(self) -> dict[str, dict[str, Any]]:
        return dict(self.state().get("snapshots", {}))

    def snapshot(self, name: str) -> float:
        """Save every node's root file system and data disks as ``name`` (replacing one of that
        name); the nodes keep running. Returns the seconds it took."""
        if not SNAPSHOT_RE.fullmatch(name):
            raise HarnessError(f"snapshot name {name!r}: 1-40 lower-case letters, digits, '-' and '_'")
        locks.hold(self.name)
        root = self.dir / "snapshots"
        tmp, dest = root / f".{name}.partial", root / name
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.monotonic()
        with log.step(f"lab {self.name}: snapshot {name}"):
            listed = hostpools.listings(self) if self.pools_here() else {}
            self.provider.snapshot(tmp)
            (tmp / "pools.json").write_text(json.dumps(listed))
            if dest.exists():
                self.provider.drop_snapshot(dest)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        took = round(time.monotonic() - t0, 2)
        size = int(succeed(["du", "-s", "-B1", str(dest)], timeout=120).split()[0])
        self.update_state(lambda st: st.setdefault("snapshots", {}).update(
            {name: {"taken": time.time(), "seconds": took, "bytes": size}}))
        return took

    def revert(self, name: str, converge: bool = False) -> float:
        """Put every node's root file system and data disks back as snapshot ``name`` saved them,
        boot the nodes and let the host's pools see the restored storage. With ``converge`` the
        roles run again too (idempotent; they wait for a healthy backend): what `reset` does."""
        if name not in self.snapshots():
            raise LabStateError(f"lab {self.name} has no snapshot {name!r} (snapshots: "
                                f"{', '.join(self.snapshots()) or 'none'})")
        locks.hold(self.name)
        t0 = time.monotonic()
        with log.step(f"lab {self.name}: revert to {name}"):
            self.close_connections()
            self.write_ssh_config()  # closing removed the connections' directory
            self.provider.restore(self.dir / "snapshots" / name)
            on_each(list(self.nodes.values()), lambda n: n.wait_booted(), "boot")
            if converge:
                for step, fn in self.steps():
                    if step.startswith("role "):
                        with log.step(step):
                            fn()
            if self.pools_here():
                saved = self.dir / "snapshots" / name / "pools.json"
                with log.step("host pools"):  # active pools are refreshed: they list the restored volumes
                    hostpools.wire(self, json.loads(saved.read_text()) if saved.exists() else None)
        took = round(time.monotonic() - t0, 2)
        self.save_state(status="up", reverted={"to": name, "at": time.time(), "seconds": took})
        return took

    def reset(self) -> float:
        """Back to the state right after `up`: the baseline snapshot, then the roles' health waits."""
        if BASELINE not in self.snapshots():
            raise LabStateError(f"lab {self.name} has no baseline snapshot to reset to: take it right after up with "
                                f"`storlab snapshot {self.name} {BASELINE}` (VM labs do not take it by themselves)")
        took = self.revert(BASELINE, converge=True)
        self.save_state(exercise=None)  # an exercise applied after up is undone with everything else
        return took

    def lease(self, seconds: float | None) -> float | None:
        """Expire the lab ``seconds`` from now (None: never); `storlab reap` removes expired labs."""
        expires = time.time() + seconds if seconds else None
        self.save_state(expires=expires)
        return expires

    def expired(self, now: float | None = None) -> bool:
        exp = self.state().get("expires")
        return exp is not None and float(exp) <= (now or time.time())

    # -- evidence and faults -------------------------------------------------------------
    def collect_evidence(self, reason: str) -> Path:
        """A failed `up`'s evidence in the lab's directory (harness.lab.evidence: every node's console
        log, failed units, backend state and boot journal; the lab's timeline and log)."""
        return evidence.write(self, self.dir / "evidence" / time.strftime("%Y%m%d-%H%M%S"), reason, console=True)

    def _save_evidence_outside(self, evidence: Path) -> Path:
        dest = paths.home() / "evidence" / f"{self.name}-{evidence.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(evidence, dest, dirs_exist_ok=True)
        return dest

    def mark(self, event: str) -> None:
        self.timeline.append((time.monotonic(), event))
        log.info(f"fault: {event}")
        with open(self.dir / "logs" / "faults.log", "a") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {event}\n")

def list_labs() -> list[str]:
    d = paths.home() / "labs"
    return sorted(p.name for p in d.iterdir() if (p / "plan.json").exists()) if d.is_dir() else []
