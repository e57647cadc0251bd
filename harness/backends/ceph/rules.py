"""Rules of a ceph: section: monitors, mgr, OSDs, pool sizes against OSD hosts, client caps."""

from __future__ import annotations

from collections import Counter

from harness.backends.base import Path_ as Path
from harness.backends.base import Rules
from harness.backends.ceph.schema import Ceph


def check(r: Rules, c: Ceph) -> None:
    mons = [n for n in r.topology.nodes if "ceph-mon" in n.roles]
    osds = [n for n in r.topology.nodes if "ceph-osd" in n.roles]
    if not mons:
        r.add(("ceph",), "ceph needs at least one node with role ceph-mon", "add ceph-mon to a node's roles")
    elif len(mons) % 2 == 0:
        r.add(("ceph",), f"{len(mons)} monitors: an even count gains no fault tolerance and can split votes",
                 f"use {len(mons) - 1} or {len(mons) + 1} monitors")
    if not [n for n in r.topology.nodes if "ceph-mgr" in n.roles]:
        r.add(("ceph",), "ceph needs a node with role ceph-mgr (pools and health need it)", "add ceph-mgr to a mon node")
    if not osds:
        r.add(("ceph",), "ceph needs nodes with role ceph-osd", "add ceph-osd to some nodes")
    if c.osd_pool_default_size > len(osds) and osds:
        r.add(("ceph", "osd_pool_default_size"),
                 f"default size {c.osd_pool_default_size} > {len(osds)} OSD hosts", f"use at most {len(osds)}")
    if c.osd_disk:
        for n in osds:
            if c.osd_disk not in {d.name for d in n.disks}:
                i = r.nodes[n.name][0]
                r.add(("ceph", "osd_disk"), f"OSD node {n.name} has no disk '{c.osd_disk}'",
                         f"add a disk named {c.osd_disk} (filesystem: none) to nodes[{i}]")
    pool_names = Counter(p.name for p in c.pools)
    for pi, p in enumerate(c.pools):
        base: Path = ("ceph", "pools", pi)
        if pool_names[p.name] > 1:
            r.add(base + ("name",), f"duplicate pool '{p.name}'", "rename one")
        if osds and p.size > len(osds):
            r.add(base + ("size",), f"pool size {p.size} needs {p.size} OSD hosts; the lab has {len(osds)}",
                     f"use size {len(osds)} or add OSD nodes")
        min_size = p.min_size if p.min_size is not None else max(1, p.size - p.size // 2)
        if min_size == 1:
            r.add(base + ("min_size",), "min_size 1 acknowledges writes held by a single copy (data loss on one failure)",
                     "use min_size 2 with size 2 or 3")
        if p.min_size is not None and p.min_size > p.size:
            r.add(base + ("min_size",), f"min_size {p.min_size} > size {p.size}", "lower min_size")
    for ci, client in enumerate(c.clients):
        for daemon, cap in client.caps.items():
            for word in cap.replace(",", " ").split():
                if word.startswith("pool="):
                    name = word.split("=", 1)[1].strip("'\"")
                    if name not in pool_names:
                        r.add(("ceph", "clients", ci, "caps", daemon), f"cap names pool '{name}' which is not defined",
                                 f"define it under ceph.pools or use one of: {', '.join(pool_names) or '(none)'}")

