"""Seeded fault schedules: deterministic from the seed, targets the lab has, bounded overlap,
faults a provider cannot give skipped with the reason, JSON for --replay."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from harness import __version__
from harness.chaos.schedule import DrawOptions, Event, Schedule, draw, usable_kinds
from harness.chaos.vocabulary import HOST, KINDS, LabShape, NodeShape, Target, shape_of
from harness.errors import HarnessError
from harness.plan.model import DiskPlan, NodePlan
from harness.providers.capabilities import FAULTS, Capabilities, available

EVERY = frozenset(FAULTS)
READY = [k for k, v in KINDS.items() if v.verb]


def gluster3(faults: frozenset[str] = EVERY, refused: dict[str, str] | None = None) -> LabShape:
    nodes = tuple(NodeShape(f"gluster{i}", ("gluster",), ("glusterd.service",), ("brick1",)) for i in (1, 2, 3))
    return LabShape("test", nodes, (HOST, "client1"), faults, refused or {}, frozenset({"gluster-error-gen"}))


def ceph5() -> LabShape:
    nodes = (NodeShape("ceph-admin", ("ceph-admin",)),
             NodeShape("ceph-monitor", ("ceph-mon", "ceph-mgr"), ("ceph-mon@ceph-monitor.service",)),
             *(NodeShape(f"ceph-osd{i}", ("ceph-osd",), (f"ceph-osd@{i - 1}.service",), ("osd",)) for i in (1, 2, 3)))
    return LabShape("test", nodes, (HOST,), EVERY)


def active_at(events: tuple[Event, ...], t: float) -> list[Event]:
    return [e for e in events if e.at <= t < e.end]


def test_the_same_seed_draws_the_same_schedule_and_other_seeds_differ() -> None:
    shape = gluster3()
    first = {seed: draw(seed, 600, None, shape).to_json() for seed in range(20)}
    random.seed(1234)  # the global generator is not used
    random.random()
    assert {seed: draw(seed, 600, None, shape).to_json() for seed in range(20)} == first
    assert len(set(first.values())) == 20
    assert all(json.loads(s)["events"] for s in first.values())


def test_every_event_targets_what_the_lab_has() -> None:
    for shape in (gluster3(), ceph5()):
        for seed in range(40):
            s = draw(seed, 900, None, shape)
            assert s.problems(shape) == [], (seed, s.problems(shape))
            names = {n.name for n in shape.nodes}
            for e in s.events:
                kind = KINDS[e.kind]
                if kind.target is Target.CLIENTS:
                    assert set(e.nodes) <= set(shape.clients) and set(e.apart) <= names and e.apart
                elif kind.target is Target.HOST:  # the KVM host's own writer clients
                    assert e.nodes == (HOST,) and not e.apart
                else:
                    assert set(e.nodes) | set(e.apart) <= names and e.nodes
                node = shape.node(e.nodes[0])
                if kind.target is Target.DAEMON:
                    assert node is not None and e.daemon in node.daemons
                if kind.target is Target.DISK:
                    assert node is not None and e.disk in node.disks
                if kind.target is Target.GROUPS:  # a minority side cut from the rest, every server in one
                    assert len(e.nodes) <= len(e.apart) and set(e.nodes) | set(e.apart) == names
                lo, hi = kind.duration
                assert lo - 0.05 <= e.duration <= hi and set(e.params) == {p for p, _, _ in kind.params}


def test_overlap_is_bounded_and_faults_are_spaced() -> None:
    opts = DrawOptions(max_concurrent=2, overlap_chance=0.8, warmup=15, cooldown=20)
    overlapped = 0
    for seed in range(60):
        s = draw(seed, 1200, None, gluster3(), opts)
        for e in s.events:
            assert e.at >= 15 and e.end <= 1200 - 20 + 0.05
            now = active_at(s.events, e.at)
            assert len(now) <= 2
            if len(now) > 1:
                overlapped += 1
                assert all(KINDS[a.kind].overlap for a in now), [a.describe() for a in now]
                touched = [n for a in now for n in a.touches()]
                assert len(touched) == len(set(touched)), "two faults on one node at once"
        starts = [e.at for e in s.events]
        assert starts == sorted(starts) and [e.id for e in s.events] == list(range(len(s.events)))
    assert overlapped, "overlap_chance 0.8 never overlapped"
    for seed in range(20):  # one at a time: a recovery gap after each
        s = draw(seed, 600, None, gluster3(), DrawOptions(max_concurrent=1, gap=(5, 6)))
        for a, b in zip(s.events, s.events[1:], strict=False):
            assert 5 - 0.15 <= b.at - a.end <= 6 + 0.15


def test_capabilities_filter_what_is_drawn_and_say_why() -> None:
    caps = Capabilities(name="box", own_kernel=False, disk_devices=False, management_network=False,
                        reserves_memory=False, freeze=True, snapshot=True, tool="t", install_hint="", fast=True,
                        faults=frozenset({"crash", "kill", "pause", "dm-flakey"}), faults_with_module={"netem": "sch_netem"},
                        faults_refused={"clock": "containers share the host's clock"})
    given, refused = caps.faults_offered(host_modules=())
    shape = gluster3(given, refused)
    s = draw(7, 600, ["crash", "clock", "netem", "pause", "dm-flakey", "kill", "hang"], shape)
    assert {e.kind for e in s.events} == {"crash", "kill", "pause", "dm-flakey"}
    why = {k.kind: k.reason for k in s.skipped}
    assert set(why) == {"clock", "netem", "hang"}
    assert "cannot give clock: containers share the host's clock" in why["clock"]
    assert "sch_netem" in why["netem"]
    assert "does not declare it" in why["hang"]
    # a kind the provider can give but storlab has no verb for: skipped, never faked
    vocab = dict(KINDS) | {"dm-flakey": dataclasses.replace(KINDS["dm-flakey"], verb=None)}
    assert "no node verb" in {k.kind: k.reason for k in draw(7, 600, ["dm-flakey"], shape, vocabulary=vocab).skipped}[
        "dm-flakey"]
    given, _ = caps.faults_offered(host_modules=("sch_netem",))
    assert "netem" in given and {e.kind for e in draw(7, 600, ["netem"], gluster3(given)).events} == {"netem"}
    with pytest.raises(HarnessError, match=r"unknown fault kind\(s\) crsh; known: crash"):
        draw(1, 600, ["crsh"], shape)
    assert draw(3, 600, ["clock"], shape).events == ()


def test_targets_the_lab_lacks_are_skipped_with_the_reason() -> None:
    lone = LabShape("test", (NodeShape("n1", ("nfs-server",)),), (), EVERY)
    _, skipped = usable_kinds(["partition", "kill", "client-partition", "crash"], lone)
    why = {k.kind: k.reason for k in skipped}
    assert why == {"partition": "a partition needs two servers; the lab has 1",
                   "kill": "no server with a daemon", "client-partition": "no clients or no servers to cut them from"}


def test_declared_provider_faults() -> None:
    provs = available()
    assert provs, "no providers installed: pip install -e ."
    for name, caps in provs.items():
        given, refused = caps.faults_offered(())
        assert given <= EVERY and set(caps.faults_with_module) <= EVERY and set(caps.faults_refused) <= EVERY, name
        assert given | set(refused) == EVERY and not given & set(refused), name
    if "vagrant" in provs:
        assert provs["vagrant"].faults_offered(())[0] == EVERY
    for name in ("lxc", "incus"):
        if name in provs:
            given, refused = provs[name].faults_offered(())
            assert {"crash", "freeze", "link", "partition", "kill", "pause"} <= given
            assert "clock" in refused and "dm-flakey" in refused and "sch_netem" in refused["netem"]
            assert "netem" in provs[name].faults_offered(("sch_netem",))[0]


def test_json_round_trip_and_replay_checks() -> None:
    s = draw(42, 600, None, gluster3())
    text = s.to_json()
    data = json.loads(text)
    assert data["seed"] == 42 and data["storlab"] == __version__ and data["format"] == 1
    back = Schedule.from_json(text)
    assert back == s and back.to_json() == text and back.version_note() is None
    older = Schedule.from_json(text.replace(f'"storlab": "{__version__}"', '"storlab": "0.0.1"'))
    assert "drawn by storlab 0.0.1" in (older.version_note() or "")
    with pytest.raises(HarnessError, match=r"run.json:1:2: not JSON"):
        Schedule.from_json("{oops", "run.json")
    with pytest.raises(HarnessError, match="newer than this storlab"):
        Schedule.from_json(json.dumps({**data, "format": 99}))
    with pytest.raises(HarnessError, match=r"events\.0\.duration"):
        Schedule.from_json(json.dumps({**data, "events": [{**data["events"][0], "duration": -1}]}))
    # replayed on a lab without the node it named
    smaller = LabShape("test", gluster3().nodes[:2], (HOST,), EVERY)
    planted = s.model_copy(update={"events": (Event(id=0, at=10, duration=5, kind="crash", nodes=("gluster3",)),
                                              Event(id=1, at=20, duration=5, kind="kill", nodes=("gluster1",),
                                                    daemon="ceph-osd@0.service"))})
    assert planted.problems(smaller) == ["e0 crash gluster3 at +10.0s for 5.0s: no server gluster3 in the lab "
                                         "(of the kind's roles)",
                                         "e1 kill ceph-osd@0.service on gluster1 at +20.0s for 5.0s: "
                                         "no daemon ceph-osd@0.service on gluster1"]
    assert any("cannot give" in p for p in s.problems(gluster3(frozenset())))


def test_only_keeps_each_events_time() -> None:
    s = draw(5, 900, None, gluster3())
    ids = [e.id for e in s.events][1::2]
    sub = s.only(ids)
    assert [e.id for e in sub.events] == ids
    assert all(e == s.events[e.id] for e in sub.events) and sub.seed == s.seed


def test_shape_of_a_plan() -> None:
    def node(i: int, name: str, roles: tuple[str, ...], disks: tuple[str, ...] = ()) -> NodePlan:
        return NodePlan(name=name, index=i, roles=roles, cpus=1, memory=1024, address=f"10.0.0.{i}",
                        addresses={"storage": f"10.0.0.{i}"}, macs={}, object=f"x-{name}",
                        disks=tuple(DiskPlan(name=d, size=1, filesystem="xfs", mount=f"/{d}", device=None, image="i")
                                    for d in disks))
    caps = next(iter(available().values()))
    shape = shape_of([node(1, "g1", ("gluster",), ("brick1",)), node(2, "g2", ("gluster", "client")),
                      node(3, "kvm1", ("hypervisor",))], caps,
                     {"g1": ["glusterd.service"], "kvm1": ["libvirtd.service"]})
    assert [n.name for n in shape.nodes] == ["g1", "g2"] and shape.clients == (HOST, "kvm1")
    assert shape.nodes[0] == NodeShape("g1", ("gluster",), ("glusterd.service",), ("brick1",))
    assert shape.nodes[1].daemons == ()  # units by node: g2 was given none
    assert shape.provider == caps.name and shape.faults == caps.faults_offered(())[0]


def test_only_kinds_with_a_verb_are_drawn_by_default() -> None:
    s = draw(9, 3600, None, gluster3())
    assert {e.kind for e in s.events} <= set(READY)
    assert {k.kind for k in s.skipped} == set(KINDS) - set(READY)
    # a backend's own fault is drawn only where the lab runs that backend
    assert "gluster-error-gen" in {e.kind for e in s.events}
    assert [k.reason for k in draw(9, 3600, None, ceph5()).skipped if k.kind == "gluster-error-gen"] == [
        "a fault of the gluster backend, which this lab does not run"]


def test_a_client_partition_cuts_clients_from_servers() -> None:
    shape = gluster3()
    ok = Event(id=0, at=10, duration=20, kind="client-partition", nodes=(HOST,), apart=("gluster1",))
    s = Schedule(seed=0, duration=60, provider="test", kinds=("client-partition",), events=(ok,))
    assert s.problems(shape) == []
    swapped = ok.model_copy(update={"nodes": ("gluster1",), "apart": (HOST,)})
    assert s.model_copy(update={"events": (swapped,)}).problems(shape) == [
        "e0 client-partition gluster1 | host at +10.0s for 20.0s: no client gluster1 in the lab",
        "e0 client-partition gluster1 | host at +10.0s for 20.0s: no server host in the lab (of the kind's roles)"]
