"""Chaos support of ceph, nfs and iscsi with the plans of their shipped topologies and recording
nodes: the daemons each offers to kill and pause, the qemu-io client each builds (no secret in its
argv: keys and CHAP passwords only in 0600 files of the private run directory, gone once the client
is done), the commands it runs on nodes, health read from captured command output, and the stall
it promises per fault. Nothing here starts a client or reaches a lab."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import run as runmod
from harness.backends.base import NodeView
from harness.backends.ceph.chaos import CephChaos
from harness.backends.gluster.chaos import GlusterChaos
from harness.backends.iscsi.chaos import IscsiChaos, claimed_luns, parse_luns, scratch_lun
from harness.backends.nfs.chaos import NfsChaos
from harness.chaos import runner
from harness.chaos import verbs as chaos_verbs
from harness.chaos.qemuio import QemuIo, object_args
from harness.chaos.schedule import Event, draw
from harness.chaos.support import WriteTarget
from harness.chaos.vocabulary import HOST, KINDS
from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.nodes import verbs
from harness.plan.model import NodePlan, Plan
from harness.plan.planner import load_plan
from harness.run import CommandResult

REPO = Path(__file__).resolve().parents[2]
FACTS = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "incus", "vagrant"}))
#: a cephx key as `ceph auth get-key` prints it: base64 of type 1 (AES), created (8 bytes), length 16, the secret
CEPH_KEY = base64.b64encode(b"\x01\x00" + bytes(8) + b"\x10\x00" + bytes(range(16, 32))).decode()
CHAP = "Zq4sW9xLm2Pd7RtK"
Answer = Callable[[tuple[str, ...]], tuple[int, str]]


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def plan(topology: str, provider: str = "lxc") -> Plan:
    return load_plan(str(REPO / "topologies" / f"{topology}.yaml"), FACTS, provider)


class Node:
    """A node that records each command and answers it with ``answer(argv)``: (rc, stdout)."""

    def __init__(self, spec: NodePlan, answer: Answer, calls: list[tuple[str, tuple[str, ...]]]) -> None:
        self.spec, self.answer, self.calls = spec, answer, calls

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def roles(self) -> tuple[str, ...]:
        return self.spec.roles

    def run(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        argv = (cmd,) if isinstance(cmd, str) else tuple(cmd)
        self.calls.append((self.name, argv))
        rc, out = self.answer(argv)
        return CommandResult(argv, rc, out if rc == 0 else "", "" if rc == 0 else out, 0.01)

    def succeed(self, cmd: Sequence[str] | str, *, timeout: float = 120, input: str | None = None) -> str:
        r = self.run(cmd, timeout=timeout, input=input)
        if not r.ok:
            raise HarnessError(str(r))
        return r.stdout


class Lab:
    """A LabContext of ``plan`` whose nodes answer with ``answers[node name]`` (default: rc 0, no output)."""

    def __init__(self, plan: Plan, tmp: Path, answers: Mapping[str, Answer] | None = None) -> None:
        self.plan, self.name, self.calls = plan, plan.lab, list[tuple[str, tuple[str, ...]]]()
        self.secrets_dir, self.logs, self.key = tmp / "secrets", tmp / "logs", tmp / "key"
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ok: Answer = lambda argv: (0, "")  # noqa: E731
        self._nodes = {n.name: Node(n, (answers or {}).get(n.name, ok), self.calls) for n in plan.nodes}

    @property
    def nodes(self) -> Mapping[str, NodeView]:
        return self._nodes  # type: ignore[return-value]

    def node(self, name: str) -> NodeView:
        return self._nodes[name]  # type: ignore[return-value]

    def files(self, where: str) -> Path:
        return Path("/nonexistent")

    def owns(self, thing: str) -> bool:
        return False

    def claim(self, thing: str) -> None:
        pass


def ev(kind: str, nodes: tuple[str, ...], duration: float = 10.0, **kw: Any) -> Event:
    return Event(id=1, at=5.0, duration=duration, kind=kind, nodes=nodes, **kw)


def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    return d


def argv_of(target: WriteTarget) -> list[str]:
    client = target.op.client  # type: ignore[attr-defined]
    assert isinstance(client, QemuIo)
    return client.argv


def private(f: Path, content: str) -> None:
    """``f`` holds ``content``, is 0600, and its directory 0700."""
    assert f.read_text() == content or content in f.read_text()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and stat.S_IMODE(f.parent.stat().st_mode) == 0o700


# -- ceph ---------------------------------------------------------------------------------------
def ceph_status(state: str, checks: dict[str, str], pgs: dict[str, int], num_pgs: int | None = None) -> str:
    """`ceph status -f json` as Ceph 16 prints it (the fields parse_health reads, and some around them)."""
    return json.dumps({
        "fsid": "f348f516-71e7-540c-80be-529d94f0da9d",
        "health": {"status": state, "checks": {code: {"severity": "HEALTH_WARN", "summary": {"message": msg, "count": 1},
                                                      "muted": False} for code, msg in checks.items()}, "mutes": []},
        "election_epoch": 5, "quorum": [0], "quorum_names": ["ceph-monitor"], "quorum_age": 812,
        "monmap": {"epoch": 2, "min_mon_release_name": "pacific", "num_mons": 1},
        "osdmap": {"epoch": 61, "num_osds": 3, "num_up_osds": 3 - ("OSD_DOWN" in checks), "osd_up_since": 1764870000,
                   "num_in_osds": 3, "osd_in_since": 1764869000, "num_remapped_pgs": 0},
        "pgmap": {"pgs_by_state": [{"state_name": s, "count": n} for s, n in pgs.items()],
                  "num_pgs": sum(pgs.values()) if num_pgs is None else num_pgs, "num_pools": 2, "num_objects": 9,
                  "data_bytes": 1269760, "bytes_used": 3254779904, "bytes_avail": 16072847360, "bytes_total": 19327352832},
        "fsmap": {"epoch": 1, "by_rank": [], "up:standby": 0},
        "mgrmap": {"available": True, "num_standbys": 0, "modules": ["iostat", "restful"], "services": {}},
        "servicemap": {"epoch": 3, "modified": "2026-12-04T17:40:00.000000+0000", "services": {}},
        "progress_events": {}})


def ceph_lab(tmp_path: Path, status: str = "", osd_ids: Mapping[str, str] | None = None) -> Lab:
    ids = osd_ids if osd_ids is not None else {"ceph-osd1": "1\n", "ceph-osd2": "0\n", "ceph-osd3": "2\n"}

    def admin(argv: tuple[str, ...]) -> tuple[int, str]:
        if argv[:3] == ("ceph", "auth", "get-key"):
            return 0, CEPH_KEY + "\n"
        if argv[:2] == ("ceph", "-s"):
            return (0, status) if status else (1, "monclient(hunting): authenticate timed out after 10")
        return 0, ""

    def osd(name: str) -> Answer:
        return lambda argv: (0, ids[name]) if name in ids else (255, "ssh: connect to host: No route to host")
    return Lab(plan("ceph-5"), tmp_path, {"ceph-admin": admin, **{n: osd(n) for n in ("ceph-osd1", "ceph-osd2", "ceph-osd3")}})


def test_ceph_daemons_are_services_named_per_node_and_osd_ids_read_there(tmp_path: Path) -> None:
    lab = ceph_lab(tmp_path, osd_ids={"ceph-osd1": "1\n", "ceph-osd2": "0\n3; reboot\n"})  # osd3 does not answer
    got = CephChaos().daemons(lab)
    assert got == {"ceph-monitor": ("ceph-mon@ceph-monitor.service", "ceph-mgr@ceph-monitor.service"),
                   "ceph-osd1": ("ceph-osd@1.service",), "ceph-osd2": ("ceph-osd@0.service",)}
    assert all(verbs.unit(u) == u for units in got.values() for u in units)  # what kill and pause accept


def test_ceph_writer_is_librbd_as_the_pools_client_with_its_key_in_a_private_keyring(tmp_path: Path) -> None:
    lab, rd = ceph_lab(tmp_path), run_dir(tmp_path)
    (t,) = CephChaos().targets(lab, rd, "s7-1764870000", span=3 << 20)
    assert ("ceph-admin", ("rbd", "create", "--size", "3M", "--image-feature", "layering", "KVMpool/chaos-s7-1764870000")) \
        in lab.calls
    clients = rd / "clients"
    assert argv_of(t) == ["qemu-io", "-t", "none", "--image-opts",
                          f"driver=raw,file.driver=rbd,file.pool=KVMpool,file.image=chaos-s7-1764870000,file.user=KVMpool,"
                          f"file.conf={clients}/ceph.conf"]
    assert CEPH_KEY not in " ".join(argv_of(t)) + t.what
    private(clients / "ceph.client.KVMpool.keyring", f"[client.KVMpool]\n\tkey = {CEPH_KEY}\n")
    conf = (clients / "ceph.conf").read_text()
    assert "mon host = 192.168.180.12\n" in conf and f"keyring = {clients}/ceph.client.KVMpool.keyring\n" in conf
    assert "fsid = f348f516" in conf and CEPH_KEY not in conf
    t.close()  # the client never started; its files go
    assert not (clients / "ceph.client.KVMpool.keyring").exists() and not (clients / "ceph.conf").exists()


def test_ceph_unsafe_writer_uses_librbds_write_back_cache_without_its_guard(tmp_path: Path) -> None:
    """At --cache unsafe: qemu-io at cache=writeback (qemu turns librbd's cache off at none), and the
    cache on without writethrough-until-flush (no flush ever comes: it would stay synchronous)."""
    lab, rd = ceph_lab(tmp_path), run_dir(tmp_path)
    (t,) = CephChaos().targets(lab, rd, "s7-1764870000", sync=False, span=3 << 20)
    assert argv_of(t)[:3] == ["qemu-io", "-t", "writeback"]
    conf = (rd / "clients" / "ceph.conf").read_text()
    assert "rbd cache = true\n" in conf and "rbd cache writethrough until flush = false\n" in conf
    t.close()
    (safe,) = CephChaos().targets(lab, rd, "s8-1764870000", span=3 << 20)
    assert argv_of(safe)[:3] == ["qemu-io", "-t", "none"] and "rbd cache" not in (rd / "clients" / "ceph.conf").read_text()
    safe.close()


def test_ceph_writer_refuses_a_run_id_or_key_it_cannot_use_safely(tmp_path: Path) -> None:
    lab = ceph_lab(tmp_path)
    for bad in ("../x", "s1-2\n"):
        with pytest.raises(HarnessError, match="run id"):
            CephChaos().targets(lab, tmp_path, bad)
    assert not lab.calls

    def hostile(argv: tuple[str, ...]) -> tuple[int, str]:
        return (0, "AQ==\n") if argv[:3] == ("ceph", "auth", "get-key") else (0, "")  # one byte: no cephx key
    lab = Lab(plan("ceph-5"), tmp_path / "h", {"ceph-admin": hostile})
    rd = tmp_path / "run2"
    with pytest.raises(HarnessError, match="not a cephx key"):
        CephChaos().targets(lab, rd, "s1-2")
    assert ("ceph-admin", ("rbd", "rm", "--no-progress", "KVMpool/chaos-s1-2")) in lab.calls  # its image went too
    assert not (rd / "clients").exists() or not list((rd / "clients").iterdir())


@pytest.mark.parametrize(("status", "waiting"), [
    (ceph_status("HEALTH_OK", {}, {"active+clean": 33}), None),
    # warnings that say nothing about data
    (ceph_status("HEALTH_WARN", {"MON_CLOCK_SKEW": "clock skew detected on mon.ceph-monitor",
                                 "AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED": "mons are allowing insecure global_id reclaim"},
                 {"active+clean": 33}), None),
    (ceph_status("HEALTH_WARN", {"OSD_DOWN": "1 osds down", "PG_DEGRADED": "Degraded data redundancy: 7/27 objects "
                                 "degraded (25.926%), 22 pgs degraded"},
                 {"active+undersized+degraded": 22, "active+undersized": 11}), "OSD_DOWN"),
    (ceph_status("HEALTH_OK", {}, {"active+clean": 30, "peering": 3}), "peering"),
    (ceph_status("HEALTH_OK", {}, {}, num_pgs=0), "pgs []"),  # a mgr just started: no PG states yet
    ("", "`ceph -s` to answer on ceph-admin"),
    ("HEALTH_OK", "to say something storlab can read"),
])
def test_ceph_health_from_ceph_status(tmp_path: Path, status: str, waiting: str | None) -> None:
    lab = ceph_lab(tmp_path, status)
    got = CephChaos().health(lab)
    assert got is None if waiting is None else waiting in (got or "")
    assert lab.calls[-1] == ("ceph-admin", ("ceph", "-s", "-f", "json", "--connect-timeout", "10"))


@pytest.mark.parametrize(("event", "bound"), [
    (ev("kill", ("ceph-osd1",), daemon="ceph-osd@1.service"), 40.0),  # grace 20 + 20
    (ev("pause", ("ceph-osd2",), daemon="ceph-osd@0.service"), 40.0),
    (ev("crash", ("ceph-osd3",)), 40.0),
    (ev("hang", ("ceph-osd3",), duration=60), 40.0),  # the OSD is marked down: writes go on without it
    (ev("link", ("ceph-admin",)), 40.0),  # nothing of the data path
    (ev("kill", ("ceph-monitor",), daemon="ceph-mgr@ceph-monitor.service"), 40.0),
    (ev("kill", ("ceph-monitor",), daemon="ceph-mon@ceph-monitor.service"), None),  # the only monitor: no quorum
    (ev("crash", ("ceph-monitor",)), None),
    (ev("partition", ("ceph-osd1",), apart=("ceph-admin", "ceph-monitor", "ceph-osd2", "ceph-osd3")), 40.0),
    (ev("partition", ("ceph-monitor",), apart=("ceph-admin", "ceph-osd1", "ceph-osd2", "ceph-osd3")), 40.0),
    # osd1 reports osd2 and osd3 to the monitor: one replica left of 3, min_size 2
    (ev("partition", ("ceph-monitor", "ceph-osd1"), apart=("ceph-admin", "ceph-osd2", "ceph-osd3")), None),
    (ev("partition-oneway", ("ceph-osd1",), apart=("ceph-admin", "ceph-monitor", "ceph-osd2", "ceph-osd3")), None),
    (ev("client-partition", (HOST,), apart=("ceph-osd1",)), None),  # no OSD is marked down for a client's cut
    (ev("netem", ("ceph-osd1",)), None),
    (ev("client-crash", (HOST,)), None),
])
def test_ceph_bound_per_fault(tmp_path: Path, event: Event, bound: float | None) -> None:
    assert CephChaos().bound(ceph_lab(tmp_path), event) == bound


def test_ceph_bound_waits_for_an_election_where_monitors_keep_quorum(tmp_path: Path) -> None:
    p = plan("ceph-5")
    c = p.ceph.model_copy(update={"mons": (*p.ceph.mons, p.ceph.mons[0].model_copy(update={"name": "ceph-osd1"}),  # type: ignore[attr-defined]
                                           p.ceph.mons[0].model_copy(update={"name": "ceph-osd2"}))})  # type: ignore[attr-defined]
    lab = Lab(p.model_copy(update={"ceph": c}), tmp_path)
    assert CephChaos().bound(lab, ev("crash", ("ceph-osd1",))) == 20 + 20 + 15  # an OSD host and a monitor of three


def test_ceph_remove_tries_again_while_a_killed_client_still_watches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runmod, "_pause", lambda s: None)
    answers = iter([(16, "rbd: error: image still has watchers"), (0, "")])
    lab = Lab(plan("ceph-5"), tmp_path, {"ceph-admin": lambda argv: next(answers)})
    CephChaos().remove(lab, "s7-1")
    assert lab.calls == [("ceph-admin", ("rbd", "rm", "--no-progress", "KVMpool/chaos-s7-1"))] * 2


def test_runner_shape_takes_each_nodes_daemons(tmp_path: Path) -> None:
    shape = runner.shape(ceph_lab(tmp_path), [CephChaos()])  # type: ignore[arg-type]
    assert shape.node("ceph-osd2").daemons == ("ceph-osd@0.service",)  # type: ignore[union-attr]
    assert shape.node("ceph-admin").daemons == ()  # type: ignore[union-attr]


def test_gluster_error_gen_is_its_own_fault_drawn_only_on_a_gluster_lab(tmp_path: Path) -> None:
    lab = Lab(plan("gluster-3"), tmp_path)
    shape = runner.shape(lab, [GlusterChaos()])  # type: ignore[arg-type]
    assert "gluster-error-gen" in shape.backend_faults and shape.why_not(KINDS["gluster-error-gen"]) is None
    ceph = runner.shape(ceph_lab(tmp_path / "c"), [CephChaos()])  # type: ignore[arg-type]
    assert ceph.why_not(KINDS["gluster-error-gen"]) == "a fault of the gluster backend, which this lab does not run"
    sched = draw(5, 600, ["gluster-error-gen", "crash"], shape)
    errs = [e for e in sched.events if e.kind == "gluster-error-gen"]
    assert errs and all(e.nodes == ("gluster1", "gluster2", "gluster3") and 5 <= e.params["failure_pct"] <= 30
                        for e in errs)
    # it touches every server: nothing else is drawn while it lasts
    assert not any(o.id != e.id and o.at < e.end and e.at < o.end for e in errs for o in sched.events)


def test_gluster_error_gen_sets_the_translator_on_the_writers_volume_and_resets_each_option(tmp_path: Path) -> None:
    lab = Lab(plan("gluster-3"), tmp_path)
    e = ev("gluster-error-gen", ("gluster1", "gluster2", "gluster3"), params={"failure_pct": 12.4})
    undo = chaos_verbs.apply(lab, e, own={k: lambda e, v=v: v(lab, e) for k, v in GlusterChaos().faults().items()})  # type: ignore[arg-type,misc]
    # fop names in capitals: a lowercase list is taken by glusterd and fails nothing (measured)
    assert lab.calls == [("gluster1", ("gluster", "--mode=script", "volume", "set", "kvmgluster", "debug.error-gen", "client",
                                       "debug.error-fops", "WRITE,FSYNC", "debug.error-failure", "12"))]
    undo()
    assert [c[1][3:] for c in lab.calls[1:]] == [("reset", "kvmgluster", k) for k in
                                                 ("debug.error-gen", "debug.error-fops", "debug.error-failure")]
    with pytest.raises(HarnessError, match="failure_pct 0 is not 1-100"):
        GlusterChaos().faults()["gluster-error-gen"](lab, ev("gluster-error-gen", ("gluster1",),
                                                             params={"failure_pct": 0.2}))


# -- nfs ------------------------------------------------------------------------------------------
def test_nfs_daemons_ganesha_has_a_process_kernel_nfsd_none(tmp_path: Path) -> None:
    assert NfsChaos().daemons(Lab(plan("nfs-userspace"), tmp_path)) == {"nfs1": ("nfs-ganesha.service",)}
    kernel = Lab(plan("nfs", "vagrant"), tmp_path / "k")
    assert kernel.plan.nfs.implementation == "kernel" and NfsChaos().daemons(kernel) == {}  # type: ignore[attr-defined]


def test_nfs_writer_is_libnfs_as_the_squashed_uid_on_a_file_made_on_the_server(tmp_path: Path) -> None:
    lab, rd = Lab(plan("nfs-userspace"), tmp_path), run_dir(tmp_path)
    (t,) = NfsChaos().targets(lab, rd, "s3-1764870000", span=1 << 20)
    path = "/srv/nfs/kvm/chaos-s3-1764870000.img"
    assert lab.calls == [("nfs1", ("sh", "-c", 'truncate -s "$1" -- "$3" && chown "$2" -- "$3" && chmod 0600 -- "$3" '
                                           '&& sync -- "$3"',
                                    "sh", "1048576", "65534:65534", path))]
    assert argv_of(t) == ["qemu-io", "-t", "none", "--image-opts",
                          f"driver=raw,file.driver=nfs,file.server.type=inet,file.server.host=192.168.151.11,"
                          f"file.path={path},file.user=65534,file.group=65534"]
    NfsChaos().remove(lab, "s3-1764870000")
    assert lab.calls[-1] == ("nfs1", ("rm", "-f", "--", path))


def test_nfs_writer_takes_the_exports_anonuid_and_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    p = plan("nfs-userspace")
    e = p.nfs.exports[0]  # type: ignore[attr-defined]
    lab = Lab(p.model_copy(update={"nfs": p.nfs.model_copy(update={"exports": (  # type: ignore[attr-defined]
        e.model_copy(update={"path": "/srv/nfs/ro", "options": ("ro",)}),
        e.model_copy(update={"options": (*e.options, "anonuid=1001", "anongid=1002")}))})}), tmp_path)
    (t,) = NfsChaos().targets(lab, run_dir(tmp_path), "s3-1")
    assert "1001:1002" in lab.calls[0][1] and "file.user=1001,file.group=1002" in argv_of(t)[-1]
    with pytest.raises(HarnessError, match="run id"):
        NfsChaos().targets(lab, tmp_path, "x/../../etc")
    other = Lab(p.model_copy(update={"nfs": p.nfs.model_copy(update={"exports": (  # type: ignore[attr-defined]
        e.model_copy(update={"clients": ("10.9.9.0/24",)}),)})}), tmp_path / "o")
    with pytest.raises(HarnessError, match="no export is writable"):
        NfsChaos().targets(other, tmp_path, "s3-1")


_AT = "04/12/2026 17:51:18 : epoch 6571e0b6 : nfs1 : ganesha.nfsd-211"
GANESHA_LOG = (f"{_AT}[main] nfs_start :NFS STARTUP :EVENT :-------------------------------------------------\n"
               f"{_AT}[main] nfs_start :NFS STARTUP :EVENT :             NFS SERVER INITIALIZED\n"
               f"{_AT}[main] nfs_start_grace :STATE :EVENT :NFS Server Now IN GRACE, duration 15\n")
LIFTED = f"{_AT}[reaper] nfs_try_lift_grace :STATE :EVENT :NFS Server Now NOT IN GRACE\n"


def nfs_node(active: bool = True, exported: str = "", log: str = "", grace: str = "Y\n", there: bool = True) -> Answer:
    def answer(argv: tuple[str, ...]) -> tuple[int, str]:
        if argv[:2] == ("test", "-d"):
            return (0, "") if there else (1, "")
        if argv[:2] == ("systemctl", "is-active"):
            return (0, "") if active else (3, "")
        if argv[0] in ("showmount", "exportfs"):
            return 0, exported
        if argv[0] == "tail":
            return 0, log
        if argv == ("cat", "/proc/fs/nfsd/v4_end_grace"):
            return 0, grace
        return 1, f"unexpected {argv}"
    return answer


@pytest.mark.parametrize(("answer", "waiting"), [
    (nfs_node(exported="/srv/nfs/kvm 192.168.151.0/24\n", log=GANESHA_LOG + LIFTED), None),
    (nfs_node(active=False), "nfs-ganesha.service active on nfs1"),
    (nfs_node(exported="", log=GANESHA_LOG + LIFTED), "exporting /srv/nfs/kvm"),
    (nfs_node(exported="/srv/nfs/kvm 192.168.151.0/24\n", log=GANESHA_LOG), "leave its grace period"),
    # restarted since the grace was lifted: in grace again
    (nfs_node(exported="/srv/nfs/kvm 192.168.151.0/24\n", log=GANESHA_LOG + LIFTED + GANESHA_LOG), "grace"),
])
def test_nfs_health_of_ganesha(tmp_path: Path, answer: Answer, waiting: str | None) -> None:
    got = NfsChaos().health(Lab(plan("nfs-userspace"), tmp_path, {"nfs1": answer}))
    assert got is None if waiting is None else waiting in (got or "")


EXPORTFS = ("/srv/nfs/kvm  \t192.168.169.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,root_squash,"
            "no_all_squash)\n")


@pytest.mark.parametrize(("answer", "waiting"), [
    (nfs_node(exported=EXPORTFS), None),
    (nfs_node(exported=EXPORTFS, grace="N\n"), "end its grace period"),
    (nfs_node(exported=""), "exporting /srv/nfs/kvm"),
    (nfs_node(active=False), "nfs-server.service active"),
    # listed in exportfs's table, but the directory is not there (its disk not mounted yet, or lost)
    (nfs_node(exported=EXPORTFS, there=False), "/srv/nfs/kvm on nfs1 (exported, but not there)"),
])
def test_nfs_health_of_kernel_nfsd(tmp_path: Path, answer: Answer, waiting: str | None) -> None:
    got = NfsChaos().health(Lab(plan("nfs", "vagrant"), tmp_path, {"nfs1": answer}))
    assert got is None if waiting is None else waiting in (got or "")


@pytest.mark.parametrize(("topology", "provider", "event", "bound"), [
    # duration + 15 + grace 15 after a restart; + TCP backoff (min(duration, 120)) after a silent fault
    ("nfs-userspace", "lxc", ev("kill", ("nfs1",), daemon="nfs-ganesha.service"), 10 + 15 + 15),
    ("nfs-userspace", "lxc", ev("pause", ("nfs1",), daemon="nfs-ganesha.service"), 10 + 15),
    ("nfs-userspace", "lxc", ev("hang", ("nfs1",), duration=30), 30 + 15 + 30),
    ("nfs-userspace", "lxc", ev("crash", ("nfs1",), duration=20), 20 + 15 + 20 + 15 + 30),  # + a container's boot
    ("nfs-userspace", "lxc", ev("client-partition", (HOST,), duration=20, apart=("nfs1",)), 20 + 15 + 20),
    ("nfs-userspace", "lxc", ev("netem", ("nfs1",)), None),
    ("nfs-userspace", "lxc", ev("disk-full", ("nfs1",), disk="data"), None),
    ("nfs", "vagrant", ev("crash", ("nfs1",), duration=20), None),  # a VM's boot: no promise
    ("nfs", "vagrant", ev("link", ("nfs1",), duration=200), 200 + 15 + 120),
    ("nfs", "vagrant", ev("kill", ("nfs1",), daemon="nfs-ganesha.service"), None),  # not this lab's daemon
])
def test_nfs_bound_per_fault(tmp_path: Path, topology: str, provider: str, event: Event, bound: float | None) -> None:
    assert NfsChaos().bound(Lab(plan(topology, provider), tmp_path), event) == bound


# -- iscsi ----------------------------------------------------------------------------------------
def iscsi_lab(tmp_path: Path, topology: str = "iscsi-userspace", provider: str = "lxc",
              answer: Answer | None = None) -> Lab:
    lab = Lab(plan(topology, provider), tmp_path, {"iscsi1": answer} if answer else None)
    for name in ("chap-PacktStratis01", "chap-kvm1"):
        fd = os.open(lab.secrets_dir / name, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, CHAP.encode())
        os.close(fd)
    return lab


def test_iscsi_daemons_tgt_has_a_process_lio_none(tmp_path: Path) -> None:
    assert IscsiChaos().daemons(iscsi_lab(tmp_path)) == {"iscsi1": ("tgt.service",)}
    assert IscsiChaos().daemons(iscsi_lab(tmp_path / "v", "iscsi", "vagrant")) == {}


def test_iscsi_scratch_lun_is_the_last_one_nothing_names() -> None:
    assert scratch_lun(plan("iscsi-userspace")) == 1  # LUN 0 and 1 unused: the last
    assert scratch_lun(plan("iscsi", "vagrant")) == 2
    pools = plan("iscsi-pools", "vagrant")
    assert claimed_luns(pools) == {0, 1} and scratch_lun(pools) == 2  # the LVM and GPT pools' LUNs are theirs
    shared = plan("shared-lun", "vagrant")
    assert claimed_luns(shared) == {0}  # a cluster filesystem's
    with pytest.raises(HarnessError, match=r"every LUN .* is used"):
        scratch_lun(shared)


def test_iscsi_writer_is_libiscsi_with_chap_from_a_secret_object_file(tmp_path: Path) -> None:
    lab, rd = iscsi_lab(tmp_path), run_dir(tmp_path)
    (t,) = IscsiChaos().targets(lab, rd, "s9-1", span=1 << 20)
    secret = rd / "clients" / "iscsi-chap.secret"
    assert argv_of(t) == [
        "qemu-io", "--object", f"qom-type=secret,id=chap,file={secret},format=raw", "-t", "none", "--image-opts",
        "driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=192.168.226.11:3260,"
        "file.target=iqn.2019-12.com.packt:target1,file.lun=2,file.initiator-name=iqn.2019-12.com.packt:PacktStratis01,"
        "file.user=packt,file.password-secret=chap"]  # tgt's LUN 2 is iscsi.luns[1] (its LUN 0 is the controller)
    assert CHAP not in " ".join(argv_of(t)) + t.what and not lab.calls
    private(secret, CHAP)
    t.close()
    assert not secret.exists()


def test_iscsi_writer_on_lio_and_a_span_the_lun_cannot_hold(tmp_path: Path) -> None:
    lab = iscsi_lab(tmp_path, "iscsi", "vagrant")
    (t,) = IscsiChaos().targets(lab, run_dir(tmp_path), "s9-1")
    assert "file.lun=2," in argv_of(t)[-1] and "file.initiator-name=iqn.2019-12.com.packt:PacktStratis01" in argv_of(t)[-1]
    t.close()
    with pytest.raises(HarnessError, match="smaller than the run's span"):
        IscsiChaos().targets(iscsi_lab(tmp_path / "u"), tmp_path / "r2", "s9-1", span=1 << 30)


ISCSI_LS = """\
Target:iqn.2019-12.com.packt:target1 Portal:192.168.226.11:3260,1
Lun:0    Type:STORAGE_ARRAY_CONTROLLER (Size:0M)
Lun:1    Type:DIRECT_ACCESS (Size:256M)
Lun:2    Type:DIRECT_ACCESS (Size:128M)
"""


@pytest.mark.parametrize(("active", "listed", "waiting"), [
    (True, ISCSI_LS, None),
    (False, ISCSI_LS, "tgt.service active on iscsi1"),
    (True, ISCSI_LS.replace("Lun:2", "Lun:7"), "seeing its LUN 2"),
    (True, None, "seeing its LUN 2"),  # the login failed
])
def test_iscsi_health_target_up_and_the_host_sees_the_lun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         active: bool, listed: str | None, waiting: str | None) -> None:
    seen: list[tuple[tuple[str, ...], dict[str, str]]] = []

    def fake_run(argv: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None) -> CommandResult:
        seen.append((tuple(argv), env or {}))
        return CommandResult(tuple(argv), 0 if listed is not None else 1, listed or "", "" if listed else
                             "iscsi_connect failed. Failed to log in to target. Authentication failure", 0.1)
    monkeypatch.setattr("harness.backends.iscsi.chaos.run", fake_run)
    lab = iscsi_lab(tmp_path, answer=lambda argv: (0, "") if active else (3, ""))
    got = IscsiChaos().health(lab)
    assert got is None if waiting is None else waiting in (got or "")
    if active:
        argv, env = seen[0]
        assert argv == ("iscsi-ls", "-s", "-i", "iqn.2019-12.com.packt:PacktStratis01", "iscsi://192.168.226.11")
        assert CHAP not in " ".join(argv) and env["LIBISCSI_CHAP_PASSWORD"] == CHAP and env["LIBISCSI_CHAP_USERNAME"] == "packt"
    assert parse_luns(ISCSI_LS) == {1, 2}


@pytest.mark.parametrize(("topology", "provider", "event", "bound"), [
    # duration + 40 (libiscsi's reconnect backoff, at most 30 s, and a margin); + TCP backoff after a silent fault
    ("iscsi-userspace", "lxc", ev("kill", ("iscsi1",), daemon="tgt.service"), 10 + 40),
    ("iscsi-userspace", "lxc", ev("pause", ("iscsi1",), daemon="tgt.service", duration=30), 30 + 40),
    ("iscsi-userspace", "lxc", ev("crash", ("iscsi1",), duration=20), 20 + 40 + 20 + 30),
    ("iscsi-userspace", "lxc", ev("freeze", ("iscsi1",), duration=20), 20 + 40 + 20),
    ("iscsi-userspace", "lxc", ev("client-crash", (HOST,)), None),
    ("iscsi-userspace", "lxc", ev("clock", ("iscsi1",)), None),
    ("iscsi", "vagrant", ev("crash", ("iscsi1",)), None),
    ("iscsi", "vagrant", ev("link", ("initiator1",)), None),  # not the target
])
def test_iscsi_bound_per_fault(tmp_path: Path, topology: str, provider: str, event: Event, bound: float | None) -> None:
    assert IscsiChaos().bound(iscsi_lab(tmp_path, topology, provider), event) == bound


# -- qemu-io's objects ----------------------------------------------------------------------------
def test_qemu_io_objects_are_secrets_with_an_id_and_safe_values() -> None:
    assert object_args([{"qom-type": "secret", "id": "s0", "file": "/run/x/clients/s", "format": "raw"}]) == \
        ["--object", "qom-type=secret,id=s0,file=/run/x/clients/s,format=raw"]
    for bad in ({"qom-type": "memory-backend-file", "id": "m", "mem-path": "/dev/shm/x"},  # only secrets
                {"qom-type": "secret", "file": "/x"},  # no id
                {"qom-type": "secret", "id": "s0", "data": "pass,word"},  # a comma starts another property
                {"qom-type": "secret", "id": "s0", "file": "/x/s\n"}):  # a line break, even at the end
        with pytest.raises(HarnessError):
            object_args([bad])
