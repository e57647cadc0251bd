"""NFS client options on a hypervisor node's pools (topologies/nfs-client.yaml; VMs: kernel nfsd
and the node's own kernel NFS client):

- each pool's volume is written on the node (qemu-io, O_DIRECT), read back there by a second
  process, and found with the same data in the export on the server's disk;
- each pool's mount runs with what the pool asked for, as the kernel shows it in
  /proc/self/mountstats: the NFS version (vers=), nconnect=, max_connect= and one `xprt:` line per
  transport; libvirt keeps the netfs pool's <protocol ver> and <fs:mount_opts>; a dir pool's
  mount units are enabled and active;
- the node's TCP connections to the server's port 2049, once I/O has gone over every transport,
  are exactly nconnect per mount (told apart by the local port mountstats gives each transport),
  and none belongs to no mount;
- session trunking: the trunked pool has one more connection, to the server's second address, in
  the transport set of its first mount (the second mount shares the first one's session);
- after the node crashes and starts again, the dir pools' exports are mounted again with the same
  options, each before libvirtd first starts (it autostarts the pools), and the pools list their
  volumes.

Select with `pytest -k nfs_client` (marked `vm`); `--matrix matrices/nfs-client.yaml` runs it once
per version x nconnect cell."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from harness.backends.nfs import client, planned
from harness.backends.nfs.mountstats import Conn, NfsMount, connections, mount_at, mounts, of_mount, to_server
from harness.backends.nfs.plan import NfsHostPool
from harness.errors import WaitTimeout
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab.lab import Lab
from harness.plan.model import need
from harness.run import wait_until

pytestmark = [pytest.mark.topology("nfs-client.yaml"), pytest.mark.vm]

Sh = Callable[..., str]
#: O_DIRECT writes of 64 KiB, one WRITE call each: the client hands them to its transports in turn
PROBE_WRITES = 64


def nfs_pools(lab: Lab, host: str | None = None) -> list[NfsHostPool]:
    pools = [p for p in lab.plan.host.pools if isinstance(p, NfsHostPool) and host in (None, p.host)]
    assert pools, "the lab has no pool on nfs" + (f" on {host}" if host else "")
    return pools


def run_on(lab: Lab, host: str) -> Sh:
    assert host != "kvm", "this module checks pools on hypervisor nodes (their kernel's NFS client)"
    return lab.node(host).succeed


@contextmanager
def libvirt_on(lab: Lab, host: str) -> Iterator[Any]:
    conn = connect(node_uri(lab, host))
    try:
        yield conn
    finally:
        conn.close()


def qemu_io(run: Sh, fmt: str, path: str, op: str, *, readonly: bool = False) -> str:
    """One qemu-io command on ``path`` with the host cache off (O_DIRECT: to and from the server)."""
    out = run(["qemu-io", "-f", fmt, "-t", "none", *(["-r", "-U"] if readonly else []), "-c", op, path], timeout=180)
    assert "Pattern verification failed" not in out, f"qemu-io {op} on {path}: {out}"
    return out


def test_nfs_client_each_pool_volume_written_and_read_back(lab: Lab) -> None:
    server = lab.node(planned(lab.plan).server)
    for i, spec in enumerate(nfs_pools(lab)):
        vols = [v for v in lab.plan.host.volumes if v.pool == spec.name]
        assert vols, f"pool {spec.name} has no volume in the topology"
        with libvirt_on(lab, spec.host) as conn:
            pool = conn.storagePoolLookupByName(spec.object)
            assert pool.isActive() and pool.autostart(), f"pool {spec.name}: not active and autostarted"
            pool.refresh(0)
            paths = {v.name: pool.storageVolLookupByName(v.name).path() for v in vols}
        pattern = f"0x{0x5a + i:02x}"  # one per pool: two pools on one export would read each other's
        run = run_on(lab, spec.host)
        for v in vols:
            wrote = qemu_io(run, v.format, paths[v.name], f"write -P {pattern} 0 1M")
            assert "wrote 1048576/1048576 bytes" in wrote, wrote
            back = qemu_io(run, v.format, paths[v.name], f"read -P {pattern} 0 1M")
            assert "read 1048576/1048576 bytes" in back, f"{v.name} read back on {spec.host}: {back}"
            there = qemu_io(server.succeed, v.format, f"{spec.export}/{v.name}", f"read -P {pattern} 0 1M", readonly=True)
            assert "read 1048576/1048576 bytes" in there, f"{v.name} in {spec.export} on {server.name}: {there}"


def test_nfs_client_each_mount_runs_the_asked_version_and_nconnect(lab: Lab, record_property: Any) -> None:
    for spec in nfs_pools(lab):
        m = mount_at(run_on(lab, spec.host), need(spec.path, "pool path"))
        assert m is not None, f"pool {spec.name}: no NFS mount at {spec.path} on {spec.host}"
        assert m.device == f"{spec.server}:{spec.export}", f"pool {spec.name}: {m.device} is mounted"
        if spec.version:
            assert m.version == spec.version, f"pool {spec.name}: NFS {m.version} (asked: {spec.version}); {m.opts}"
            assert m.fstype == ("nfs" if spec.version == "3" else "nfs4"), m.fstype
        assert m.nconnect == spec.connections, f"pool {spec.name}: nconnect={m.nconnect} (asked: {spec.connections})"
        assert len(m.xprts) == spec.connections + len(spec.trunk), \
            f"pool {spec.name}: {len(m.xprts)} transports (xprt: lines), wanted {spec.connections + len(spec.trunk)}"
        if spec.trunk:
            assert m.max_connect == 1 + len(spec.trunk), f"pool {spec.name}: max_connect={m.max_connect}"
        record_property(f"{spec.name}_vers", m.version)
        record_property(f"{spec.name}_xprts", len(m.xprts))
        if spec.type == "netfs":
            _libvirt_keeps_the_options(lab, spec)
        else:
            _units_enabled_and_active(lab, spec)


def _libvirt_keeps_the_options(lab: Lab, spec: NfsHostPool) -> None:
    with libvirt_on(lab, spec.host) as conn:
        xml = conn.storagePoolLookupByName(spec.object).XMLDesc(0)
    if spec.protocol_ver:
        assert f"<protocol ver='{spec.protocol_ver}'/>" in xml, f"pool {spec.name}: libvirt has\n{xml}"
    for o in spec.mount_opts:
        assert f"<fs:option name='{o}'/>" in xml, f"pool {spec.name}: libvirt dropped mount option {o}:\n{xml}"


def _units_enabled_and_active(lab: Lab, spec: NfsHostPool) -> None:
    node = lab.node(spec.host)
    for unit in client.units(lab.plan.lab, spec):
        state = [node.run(["systemctl", verb, unit], timeout=30).stdout.strip() for verb in ("is-enabled", "is-active")]
        assert state == ["enabled", "active"], f"pool {spec.name}: {unit} is {state} (a restart would lose the mount)"


# -- connections ----------------------------------------------------------------------------------
@dataclass
class Seen:
    """One look at a node: each pool's mount and the established connections to the server's 2049."""
    mounts: dict[str, NfsMount]
    conns: list[Conn]


def look(lab: Lab, host: str) -> Seen:
    """Every pool's mount from one read of /proc/self/mountstats (so that mounts sharing a client
    show the same transports, counters included), and the connections to the servers' 2049."""
    run = run_on(lab, host)
    pools = nfs_pools(lab, host)
    by_point = {m.mountpoint: m for m in mounts(run)}
    found = {}
    for p in pools:
        m = by_point.get(need(p.path, "pool path"))
        assert m is not None, f"pool {p.name}: no NFS mount at {p.path}"
        found[p.name] = m
    servers = {p.server or "" for p in pools} | {a for p in pools for a in p.trunk}
    return Seen(found, to_server(connections(run), servers))


def clients(lab: Lab, host: str) -> dict[str, int]:
    """NFS version -> the transports of the kernel's client for it (pools over one version share
    it: validation makes their options equal; no version is NFS 4.2 with these servers)."""
    return {p.version or "4.2": p.connections + len(p.trunk) for p in nfs_pools(lab, host)}


def busy(run: Sh, spec: NfsHostPool) -> None:
    """I/O on the pool's mount that goes over every one of its transports (which connect on first use)."""
    probe = f"{spec.path}/.storlab-nconnect-probe"
    run(["sh", "-c", 'dd if=/dev/zero of="$1" bs=64k count="$2" oflag=direct status=none && '
         'dd if="$1" of=/dev/null bs=64k iflag=direct status=none; rc=$?; rm -f "$1"; exit $rc',
         "sh", probe, str(PROBE_WRITES)], timeout=180)


def settled(lab: Lab, host: str) -> Seen:
    """A look taken right after I/O on every pool of ``host``, once each mount's transports are all
    connected (a transport connects on first use, and drops after 5 idle minutes)."""
    def attempt() -> Seen | None:
        for p in nfs_pools(lab, host):
            busy(run_on(lab, host), p)
        s = look(lab, host)
        return s if len(s.conns) >= sum(clients(lab, host).values()) else None
    try:
        return wait_until(attempt, timeout=180, interval=2, what=f"every NFS transport on {host} connected")
    except WaitTimeout as exc:
        pytest.fail(f"the NFS mounts on {host} did not connect every transport after I/O on them: {exc}")


def by_host(lab: Lab) -> list[str]:
    return sorted({p.host for p in nfs_pools(lab)})


def test_nfs_client_connections_to_port_2049_are_nconnect_per_mount(lab: Lab, record_property: Any) -> None:
    """Each mount's client has nconnect transports (plus one per trunk address), and the node holds
    exactly that many connections to the servers' 2049: one set per client. An NFSv4 transport's
    source port is not in mountstats (it shows 0: the kernel binds no reserved port for it), so
    connections are matched to a mount by port only for NFSv3."""
    for host in by_host(lab):
        s = settled(lab, host)
        for p in nfs_pools(lab, host):
            m = s.mounts[p.name]
            record_property(f"{p.name}_transports", len(m.xprts))
            assert len(m.xprts) == p.connections + len(p.trunk), \
                f"pool {p.name}: {len(m.xprts)} transports, nconnect={p.connections} and {len(p.trunk)} trunk(s)"
            if p.version == "3":  # reserved source ports: the mount's own connections are known
                peers = Counter(c.peer[0] for c in of_mount(s.conns, m))
                assert peers == Counter({p.server or "": p.connections}), \
                    f"pool {p.name}: connections by server address {dict(peers)}, nconnect={p.connections}"
        want = clients(lab, host)
        assert len(s.conns) == sum(want.values()), \
            f"{host}: {len(s.conns)} connections to the servers' 2049, wanted {sum(want.values())} ({want})"
        trunks = Counter(a for p in nfs_pools(lab, host) for a in p.trunk)
        assert Counter(c.peer[0] for c in s.conns if c.peer[0] in trunks) == trunks, \
            f"{host}: connections to the trunk addresses are not one per trunk ({dict(trunks)})"


def test_nfs_client_session_trunking_shares_one_session_over_two_networks(lab: Lab) -> None:
    """The mount over the trunk address is the first mount's: one read of mountstats shows it with
    the first's source and the same transports (the same counters), one of them connected to the
    trunk address (the connections test counts it)."""
    trunked = [p for p in nfs_pools(lab) if p.trunk]
    if not trunked:
        pytest.skip("no pool of this lab trunks (nfs: {trunk: [NETWORK]})")
    for p in trunked:
        settled(lab, p.host)
        every = {m.mountpoint: m for m in mounts(run_on(lab, p.host))}
        first = every[need(p.path, "pool path")]
        assert len(first.xprts) == 1 + len(p.trunk), f"pool {p.name}: {len(first.xprts)} transports"
        for source, where in client.mounts_of(p)[1:]:
            second = every.get(where)
            assert second is not None, f"pool {p.name}: nothing NFS is mounted at {where} (from {source})"
            # the kernel found the trunk address the same server (its server owner) and the export the
            # same file system: the mount shares the first's superblock, so it shows the first's source
            assert second.device == first.device, \
                f"pool {p.name}: the mount over {source} is {second.device}, not the first mount's {first.device}"
            assert second.xprts == first.xprts, \
                (f"pool {p.name}: the mount over {source} has transports of its own ({second.xprts}; the first "
                 f"mount's: {first.xprts}): the client did not trunk it into the first session")


# -- a restart ---------------------------------------------------------------------------------------
#: journald's MESSAGE_ID of "unit started" (a service started, a mount mounted)
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


def _first_started(run: Sh, unit: str) -> int:
    """When ``unit`` first started in this boot (µs since boot, from the journal; 0: it did not).
    Debian's libvirtd exits after 120 idle seconds and socket activation starts it again: its
    first start is the one that autostarted the pools."""
    out = run(["journalctl", "-b", "-o", "json", "--no-pager", f"MESSAGE_ID={UNIT_STARTED}", f"UNIT={unit}"],
              timeout=60)
    stamps = [int(json.loads(line)["__MONOTONIC_TIMESTAMP"]) for line in out.splitlines() if line.strip()]
    return min(stamps, default=0)


def _autostarted(lab: Lab, p: NfsHostPool) -> list[str]:
    """Once libvirtd has autostarted the pool: what it listed at its start (no refresh here)."""
    with libvirt_on(lab, p.host) as conn:
        pool = conn.storagePoolLookupByName(p.object)
        try:
            wait_until(lambda: pool.isActive(), timeout=180, interval=2, what=f"pool {p.name} autostarted")
        except WaitTimeout as exc:
            pytest.fail(f"pool {p.name} was not started again by libvirtd after {p.host} restarted: {exc}")
        return sorted(pool.listVolumes())


def test_nfs_client_mounts_come_back_before_libvirtd_after_a_crash(lab: Lab) -> None:
    """The dir pools' mounts (storlab's, by systemd mount units) after hv1 crashes: mounted again
    with the same options, each unit started before libvirtd first started (which autostarts the
    pools on them), and the pools list their volumes."""
    dir_pools = [p for p in nfs_pools(lab) if p.type == "dir"]
    if not dir_pools:
        pytest.skip("no dir pool on an NFS mount in this lab")
    for host in sorted({p.host for p in dir_pools}):
        with lab.node(host).crashed():
            pass  # powered off; started again, and waited for, on leaving the block
        run = run_on(lab, host)
        for p in (q for q in dir_pools if q.host == host):
            listed = _autostarted(lab, p)
            want = sorted(v.name for v in lab.plan.host.volumes if v.pool == p.name)
            assert set(want) <= set(listed), f"pool {p.name} lists {listed} after the restart, wanted {want}"
            m = mount_at(run, need(p.path, "pool path"))
            assert m is not None, f"pool {p.name}: not mounted again after {host} restarted"
            assert (m.version, m.nconnect) == (p.version or m.version, p.connections), \
                f"pool {p.name}: NFS {m.version}, nconnect={m.nconnect} after the restart"
            libvirtd = _first_started(run, "libvirtd.service")
            for unit in client.units(lab.plan.lab, p):
                started = _first_started(run, unit)
                assert 0 < started < libvirtd, \
                    f"{unit} started at {started} µs after boot, libvirtd first at {libvirtd} µs (0: not in this boot)"
