"""What a student gets: a handout directory (ssh_config, id_ed25519, known_hosts, HANDOUT.md) and
its tarball, and the jump key line that opens their own nodes; both rewritten from the class's
labs whenever a lab comes or goes (refresh_access).
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path
from typing import BinaryIO

from harness import locks, paths
from harness.errors import HarnessError
from harness.lab import lease
from harness.lab.lab import Lab
from harness.training import exercise as training
from harness.training import gate, jump
from harness.training.klass import Klass, list_classes


def ssh_config(klass: str, jump_address: str, port: int, nodes: dict[str, str], lab: str | None = None) -> str:
    """The student's ssh config: `ssh -F ssh_config NODE` reaches the node through the jump
    (``lab`` given: the lab is on an Incus remote, and the jump's gate runs the node's sshd)."""
    out = ["# storlab class handout: ssh -F ssh_config NODE   (run from this directory)",
           "Host jump",
           f"  HostName {jump_address}",
           f"  Port {port}",
           f"  User {jump.account_name(klass)}",
           "  IdentityFile ./id_ed25519",
           "  IdentitiesOnly yes",
           "  UserKnownHostsFile ./known_hosts",
           "  RequestTTY no",
           ""]
    for name, address in nodes.items():
        via = ([f"  ProxyCommand ssh -F ssh_config jump {name}", f"  HostKeyAlias {lab}-{name}"] if lab
               else ["  ProxyJump jump"])
        out += [f"Host {name}",
                f"  HostName {address}",
                "  User root",
                *via,
                "  IdentityFile ./id_ed25519",
                "  IdentitiesOnly yes",
                "  UserKnownHostsFile ./known_hosts",
                "  StrictHostKeyChecking accept-new",
                ""]
    return "\n".join(out)


def known_hosts(jump_address: str, port: int) -> str:
    pub = (jump.jump_dir() / "ssh_host_ed25519_key.pub").read_text().split()
    return f"[{jump_address}]:{port} {pub[0]} {pub[1]}\n"


def handout_text(klass: str, student: str, lab_name: str, nodes: list[dict[str, str]], backends: list[str],
                 pools: list[str], exercise_title: str | None, exercise_text: str | None, expires: str,
                 where: str | None = None) -> str:
    """The student's HANDOUT.md; ``where``: the Incus remote and member holding the lab, when it
    is not the class host."""
    rows = "\n".join(f"| {n['name']} | {n['address']} | {n['roles']} |" for n in nodes)
    first = nodes[0]["name"] if nodes else "NODE"
    reach = ["From this directory (keep `id_ed25519` private; it opens only your own nodes):", "",
             "```", f"ssh -F ssh_config {first}", "```", ""]
    if where:
        reach += [f"Your lab runs on Incus {where}, not on the class host: the class host's jump starts "
                  "your node's ssh server for you there, and the addresses below are on that member's "
                  "lab networks (your nodes reach each other by them).", ""]
    parts = [f"# Lab {lab_name} (class {klass}, student {student})", "",
             f"Your own storage lab: {', '.join(backends) or 'plain nodes'}. It expires: {expires}.", "",
             "## Reach your nodes", "", *reach,
             "| node | address | roles |", "|---|---|---|", rows, "",
             "## The host's storage pools on your lab", "",
             *(f"- {p}" for p in pools), *(["- none"] if not pools else []), ""]
    parts += ["## Current exercise", ""]
    if exercise_title:
        parts += [f"**{exercise_title}**", "", (exercise_text or "").strip(), ""]
    else:
        parts += ["None yet: your instructor will hand one out.", ""]
    return "\n".join(parts)


def handouts_dir(class_dir: Path) -> Path:
    """CLASS/handouts, 0700 (also one an older storlab left 0755): it holds every student's key
    and tarball, and a directory others can list is one step from reading them."""
    return paths.private_dir(class_dir / "handouts")


def archive(directory: Path) -> Path:
    """directory.tar.gz beside it (what an instructor hands out): it holds the student's private
    key, so it is 0600 from its first byte (a temporary file made new, never through a link, then
    renamed), in a parent directory made 0700."""
    paths.private_dir(directory.parent)
    out = directory.parent / f"{directory.name}.tar.gz"

    def write(fh: BinaryIO) -> None:
        with tarfile.open(fileobj=fh, mode="w:gz") as tar:
            tar.add(directory, arcname=directory.name)
    jump.replace_file(directory.parent, out.name, 0o600, write)
    return out


def refresh_access(k: Klass) -> None:
    """Jump keys for every student whose lab is up, and every handout (re)written; under the
    class's keys lock, so that two refreshes at once (class up beside a `storlab down`) never
    write keys from two different views of the class's labs."""
    with locks.exclusive(jump.keys_lock(k.name)):
        _refresh_access(k)


def _refresh_access(k: Klass) -> None:
    labs = k.labs()
    access = []
    projects: list[str] = []  # the class's labs on its Incus remote
    for s, lab in labs.items():
        pub = (k.dir / "handouts" / s / "id_ed25519.pub").read_text()
        route = lab.provider.exec_route()
        if route is None:
            access.append(jump.StudentAccess(s, pub, targets=tuple(f"{n.address}:22" for n in lab.nodes.values())))
        else:  # the lab's networks are on an Incus member, not here: the jump's gate runs `incus exec`
            remote, project = route
            projects.append(project)
            access.append(jump.StudentAccess(s, pub, gate=(remote, project, tuple(lab.nodes))))
    jump.write_keys(k.name, access)  # first: a removed lab's key line goes even if the remote is away
    if k.remote:  # the class's certificate follows its labs (none left: revoked)
        if projects:
            gate.grant_remote(k.name, k.remote, projects)
        else:
            gate.revoke_remote(k.name, k.remote)
    for s, lab in labs.items():
        write_handout(k, s, lab)


def refresh_all_access() -> list[str]:
    """Every class's jump keys rewritten from the labs that still exist: a lab removed by `down`
    or `reap` (expired) loses its student's channels at once, so that a later lab reusing its
    addresses is not reachable with the old key. Returns the classes touched."""
    touched = []
    for name in list_classes():
        k = Klass.load(name)
        if (jump.jump_dir() / "keys" / jump.account_name(name)).exists():
            try:
                refresh_access(k)
            except (HarnessError, OSError) as exc:  # one class's remote being away must not stop the others
                print(f"storlab: class {name}: access not brought up to date: {exc}", file=sys.stderr)
                continue
            touched.append(name)
    return touched


def write_handout(k: Klass, student: str, lab: Lab) -> Path:
    hd = k.dir / "handouts" / student
    port = jump.jump_port()
    nodes = {n.name: n.address for n in lab.nodes.values()}
    gated = lab.provider.exec_route() is not None
    (hd / "ssh_config").write_text(ssh_config(k.name, k.jump_address, port, nodes,
                                              lab=lab.name if gated else None))
    (hd / "known_hosts").write_text(known_hosts(k.jump_address, port))
    ex = training.load(k.exercise) if k.exercise else None
    text = handout_text(
        k.name, student, lab.name,
        [{"name": n.name, "address": n.address, "roles": ", ".join(n.roles)} for n in lab.nodes.values()],
        [b for b in ("gluster", "ceph", "nfs", "iscsi") if getattr(lab.plan, b, None) is not None],
        [f"{p.object} ({p.type})" for p in lab.plan.host.pools],
        ex.title if ex else None, ex.text if ex else None, lease.remaining(lab.state().expires),
        where=f"remote {lab.where()}" if gated else None)
    (hd / "HANDOUT.md").write_text(text)
    return archive(hd)
