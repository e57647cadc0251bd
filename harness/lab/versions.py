"""What each node of a running lab really runs: its Debian release and the versions of the packages
its roles' backends install, read on the node (dpkg), not taken from the plan: a node upgraded by
hand, or half-way through a rolling upgrade, says what it has now."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from harness.backends.base import backends
from harness.lab.lab import Lab
from harness.nodes.node import Node


def packages_for(roles: Iterable[str]) -> list[str]:
    """The packages of the backends whose roles the node has (their daemons' versions)."""
    mine = set(roles)
    return list(dict.fromkeys(p for b in backends() if mine & set(b.roles) for p in b.packages))


#: what a package name and a version may look like (Debian policy 5.6.1, 5.6.12): a node is
#: untrusted, and what it says is printed on terminals and written into reports
_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]{0,100}")
_VERSION = re.compile(r"[A-Za-z0-9.+~:/-]{1,100}")


def parse(text: str) -> dict[str, str]:
    """``PACKAGE=VERSION`` lines (dpkg-query's format below) -> {package: version}, installed ones
    only; a line that is not a package name and a version is dropped."""
    out = {}
    for line in text.splitlines():
        name, sep, version = line.partition("=")
        if sep and _NAME.fullmatch(name.strip()) and _VERSION.fullmatch(version.strip()):
            out[name.strip()] = version.strip()
    return out


def of_node(node: Node) -> dict[str, str]:
    """{"debian": /etc/debian_version, package: version, ...} on ``node``."""
    pkgs = packages_for(node.roles)
    query = ' dpkg-query -W -f "\\${Package}=\\${Version}\\n" "$@" 2>/dev/null' if pkgs else ""  # none: not every package
    res = node.run(["sh", "-c", "cat /etc/debian_version;" + query, "sh", *pkgs], timeout=30)
    first, _, rest = res.stdout.partition("\n")
    debian = first.strip() if _VERSION.fullmatch(first.strip()) else "(unreadable)"
    return {"debian": debian, **parse(rest)} if res.stdout else {}


def running(lab: Lab) -> Mapping[str, dict[str, str]]:
    """Every running node's versions (a stopped node has none to say), asked of all at once."""
    up = [n for n in lab.nodes.values() if n.is_up()]
    with ThreadPoolExecutor(max_workers=max(1, len(up))) as pool:
        return dict(zip([n.name for n in up], pool.map(of_node, up), strict=True))
