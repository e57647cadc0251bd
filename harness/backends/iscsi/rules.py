"""Rules of an iscsi: section (LUNs, portals, ACLs, CHAP) and of host pools on the target."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.iscsi import chap, pool_rules
from harness.backends.iscsi.pool_rules import initiator_problem
from harness.backends.iscsi.pools import NODE_POOLS
from harness.backends.iscsi.schema import IQN_RE, Iscsi
from harness.errors import HarnessError
from harness.spec.topology import Pool


def check(r: Rules, s: Iscsi) -> None:
    check_iqn(r, ("iscsi", "iqn"), s.iqn)
    exists = r.node_ref(("iscsi", "target"), s.target, "iscsi-target")
    disks = {d.name: d for d in r.nodes[s.target][1].disks} if exists else {}
    nets = {n.name for n in r.topology.networks}
    for pi, portal in enumerate(s.portals):
        if portal != "*" and portal not in nets:
            r.add(("iscsi", "portals", pi), f"portal network '{portal}' does not exist",
                     f"use one of: *, {', '.join(nets)}")
    for li, lun in enumerate(s.luns):
        base: Path = ("iscsi", "luns", li)
        if lun.kind == "fileio":
            if not lun.path or not lun.size:
                r.add(base, "a fileio LUN needs path and size", "add path: /iscsi/lun0.img and size: 1G")
        elif lun.kind == "block":
            if not lun.disk:
                r.add(base, "a block LUN needs disk (a disk of the target node)", "add disk: NAME")
            elif exists and lun.disk not in disks:
                r.add(base + ("disk",), f"target node {s.target} has no disk '{lun.disk}'",
                         f"add it to its disks ({', '.join(disks) or 'none'})")
        elif lun.kind == "lvm":
            if not (lun.disk and lun.vg and lun.lv and lun.size):
                r.add(base, "an lvm LUN needs disk, vg, lv and size", "add disk, vg, lv and size")
            elif exists and lun.disk not in disks:
                r.add(base + ("disk",), f"target node {s.target} has no disk '{lun.disk}'",
                         f"add it to its disks ({', '.join(disks) or 'none'})")
    if not s.acls:
        r.add(("iscsi", "acls"), "a target without ACLs admits no initiator on LIO and every initiator on tgt",
                 "add acls: with an entry per initiator IQN (e.g. - initiator: iqn.2019-12.com.packt:PacktStratis01)")
    with_chap = [bool(a.chap) for a in s.acls]
    if any(with_chap) and not all(with_chap):
        r.add(("iscsi", "acls", with_chap.index(False)), "this ACL has no CHAP while others do; CHAP is on for the "
                 "whole target (LIO's TPG authentication, tgt's incominguser), so this initiator could not log in",
                 "give every ACL chap:, or none")
    inits = Counter(a.initiator for a in s.acls)
    for ai, acl in enumerate(s.acls):
        base = ("iscsi", "acls", ai)
        check_iqn(r, base + ("initiator",), acl.initiator)
        if inits[acl.initiator] > 1:
            r.add(base + ("initiator",), "initiator listed twice", "merge the two ACLs")
        if acl.chap:
            chosen = ([k for k in ("password", "password_file") if getattr(acl.chap, k)]
                      + (["generate"] if acl.chap.generate else []))
            if len(chosen) != 1:
                r.add(base + ("chap",), "give exactly one of password, password_file or generate: true",
                         "prefer generate: true")
            if acl.chap.password_file:
                _password_file(r, base + ("chap", "password_file"), acl.chap.password_file)
            pw = acl.chap.password
            if pw is not None and not 12 <= len(pw) <= 16:
                r.add(base + ("chap", "password"), f"CHAP secret is {len(pw)} characters; initiators need 12 to 16",
                         "use 12-16 characters, or generate: true")



def _password_file(r: Rules, path: Path, file: str) -> None:
    """A password_file is in the host's CHAP store and holds one line a CHAP secret can be
    (read here to say so early; read again, the same way, when the plan is made)."""
    outside = chap.password_file_problem(file)
    if outside is not None:
        message, _, fix = outside.partition("; fix: ")
        r.add(path, message, fix)
        return
    if os.path.exists(file) and not os.path.islink(file) and not os.access(file, os.R_OK):
        return  # validated by a user who cannot read it: root checks it when the plan is made
    try:
        chap.read_password_file(file)
    except HarnessError as exc:
        message, _, fix = str(exc).rpartition("; ")
        r.add(path, message, fix)


def check_iqn(r: Rules, path: Path, iqn: str) -> None:
    if not IQN_RE.fullmatch(iqn):
        r.add(path, f"{iqn!r} is not an RFC 3720 iqn name",
                 "write iqn.YYYY-MM.reversed.domain:name in lower case, e.g. iqn.2019-12.com.example:target1")



def check_pool(r: Rules, path: Path, pool: Pool, s: Iscsi) -> None:
    """An iscsi/iscsi-direct host pool logs in with an IQN the target's ACLs admit; the others
    are wired on a hypervisor node that logs in as an initiator (pool_rules)."""
    if pool.type in NODE_POOLS:
        pool_rules.check(r, path, pool, s)
        return
    if pool.initiator:
        check_iqn(r, path + ("initiator",), pool.initiator)
        if s.acls and pool.initiator not in {a.initiator for a in s.acls}:
            r.add(path + ("initiator",), f"initiator {pool.initiator} is not in iscsi.acls; the target will refuse it",
                  "add an ACL for it")
    host = r.nodes.get(pool.host or "kvm")
    if pool.type == "iscsi" and host is not None and "iscsi-initiator" in host[1].roles:
        r.add(path + ("host",), f"node {pool.host} is also an iscsi-initiator: its own sessions to the target "
              "take the same /dev/disk/by-path names as the pool's session, and libvirt then lists none "
              "of the pool's LUNs", "wire this pool on a hypervisor node without role iscsi-initiator")


def check_block(r: Rules, at: Path, section: Iscsi, ref: str | int, nodes: Sequence[str]) -> None:
    """LUN ``ref`` (its index under iscsi.luns) as another backend's device on ``nodes``: each an
    initiator node with an ACL of its own (the i-th initiator node takes the i-th ACL)."""
    if not isinstance(ref, int):
        r.add(at, "a device on the iSCSI target is named by its LUN's index", "write lun: 0 (an index under iscsi.luns)")
        return
    if ref >= len(section.luns):
        r.add(at + ("lun",), f"the target has {len(section.luns)} LUNs (0 to {len(section.luns) - 1})",
              "name one of them by its index under iscsi.luns")
    for name in nodes:
        problem = initiator_problem(r, section, name, "the LUN")
        if problem:
            r.add(at, *problem)
