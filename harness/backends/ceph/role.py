"""Ceph role: a cluster bootstrapped by hand from the distribution packages (no ceph-deploy,
no cephadm): monitors from monmaptool + ceph-mon --mkfs, a mgr, BlueStore OSDs, pools and
least-privilege cephx clients. Keys move between nodes on stdin only, never in argv or logs.
Facts are pure parsers of `ceph ... -f json`."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from harness import log
from harness.backends.base import LabContext, NodeView
from harness.backends.ceph.plan import CephClientPlan, CephPlan, CephPoolPlan, of
from harness.errors import HarnessError
from harness.nodes.node import on_each
from harness.plan.model import need
from harness.run import wait_until

MON_KEYRING = "/etc/ceph/storlab.mon.keyring"  # kept on monitor nodes only (0600)
ADMIN_KEYRING = "/etc/ceph/ceph.client.admin.keyring"
BOOTSTRAP_OSD = "/var/lib/ceph/bootstrap-osd/ceph.keyring"
DEFAULT_BLOCK = 5 * 2**30


# -- facts ----------------------------------------------------------------------------------
def parse_health(status_json: str, accepted: Sequence[str]) -> tuple[bool, str]:
    """(healthy, summary) from `ceph -s -f json`; only accepted warning codes may remain."""
    st = json.loads(status_json)
    health = st.get("health", {})
    checks = health.get("checks", {})
    bad = {k: v.get("summary", {}).get("message", "") for k, v in checks.items() if k not in accepted}
    pgmap = st.get("pgmap", {})
    pgs = pgmap.get("pgs_by_state", [])
    # a mgr that has just started reports no PG states yet (or fewer than there are): not clean
    counted, num = sum(int(p.get("count", 0)) for p in pgs), int(pgmap.get("num_pgs", 0))
    stale = counted != num or (int(pgmap.get("num_pools", 0)) > 0 and num == 0)
    clean = not stale and all(p["state_name"] == "active+clean" for p in pgs)
    ok = health.get("status") in ("HEALTH_OK", "HEALTH_WARN") and not bad and clean
    summary = f"{health.get('status')} {bad or ''} pgs {[(p['state_name'], p['count']) for p in pgs]}"
    return ok, summary


def parse_osd_tree(tree_json: str) -> dict[int, dict[str, Any]]:
    """osd id -> {'host', 'status' (up/down), 'reweight'} from `ceph osd tree -f json`."""
    nodes = json.loads(tree_json)["nodes"]
    host_of = {c: n["name"] for n in nodes if n["type"] == "host" for c in n.get("children", [])}
    return {n["id"]: {"name": n["name"], "host": host_of.get(n["id"]), "status": n.get("status"),
                      "reweight": n.get("reweight")} for n in nodes if n["type"] == "osd"}


def parse_auth(auth_json: str) -> dict[str, str]:
    """caps of one entity from `ceph auth get ENTITY -f json` (the key is dropped here)."""
    ent = json.loads(auth_json)
    ent = ent[0] if isinstance(ent, list) else ent
    return dict(ent.get("caps", {}))


# -- operations ---------------------------------------------------------------------------
def _has(node: NodeView, path: str) -> bool:
    return node.run(["test", "-e", path], timeout=15).ok


def _copy_secret(src: NodeView, path: str, dst: NodeView, mode: str = "0600", owner: str = "root") -> None:
    """Copy a keyring between nodes through the harness: stdout -> memory -> stdin."""
    content = src.get(path)
    dst.put(path, content, mode)
    dst.succeed(["chown", owner, path])


def start_unit(node: NodeView, unit: str, target: str) -> None:
    node.enable_units([unit], unmask=["ceph.target", target], timeout=90)


def apply(lab: LabContext) -> None:
    c = of(lab.plan)
    if c is None:
        return
    members = [lab.node(n.name) for n in lab.plan.nodes if any(r.startswith("ceph-") for r in n.roles)]
    for node in members:
        node.ensure_file("/etc/ceph/ceph.conf", (lab.files(node.name) / "etc/ceph/ceph.conf").read_text())
    mons = [lab.node(m.name) for m in c.mons]
    admins = [lab.node(a) for a in c.admin] or mons[:1]
    first = mons[0]
    with log.step(f"ceph: monitors {', '.join(m.name for m in mons)}"):
        monitors(c, mons)
    # admin commands run where client.admin is: the first monitor until the admin node has it
    ceph = admins[0] if _has(admins[0], ADMIN_KEYRING) else first
    wait_until(lambda: ceph.run(["ceph", "--connect-timeout", "10", "mon", "stat"], timeout=30).ok,
               timeout=90, what="monitor quorum")
    ceph.succeed(["ceph", "config", "set", "mon", "auth_allow_insecure_global_id_reclaim", "false"])
    ceph.succeed(["ceph", "mon", "enable-msgr2"])
    with log.step("ceph: mgr"):
        for name in c.mgrs:
            manager(ceph, lab.node(name))
    with log.step("ceph: admin keyring to " + ", ".join(a.name for a in admins)):
        for a in admins:
            if a is not ceph and not _has(a, ADMIN_KEYRING):
                _copy_secret(ceph, ADMIN_KEYRING, a)
        ceph = admins[0]
        for m in mons:  # client.admin lives on the admin node(s) only
            if m not in admins:
                m.succeed(["rm", "-f", ADMIN_KEYRING])
    with log.step(f"ceph: OSDs on {', '.join(c.osds)}"):  # each node makes its BlueStore at once
        on_each([lab.node(name) for name in c.osds], lambda node: create_osd(first, node, c.osd_disk), "OSD")
    with log.step("ceph: pools and clients"):
        for p in c.pools:
            ensure_pool(ceph, p)
        for cl in c.clients:
            ensure_client(ceph, cl)
    with log.step("ceph: wait for HEALTH_OK"):
        wait_health(ceph, c.accept_warnings, timeout=300)


def monitors(c: CephPlan, mons: list[NodeView]) -> None:
    """Keys on the first monitor, copied to the others; a monmap of all; each mon's store made once."""
    first = mons[0]
    bootstrap_keys(first)
    for m in mons:
        if m is not first:
            _copy_secret(first, MON_KEYRING, m, owner="ceph:ceph")
            _copy_secret(first, ADMIN_KEYRING, m)
    monmap = ["monmaptool", "--create", "--clobber", "--fsid", c.fsid]
    for mon in c.mons:
        monmap += ["--addv", mon.name, f"[v2:{mon.address}:3300,v1:{mon.address}:6789]"]

    def store(m: NodeView) -> None:
        mon_dir = f"/var/lib/ceph/mon/ceph-{m.name}"
        if not _has(m, f"{mon_dir}/done"):
            m.succeed([*monmap, "/tmp/storlab.monmap"])
            m.succeed(["install", "-d", "-o", "ceph", "-g", "ceph", mon_dir])
            m.succeed(["sudo", "-u", "ceph", "ceph-mon", "--mkfs", "-i", m.name, "--monmap", "/tmp/storlab.monmap",
                       "--keyring", MON_KEYRING] if _has(m, "/usr/bin/sudo") else
                      ["ceph-mon", "--mkfs", "-i", m.name, "--monmap", "/tmp/storlab.monmap", "--keyring", MON_KEYRING])
            m.succeed(["chown", "-R", "ceph:ceph", mon_dir])
            m.succeed(["touch", f"{mon_dir}/done"])
        start_unit(m, f"ceph-mon@{m.name}.service", "ceph-mon.target")
    on_each(mons, store, "monitor store")


def manager(ceph: NodeView, m: NodeView) -> None:
    kdir = f"/var/lib/ceph/mgr/ceph-{m.name}"
    if not _has(m, f"{kdir}/keyring"):
        key = ceph.succeed(["ceph", "auth", "get-or-create", f"mgr.{m.name}", "mon", "allow profile mgr",
                            "osd", "allow *", "mds", "allow *"])
        m.succeed(["install", "-d", "-o", "ceph", "-g", "ceph", kdir])
        m.put(f"{kdir}/keyring", key, "0600")  # the key travels on stdin, never in argv
        m.succeed(["chown", "ceph:ceph", f"{kdir}/keyring"])
    start_unit(m, f"ceph-mgr@{m.name}.service", "ceph-mgr.target")


def bootstrap_keys(first: NodeView) -> None:
    if _has(first, MON_KEYRING):
        return
    first.succeed(["install", "-d", "-m", "0755", "/var/lib/ceph/bootstrap-osd"])
    first.succeed(["ceph-authtool", "--create-keyring", "/tmp/storlab.mon.new", "--gen-key", "-n", "mon.",
                   "--cap", "mon", "allow *"])
    first.succeed(["ceph-authtool", "--create-keyring", ADMIN_KEYRING, "--gen-key", "-n", "client.admin",
                   "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *"])
    first.succeed(["ceph-authtool", "--create-keyring", BOOTSTRAP_OSD, "--gen-key", "-n", "client.bootstrap-osd",
                   "--cap", "mon", "profile bootstrap-osd", "--cap", "mgr", "allow r"])
    first.succeed(["ceph-authtool", "/tmp/storlab.mon.new", "--import-keyring", ADMIN_KEYRING])
    first.succeed(["ceph-authtool", "/tmp/storlab.mon.new", "--import-keyring", BOOTSTRAP_OSD])
    first.succeed(["chmod", "0600", "/tmp/storlab.mon.new", ADMIN_KEYRING])
    first.succeed(["chown", "ceph:ceph", "/tmp/storlab.mon.new"])
    first.succeed(["mv", "/tmp/storlab.mon.new", MON_KEYRING])


def create_osd(first: NodeView, node: NodeView, osd_disk: str | None) -> None:
    existing = node.run(["sh", "-c", "cat /var/lib/ceph/osd/ceph-*/whoami 2>/dev/null"], timeout=15).stdout.split()
    if existing:
        osd_id = existing[0]
    else:
        if not _has(node, BOOTSTRAP_OSD):
            node.succeed(["install", "-d", "/var/lib/ceph/bootstrap-osd"])
            _copy_secret(first, BOOTSTRAP_OSD, node)
        uuid = node.succeed(["cat", "/proc/sys/kernel/random/uuid"]).strip()
        node.succeed(["ceph-authtool", "--create-keyring", "/var/lib/ceph/storlab-osd.keyring", "--gen-key", "-n", "osd.new"])
        # the OSD's secret reaches `ceph osd new` on stdin (printf is a shell builtin: no argv)
        osd_id = node.succeed(["bash", "-c",
                               'printf \'{"cephx_secret": "%s"}\' '
                               '"$(ceph-authtool -p -n osd.new /var/lib/ceph/storlab-osd.keyring)" | '
                               'ceph osd new "$1" -i - -n client.bootstrap-osd -k ' + BOOTSTRAP_OSD, "bash", uuid]).strip()
        if not osd_id.isdigit():
            raise HarnessError(f"{node.name}: ceph osd new returned {osd_id!r}")
        d = f"/var/lib/ceph/osd/ceph-{osd_id}"
        node.succeed(["install", "-d", d])
        # the same key under the OSD's name; a rename in the file keeps it off any command line
        node.succeed(["sh", "-c", f'sed "s/^\\[osd.new\\]/[osd.{osd_id}]/" /var/lib/ceph/storlab-osd.keyring > {d}/keyring'])
        node.succeed(["rm", "-f", "/var/lib/ceph/storlab-osd.keyring"])
        disk = next((x for x in node.spec.disks if x.name == osd_disk), None)
        if disk and disk.device:
            block = ["--bluestore-block-path", disk.device]
        else:  # no spare disk on this provider: a file-backed BlueStore block
            size = disk.size if disk else DEFAULT_BLOCK
            node.succeed(["install", "-d", "-o", "ceph", "-g", "ceph", "/var/lib/ceph/osd-block"])
            block = ["--bluestore-block-path", f"/var/lib/ceph/osd-block/osd.{osd_id}.img", "--bluestore-block-create",
                     "--bluestore-block-size", str(size)]
        node.succeed(["ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", uuid, "--osd-objectstore", "bluestore", *block],
                     timeout=300)
        node.succeed(["chown", "-R", "ceph:ceph", d, "/var/lib/ceph/osd-block"] if not (disk and disk.device) else
                     ["chown", "-R", "ceph:ceph", d, disk.device])
    disk = next((x for x in node.spec.disks if x.name == osd_disk), None)
    if disk and disk.device:
        # a raw block device is root:disk again after every boot, and the OSD runs as ceph: without
        # this the OSD of a restarted VM fails to open its block (seen on the first ceph-5 VM run)
        node.ensure_file(f"/etc/systemd/system/ceph-osd@{osd_id}.service.d/storlab-block.conf",
                         f"[Service]\nExecStartPre=/bin/chown ceph:ceph {disk.device}\n")
    start_unit(node, f"ceph-osd@{osd_id}.service", "ceph-osd.target")


def ensure_pool(ceph: NodeView, p: CephPoolPlan) -> None:
    pools = json.loads(ceph.succeed(["ceph", "osd", "pool", "ls", "-f", "json"]))
    if p.name not in pools:
        ceph.succeed(["ceph", "osd", "pool", "create", p.name, str(p.pg_num), str(p.pg_num), "replicated"])
    size = str(p.size)
    min_size = str(p.min_size if p.min_size is not None else max(1, p.size - p.size // 2))
    for key, want in (("size", size), ("min_size", min_size)):
        have = json.loads(ceph.succeed(["ceph", "osd", "pool", "get", p.name, key, "-f", "json"]))[key]
        if str(have) != want:
            ceph.succeed(["ceph", "osd", "pool", "set", p.name, key, want])
    apps = json.loads(ceph.succeed(["ceph", "osd", "pool", "application", "get", p.name, "-f", "json"]))
    if p.application not in apps:
        if p.application == "rbd":
            ceph.succeed(["rbd", "pool", "init", p.name], timeout=120)
        else:
            ceph.succeed(["ceph", "osd", "pool", "application", "enable", p.name, p.application])


def ensure_client(ceph: NodeView, cl: CephClientPlan) -> None:
    caps = [x for daemon, cap in sorted(cl.caps.items()) for x in (daemon, cap)]
    r = ceph.run(["ceph", "auth", "get", cl.name, "-f", "json"], timeout=30)
    if not r.ok:
        ceph.succeed(["ceph", "auth", "get-or-create", cl.name, *caps])  # keyring on stdout: not logged
    elif parse_auth(r.stdout) != dict(cl.caps):
        ceph.succeed(["ceph", "auth", "caps", cl.name, *caps])


def wait_health(ceph: NodeView, accepted: Sequence[str], timeout: float) -> None:
    def healthy() -> str | None:
        ok, summary = parse_health(ceph.succeed(["ceph", "-s", "-f", "json"], timeout=30), accepted)
        if not ok:
            raise HarnessError(summary)  # shown as the last observation on timeout
        return summary
    wait_until(healthy, timeout=timeout, interval=0.5, what="ceph HEALTH_OK with every PG active+clean")


def admin_node(lab: LabContext) -> NodeView:
    """Where client.admin's keyring is: the first admin node (the first monitor without one)."""
    c = need(of(lab.plan), "ceph section")
    return lab.node((c.admin or tuple(m.name for m in c.mons))[0])


def ceph_key(lab: LabContext, client: str) -> bytes:
    """The client's cephx key, read on the admin node; it travels as bytes, never in argv or logs."""
    key = admin_node(lab).succeed(["ceph", "auth", "get-key", client]).strip()
    log.mask(key)
    return base64.b64decode(key)


# -- faults of this backend ------------------------------------------------------------------
def osd_ids(node: NodeView) -> list[str]:
    """The ids of the OSDs on ``node`` (from their data directories)."""
    return node.succeed(["sh", "-c", "cat /var/lib/ceph/osd/ceph-*/whoami 2>/dev/null || true"], timeout=15).split()


@contextlib.contextmanager
def osd_stopped(node: NodeView) -> Iterator[NodeView]:
    """The OSD daemons of ``node`` killed (SIGKILL: peers see the connection refused at once, not a
    heartbeat timeout) and held stopped, the node itself up; started again on exit."""
    units = [f"ceph-osd@{i}.service" for i in osd_ids(node)]
    if not units:
        raise HarnessError(f"{node.name}: no OSD to stop")
    for unit in units:
        node.stop_service(unit, kill=True)
        node.succeed(["systemctl", "stop", unit])  # keep systemd from restarting it
    try:
        yield node
    finally:
        for unit in units:
            node.start_service(unit)
