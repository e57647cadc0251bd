"""Gluster's upgrade (Backend.upgrade), as its generic upgrade procedure says: one server at a time
(every gluster process on it stopped, the packages replaced, glusterd started), and the next only
when every peer is in the cluster, every brick online and nothing left to heal; once every server
runs the new version, `cluster.op-version` raised to what they all support. The offline procedure
(every server at once) is `storlab upgrade --offline`: the one upstream documents for volumes an
online upgrade cannot keep writable, and the way past 10 -> 11's checksum problem (diagnose)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence

from harness.backends.base import LabContext, NodeView
from harness.backends.gluster.plan import of
from harness.backends.gluster.role import missing, parse_peer_status, parse_volume_info, start_glusterd
from harness.errors import HarnessError, WaitTimeout
from harness.plan.model import NodePlan
from harness.run import wait_until
from harness.upgrade.support import Defaults

PACKAGES = ("glusterfs-server", "glusterfs-client")
#: seconds an agreement among servers must last to count (handshakes settle within about a second here)
STEADY_S = 3.0
#: glusterd.log when a peer's volume configuration does not match this one's
CKSUM = "Version of Cksums"


def _servers(lab: LabContext) -> list[str]:
    section = of(lab.plan)
    return list(dict.fromkeys(n for v in (section.volumes if section else ()) for n in v.nodes))


def op_version(node: NodeView, key: str) -> int:
    """`gluster volume get all KEY` (cluster.op-version, cluster.max-op-version) as a number."""
    out = node.succeed(["gluster", "volume", "get", "all", key], timeout=60)
    m = re.search(rf"^{re.escape(key)}\s+(\d+)\s*$", out, re.MULTILINE)
    if not m:
        raise HarnessError(f"{node.name}: `gluster volume get all {key}` said no number: {out[-300:]!r}")
    return int(m.group(1))


def _agreement(servers: Sequence[NodeView]) -> tuple[str, list[str]] | None:
    """("agree", []) when every server sees every other connected and in the cluster; ("reject",
    [servers seeing a rejected peer]); ("pending", [servers seeing a peer half-way through the
    handshake, e.g. 'Sent and Received peer request']); None while a peer is not even connected."""
    seen = {n.name: parse_peer_status(n.succeed(["gluster", "peer", "status", "--xml"], timeout=30)) for n in servers}
    if any(len(p) < len(servers) - 1 or not all(x["connected"] for x in p) for p in seen.values()):
        return None
    rejected = [n for n, p in seen.items() if any(x["state"] == "Peer Rejected" for x in p)]
    if rejected:
        return "reject", rejected
    pending = [n for n, p in seen.items() if any(x["state"] != "Peer in Cluster" for x in p)]
    return ("pending", pending) if pending else ("agree", [])


def _holds(servers: Sequence[NodeView]) -> bool:
    """Does the servers' agreement last STEADY_S (a restarted peer's handshake can still turn it)?"""
    t0 = time.monotonic()

    def verdict() -> str | None:
        a = _agreement(servers)
        if a is None or a[0] != "agree":
            return "turned"
        return "held" if time.monotonic() - t0 >= STEADY_S else None
    return bool(wait_until(verdict, timeout=STEADY_S + 60, interval=0.5, what="gluster peers' agreement holding") == "held")


def _restart(nodes: Sequence[NodeView]) -> None:
    """glusterd restarted on each in turn, the next only once every peer sees every other
    connected again, and not rejected (restarted together, two peers' handshakes crossed and one
    stayed 'Sent and Received peer request'). A server still rejected after its turn is left to
    the next round or the gate."""
    for n in nodes:
        n.succeed(["systemctl", "restart", "glusterd.service"], timeout=120)
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: (a := _agreement(nodes)) is not None and a[0] != "pending", timeout=30,
                       interval=0.5, what=f"gluster peers' handshakes after {n.name}'s restart")


class GlusterUpgrade(Defaults):
    def packages(self, node: NodePlan) -> tuple[str, ...]:
        return PACKAGES if "gluster" in node.roles else ()

    def ready(self, lab: LabContext) -> str | None:
        section = of(lab.plan)
        servers = _servers(lab)
        for name in servers:
            node = lab.node(name)
            r = node.run(["gluster", "peer", "status", "--xml"], timeout=30)
            if not r.ok:
                return f"glusterd on {name} answering ({r.stderr.strip()[-120:] or r.stdout.strip()[-120:]})"
            peers = parse_peer_status(r.stdout)
            bad = [f"{p['hostname']}: {p['state']}{'' if p['connected'] else ', disconnected'}"
                   for p in peers if not p["connected"] or p["state"] != "Peer in Cluster"]
            if len(peers) < len(servers) - 1 or bad:
                return f"{name} sees every peer in the cluster ({'; '.join(bad) or f'{len(peers)} peers'})"
        first = lab.node(servers[0])
        for vol in section.volumes if section else ():
            why = missing(first, vol.name, bricks=len(vol.bricks), replica=vol.replica)
            if why:
                return why
        return None

    def stop(self, lab: LabContext, node: NodeView) -> None:
        # glusterd first, then its bricks and self-heal daemon (the generic procedure's `killall`):
        # stopping glusterd leaves them running
        node.succeed("systemctl stop glusterd.service; pkill -x glusterfsd; pkill -x glusterfs; "
                     "for i in $(seq 100); do pgrep -x 'glusterfsd|glusterfs|glusterd' >/dev/null || exit 0; "
                     "sleep 0.1; done; echo 'gluster processes still running' >&2; exit 1", timeout=60)

    def start(self, lab: LabContext, node: NodeView) -> None:
        start_glusterd(node)

    def settle(self, lab: LabContext, started: Sequence[NodeView]) -> list[str]:
        """Servers started together on a new version rewrite their volume configuration in its
        format as they handshake, and one that compared checksums before its peers rewrote is
        rejected and stays so (seen here: which one depends on the start order). Up to three rounds
        of the community's remedies: where some servers hold another configuration than most,
        those re-import it from their peers ('Resolving Peer Rejected': their volume definitions
        removed, glusterd started; bricks and data untouched); then glusterd restarted on each in
        turn (the upgrade guide's 'stop and start'), which also ends a handshake left half-way."""
        if len(started) < 2:
            return []
        servers = [lab.node(n) for n in _servers(lab)]
        done: list[str] = []
        for _ in range(3):
            try:
                state, who = wait_until(lambda: _agreement(servers), timeout=60, interval=1.0,
                                        what="every gluster server's peers connected")
                if state == "pending":  # a handshake may still finish by itself
                    def settled() -> tuple[str, list[str]] | None:
                        a = _agreement(servers)
                        return a if a is not None and a[0] != "pending" else None
                    state, who = wait_until(settled, timeout=20, interval=1.0, what="gluster peers' handshakes")
            except WaitTimeout:
                state, who = "pending", [n.name for n in servers]
            if state == "agree":
                if _holds(servers):
                    return done
                continue
            odd: list[NodeView] = []
            if state == "reject":
                sums = {n.name: n.succeed("cat /var/lib/glusterd/vols/*/cksum", timeout=30) for n in servers}
                most = max(set(sums.values()), key=list(sums.values()).count)
                odd = [n for n in servers if sums[n.name] != most]
                for n in odd:
                    n.succeed("systemctl stop glusterd.service && rm -rf /var/lib/glusterd/vols/* && "
                              "systemctl start glusterd.service", timeout=120)
            _restart(servers)
            done.append((f"{', '.join(n.name for n in odd)} re-imported the volume configuration from their peers; "
                         if odd else "") + f"glusterd restarted on {', '.join(n.name for n in servers)} ("
                        + ("peers had rejected each other as they rewrote their volume configuration on the new version)"
                           if state == "reject" else f"a peer handshake stayed half-way on {', '.join(who)})"))
        return done

    def finish(self, lab: LabContext) -> list[str]:
        first = lab.node(_servers(lab)[0])
        now, top = op_version(first, "cluster.op-version"), op_version(first, "cluster.max-op-version")
        if now >= top:
            return [f"cluster.op-version {now} (already the highest every server supports)"]
        first.succeed(["gluster", "--mode=script", "volume", "set", "all", "cluster.op-version", str(top)], timeout=120)
        wait_until(lambda: op_version(first, "cluster.op-version") == top, timeout=60, what=f"cluster.op-version {top}")
        return [f"cluster.op-version {now} -> {top}"]

    def diagnose(self, lab: LabContext, node: NodeView) -> str | None:
        r = node.run(["gluster", "peer", "status", "--xml"], timeout=30)
        rejected = [p["hostname"] for p in parse_peer_status(r.stdout) if p["state"] == "Peer Rejected"] if r.ok else []
        log = node.run(["grep", "-m1", CKSUM, "/var/log/glusterfs/glusterd.log"], timeout=30)
        if not rejected or not log.ok:
            return None
        info = node.run(["gluster", "volume", "info", "--xml"], timeout=30)
        vols = ", ".join(parse_volume_info(info.stdout)) if info.ok else "its volumes"
        return (f"{node.name} and {', '.join(rejected)} reject each other: glusterd.log says '{CKSUM} ... differ' "
                f"for {vols}. Gluster 11 stores a volume's configuration differently from 10 (nfs.disable dropped "
                f"where gNFS is not built, options in another order), so a 10 and an 11 server never agree while "
                f"both run: the known 10 -> 11 online-upgrade problem (gluster/glusterfs#4016, #4502; the upgrade "
                f"guide's 'stop and start the server' does not clear it). Use the offline procedure "
                f"(`storlab upgrade --offline`), or `storlab reset` the lab to its baseline")
