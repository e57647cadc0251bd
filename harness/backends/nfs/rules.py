"""Rules of an nfs: section: the server node, exports and their options, grace and lease."""

from __future__ import annotations

from collections import Counter

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.nfs.schema import Nfs


def check(r: Rules, n: Nfs) -> None:
    r.node_ref(("nfs", "server"), n.server, "nfs-server")
    paths = Counter(e.path for e in n.exports)
    for ei, e in enumerate(n.exports):
        base: Path = ("nfs", "exports", ei)
        if paths[e.path] > 1:
            r.add(base + ("path",), f"path {e.path} exported twice", "merge the clients into one export")
        opts = set(e.options)
        for a, b in (("rw", "ro"), ("sync", "async"), ("root_squash", "no_root_squash")):
            if a in opts and b in opts:
                r.add(base + ("options",), f"options '{a}' and '{b}' contradict each other", "keep one")
        if "*" in e.clients and "no_root_squash" in opts and not e.allow_insecure:
            r.add(base + ("options",), "export to '*' with no_root_squash gives root on the export to anyone",
                     "restrict clients (e.g. 'lab'), use root_squash, or set allow_insecure: true")
    if n.grace_period < n.lease_time:
        r.add(("nfs", "grace_period"), f"grace period {n.grace_period}s is shorter than the lease time "
                 f"{n.lease_time}s: clients could not reclaim their state after a restart",
                 f"set grace_period to at least {n.lease_time}")

