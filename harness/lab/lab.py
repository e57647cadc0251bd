"""The lab facade: one object per lab that callers (CLI, pytest plugin, training, matrix) hold.
It makes a lab from a topology or loads it by name, and hands each job to the module that does
it: state.py (the typed state.json), access.py (keys, ssh config), lifecycle.py (up, down, boot
bounds), snapshots.py (snapshot, revert, reset)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from harness import locks, log, paths
from harness.errors import CleanupReport, LabStateError
from harness.host.facts import HostFacts
from harness.lab import lifecycle, secrets, snapshots, trust
from harness.lab.access import Access
from harness.lab.core import Step
from harness.lab.lifecycle import BOOT_FACTOR
from harness.lab.snapshots import BASELINE
from harness.lab.state import LabState, SnapshotInfo, StateFile
from harness.nodes.node import Node
from harness.plan import planner as planmod
from harness.plan.model import Plan
from harness.plan.placement import place
from harness.providers import base as providers

__all__ = ["BASELINE", "BOOT_FACTOR", "Lab", "LabState", "list_labs"]




class Lab:
    """A lab: its plan, provider and nodes, its files under its directory, and its verbs."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.name: str = plan.lab
        self.dir = paths.lab_dir(self.name)
        self.ssh_config = self.dir / "ssh_config"
        self.secrets_dir = self.dir / "secrets"
        self.key = self.dir / "id_ed25519"
        self.logs = self.dir / "logs"
        self.logfile = self.logs / "storlab.log"
        self.state_file = self.dir / "state.json"
        self.store = StateFile(self.dir, lambda: {"lab": self.name, "provider": self.plan.provider,
                                                  "topology": self.plan.topology})
        self.provider = providers.get(plan.provider)(plan, self.dir)
        self.access = Access(plan, self.dir, self.provider)
        self.nodes = {n.name: Node(n, self.ssh_config, self.provider, timeline=self) for n in plan.nodes}
        self.timeline: list[tuple[float, str]] = []

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
                      untrusted: bool = False, klass: str | None = None, disk_budget: str | None = None,
                      cold_boot: bool | None = None, release: str | None = None) -> Lab:
        """The lab a topology file describes; with ``name``, an instance of it under that name.
        ``remote`` and ``budget`` place it on an engine remote (`--on incus:REMOTE`) with limits
        (`--budget`); ``untrusted``: its users are not this host's admins (students, see trust.py);
        ``klass``: the id of the class making it; ``disk_budget``: what its data disks may really take
        of this host's disk (`--disk-budget 2G`); ``cold_boot``: VM nodes boot instead of being restored from
        a saved state (None: STORLAB_COLD_BOOT=1 in the environment); ``release``: the lab's Debian release
        instead of the file's (None: STORLAB_RELEASE, else the file's). A plan the provider cannot hold, or cannot hold
        for untrusted users, is refused before anything is written."""
        facts = facts or HostFacts.detect()
        loaded = planmod.load_topology(file, facts, provider, name, release or os.environ.get("STORLAB_RELEASE") or None)
        locks.hold(loaded.topo.lab)  # before anything is written: a lab being built by another process is left alone
        with locks.allocation():  # subnets are chosen from what other labs' plans hold: one at a time
            plan = place(planmod.plan_for(loaded, facts), remote, budget, untrusted, klass, disk_budget)
            if cold_boot or (cold_boot is None and os.environ.get("STORLAB_COLD_BOOT") == "1"):
                plan = plan.model_copy(update={"cold_boot": True})
            trust.check(plan)
            providers.get(plan.provider).preflight(plan)
            d = write_new(plan)
        secrets.decide(plan, loaded.topo, d / "secrets")
        return cls(plan)

    # -- what roles and host pools use (LabContext) -------------------------------------------
    def files(self, where: str) -> Path:
        """Rendered files for a node (by name) or for the KVM host ('host')."""
        return self.dir / "files" / ("host" if where == "host" else f"nodes/{where}")

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            raise LabStateError(f"lab {self.name} has no node '{name}' (nodes: {', '.join(self.nodes)})")
        return self.nodes[name]

    def owns(self, thing: str) -> bool:
        return thing in self.state().owned

    def claim(self, thing: str) -> None:
        self.store.update(lambda st: None if thing in st.owned else st.owned.append(thing))

    # -- state --------------------------------------------------------------------------------
    def state(self) -> LabState:
        """state.json as it is now (a fresh read: other processes and threads write it)."""
        return self.store.read()

    def save_state(self, **changes: Any) -> None:
        """Set LabState fields, under the state lock (harness.lab.state.StateFile)."""
        self.store.save(**changes)

    def lease(self, seconds: float | None) -> float | None:
        """Expire the lab ``seconds`` from now (None: never); `storlab reap` removes expired labs."""
        expires = time.time() + seconds if seconds else None
        self.save_state(expires=expires)
        return expires

    def where(self) -> str:
        """Where the lab's nodes are: this host, or an engine remote and its member (recorded at up)."""
        member = self.state().location
        if not self.plan.remote and not member:
            return "this host"
        return ":".join(x for x in (self.plan.remote or "local", member) if x)

    def is_up(self) -> bool:
        """The lab's state says up and every node answers."""
        return lifecycle.is_up(self)

    def pools_here(self) -> bool:
        """Whether the lab has KVM-host pools and this host can reach the lab's networks for them."""
        return bool(self.plan.host.pools) and self.provider.host_reach() is None

    def authorize(self, public_key: str) -> None:
        """Let another key log in as root on every node from `up` on (harness.lab.access)."""
        self.access.authorize(public_key)

    # -- lifecycle (harness.lab.lifecycle) ----------------------------------------------------
    def steps(self) -> list[Step]:
        return lifecycle.steps(self)

    def up(self, keep_on_failure: bool = False, owner_pid: int | None = None) -> None:
        lifecycle.up(self, keep_on_failure, owner_pid)

    def down(self) -> CleanupReport:
        """Remove everything this lab created. Continues past failures and reports them."""
        return lifecycle.down(self)

    def leftovers(self) -> list[str]:
        return lifecycle.leftovers(self)

    # -- the nodes' timeline (harness.nodes.faults.Timeline) ----------------------------------
    def booted(self, node: str, seconds: float) -> None:
        lifecycle.booted(self, node, seconds)

    def boot_bound(self, node: str) -> tuple[float, str]:
        return lifecycle.boot_bound(self, node)

    def mark(self, event: str) -> None:
        self.timeline.append((time.monotonic(), event))
        log.info(f"fault: {event}")
        with open(self.dir / "logs" / "faults.log", "a") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {event}\n")

    # -- snapshots (harness.lab.snapshots) ----------------------------------------------------
    def snapshots(self) -> dict[str, SnapshotInfo]:
        return dict(self.state().snapshots)

    def snapshot(self, name: str) -> float:
        return snapshots.snapshot(self, name)

    def revert(self, name: str, converge: bool = False) -> float:
        return snapshots.revert(self, name, converge)

    def reset(self) -> float:
        return snapshots.reset(self)


def write_new(plan: Plan) -> Path:
    """Write ``plan`` to its lab directory. A new lab's directory appears whole or not at all: it is
    written under paths.staging_dir and renamed into place (the caller holds the lab's lock), so an
    `up` killed here leaves no lab directory behind."""
    d = paths.lab_dir(plan.lab)
    if d.exists():  # the lab's plan again (a resumed or repeated `up`), or a directory the user made
        planmod.write(plan, d)
        return d
    remove_staging(plan.lab)
    planmod.write(plan, paths.staging_dir(plan.lab))
    os.rename(paths.staging_dir(plan.lab), d)
    return d


def remove_staging(lab: str) -> bool:
    """Remove what a killed `up` left in ``lab``'s staging directory (caller holds the lab's lock)."""
    stage = paths.staging_dir(lab)
    if stage.is_symlink() or not stage.is_dir():
        return False
    shutil.rmtree(stage)
    return True


def list_labs() -> list[str]:
    d = paths.home() / "labs"
    return sorted(p.name for p in d.iterdir() if (p / "plan.json").exists()) if d.is_dir() else []
