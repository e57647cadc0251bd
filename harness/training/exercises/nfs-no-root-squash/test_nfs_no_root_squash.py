"""Checks of nfs-no-root-squash: the server's export configuration squashes root, and root on an
NFS client really becomes the anonymous user (a file it creates belongs to nobody, 65534)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time

from harness.backends.nfs import planned
from harness.backends.nfs.plan import NfsExportPlan
from harness.backends.nfs.role import parse_exportfs, wait_out_of_grace
from harness.lab.lab import Lab
from harness.nodes.node import Node

ANON = 65534  # nobody / nogroup, what root is squashed to
GANESHA_CONF = "/etc/ganesha/ganesha.conf"
# Ganesha's Squash values that squash root (case-insensitive, as ganesha reads them)
GANESHA_SQUASHING = {"root", "root_squash", "rootsquash", "all", "all_squash", "allsquash", "all_anonymous", "allanonymous"}


def the_export(lab: Lab) -> NfsExportPlan:
    return next(e for e in planned(lab.plan).exports
                if "no_root_squash" not in e.options and "all_squash" not in e.options)


def server(lab: Lab) -> Node:
    return lab.node(planned(lab.plan).server)


def ganesha_squash_values(conf: str, path: str) -> list[str] | None:
    """Every Squash setting of the EXPORT block of ``path`` (its CLIENT blocks included); None
    when no block exports ``path``."""
    conf = re.sub(r"#[^\n]*", "", conf)
    for m in re.finditer(r"(?i)\bEXPORT\s*\{", conf):
        depth, i = 0, m.end() - 1
        while i < len(conf):
            depth += {"{": 1, "}": -1}.get(conf[i], 0)
            if depth == 0:
                break
            i += 1
        block = conf[m.start():i + 1]
        if re.search(r'(?i)\bPath\s*=\s*"?' + re.escape(path) + r'"?\s*;', block):
            return [v.strip().strip('"').lower() for v in re.findall(r"(?i)\bSquash\s*=\s*([^;]+);", block)]
    return None


def test_export_configuration_squashes_root(lab: Lab) -> None:
    nfs = planned(lab.plan)
    node = server(lab)
    path = the_export(lab).path
    if nfs.implementation == "ganesha":
        values = ganesha_squash_values(node.get(GANESHA_CONF), path)
        assert values is not None, f"{node.name}:{GANESHA_CONF} has no EXPORT block for {path} any more"
        # no Squash at all is Root_Squash, ganesha's default
        bad = [v for v in values if v not in GANESHA_SQUASHING]
        assert not bad, (f"{node.name}:{GANESHA_CONF}: the EXPORT of {path} says Squash = {', '.join(bad)}: root on "
                         f"the clients is not squashed")
    else:
        lines = [line for line in node.get("/etc/exports").splitlines()
                 if line.split() and line.split()[0] == path]
        assert lines, f"{node.name}:/etc/exports has no line for {path} any more"
        assert not any("no_root_squash" in line for line in lines), \
            f"{node.name}:/etc/exports exports {path} with no_root_squash: {lines}"
        applied = parse_exportfs(node.succeed(["exportfs", "-v"], timeout=30)).get(path, {})
        assert applied, f"{node.name}: nfsd does not export {path} (`exportfs -v`)"
        loose = {c: o for c, o in applied.items() if "no_root_squash" in o}
        assert not loose, (f"{node.name}: nfsd still applies no_root_squash to {path} for {', '.join(loose)} "
                           f"(`exportfs -v`: /etc/exports is read by `exportfs -ra`)")


def test_root_on_a_client_creates_files_as_nobody(lab: Lab) -> None:
    """The KVM host, as root, writes a file through NFS (libnfs, AUTH_SYS uid 0): the server
    must store it as the anonymous user."""
    nfs = planned(lab.plan)
    node = server(lab)
    path = the_export(lab).path
    if nfs.implementation == "ganesha":
        wait_out_of_grace(node, timeout=nfs.grace_period + 30)  # a restarted ganesha refuses creates until then
    name = f".squash-check-{os.getpid()}-{int(time.time())}"
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"written by root on an NFS client\n")
        f.flush()
        cp = subprocess.run(["nfs-cp", f.name, f"nfs://{node.address}{path}/{name}"], capture_output=True, text=True,
                            timeout=30, check=False)
    assert cp.returncode == 0, f"root on the KVM host cannot write to nfs://{node.address}{path}: {cp.stderr.strip()}"
    try:
        owner = node.succeed(["stat", "-c", "%u:%g", f"{path}/{name}"], timeout=30).strip()
    finally:
        node.run(["rm", "-f", "--", f"{path}/{name}"], timeout=30)
    assert owner == f"{ANON}:{ANON}", (f"a file root created through NFS belongs to {owner} on {node.name}, not to "
                                       f"{ANON}:{ANON} (nobody): root on the clients is root on the export")
