"""Lifecycle commands: image build, up, status, ssh, ssh-config, down, list, reap."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import locks, log, paths
from harness.errors import HarnessError
from harness.lab import images, lease, versions
from harness.lab.lab import Lab, list_labs, remove_staging
from harness.lab.reap import reap
from harness.providers import hostdisks, image
from harness.providers.capabilities import parse_on
from harness.spec import releases
from harness.spec.topology import NAME_RE
from harness.training import handout


def cmd_image_build(args: argparse.Namespace) -> int:
    t = time.monotonic()
    path = image.build(force=args.force, release=args.release)
    print(f"golden image: {path} ({time.monotonic() - t:.1f}s)")
    return 0


def cmd_image_list(args: argparse.Namespace) -> int:
    for img in image.list_images():
        print(f"{img['key']}  {img['size']:>9}  {img['release'] if img['current'] == 'True' else 'old':<9}  {img['path']}")
    return 0


def cmd_image_prune(args: argparse.Namespace) -> int:
    for line in images.report(images.prune(dry_run=args.dry_run), args.dry_run):
        print(line)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    expire = lease.parse_duration(args.expire) if args.expire else None  # bad input fails before anything is made
    provider, remote = placement(args)
    lab = Lab.from_topology(args.topology, provider, name=args.name, remote=remote, budget=args.budget,
                            untrusted=args.untrusted, klass=args.for_class, disk_budget=args.disk_budget,
                            cold_boot=args.cold_boot or None, release=args.release)
    for keyfile in args.authorize or []:
        lab.authorize(Path(keyfile).read_text())
    log.add_logfile(lab.logfile)
    start = time.monotonic()
    lab.up(keep_on_failure=args.keep_on_failure)
    if expire:
        lab.lease(expire)
        print(f"lab {lab.name} expires in {args.expire} (`storlab lease {lab.name} DURATION` extends, `storlab reap` removes)")
    print(f"lab {lab.name} is up in {time.monotonic() - start:.0f}s ({len(lab.nodes)} nodes, {lab.plan.provider})")
    print(f"  ssh:       storlab ssh {lab.name} NODE   (or ssh -F {lab.ssh_config} NODE)")
    print(f"  log:       {lab.logfile}")
    print(f"  tear down: storlab down {lab.name}")
    return 0


def placement(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The provider and engine remote from --provider / --on (`--on incus:REMOTE`)."""
    on = getattr(args, "on", None)
    if not on:
        return args.provider, None
    provider, remote = parse_on(on)
    if args.provider and args.provider != provider:
        raise HarnessError(f"--provider {args.provider} and --on {on} disagree: give one of them")
    return provider, remote


def placement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on", metavar="PROVIDER[:REMOTE[@GROUP]]",
                   help="where the nodes run: lxc, vagrant, incus (this host's Incus) or incus:REMOTE (an Incus "
                        "remote, a cluster too: all of a lab's nodes on one member, labs spread by Incus; @GROUP: "
                        "within that cluster group)")
    p.add_argument("--budget", metavar="LIMITS",
                   help="incus: the lab's project limits, e.g. instances=5,memory=8GiB,cpus=4,disk=60GiB (a field left "
                        "out is exactly what the lab needs); a lab over its budget is refused before anything is made")
    p.add_argument("--disk-budget", metavar="SIZE",
                   help="lxc: what the lab's data disks (sparse images) may really take of this host's disk, e.g. 2G "
                        "(per student for a class): capacity checks count it instead of their full sizes, and a lab "
                        "that writes more fills its own budget (its disks fail), never the host's disk")
    p.add_argument("--cold-boot", action="store_true",
                   help="vagrant: boot every node (`vagrant up`) instead of restoring it from the saved state of the "
                        "booted box (the default; also STORLAB_COLD_BOOT=1)")
    p.add_argument("--release", choices=list(releases.RELEASES),
                   help="the lab's Debian release instead of the topology's (a node naming its own keeps it; "
                        "also STORLAB_RELEASE)")


def cmd_down(args: argparse.Namespace) -> int:
    if not (paths.lab_dir(args.lab) / "plan.json").exists() and re.fullmatch(NAME_RE, args.lab):
        locks.hold(args.lab)
        if remove_staging(args.lab):  # an `up` killed before its lab directory was made: nothing else exists
            print(f"lab {args.lab} removed (what a stopped `up` had begun to write)")
            return 0
    lab = Lab.load(args.lab)
    log.add_logfile(paths.home() / "logs" / f"down-{args.lab}.log")
    rep = lab.down()
    left = lab.leftovers()
    if rep.failed or left:
        raise HarnessError(f"lab {args.lab}: could not remove {len(rep.failed)} item(s); still present: {left}")
    handout.refresh_all_access()
    print(f"lab {args.lab} removed ({len(rep.removed)} items)")
    return 0


def lab_summary(lab: Lab, with_versions: bool = True) -> dict[str, Any]:
    """The lab as `status --json` shows it; ``with_versions``: ask its running nodes (over ssh) what they run."""
    st = lab.state()
    ver = versions.running(lab) if with_versions and st.status == "up" else {}
    return {"lab": lab.name, "status": st.status or "?", "provider": lab.plan.provider, "where": lab.where(),
            "topology": lab.plan.topology, "created": st.created, "expires": st.expires,
            "expires_in": lease.remaining(st.expires),
            "snapshots": sorted(st.snapshots), "exercise": st.exercise,
            "disk_budget_mib": lab.plan.disk_budget_mib, "disk_used_mib": (hostdisks.budget_use(lab.dir) or (None,))[0],
            "nodes": [{"name": n.name, "address": n.address, "running": n.is_up(), "roles": list(n.roles),
                       "release": lab.plan.node(n.name).release, "versions": ver.get(n.name, {})}
                      for n in lab.nodes.values()]}


def cmd_status(args: argparse.Namespace) -> int:
    names = [args.lab] if args.lab else list_labs()
    labs = [Lab.load(name) for name in names]
    if args.json:
        print(json.dumps([lab_summary(lab) for lab in labs], indent=2))
        return 0
    for lab in labs:
        st = lab.state()
        print(f"{lab.name}: {st.status or '?'} ({lab.plan.provider} on {lab.where()}, "
              f"steps done: {', '.join(st.steps_done) or '-'}; expires: {lease.remaining(st.expires)}; "
              f"snapshots: {', '.join(sorted(st.snapshots)) or '-'})")
        if (use := hostdisks.budget_use(lab.dir)) is not None:
            print(f"  disk budget: {use[0]} of {use[1]} MiB used")
        ver = versions.running(lab) if st.status == "up" else {}
        for node in lab.nodes.values():
            v = ver.get(node.name, {})
            what = " ".join(f"{k} {x}" for k, x in v.items() if k != "debian")
            print(f"  {node.name:<14} {node.address:<16} {'running' if node.is_up() else 'stopped'}  {','.join(node.roles):<24} "
                  f"{lab.plan.node(node.name).release}" + (f" ({v['debian']})" if v.get("debian") else "") +
                  (f"  {what}" if what else ""))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    labs = [Lab.load(name) for name in list_labs()]
    if args.json:
        print(json.dumps([{k: v for k, v in lab_summary(lab, with_versions=False).items() if k != "nodes"}
                          for lab in labs], indent=2))
        return 0
    for lab in labs:
        st = lab.state()
        print(f"{lab.name:<32} {st.status or '?':<10} {lab.plan.provider:<8} {lab.where():<20} {len(lab.nodes)} nodes  "
              f"expires: {lease.remaining(st.expires)}")
    return 0


def _timed(args: argparse.Namespace, op: Callable[[Lab], float], done: str) -> int:
    lab = Lab.load(args.lab)
    log.add_logfile(lab.logfile)
    took = op(lab)
    print(f"lab {lab.name}: {done} in {took:.1f}s")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    return _timed(args, lambda lab: lab.snapshot(args.name), f"snapshot {args.name} taken")


def cmd_revert(args: argparse.Namespace) -> int:
    return _timed(args, lambda lab: lab.revert(args.name), f"reverted to {args.name}")


def cmd_reset(args: argparse.Namespace) -> int:
    return _timed(args, lambda lab: lab.reset(), "reset to its state after up (backends healthy)")


def cmd_lease(args: argparse.Namespace) -> int:
    lab = Lab.load(args.lab)
    lab.lease(lease.parse_duration(args.duration))
    print(f"lab {lab.name}: expires {lease.remaining(lab.state().expires)}")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    lab = Lab.load(args.lab)
    node = lab.node(args.node)
    argv = ["ssh", "-F", str(lab.ssh_config), node.name, *args.command]
    sys.stdout.flush()
    os.execvp("ssh", argv)
    return 0  # not reached


def cmd_ssh_config(args: argparse.Namespace) -> int:
    print(Lab.load(args.lab).access.ssh_config_text())
    return 0


def cmd_reap(args: argparse.Namespace) -> int:
    rep = reap()
    handout.refresh_all_access()  # an expired student's key loses its channels with its lab
    for item in rep.removed:
        print(f"removed {item}")
    for item, why in rep.failed:
        print(f"FAILED {item}: {why}", file=sys.stderr)
    return 0 if rep.ok else 1


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The lab commands, in the order `storlab --help` lists them."""
    _image_commands(sub)
    _up_command(sub)
    _state_commands(sub)
    _snapshot_commands(sub)
    _access_commands(sub)


def _image_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """image build, image list, image prune."""
    p = sub.add_parser("image", help="golden image: build (cached by content), list, or prune old ones")
    isub = p.add_subparsers(dest="image_cmd", required=True)
    b = isub.add_parser("build")
    b.add_argument("--force", action="store_true")
    b.add_argument("--release", default=releases.DEFAULT, choices=list(releases.RELEASES),
                   help=f"the Debian release (default {releases.DEFAULT})")
    b.set_defaults(fn=cmd_image_build)
    isub.add_parser("list").set_defaults(fn=cmd_image_list)
    pr = isub.add_parser("prune", help="remove golden images, boxes, saved states, Incus images and upgrade "
                                       "bundles that no release builds and no lab was made from")
    pr.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    pr.set_defaults(fn=cmd_image_prune)


def _up_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """up and its placement options."""
    p = sub.add_parser("up", help="bring a lab up (resumes a half-built one)")
    p.add_argument("topology")
    p.add_argument("--provider", help="a node provider: lxc, vagrant, ... (overrides the topology's)")
    p.add_argument("--name", help="bring up an instance of the topology under this lab name (one topology, many labs: "
                                  "its own networks, nodes, pools and paths)")
    p.add_argument("--keep-on-failure", action="store_true", help="keep a failed lab for debugging instead of removing it")
    p.add_argument("--untrusted", action="store_true",
                   help="the lab's users are not this host's admins (students): its nodes run only where root "
                        "inside cannot reach the host (incus: unprivileged containers; vagrant: VMs); refused "
                        "with the reason on a provider or role that cannot")
    p.add_argument("--for-class", metavar="CLASS_ID", help=argparse.SUPPRESS)  # set by `storlab class up`
    p.add_argument("--authorize", metavar="PUBKEY_FILE", action="append",
                   help="also let this public key log in as root on every node (a student's key); repeatable")
    p.add_argument("--expire", metavar="DURATION", help="a lease: `storlab reap` removes the lab after it (4h, 90m, 2d)")
    placement_args(p)
    p.set_defaults(fn=cmd_up)


def _state_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """down, status, list."""
    p = sub.add_parser("down", help="remove everything a lab created")
    p.add_argument("lab")
    p.set_defaults(fn=cmd_down)
    p = sub.add_parser("status", help="labs and their nodes")
    p.add_argument("lab", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("list", help="labs on this host, with their leases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_list)


def _snapshot_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """snapshot, revert, reset, lease."""
    p = sub.add_parser("snapshot", help="save a lab's nodes and data disks under a name (nodes keep running)")
    p.add_argument("lab")
    p.add_argument("name")
    p.set_defaults(fn=cmd_snapshot)
    p = sub.add_parser("revert", help="put a lab back as a snapshot saved it")
    p.add_argument("lab")
    p.add_argument("name")
    p.set_defaults(fn=cmd_revert)
    p = sub.add_parser("reset", help="put a lab back to its state right after up, backends healthy")
    p.add_argument("lab")
    p.set_defaults(fn=cmd_reset)
    p = sub.add_parser("lease", help="set or extend when a lab expires (from now): 4h, 90m, never")
    p.add_argument("lab")
    p.add_argument("duration")
    p.set_defaults(fn=cmd_lease)


def _access_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """ssh, ssh-config, reap."""
    p = sub.add_parser("ssh", help="ssh into a lab node")
    p.add_argument("lab")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_ssh)
    p = sub.add_parser("ssh-config", help="print an ssh config for the lab (plain ssh, fabric, testinfra)")
    p.add_argument("lab")
    p.set_defaults(fn=cmd_ssh_config)
    sub.add_parser("reap", help="remove expired labs, labs whose owner died, and orphaned lab objects").set_defaults(fn=cmd_reap)
