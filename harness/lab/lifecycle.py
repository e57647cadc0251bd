"""A lab's lifecycle as data: the steps of `up` (image -> nodes -> ready -> roles -> host pools),
with state saved after every step so `up` resumes; `down`, which always finishes and reports what
it could not remove; leftovers; the boot bounds restarts are held to; whether a lab is up."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from harness import locks, log, paths
from harness.backends.base import LabContext, backends
from harness.errors import CleanupReport, HarnessError
from harness.host import firewall
from harness.host import pools as hostpools
from harness.lab import evidence
from harness.lab.core import LabCore, Step
from harness.lab.snapshots import BASELINE
from harness.lab.state import LabState
from harness.nodes.node import on_each
from harness.nodes.roles import base as base_role
from harness.nodes.roles import hypervisor
from harness.providers import image

#: a restart may take this many times the boot measured at `up` (a slower day, a loaded host)
BOOT_FACTOR = 3


def bridges(lab: LabCore) -> list[str]:
    """The lab's bridges on this host (its networks' and a VM lab's management network's)."""
    return [n.bridge for n in lab.plan.networks] + ([lab.plan.mgmt.bridge] if lab.plan.mgmt else [])


def steps(lab: LabCore) -> list[Step]:
    def role(apply: Callable[[LabContext], None]) -> Callable[[], None]:
        return lambda: apply(lab)
    out: list[Step] = [("image", lambda: _image(lab)), ("nodes", lambda: _nodes(lab)), ("ready", lambda: _ready(lab))]
    out.append((f"role {base_role.NAME}", role(base_role.apply)))
    out += [(f"role {name}", role(apply)) for b in backends() if b.planned(lab.plan) is not None
            for name, apply in b.steps(lab.plan)]
    if hypervisor.applies(lab.plan):
        out.append((f"role {hypervisor.NAME}", role(hypervisor.apply)))
    if lab.provider.capabilities.own_kernel:
        out.append(("sync", lambda: _sync(lab)))
    if lab.plan.host.pools:
        out.append(("host pools", lambda: _host_pools(lab)))
    return out


def _image(lab: LabCore) -> None:
    """The golden image of every release the lab's nodes run (each cached by content), recorded
    before it is built: `storlab image prune` keeps what a lab's nodes are made from."""
    wanted = sorted({n.release for n in lab.plan.nodes})
    lab.save_state(images=sorted({image.key_for(r) for r in wanted}))
    for release in wanted:
        image.build(release=release)


def _sync(lab: LabCore) -> None:
    """What the roles wrote on nodes with a kernel of their own put on their disks: a lab that is
    up survives a crash of any node as it was made (XFS left a role's export directory only in
    its log in memory for minutes: a crash after `up` lost it). Containers' page cache is the
    host's, which their crash does not lose."""
    on_each(list(lab.nodes.values()), lambda n: n.succeed(["sync"], timeout=300), "sync")


def _host_pools(lab: LabCore) -> None:
    why = lab.provider.host_reach()
    if why:
        log.info(f"skipped: {why}")
        return
    hostpools.wire(lab)


def _nodes(lab: LabCore) -> None:
    firewall.ensure(bridges(lab), required=lab.plan.untrusted)  # before a node exists: it reaches no host
    lab.provider.create(lab.access.authorized_keys())
    where = lab.provider.location()
    if where:
        lab.save_state(location=where)
        log.info(f"lab {lab.name}: nodes on {where}")


def _ready(lab: LabCore) -> None:
    floor = lab.provider.boot_floor()
    log.info(f"boot bound {floor:.0f}s per node (declared by provider {lab.plan.provider}, accel "
             f"{lab.plan.accel}); restarts will be bounded by {BOOT_FACTOR} x the boot measured now")
    for node in lab.nodes.values():
        with log.step(f"{node.name}: wait for ssh and systemd"):
            node.wait_booted(floor)


def booted(lab: LabCore, node: str, seconds: float) -> None:
    """Record a measured boot (power-on -> systemd ready): restarts are bounded by it."""
    lab.store.update(lambda st: st.boot_seconds.update({node: seconds}))


def boot_bound(lab: LabCore, node: str) -> tuple[float, str]:
    """How long a (re)boot of ``node`` may take before it counts as hung, and why: the
    provider's declared floor, or BOOT_FACTOR x this lab's own measured boot if longer."""
    floor = lab.provider.boot_floor()
    measured = lab.state().boot_seconds
    slowest = max(measured.values(), default=0.0)
    took = float(measured.get(node, slowest))
    if took * BOOT_FACTOR > floor:
        return took * BOOT_FACTOR, f"{BOOT_FACTOR} x the {took:.0f}s {node} took to boot at up"
    why = f"measured {took:.0f}s at up" if took else "no boot measured yet"
    return floor, f"provider {lab.plan.provider}'s declared floor ({why})"


def is_up(lab: LabCore, st: LabState | None = None) -> bool:
    """The lab says it is up and every node answers."""
    return (st or lab.state()).status == "up" and all(n.is_up() for n in lab.nodes.values())


def up(lab: LabCore, keep_on_failure: bool = False, owner_pid: int | None = None) -> None:
    locks.hold(lab.name)
    log.add_logfile(lab.logfile)
    log.info(f"lab {lab.name}: provider {lab.plan.provider}, {len(lab.nodes)} nodes; log: {lab.logfile}")
    # a lab that got past its first step before is someone's work (a student's nodes): a resume
    # that fails never removes it, only a first `up` that fails removes what it made
    before = lab.state()
    resumed = bool(before.steps_done)
    lab.save_state(status="creating", owner_pid=owner_pid or os.getpid(), owner_host=socket.gethostname(),
                   created=before.created or time.time())
    try:
        with log.step(f"lab {lab.name}: up"):
            _run_steps(lab)
    except BaseException as exc:
        _failed(lab, repr(exc), keep_on_failure, resumed)
        raise
    lab.save_state(status="up", owner_pid=owner_pid)


def _run_steps(lab: LabCore) -> None:
    conflicts = hostpools.conflicts(lab)
    if conflicts:  # before anything is made: storlab touches only what it made
        raise HarnessError(f"lab {lab.name}: the KVM host already has what this lab would make, and it is "
                           "not this lab's (storlab leaves it alone):\n  " + "\n  ".join(conflicts))
    done: list[str] = []
    timings: dict[str, float] = {}
    for name, fn in lab.steps():
        t = time.monotonic()
        with log.step(name):
            fn()
        timings[name] = round(time.monotonic() - t, 2)
        done.append(name)
        lab.save_state(steps_done=done, timings=timings)
    # the baseline `reset` returns to: taken where it is cheap (LXC: 0.4 s); a VM's snapshot
    # saves its memory, so VM labs take it when asked (`storlab snapshot LAB up`, `storlab class up` does)
    if lab.provider.capabilities.snapshot and lab.provider.capabilities.fast and BASELINE not in lab.snapshots():
        timings["baseline snapshot"] = lab.snapshot(BASELINE)
        lab.save_state(timings=timings)


def _failed(lab: LabCore, reason: str, keep_on_failure: bool, resumed: bool) -> None:
    found = collect_evidence(lab, reason)
    log.info(f"lab {lab.name}: up failed; evidence in {found}")
    if keep_on_failure or resumed:
        lab.save_state(status="failed", owner_pid=None)
        why = "it was made before this `up` (its nodes hold work)" if resumed else "for debugging"
        log.info(f"lab kept {why}: `storlab up` continues it, `storlab down {lab.name}` removes it")
    else:
        saved = _save_evidence_outside(lab, found)
        lab.down()
        log.info(f"lab {lab.name} removed after the failure; evidence kept in {saved}")


def collect_evidence(lab: LabCore, reason: str) -> Path:
    """A failed `up`'s evidence in the lab's directory (harness.lab.evidence: every node's console
    log, failed units, backend state and boot journal; the lab's timeline and log)."""
    return evidence.write(lab, lab.dir / "evidence" / time.strftime("%Y%m%d-%H%M%S"), reason, console=True)


def _save_evidence_outside(lab: LabCore, found: Path) -> Path:
    dest = paths.home() / "evidence" / f"{lab.name}-{found.name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(found, dest, dirs_exist_ok=True)
    return dest


def down(lab: LabCore) -> CleanupReport:
    """Remove everything this lab created. Continues past failures and reports them."""
    locks.hold(lab.name)
    lab.save_state(status="destroying")
    rep = CleanupReport()
    with log.step(f"lab {lab.name}: down"):
        try:
            sub = hostpools.unwire(lab)
            rep.removed += sub.removed
            rep.failed += sub.failed
        except Exception as exc:
            rep.failed.append(("host pools", str(exc)))
        lab.access.close_connections(lab.nodes.values())
        firewall.forget(bridges(lab))
        try:
            if firewall.uncut(paths.tag(lab.name)):  # a chaos run stopped while it cut the host off nodes
                rep.removed.append("host cut (nftables)")
        except HarnessError as exc:
            rep.failed.append(("host cut", str(exc)))
        sub = lab.provider.destroy()
        rep.removed += sub.removed
        rep.failed += sub.failed
        if not rep.failed:  # keep the lab's directory (its plan, its state) while anything of it is left
            rep.failed += [(item, "still present after down") for item in lab.provider.leftovers()]
        if not rep.failed:
            shutil.rmtree(lab.dir, ignore_errors=True)
            locks.release(lab.name)
        else:
            lab.save_state(status="destroy-failed", failures=rep.failed)
    for what, why in rep.failed:
        log.info(f"  could not remove {what}: {why}")
    return rep


def leftovers(lab: LabCore) -> list[str]:
    left = lab.provider.leftovers() + hostpools.leftovers(lab)
    if lab.dir.exists():
        left.append(f"dir {lab.dir}")
    return left
