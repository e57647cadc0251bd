"""The KVM images export served with root NOT squashed: root on any lab client is root on the
export (can read, change and chown every image). Ganesha (EXPORT { Squash }) or kernel nfsd
(/etc/exports), whichever the plan says the server runs."""

from __future__ import annotations

import re

from harness.backends.nfs import planned
from harness.backends.nfs.plan import NfsExportPlan
from harness.backends.nfs.role import parse_exportfs, wait_out_of_grace
from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.run import wait_until

TITLE = "Root on an NFS client is root on the KVM images export (root is not squashed)"
BACKEND = "nfs"
TOPOLOGY = "nfs-userspace.yaml"  # the topology it was written for (topologies/)

GANESHA_CONF = "/etc/ganesha/ganesha.conf"
EXPORTS = "/etc/exports"


def the_export(lab: Lab) -> NfsExportPlan:
    """The first export the topology wants root-squashed (root_squash is also the default)."""
    for e in planned(lab.plan).exports:
        if "no_root_squash" not in e.options and "all_squash" not in e.options:
            return e
    raise HarnessError(f"lab {lab.name}: no export with root_squash to break")


def server(lab: Lab) -> Node:
    return lab.node(planned(lab.plan).server)


# -- editing the configuration: pure functions on its text ------------------------------------
def ganesha_export_block(conf: str, path: str) -> tuple[int, int] | None:
    """(start, end) offsets of the EXPORT { ... } block whose Path is ``path``."""
    for m in re.finditer(r"(?im)^\s*EXPORT\s*\{", conf):
        depth, i = 0, m.end() - 1
        while i < len(conf):
            if conf[i] == "{":
                depth += 1
            elif conf[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        block = conf[m.start():i + 1]
        if re.search(r'(?im)^\s*Path\s*=\s*"?' + re.escape(path) + r'"?\s*;', block):
            return m.start(), i + 1
    return None


def ganesha_set_squash(conf: str, path: str, value: str) -> str:
    """``conf`` with the export of ``path`` set to ``Squash = value`` (in the EXPORT block itself;
    a Squash in one of its CLIENT blocks is removed, as it would override it)."""
    span = ganesha_export_block(conf, path)
    if span is None:
        raise HarnessError(f"{GANESHA_CONF}: no EXPORT block with Path = \"{path}\"")
    block = conf[span[0]:span[1]]
    block = re.sub(r"(?i)(CLIENT\s*\{[^}]*?)\s*Squash\s*=\s*[^;]*;", r"\1", block)
    if re.search(r"(?im)^\s*Squash\s*=", block):
        block = re.sub(r"(?im)^(\s*)Squash\s*=\s*[^;]*;", rf"\1Squash = {value};", block, count=1)
    else:
        block = re.sub(r"(?im)^(\s*)(Access_Type\s*=)", rf"\1Squash = {value};\n\1\2", block, count=1)
    return conf[:span[0]] + block + conf[span[1]:]


def exports_set_squash(text: str, path: str, squash: bool) -> str:
    """/etc/exports with every client of ``path`` given root_squash (or no_root_squash)."""
    want, other = ("root_squash", "no_root_squash") if squash else ("no_root_squash", "root_squash")
    out = []
    found = False
    for line in text.splitlines():
        fields = line.split()
        if fields and not line.lstrip().startswith("#") and fields[0] == path:
            found = True

            def fix(m: re.Match[str]) -> str:
                opts = [want if o == other else o for o in m.group(2).split(",") if o]
                opts = list(dict.fromkeys(opts)) if want in opts else [*opts, want]
                return f"{m.group(1)}({','.join(opts)})"
            line = re.sub(r"(\S*)\(([^)]*)\)", fix, line)
        out.append(line)
    if not found:
        raise HarnessError(f"{EXPORTS}: no line for {path}")
    return "\n".join(out) + "\n"


# -- applying it ------------------------------------------------------------------------------
def reloads(node: Node) -> int:
    """How many export reloads (SIGHUP) ganesha's log records."""
    r = node.run(["grep", "-c", "Reread exports complete", "/var/log/ganesha/ganesha.log"], timeout=30)
    return int(r.stdout.strip() or 0)


def set_root_squash(lab: Lab, squash: bool) -> None:
    nfs = planned(lab.plan)
    node = server(lab)
    path = the_export(lab).path
    if nfs.implementation == "ganesha":
        conf = node.get(GANESHA_CONF)
        new = ganesha_set_squash(conf, path, "Root_Squash" if squash else "No_Root_Squash")
        if new != conf:
            node.put(GANESHA_CONF, new)
        if node.run(["systemctl", "is-active", "nfs-ganesha.service"], timeout=30).stdout.strip() == "active":
            # SIGHUP: ganesha re-reads its exports and applies changed options, without the grace
            # period a restart costs
            before = reloads(node)
            node.succeed(["systemctl", "reload", "nfs-ganesha.service"], timeout=60)
            wait_until(lambda: reloads(node) > before, timeout=30, interval=0.5,
                       what=f"ganesha on {node.name} to re-read its exports")
        else:
            node.succeed(["systemctl", "restart", "nfs-ganesha.service"], timeout=90)
            node.wait_for_unit("nfs-ganesha.service", timeout=90)

        def exported() -> bool:
            r = node.run(["showmount", "-e", "--no-headers", "127.0.0.1"], timeout=15)
            return r.ok and path in {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
        wait_until(exported, timeout=60, what=f"ganesha on {node.name} exporting {path}")
        wait_out_of_grace(node, timeout=nfs.grace_period + 60)
    else:
        text = node.get(EXPORTS)
        new = exports_set_squash(text, path, squash)
        if new != text:
            node.put(EXPORTS, new)
        node.succeed(["exportfs", "-ra"], timeout=60)
        applied = parse_exportfs(node.succeed(["exportfs", "-v"], timeout=30)).get(path, {})
        want = "root_squash" if squash else "no_root_squash"
        if not applied or any(want not in opts for opts in applied.values()):
            raise HarnessError(f"{node.name}: exportfs -v shows {path} as {applied}, not {want}")


def break_lab(lab: Lab) -> None:
    lab.mark(f"training: export {the_export(lab).path} with no_root_squash")
    set_root_squash(lab, squash=False)


def solve(lab: Lab) -> None:
    set_root_squash(lab, squash=True)
