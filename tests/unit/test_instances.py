"""One topology, many labs: an instance (`--name`) gets its own networks, nodes, libvirt pool
names, host paths and secret uuids; a host path another lab holds is refused at plan time; and
the KVM host's pools, secrets and mounts are touched only when the lab made them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeConn, FakeLab, FakePool, FakeSecret

from harness import paths
from harness.backends.gluster import GlusterBackend
from harness.backends.gluster.plan import GlusterHostPool
from harness.errors import HarnessError, TopologyError
from harness.host import pools as hostpools
from harness.host.facts import PROFILES
from harness.plan import planner as planmod
from harness.plan.model import HostPoolPlan, Plan

REPO = Path(__file__).resolve().parents[2]
GLUSTER3 = str(REPO / "topologies" / "gluster-3.yaml")
CEPHOS = str(REPO / "topologies" / "ceph-openstack.yaml")
FACTS = PROFILES["ci"]


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    # this host's routes do not matter here
    monkeypatch.setattr(planmod, "used_subnets", lambda exclude_lab=None, others=None: set())
    return tmp_path / "home"


def write(plan: Plan) -> None:
    planmod.write(plan, paths.lab_dir(plan.lab))


def test_an_instance_owns_its_names_paths_and_secrets() -> None:
    own = planmod.load_plan(GLUSTER3, FACTS)
    alice = planmod.load_plan(GLUSTER3, FACTS, name="alice")
    assert (own.lab, own.instance_of, alice.lab, alice.instance_of) == ("gluster3", None, "alice", "gluster3")
    fuse, alice_fuse = own.pool("glusterfs-pool"), alice.pool("glusterfs-pool")
    assert fuse.object == "storlab-gluster3_glusterfs-pool" and alice_fuse.object == "storlab-alice_glusterfs-pool"
    assert fuse.path == "/var/lib/libvirt/images/GlusterFS" and alice_fuse.path == "/var/lib/libvirt/images/GlusterFS-alice"
    assert {n.object for n in alice.nodes}.isdisjoint({n.object for n in own.nodes})
    assert {n.bridge for n in alice.networks}.isdisjoint({n.bridge for n in own.networks})
    assert '"instance_of"' not in own.to_json()  # the topology's own lab: plan.json as before


def test_an_instance_does_not_take_the_secret_uuid_the_topology_names() -> None:
    nova = "457eb676-33da-42ec-9a8c-9293d545c337"
    own = planmod.load_plan(CEPHOS, PROFILES["kvm"])
    inst = planmod.load_plan(CEPHOS, PROFILES["kvm"], name="cephos2")
    assert own.pool("vms").secret_uuid == nova
    assert inst.pool("vms").secret_uuid not in (None, nova)
    assert inst.pool("vms").secret_uuid == planmod.load_plan(CEPHOS, PROFILES["kvm"], name="cephos2").pool("vms").secret_uuid


def test_a_bad_instance_name_is_refused_before_anything() -> None:
    with pytest.raises(HarnessError, match="--name 'Alice!'"):
        planmod.load_plan(GLUSTER3, FACTS, name="Alice!")


def test_a_host_path_another_lab_holds_is_refused_at_its_line(storlab_home: Path) -> None:
    write(planmod.load_plan(GLUSTER3, FACTS))  # lab gluster3 holds /var/lib/libvirt/images/GlusterFS
    full = str(REPO / "topologies" / "full.yaml")
    with pytest.raises(TopologyError) as exc:
        planmod.load_plan(full, PROFILES["kvm"])
    (p,) = [p for p in exc.value.problems if "GlusterFS" in p.message]
    assert p.field == "host.pools[1].path" and p.line == 60 and "lab gluster3's pool" in p.message and "--name" in p.fix
    planmod.load_plan(full, PROFILES["kvm"], name="full2")  # an instance has its own path
    planmod.load_plan(GLUSTER3, FACTS)  # the lab that holds it plans again


# -- the KVM host's objects: only what the lab made -------------------------------------------
def rbd_lab() -> tuple[Plan, HostPoolPlan]:
    plan = planmod.load_plan(CEPHOS, PROFILES["kvm"])
    return plan, plan.pool("vms")


def test_hand_made_pool_and_foreign_secret_are_conflicts_and_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, vms = rbd_lab()
    assert vms.secret_uuid
    hand_made, foreign = FakePool(), FakeSecret("<secret><description>nova on this host</description></secret>")
    conn = FakeConn({vms.object: hand_made}, {vms.secret_uuid: foreign})
    monkeypatch.setattr(hostpools, "connect", lambda uri: conn)
    monkeypatch.setattr(hostpools, "run", lambda argv, timeout=0: SimpleNamespace(ok=False, stdout="", stderr=""))
    lab: Any = FakeLab(plan, owned=[])
    found = hostpools.conflicts(lab)
    assert any(vms.object in c for c in found) and any(vms.secret_uuid in c for c in found), found
    with pytest.raises(HarnessError, match="not lab cephos's"):
        hostpools.ensure_secret(conn, lab, vms, b"key", Path("/nonexistent"))
    assert foreign.value == b""  # its value was never touched
    rep = hostpools.unwire(lab)
    assert not hand_made.undefined and not foreign.undefined and not rep.removed
    assert hostpools.leftovers(lab) == []


def test_its_own_pool_and_secret_pass_and_go_on_down(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, vms = rbd_lab()
    assert vms.secret_uuid
    ours, secret = FakePool(), FakeSecret(f"<secret><description>storlab lab {plan.lab}: client.cinder</description></secret>")
    conn = FakeConn({vms.object: ours}, {vms.secret_uuid: secret})
    monkeypatch.setattr(hostpools, "connect", lambda uri: conn)
    lab: Any = FakeLab(plan, owned=[f"pool {vms.object}"])
    assert hostpools.conflicts(lab) == []
    hostpools.ensure_secret(conn, lab, vms, b"key", Path("/nonexistent"))
    assert secret.value == b"key"
    rep = hostpools.unwire(lab)
    assert ours.undefined and secret.undefined
    assert f"pool {vms.object}" in rep.removed and f"secret {vms.secret_uuid}" in rep.removed


def test_a_fuse_mount_of_another_volume_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.backends.gluster as g
    plan = planmod.load_plan(GLUSTER3, FACTS)
    fuse = plan.pool("glusterfs-pool", GlusterHostPool)
    lab: Any = FakeLab(plan, owned=[])
    monkeypatch.setattr(g, "mount_at", lambda path: ("10.9.9.9:/kvmgluster", "fuse.glusterfs"))
    assert GlusterBackend().pool_conflicts(lab, fuse) == [f"mount {fuse.path} (of 10.9.9.9:/kvmgluster, not this lab's volume)"]
    with pytest.raises(HarnessError, match="not of this lab's volume"):
        g.fuse_mount(fuse)
    assert GlusterBackend().release_pool(lab, fuse).removed == []
    assert GlusterBackend().pool_leftovers(lab, fuse) == []
    monkeypatch.setattr(g, "mount_at", lambda path: (f"{fuse.server}:/kvmgluster", "fuse.glusterfs"))
    assert GlusterBackend().pool_conflicts(lab, fuse) == []
    assert GlusterBackend().pool_leftovers(lab, fuse) == [f"mount {fuse.path}"]


def test_a_lab_whose_tag_another_lab_has_is_refused(storlab_home: Path) -> None:
    """Bridge and veth names carry a 24-bit tag of the lab name; two labs with one tag would take
    each other's links, so the second is refused when it is planned."""
    assert paths.tag("t188781") == paths.tag("t326020")
    write(planmod.load_plan(GLUSTER3, FACTS, name="t188781"))
    with pytest.raises(TopologyError) as exc:
        planmod.load_plan(GLUSTER3, FACTS, name="t326020")
    (p,) = exc.value.problems
    assert p.field == "lab" and "t188781" in p.message and "another lab name" in p.fix


def test_a_pool_path_with_someone_elses_files_is_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dir pool where files already are (not made by this lab) would be taken over and, at
    `down`, removed from under their owner: refused before `up` makes anything."""
    plan = planmod.load_plan(str(REPO / "topologies" / "full.yaml"), PROFILES["kvm"])
    local = plan.pool("local-dir")
    there = tmp_path / "local"
    there.mkdir()
    plan = plan.with_(host=plan.host.model_copy(update={"pools": (local.model_copy(update={"path": str(there)}),)}))
    monkeypatch.setattr(hostpools, "connect", lambda uri: FakeConn({}, {}))
    lab: Any = FakeLab(plan, owned=[])
    assert hostpools.conflicts(lab) == []  # an empty directory: nothing to take over
    (there / "someones.qcow2").write_text("x")
    (found,) = hostpools.conflicts(lab)
    assert str(there) in found and "did not make it" in found
    lab.owned.append(f"pool {local.object}")  # the lab's own pool, resumed: its files are its own
    assert hostpools.conflicts(lab) == []
