"""Ceph under chaos: one writer on the KVM host through qemu's rbd driver (librbd, what an `rbd`
pool's guests use), as the lab's least-privilege client (the rbd host pool's, e.g. client.KVMpool)
on an image of its own in that pool's RBD pool, made and removed by client.admin on the admin node.
The client's key reaches librbd in a keyring named by a ceph.conf of the run directory (both
0600, removed when the client is done), never argv. The lab is whole again at HEALTH_OK, or a
warning that says nothing about data, with every PG active+clean.

The image has the `layering` feature only: with exclusive-lock (the default), a writer killed by
client-crash leaves the lock to a dead client, and taking it over means blocklisting that client,
which the lab's least-privilege caps (`mon 'allow r'`) do not allow (`profile rbd` does): every
later write would fail, a finding about the caps and not about the storage."""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness import log
from harness.backends.base import LabContext, NodeView
from harness.backends.ceph.plan import CephHostPool, CephPlan, CephPoolPlan, of
from harness.backends.ceph.role import admin_node, ceph_key, parse_health
from harness.chaos.qemuio import QemuIo, QemuIoWriter, read_blocks
from harness.chaos.schedule import Event
from harness.chaos.support import WriteTarget, client_secret, forget
from harness.errors import HarnessError, WaitTimeout
from harness.plan.model import need
from harness.run import wait_until

#: what a run id may be (it names the image)
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
#: seconds beyond osd heartbeat grace for writes to resume once an OSD is gone: the heartbeat
#: interval (6 s) before the grace starts, the map reaching the client, peering. Measured here:
#: an OSD cut off was marked down 29 s after the cut with grace 20 (LAB-FACTS)
MARGIN = 20.0
#: seconds more when a monitor is lost and the others keep quorum: the new election (measured
#: ~14 s with three monitors); marking an OSD down waits for it
ELECTION = 15.0
#: health warnings that say nothing about the data: clocks (a clock fault skews one; the monitors
#: look again every 300 s), insecure global_id reclaim, a daemon that crashed once (a report kept
#: for two weeks), heartbeat pings that were slow (averaged over up to 15 minutes, so they outlast
#: the fault); whether PGs are active+clean is checked apart
HARMLESS = ("MON_CLOCK_SKEW", "AUTH_INSECURE_GLOBAL_ID_RECLAIM", "AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED",
            "RECENT_CRASH", "OSD_SLOW_PING_TIME_BACK", "OSD_SLOW_PING_TIME_FRONT",
            # manager modules that cannot load on trixie's reef (upgraded: restful needs 'cgi', gone in
            # Python 3.13; installed fresh: 13 modules refused by PyO3 in subinterpreters, see
            # ceph.plan.RELEASE_WARNINGS): how the release is packaged, not what a fault left behind
            "MGR_MODULE_DEPENDENCY")
#: node faults that take every daemon of the node away from its peers (until marked down)
NODE_FAULTS = frozenset({"crash", "freeze", "hang", "link"})
#: what may go into the client's ceph.conf as a value (one line: a line break starts a directive)
_CONF_VALUE = re.compile(r"[A-Za-z0-9._/@+:, -]{0,4000}")
_KEY = re.compile(r"[A-Za-z0-9+/]{16,200}={0,2}")
_OSD_ID = re.compile(r"[0-9]{1,6}")


def rbd_pool(lab: LabContext) -> CephHostPool:
    """The host pool the writer goes through: the first rbd pool with its RBD pool and client."""
    pools = [p for p in lab.plan.host.pools if isinstance(p, CephHostPool) and p.type == "rbd" and p.rbd_pool
             and p.client]
    if not pools:
        raise HarnessError(f"lab {lab.name}: a ceph chaos run writes as an rbd host pool's client: the topology needs "
                           f"a host pool of type rbd with rbd_pool and client (see topologies/ceph-5.yaml)")
    return pools[0]


def pool_plan(c: CephPlan, pool: CephHostPool) -> CephPoolPlan:
    p = next((x for x in c.pools if x.name == pool.rbd_pool), None)
    if p is None:
        raise HarnessError(f"host pool {pool.name} names ceph pool {pool.rbd_pool}, which the plan lacks")
    return p


def min_size(p: CephPoolPlan) -> int:
    """The pool's min_size as the role sets it (a majority of size when the topology gives none)."""
    return p.min_size if p.min_size is not None else max(1, p.size - p.size // 2)


#: librbd's cache when a run acknowledges writes the client only took (--cache unsafe): on, and
#: without its guard (writethrough until the guest's first flush, which cache=unsafe never sends on:
#: it would keep every write synchronous, and nothing could be lost), dirty for up to 5 s
UNSAFE_RBD_CACHE = {"rbd cache": "true", "rbd cache policy": "writeback", "rbd cache writethrough until flush": "false",
                    "rbd cache max dirty age": "5"}


def client_conf(c: CephPlan, keyring: Path, logfile: Path, unsafe: bool = False) -> str:
    """librbd's ceph.conf for the writer: this cluster only (not the host's /etc/ceph), its key
    in ``keyring``, its log in the run directory, no admin socket, 60 s to reach a monitor;
    ``unsafe``: librbd's write-back cache (UNSAFE_RBD_CACHE)."""
    values = {"fsid": str(uuid.UUID(c.fsid)), "mon host": ", ".join(str(ipaddress.ip_address(m.address)) for m in c.mons),
              "keyring": str(keyring), "log file": str(logfile), "auth client required": "cephx",
              "admin socket": "", "client mount timeout": "60", **(UNSAFE_RBD_CACHE if unsafe else {})}
    bad = [k for k, v in values.items() if not _CONF_VALUE.fullmatch(v)]
    if bad:
        raise HarnessError(f"the chaos client's ceph.conf: {', '.join(bad)} has characters a ceph.conf line cannot "
                           f"take ({_CONF_VALUE.pattern}); refused")
    return "# storlab chaos run: librbd's configuration for the KVM host's writer (no secret in it)\n[global]\n" + \
        "".join(f"{k} = {v}\n" for k, v in values.items())


def keyring(client: str, key: str) -> str:
    if not _KEY.fullmatch(key) or not re.fullmatch(r"client\.[A-Za-z0-9_.-]+", client):
        raise HarnessError(f"the key of {client} read from the cluster is not a cephx key; refused")
    return f"[{client}]\n\tkey = {key}\n"


def osd_units(node: NodeView) -> tuple[str, ...]:
    """ceph-osd@ID.service of each OSD on ``node`` (from their data directories: the cluster gave
    the ids); none when the node does not answer. An id is the node's answer: digits or nothing."""
    r = node.run(["sh", "-c", "cat /var/lib/ceph/osd/ceph-*/whoami 2>/dev/null || true"], timeout=15)
    return tuple(f"ceph-osd@{i}.service" for i in r.stdout.split() if _OSD_ID.fullmatch(i)) if r.ok else ()


def lost(c: CephPlan, event: Event) -> tuple[int, int] | None:
    """(monitors, OSD hosts) ``event`` takes away while it lasts; None: no promise is reasoned for
    its kind (a one-way cut, a client's cut: Ceph marks down no OSD that only a client cannot
    reach, so the client waits for the cut to end)."""
    mons, osds = {m.name for m in c.mons}, set(c.osds)
    if event.kind in NODE_FAULTS:
        hit = set(event.nodes)
        return len(mons & hit), len(osds & hit)
    if event.kind in ("kill", "pause"):
        unit = event.daemon or ""
        return int(unit.startswith("ceph-mon@")), int(unit.startswith("ceph-osd@") and event.nodes[0] in osds)
    if event.kind != "partition":
        return None
    # the side with a monitor majority goes on; an OSD on it reports those across the cut, which
    # are marked down after the grace (mon_osd_min_down_reporters = 1); with no OSD on it nobody
    # reports, and the OSDs, all on the other side, still reach each other and the client
    a, b = set(event.nodes), set(event.apart)
    quorum = len(mons) // 2 + 1
    side = a if len(mons & a) >= quorum else b if len(mons & b) >= quorum else None
    if side is None:
        return len(mons), 0
    far = (a | b) - side
    return len(mons & far), (len(osds & far) if osds & side else 0)


class CephChaos:
    def daemons(self, lab: LabContext) -> Mapping[str, tuple[str, ...]]:
        """ceph-mon@NODE and ceph-mgr@NODE on their nodes, ceph-osd@ID for each OSD of an OSD node.
        Not ceph-osd.target: `systemctl kill` of a target signals no process (a kill that kills
        nothing), and the node verbs take services only."""
        c = need(of(lab.plan), "ceph section")
        out: dict[str, tuple[str, ...]] = {}
        for n in lab.plan.nodes:
            units = [f"ceph-mon@{n.name}.service"] if any(m.name == n.name for m in c.mons) else []
            units += [f"ceph-mgr@{n.name}.service"] if n.name in c.mgrs else []
            units += list(osd_units(lab.node(n.name))) if n.name in c.osds else []
            if units:
                out[n.name] = tuple(units)
        return out

    def targets(self, lab: LabContext, run_dir: Path, run_id: str, sync: bool = True,
                span: int = 1 << 20) -> list[WriteTarget]:
        if not RUN_ID.fullmatch(run_id):
            raise HarnessError(f"run id {run_id!r}: lowercase letters, digits and '-'")
        c, pool = need(of(lab.plan), "ceph section"), rbd_pool(lab)
        image, client = f"chaos-{run_id}", need(pool.client, f"pool {pool.name}: client")
        spec, conf = f"{pool.rbd_pool}/{image}", run_dir / "clients" / "ceph.conf"
        opts: dict[str, str | int] = {"file.driver": "rbd", "file.pool": str(pool.rbd_pool), "file.image": image,
                                      "file.user": client.removeprefix("client."), "file.conf": str(conf)}
        # its options checked before anything is made; qemu turns librbd's cache off at cache=none
        qio = QemuIo(opts, run_dir / "clients" / "rbd.log", cache="none" if sync else "writeback")
        admin_node(lab).succeed(["rbd", "create", "--size", f"{-(-span // 2**20)}M", "--image-feature", "layering",
                                 spec], timeout=120)
        ring = run_dir / "clients" / f"ceph.{client}.keyring"
        try:
            client_secret(run_dir, ring.name, keyring(client, base64.b64encode(ceph_key(lab, client)).decode()))
            client_secret(run_dir, conf.name, client_conf(c, ring, run_dir / "clients" / "librbd.log", unsafe=not sync))
        except Exception:
            forget(ring, conf)
            self.remove(lab, run_id)
            raise

        def close() -> None:
            qio.close()
            forget(ring, conf)
        return [WriteTarget("rbd", f"qemu's rbd driver (librbd, {client}) on {spec}",
                            QemuIoWriter(qio, "rbd", spec, run_dir / "clients" / "rbd.blk", span=span, sync=sync),
                            lambda where: read_blocks(opts, run_dir / "clients" / "rbd-read.log", spec, where),
                            close, qio.kill)]

    def health(self, lab: LabContext) -> str | None:
        return health(lab)

    def bound(self, lab: LabContext, event: Event) -> float | None:
        """osd heartbeat grace + MARGIN while a monitor majority stays and every PG keeps min_size
        replicas (size - lost OSD hosts: one replica per host); none when quorum or min_size is lost."""
        c = need(of(lab.plan), "ceph section")
        pool = pool_plan(c, rbd_pool(lab))
        gone = lost(c, event)
        if gone is None:
            return None
        mons, hosts = gone
        if len(c.mons) - mons < len(c.mons) // 2 + 1 or pool.size - hosts < min_size(pool):
            return None
        return c.heartbeat_grace + MARGIN + (ELECTION if mons else 0.0)

    def faults(self) -> Mapping[str, Callable[[LabContext, Event], Callable[[], None]]]:
        return {}  # no error injection of its own yet: the node faults only

    def remove(self, lab: LabContext, run_id: str) -> None:
        """`rbd rm` of the run's image, again while it still has a watcher: a client killed (not
        closed) keeps its watch until the OSDs time it out (30 s). Left behind (and said) after 90 s."""
        if not RUN_ID.fullmatch(run_id):
            raise HarnessError(f"run id {run_id!r}: lowercase letters, digits and '-'")
        admin, spec = admin_node(lab), f"{rbd_pool(lab).rbd_pool}/chaos-{run_id}"

        def removed() -> bool:
            r = admin.run(["rbd", "rm", "--no-progress", spec], timeout=60)
            return r.ok or "No such file or directory" in r.stderr
        try:
            wait_until(removed, timeout=90, interval=5, what=f"`rbd rm {spec}` on {admin.name}")
        except WaitTimeout as exc:
            log.info(f"chaos: image {spec} left behind: {exc}")


def health(lab: LabContext, accepted: Sequence[str] = ()) -> str | None:
    """None when the cluster is HEALTH_OK with every PG active+clean, but for the topology's
    accepted warnings, HARMLESS and ``accepted``; else what it still waits for."""
    c, admin = need(of(lab.plan), "ceph section"), admin_node(lab)
    r = admin.run(["ceph", "-s", "-f", "json", "--connect-timeout", "10"], timeout=30)
    if not r.ok:
        return f"`ceph -s` to answer on {admin.name}"
    try:
        ok, summary = parse_health(r.stdout, (*c.accept_warnings, *HARMLESS, *accepted))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"`ceph -s -f json` on {admin.name} to say something storlab can read"
    return None if ok else f"ceph HEALTH_OK with every PG active+clean (now {summary})"
