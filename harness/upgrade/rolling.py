"""`storlab upgrade LAB --to RELEASE`: a running lab's backends taken to another Debian release's
versions, the way their operators do it. Per backend (Backend.upgrade): its gate holds first; then
one server at a time, the bundle of packages (harness.upgrade.bundle: fetched on this host, nodes
reach nothing outside) copied in before the server stops, its daemons stopped, the packages
installed from that local repository (no service starts while dpkg runs), its daemons started, and
the gate awaited before the next server; once all run the new version, the backend's finish (e.g.
Gluster's op-version). ``offline``: every server stopped, upgraded and started together.
``full``: each server's whole distribution (dist-upgrade from a bundle of every package the
release replaces) and then a clean reboot, as operators upgrade a host, before its backend starts.
``pause_after``: stop after that node, leaving a mixed-version lab for tests (teuthology's
stress-split). Each step says which node, what and how long; a gate that does not open says why
(and a known cause), the lab's evidence is collected, and the lab is left as it is for a look."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness import log
from harness.backends.base import backends
from harness.errors import HarnessError, WaitTimeout
from harness.lab import evidence, versions
from harness.lab.lab import Lab
from harness.nodes.node import Node, on_each
from harness.run import wait_until
from harness.spec import releases
from harness.upgrade import bundle
from harness.upgrade.support import UpgradeSupport

#: where a bundle is unpacked on a node, and the apt source list naming it
REPO = "/var/cache/storlab-upgrade"
SOURCES = "/etc/apt/storlab-upgrade.list"
#: seconds a gate waits before a known cause (UpgradeSupport.diagnose) ends the wait
KNOWN_AFTER = 20.0
APT = (f"-oDir::Etc::sourcelist={SOURCES}", "-oDir::Etc::sourceparts=-", "-oAPT::Get::List-Cleanup=0")


@dataclass
class NodeStep:
    node: str
    backend: str
    before: dict[str, str]
    after: dict[str, str]
    seconds: float  # from stop to started
    gate_s: float  # the gate's wait after it


@dataclass
class Report:
    lab: str
    to: str
    offline: bool
    steps: list[NodeStep] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    paused_after: str | None = None
    seconds: float = 0.0
    full: bool = False

    def lines(self) -> list[str]:
        out = [f"{s.node} ({s.backend}): {_changes(s.before, s.after)}; down {s.seconds:.1f}s, gate {s.gate_s:.1f}s"
               for s in self.steps]
        out += self.finished
        if self.paused_after:
            out.append(f"paused after {self.paused_after}: the lab runs mixed versions (`storlab upgrade` again finishes it)")
        return out


def _changes(before: dict[str, str], after: dict[str, str]) -> str:
    moved = [f"{k} {before.get(k, '-')} -> {v}" for k, v in after.items() if k != "debian" and before.get(k) != v]
    return ", ".join(moved) or "no package changed"


def supports(lab: Lab) -> list[tuple[str, UpgradeSupport]]:
    """(backend, its upgrade support) of every backend the lab runs; one without is an error."""
    out, missing = [], []
    for b in backends():
        if b.planned(lab.plan) is None:
            continue
        sup = b.upgrade()
        if sup is None:
            missing.append(b.name)
        else:
            out.append((b.name, sup))
    if missing:
        have = [b.name for b in backends() if b.upgrade() is not None]
        raise HarnessError(f"lab {lab.name} runs {', '.join(missing)}, which `storlab upgrade` cannot upgrade yet "
                           f"(it upgrades: {', '.join(have)})")
    if not out:
        raise HarnessError(f"lab {lab.name} runs no backend to upgrade")
    return out


def order(lab: Lab, sup: UpgradeSupport, nodes: Sequence[str] | None) -> list[str]:
    """The backend's servers to upgrade, in plan order or as ``nodes`` gives them."""
    servers = [n.name for n in sorted(lab.plan.nodes, key=sup.rank) if sup.packages(n)]  # stable: plan order within a rank
    if nodes is None:
        return servers
    unknown = [n for n in nodes if n not in servers]
    if unknown:
        raise HarnessError(f"--nodes: {', '.join(unknown)} run no backend to upgrade in lab {lab.name} "
                           f"(its servers: {', '.join(servers)})")
    return list(nodes)


def push(node: Node, b: bundle.Bundle) -> None:
    """The bundle unpacked into REPO on the node (over the lab's ssh, from this host)."""
    line = shlex.quote(f"deb [trusted=yes] file:{REPO} ./")
    remote = f"rm -rf {REPO} && mkdir -p {REPO} && tar -C {REPO} -xf - && printf '%s\\n' {line} > {SOURCES}"
    with open(b.tar, "rb") as fh:
        p = subprocess.run([*node.ssh_argv(), "--", remote], stdin=fh, capture_output=True, timeout=600, check=False)
    if p.returncode != 0:
        raise HarnessError(f"{node.name}: copying the upgrade bundle in failed: {p.stderr.decode(errors='replace')[-400:]}")


#: while dpkg runs: no service starts (policy-rc.d) and no initramfs is made. A node never boots its
#: own initramfs (a VM boots the box's kernel and initrd from the host; a container shares the host's
#: kernel), and the trigger that remade it for both kernels took 8.6 of a 12.5 min NFS upgrade on a
#: TCG VM (nfs-common triggers it). Both are undone when the install ends, however it ends.
HOLD = ("trap 'rm -f /usr/sbin/policy-rc.d' EXIT && "
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && "
        "dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && "
        # from here the real one is update-initramfs.distrib: the trap puts it back
        "trap 'rm -f /usr/sbin/policy-rc.d /usr/sbin/update-initramfs; "
        "dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' EXIT && "
        "printf '#!/bin/sh\\nexit 0\\n' > /usr/sbin/update-initramfs && chmod 755 /usr/sbin/update-initramfs && ")


def install(node: Node, b: bundle.Bundle) -> None:
    """The bundle's packages from the local repository only, under HOLD; dpkg keeps the node's own
    configuration files. A full bundle: the whole distribution first (dist-upgrade). An empty
    bundle (the node's image has the release's versions): nothing to install, the upgrade is a restart."""
    if not b.debs:
        return
    get = (f"DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none apt-get {' '.join(APT)} -q -y "
           "--no-install-recommends -oDpkg::Options::=--force-confold -oDpkg::Options::=--force-confdef")
    dist = f"{get} dist-upgrade && " if b.full else ""
    node.succeed(HOLD + f"apt-get {' '.join(APT)} -q update && {dist}"
                 f"{get} install {' '.join(shlex.quote(p) for p in b.packages)}", timeout=3600 if b.full else 900)


def reboot(node: Node, timeout: float = 300) -> float:
    """A clean shutdown and power-on, as after a distribution upgrade (its new systemd, libc and
    daemons all run from then on); returns the boot time, waited for within the node's boot bound."""
    node.run("sync; systemctl poweroff", timeout=30)  # ssh may end before it answers
    wait_until(lambda: not node.is_up(), timeout=timeout, interval=1.0, what=f"{node.name} to power off")
    node.power_on()
    return node.wait_booted()


def _gate(lab: Lab, backend: str, sup: UpgradeSupport, after: str, timeout: float) -> float:
    t0 = time.monotonic()
    node = lab.node(after)

    def known() -> str | None:
        """A known cause stops the wait (after a grace: a peer is briefly unsettled as it starts)."""
        return sup.diagnose(lab, node) if time.monotonic() - t0 > KNOWN_AFTER else None
    waiting = [""]

    def opened() -> bool:
        waiting[0] = sup.ready(lab) or ""
        return not waiting[0]
    try:
        wait_until(opened, timeout=timeout, interval=1.0, what=f"{backend}'s gate after {after}", terminal=known)
    except WaitTimeout as exc:
        why = sup.diagnose(lab, node)
        exc = WaitTimeout(f"{exc}" + (f" (it waits for: {waiting[0]})" if waiting[0] else ""))
        where = evidence.write(lab, lab.dir / "evidence" / f"upgrade-{time.strftime('%Y%m%d-%H%M%S')}", str(exc))
        raise HarnessError(f"{exc}" + (f"\n{why}" if why and why not in str(exc) else "") + f"\nevidence: {where}") from exc
    return time.monotonic() - t0


def upgrade(lab: Lab, to: str, nodes: Sequence[str] | None = None, *, pause_after: str | None = None,
            offline: bool = False, full: bool = False, gate_timeout: float = 600,
            before_stop: Callable[[str], None] | None = None) -> Report:
    """Upgrade the lab's backends to release ``to`` (see the module). ``before_stop(node)`` is
    called as soon as the gate let ``node`` go, before anything is done to it (tests look at the
    lab there)."""
    if to not in releases.RELEASES:
        raise HarnessError(f"--to {to}: not a release storlab knows (known: {', '.join(releases.RELEASES)})")
    older = [n.name for n in lab.plan.nodes if int(releases.of(n.release).debian) > int(releases.of(to).debian)]
    if older:
        raise HarnessError(f"--to {to}: {', '.join(older)} run a later release; storlab upgrades, it does not "
                           f"downgrade (`storlab reset` takes a lab back to how `up` made it)")
    report = Report(lab.name, to, offline, full=full)
    t_all = time.monotonic()
    for name, sup in supports(lab):
        servers = order(lab, sup, None)
        names = order(lab, sup, nodes)
        if pause_after is not None and pause_after not in names:
            raise HarnessError(f"--pause-after {pause_after}: not among the nodes upgraded ({', '.join(names)})")
        with log.step(f"{name}: gate before the upgrade"):
            _gate(lab, name, sup, names[0], gate_timeout)
        made: dict[tuple[str, tuple[str, ...]], bundle.Bundle] = {}  # one per (release, packages), not per node
        bundles = {}
        for n in names:
            key = (lab.plan.node(n).release, sup.packages(lab.plan.node(n)))
            if key not in made:
                made[key] = bundle.make(key[0], to, key[1], full=full)
            bundles[n] = made[key]
        with log.step(f"{name}: begin"):
            report.finished += [f"{name}: {line}" for line in sup.begin(lab)]
        groups = [names] if offline or not sup.rolling else [[n] for n in names]
        for group in groups:
            steps = _upgrade_group(lab, name, sup, group, bundles, before_stop)
            what = ", ".join(group)
            with log.step(f"{name}: settle after {what}"):
                report.finished += [f"{name}: {line}" for line in sup.settle(lab, [lab.node(n) for n in group])]
            with log.step(f"{name}: gate after {what}"):
                gate_s = _gate(lab, name, sup, group[-1], gate_timeout)
            report.steps += [dataclasses.replace(s, gate_s=round(gate_s, 1)) for s in steps]
            if pause_after in group:
                report.paused_after = pause_after
                break
        else:
            if set(names) == set(servers):
                with log.step(f"{name}: finish"):
                    report.finished += [f"{name}: {line}" for line in sup.finish(lab)]
        if report.paused_after:
            break
    report.seconds = round(time.monotonic() - t_all, 1)
    with open(lab.dir / "logs" / "upgrades.jsonl", "a") as fh:
        fh.write(json.dumps(dataclasses.asdict(report)) + "\n")
    return report


def _upgrade_group(lab: Lab, backend: str, sup: UpgradeSupport, group: list[str], bundles: dict[str, bundle.Bundle],
                   before_stop: Callable[[str], None] | None) -> list[NodeStep]:
    """Stop, install and start ``group`` (one node when rolling; every server at once when offline).
    A full upgrade installs first, while the backend serves (nothing restarts under HOLD: the old
    daemons run on), then stops it and reboots into the new distribution, as operators do."""
    nodes = [lab.node(n) for n in group]
    for n in nodes:  # the moment the gate opened, as the next node sees it
        if before_stop is not None:
            before_stop(n.name)
    before = dict(zip(group, on_each(nodes, versions.of_node, "versions before"), strict=True))
    on_each(nodes, lambda n: push(n, bundles[n.name]), "copy the upgrade bundle in")
    first = bundles[group[0]]

    def install_all() -> None:
        on_each(nodes, lambda n: install(n, bundles[n.name]),
                f"install {'the distribution, ' if first.full else ''}{', '.join(first.packages)} ({first.release})")
    if first.full:
        install_all()
    t0 = time.monotonic()
    on_each(nodes, lambda n: sup.stop(lab, n), f"stop {backend}")
    if first.full:
        on_each(nodes, reboot, f"reboot into {first.release}")
    else:
        install_all()
    on_each(nodes, lambda n: sup.start(lab, n), f"start {backend}")
    down = time.monotonic() - t0
    after = on_each(nodes, versions.of_node, "versions after")
    return [NodeStep(n.name, backend, before[n.name], a, round(down, 1), 0.0) for n, a in zip(nodes, after, strict=True)]
