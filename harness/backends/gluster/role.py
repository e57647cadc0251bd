"""Gluster role: brick filesystems, glusterd, trusted pool, volumes with their options,
started and verified brick by brick. Facts are pure parsers of the gluster CLI's --xml."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from harness import log
from harness.backends.base import LabContext, NodeView
from harness.backends.gluster.plan import GlusterPlan, GlusterVolumePlan, of
from harness.errors import HarnessError
from harness.nodes.node import Node, on_each
from harness.nodes.roles.base import prepare_disks
from harness.run import wait_until


# -- facts: pure parsers ------------------------------------------------------------------
def _root(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    ret = root.findtext("opRet")
    if ret is not None and ret != "0":
        raise HarnessError(f"gluster error: {root.findtext('opErrstr') or root.findtext('opErrno')}")
    return root


def parse_peer_status(xml: str) -> list[dict[str, Any]]:
    return [{"hostname": p.findtext("hostname"), "connected": p.findtext("connected") == "1",
             "state": p.findtext("stateStr")} for p in _root(xml).iter("peer")]


def parse_volume_info(xml: str) -> dict[str, dict[str, Any]]:
    vols = {}
    for v in _root(xml).iter("volume"):
        name = v.findtext("name")
        if not name:
            continue
        vols[name] = {
            "status": v.findtext("statusStr"), "replica": int(v.findtext("replicaCount") or 1),
            "bricks": [b.findtext("name") or (b.text or "").strip() for b in v.iter("brick")],
            "options": {o.findtext("name"): o.findtext("value") for o in v.iter("option")},
        }
    return vols


def parse_volume_status(xml: str) -> list[dict[str, Any]]:
    out = []
    for n in _root(xml).iter("node"):
        path = n.findtext("path") or ""
        if not path.startswith("/"):
            continue  # self-heal daemon and other non-brick entries
        out.append({"host": n.findtext("hostname"), "path": path, "online": n.findtext("status") == "1",
                    "pid": n.findtext("pid"), "port": n.findtext("port")})
    return out


def parse_heal_info(xml: str) -> dict[str, int | None]:
    """Brick -> pending entry count (None when the brick is not connected)."""
    out: dict[str, int | None] = {}
    for b in _root(xml).iter("brick"):
        status = b.findtext("status") or ""
        n = b.findtext("numberOfEntries")
        out[b.findtext("name") or "?"] = int(n) if (n is not None and n.isdigit() and status == "Connected") else None
    return out


def parse_volume_clients(text: str) -> dict[str, set[str]]:
    """Brick -> addresses of the clients connected to it, from `gluster volume status VOL clients`."""
    out: dict[str, set[str]] = {}
    brick = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Brick :"):
            brick = line.split(":", 1)[1].strip()
            out[brick] = set()
        elif brick and line and line[0].isdigit() and ":" in line.split()[0]:
            out[brick].add(line.split()[0].rsplit(":", 1)[0])
    return out


def parse_heal_count(text: str) -> dict[str, int | None]:
    """Brick -> pending entry count from ``gluster volume heal VOL statistics heal-count`` (None for
    a brick with no answer). Unlike ``heal info`` (glfsheal, a gfapi client, which took 10 s per
    volume here on glusterfs 10 while a brick was down), this asks the self-heal daemons through
    glusterd and answers in well under a second with a node down."""
    out: dict[str, int | None] = {}
    brick = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Brick "):
            brick = line[len("Brick "):]
            out[brick] = None
        elif brick and line.startswith("Number of entries:"):
            n = line.split(":", 1)[1].strip()
            out[brick] = int(n) if n.isdigit() else None
    return out


# -- operations ---------------------------------------------------------------------------
def brick_spec(lab: LabContext, brick: str) -> str:
    """node:/path -> address:/path, so the KVM host can mount without resolving lab names."""
    node, path = brick.split(":", 1)
    return f"{lab.node(node).address}:{path}"


#: glusterd runs this geo-replication helper at every start unless it is missing, as on distributions
#: that ship geo-replication in a package of its own ("geo-replication module not installed"): it
#: starts Python 13 times to rewrite its template config, 14.6 s of glusterd's 15.3 s start on a
#: TCG VM (0.7 s without). No storlab backend uses geo-replication; the diversion says so on the node.
NO_GSYNCD = ('for p in /usr/lib/*/glusterfs/gsyncd; do if [ -e "$p" ]; then '
             'dpkg-divert --local --rename --divert "$p.storlab-off" --add "$p" >/dev/null || exit 1; fi; done')


def start_glusterd(node: NodeView) -> None:
    node.succeed(["sh", "-c", NO_GSYNCD], timeout=60)
    node.enable_units(["glusterd.service"], timeout=60)


def apply(lab: LabContext) -> None:
    section = of(lab.plan)
    for vol in section.volumes if section else ():
        members = [lab.node(n) for n in vol.nodes]

        def bricks_and_glusterd(node: NodeView, vol: GlusterVolumePlan = vol) -> None:
            prepare_disks(node)
            start_glusterd(node)
            paths = [b.split(":", 1)[1] for b in vol.bricks if b.split(":", 1)[0] == node.name]
            if paths:
                node.succeed(["mkdir", "-p", *paths])
        on_each(members, bricks_and_glusterd, "bricks and glusterd")
        first = members[0]
        with log.step(f"{first.name}: trusted pool of {len(members)}"):
            for other in members[1:]:
                first.succeed(["gluster", "peer", "probe", other.address], timeout=60)
            want = len(members) - 1

            def pool_ready(first: NodeView = first, want: int = want) -> bool:
                peers = parse_peer_status(first.succeed(["gluster", "peer", "status", "--xml"], timeout=30))
                return len(peers) >= want and all(p["connected"] for p in peers)
            wait_until(pool_ready, timeout=60, interval=0.2, what=f"{want} connected gluster peers on {first.name}")
        with log.step(f"volume {vol.name}"):
            ensure_volume(lab, first, vol)


def reconfigure(lab: LabContext, before: GlusterPlan | None) -> list[str]:
    """Volume options only (what `gluster volume set/reset` changes on a running volume):
    set what is new or changed, reset what is gone, then read every option back."""
    now = of(lab.plan)
    old = {v.name: v.options for v in before.volumes} if before else {}
    changes = []
    for vol in now.volumes if now else ():
        first = lab.node(vol.nodes[0])
        prev = old.get(vol.name, {})
        changed = {k: v for k, v in vol.options.items() if prev.get(k) != v}
        gone = [k for k in prev if k not in vol.options]
        if changed:
            first.succeed(["gluster", "--mode=script", "volume", "set", vol.name,
                           *(x for kv in changed.items() for x in kv)], timeout=60)
        for k in gone:
            first.succeed(["gluster", "--mode=script", "volume", "reset", vol.name, k], timeout=60)
        info = parse_volume_info(first.succeed(["gluster", "volume", "info", vol.name, "--xml"], timeout=30))[vol.name]
        wrong = {k: info["options"].get(k) for k, v in vol.options.items() if info["options"].get(k) != v}
        wrong |= {k: info["options"][k] for k in gone if k in info["options"]}
        if wrong:
            raise HarnessError(f"volume {vol.name}: after reconfiguring, glusterd reports {wrong} "
                               f"(wanted {({k: vol.options.get(k, '(reset)') for k in wrong})})")
        changes += [f"{vol.name}: {k}={v}" for k, v in changed.items()] + [f"{vol.name}: {k} reset" for k in gone]
    return changes


def ensure_volume(lab: LabContext, first: NodeView, vol: GlusterVolumePlan) -> None:
    name = vol.name
    info = parse_volume_info(first.succeed(["gluster", "volume", "info", "all", "--xml"], timeout=30)).get(name)
    bricks = [brick_spec(lab, b) for b in vol.bricks]
    if info is None:
        rep = ["replica", str(vol.replica)] if vol.replica > 1 else []
        rep += ["arbiter", str(vol.arbiter)] if vol.arbiter else []
        first.succeed(["gluster", "--mode=script", "volume", "create", name, *rep, "transport", "tcp", *bricks], timeout=120)
        info = parse_volume_info(first.succeed(["gluster", "volume", "info", name, "--xml"], timeout=30))[name]
    elif info["bricks"] != bricks:
        raise HarnessError(f"volume {name} exists with bricks {info['bricks']}, the topology wants {bricks}; "
                           f"`storlab down {lab.name}` and up again")
    changed = {k: v for k, v in vol.options.items() if info["options"].get(k) != v}
    if changed:  # one `volume set` takes every pair: one cluster-wide transaction, not one per option
        first.succeed(["gluster", "--mode=script", "volume", "set", name, *(x for kv in changed.items() for x in kv)],
                      timeout=60)
    log.debug(f"volume {name}: set {', '.join(changed) or 'nothing'}; already set: "
              f"{', '.join(k for k in vol.options if k not in changed) or 'none'}")
    if info["status"] != "Started":
        first.succeed(["gluster", "--mode=script", "volume", "start", name], timeout=120)

    def online() -> bool:
        st = parse_volume_status(first.succeed(["gluster", "volume", "status", name, "--xml"], timeout=30))
        return len(st) == len(bricks) and all(b["online"] for b in st)
    wait_until(online, timeout=90, interval=0.2, what=f"all {len(bricks)} bricks of {name} online")


def missing(node: NodeView, name: str, *, bricks: int | None = None, replica: int = 2, host: str | None = None,
            split_brain_ok: bool = False) -> str | None:
    """What keeps volume ``name`` from being whole (None: it is): every brick online (``bricks`` of
    them, when given), the client at ``host`` (the KVM host's address; None: not checked) connected
    to each, and with replicas nothing left to heal: a heal is triggered, not awaited (the
    self-heal daemon's crawl runs every 600 s). ``split_brain_ok``: entries in split-brain, which
    no heal mends, leave the volume as whole as it gets (a chaos run's checker says what they cost)."""
    st = parse_volume_status(node.succeed(["gluster", "volume", "status", name, "--xml"], timeout=30))
    down = [f"{b['host']}:{b['path']}" for b in st if not b["online"]]
    if not st or down or (bricks is not None and len(st) != bricks):
        return f"{name}: bricks online ({len(st) - len(down)} of {bricks if bricks is not None else len(st)})"
    if host is not None:
        clients = parse_volume_clients(node.succeed(["gluster", "volume", "status", name, "clients"], timeout=30))
        if not clients or not all(host in c for c in clients.values()):
            return f"{name}: the KVM host's client connected to every brick"
    if replica < 2:
        return None  # nothing to heal without replicas
    node.run(["gluster", "volume", "heal", name], timeout=30)
    counts = parse_heal_info(node.succeed(["gluster", "volume", "heal", name, "info", "--xml"], timeout=60))
    if len(counts) == len(st) and all(c == 0 for c in counts.values()):
        return None
    if split_brain_ok:
        split = parse_heal_info(node.succeed(["gluster", "volume", "heal", name, "info", "split-brain", "--xml"],
                                             timeout=60))
        if any(split.values()):
            log.info(f"{name}: {sum(c or 0 for c in split.values())} entries in split-brain "
                     "(gluster will not heal them by itself)")
            return None
    return f"{name}: nothing left to heal ({sum(c or 0 for c in counts.values())} entries)"


def volume_whole(node: NodeView, name: str) -> bool:
    """All bricks online and nothing left to heal (missing())."""
    return missing(node, name) is None


# -- faults of this backend ------------------------------------------------------------------
@contextlib.contextmanager
def brick_killed(node: Node, volume: str, timeout: float = 90) -> Iterator[Node]:
    """The volume's brick process on ``node`` killed with SIGKILL (a crashed brick: the node and
    glusterd stay up). On exit the volume is force-started, which starts only dead bricks, and
    every brick is awaited online; healing is left to the caller to await (volume_whole)."""
    st = parse_volume_status(node.succeed(["gluster", "volume", "status", volume, "--xml"], timeout=30))
    pids = [str(b["pid"]) for b in st if b["host"] in (node.name, node.address) and b["online"] and b["pid"]]
    if not pids:
        raise HarnessError(f"{node.name}: no online brick of {volume} to kill ({st})")
    node.timeline.mark(f"kill brick(s) of {volume} on {node.name} (pid {', '.join(pids)})")
    node.succeed(["kill", "-KILL", *pids])
    try:
        yield node
    finally:
        node.timeline.mark(f"force-start {volume} (restarts the killed brick on {node.name})")
        node.succeed(["gluster", "--mode=script", "volume", "start", volume, "force"], timeout=120)

        def online() -> bool:
            now = parse_volume_status(node.succeed(["gluster", "volume", "status", volume, "--xml"], timeout=30))
            return len(now) == len(st) and all(b["online"] for b in now)
        wait_until(online, timeout=timeout, what=f"all {len(st)} bricks of {volume} online again")
