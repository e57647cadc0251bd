"""Rules of a gluster: section: bricks on gluster nodes, replica sets across nodes, options."""

from __future__ import annotations

from collections import Counter

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.gluster.schema import Gluster


def check(r: Rules, g: Gluster) -> None:
    vnames = Counter(v.name for v in g.volumes)
    for vi, vol in enumerate(g.volumes):
        base: Path = ("gluster", "volumes", vi)
        if vnames[vol.name] > 1:
            r.add(base + ("name",), f"duplicate volume name '{vol.name}'", "rename one")
        hosts: list[str | None] = []
        for bi, brick in enumerate(vol.bricks):
            path = base + ("bricks", bi)
            node, sep, bpath = brick.partition(":")
            if not sep or not bpath.startswith("/"):
                r.add(path, f"brick '{brick}' is not node:/absolute/path", "write e.g. gluster1:/gluster/bricks/1/brick")
                hosts.append(None)
                continue
            r.node_ref(path, node, "gluster")
            hosts.append(node)
            i = r.nodes.get(node, (None, None))[0]
            if i is not None:
                mounts = [d.mount for d in r.topology.nodes[i].disks if d.mount]
                if any(bpath == m for m in mounts):
                    r.add(path, f"brick {bpath} is the mount point itself; gluster refuses it",
                             f"use a sub-directory, e.g. {bpath}/brick")
        if Counter(vol.bricks).most_common(1)[0][1] > 1:
            r.add(base + ("bricks",), "the same brick is listed twice", "list each brick once")
        n = len(vol.bricks)
        if vol.arbiter and vol.replica != 3:
            r.add(base + ("arbiter",), f"an arbiter needs replica 3 (this volume has replica {vol.replica})",
                     "set replica: 3, or drop arbiter")
        if n % vol.replica:
            r.add(base + ("replica",), f"replica {vol.replica} does not divide the {n} bricks",
                     f"use a multiple of {vol.replica} bricks, or replica {n}")
            continue
        for s in range(0, n, vol.replica):
            group = [h for h in hosts[s:s + vol.replica] if h]
            dup = [h for h, c in Counter(group).items() if c > 1]
            if dup and vol.replica > 1:
                r.add(base + ("bricks", s), f"replica set {s // vol.replica} has two bricks on node {dup[0]}",
                         "put the bricks of one replica set on different nodes")
        for key, value in vol.options.items():
            if key == "network.ping-timeout" and not str(value).isdigit():
                r.add(base + ("options", key), "network.ping-timeout must be whole seconds", "e.g. 5")

