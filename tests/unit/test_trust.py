"""Who is root where (harness/lab/trust.py): a lab for untrusted users (students) is refused before
anything is made on a provider or with a role that cannot keep root in a node off the host; the
incus provider makes such a lab's nodes unprivileged with an id map of their own, in a project
restricted to what storlab makes; a class never adopts a lab it did not make."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.host.facts import PROFILES, HostFacts
from harness.lab.lab import Lab
from harness.providers.incus.settings import isolation, restrictions, root_ids

REPO = Path(__file__).resolve().parents[2]
NODES3 = str(REPO / "topologies" / "nodes-3.yaml")
GLUSTER3 = str(REPO / "topologies" / "gluster-3.yaml")
NFSU = str(REPO / "topologies" / "nfs-userspace.yaml")
FACTS = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "incus", "vagrant"}))


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def test_students_on_privileged_containers_are_refused_with_the_fix(storlab_home: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        Lab.from_topology(NODES3, "lxc", facts=FACTS, untrusted=True)
    msg = str(exc.value)
    assert "root on a node is root on this host" in msg
    assert "--on incus" in msg and "--provider vagrant" in msg and "--trusted-students" in msg
    assert not (storlab_home / "labs").exists()  # refused before anything is written


@pytest.mark.parametrize(("topology", "role", "why"), [
    (GLUSTER3, "gluster", "trusted.* extended attributes"), (NFSU, "nfs-server", "open_by_handle_at")])
def test_roles_that_need_host_privileges_are_refused_in_unprivileged_containers(
        storlab_home: Path, topology: str, role: str, why: str) -> None:
    with pytest.raises(HarnessError) as exc:
        Lab.from_topology(topology, "incus", facts=FACTS, untrusted=True)
    msg = str(exc.value)
    assert f"role {role}" in msg and why in msg and "--provider vagrant" in msg
    assert not (storlab_home / "labs").exists()


def test_what_can_isolate_is_planned_and_the_plan_says_so() -> None:
    lab = Lab.from_topology(NODES3, "incus", facts=FACTS, untrusted=True)
    assert lab.plan.untrusted
    assert '"untrusted": true' in (lab.dir / "plan.json").read_text()
    # a VM per node isolates every role
    assert Lab.from_topology(GLUSTER3, "vagrant", facts=FACTS, untrusted=True, name="g3vm").plan.untrusted


def test_trusted_labs_are_unchanged_and_their_plans_read_the_same() -> None:
    lab = Lab.from_topology(GLUSTER3, "lxc", facts=FACTS)
    assert not lab.plan.untrusted and lab.plan.klass is None
    text = (lab.dir / "plan.json").read_text()
    assert "untrusted" not in text and "klass" not in text  # golden plans stay as they were


def test_a_resumed_lab_keeps_its_trust_and_cannot_lose_it() -> None:
    Lab.from_topology(NODES3, "incus", facts=FACTS, untrusted=True)
    assert Lab.from_topology(NODES3, "incus", facts=FACTS).plan.untrusted


def test_a_resumed_lab_stays_on_its_provider_and_in_its_class() -> None:
    Lab.from_topology(NODES3, "incus", facts=FACTS, untrusted=True, klass="c0ffee", name="demo-alice")
    again = Lab.from_topology(NODES3, facts=FACTS, name="demo-alice")  # the instructor's plain `storlab up`
    assert (again.plan.provider, again.plan.untrusted, again.plan.klass) == ("incus", True, "c0ffee")


def test_a_class_adopts_no_lab_it_did_not_make() -> None:
    Lab.from_topology(NODES3, "incus", facts=FACTS, name="demo-alice")  # a standalone lab
    with pytest.raises(HarnessError, match="made outside any class"):
        Lab.from_topology(NODES3, "incus", facts=FACTS, name="demo-alice", untrusted=True, klass="c0ffee")
    Lab.from_topology(NODES3, "incus", facts=FACTS, name="demo-bob", untrusted=True, klass="c0ffee")
    with pytest.raises(HarnessError, match="by class id c0ffee, not by class id 0ther"):
        Lab.from_topology(NODES3, "incus", facts=FACTS, name="demo-bob", untrusted=True, klass="0ther")
    assert Lab.from_topology(NODES3, "incus", facts=FACTS, name="demo-bob", untrusted=True,
                             klass="c0ffee").plan.klass == "c0ffee"


def test_incus_nodes_for_students_are_unprivileged_with_their_own_id_map() -> None:
    assert isolation(False) == {"security.privileged": "true"}
    cfg = isolation(True)
    assert cfg["security.privileged"] == "false" and cfg["security.idmap.isolated"] == "true"
    assert cfg["security.nesting"] == "false"


def test_lab_projects_are_restricted_to_what_storlab_makes() -> None:
    student = restrictions(True, Path("/var/lib/storlab/labs/x/disks"))
    assert student["restricted"] == "true"
    assert student["restricted.containers.privilege"] == "isolated"
    assert student["restricted.containers.lowlevel"] == "block"  # no raw.lxc: seccomp stays on
    assert student["restricted.devices.disk.paths"] == "/var/lib/storlab/labs/x/disks"
    assert student["restricted.devices.unix-block"] == "block"
    remote = restrictions(True, None)
    assert remote["restricted.devices.disk"] == "managed" and "restricted.devices.disk.paths" not in remote
    trusted = restrictions(False, None)
    assert trusted["restricted"] == "true" and trusted["restricted.containers.privilege"] == "allow"


def test_root_ids_come_from_the_id_map_and_never_are_the_hosts_root() -> None:
    m = ('[{"Isuid":true,"Isgid":false,"Hostid":1065536,"Nsid":0,"Maprange":65536},'
         '{"Isuid":false,"Isgid":true,"Hostid":1065537,"Nsid":0,"Maprange":65536}]')
    assert root_ids({"name": "n", "config": {"volatile.idmap.next": m}}) == (1065536, 1065537)
    with pytest.raises(HarnessError, match="no id map"):
        root_ids({"name": "n", "config": {}})
    with pytest.raises(HarnessError, match="not unprivileged"):
        root_ids({"name": "n", "config": {"volatile.idmap.next": m.replace("1065536", "0")}})


# -- classes ------------------------------------------------------------------------------------
@pytest.fixture
def class_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.training import jump
    monkeypatch.setattr(jump, "sshd_pid", lambda: 1)  # a jump sshd "runs"
    monkeypatch.setattr(HostFacts, "detect", staticmethod(lambda: FACTS))


@pytest.mark.usefixtures("class_host")
def test_a_class_is_for_untrusted_students_unless_told_and_refused_where_they_would_be_root(
        storlab_home: Path) -> None:
    from harness.training import classroom
    with pytest.raises(HarnessError) as exc:
        classroom.up(GLUSTER3, ["alice", "bob"], "demo", provider="lxc", progress=lambda _: None)
    assert "root on a node is root on this host" in str(exc.value) and "--trusted-students" in str(exc.value)
    with pytest.raises(HarnessError, match="role gluster"):
        classroom.up(GLUSTER3, ["alice", "bob"], "demo", provider="incus", progress=lambda _: None)
    assert not (storlab_home / "classes").exists() and not (storlab_home / "labs").exists()


@pytest.mark.usefixtures("class_host")
def test_a_class_refuses_a_lab_of_its_students_name_that_it_did_not_make(storlab_home: Path) -> None:
    from harness.training import classroom, klass
    Lab.from_topology(NODES3, "incus", facts=FACTS, name="demo-alice")  # someone's own lab
    with pytest.raises(HarnessError, match="demo-alice exist and were not made by class demo"):
        classroom.up(NODES3, ["alice", "bob"], "demo", provider="incus", progress=lambda _: None)
    assert not (storlab_home / "classes").exists()
    k = klass.Klass(name="demo", topology=NODES3, provider="incus", students=["alice"], id="c1")
    assert k.labs() == {}  # not adopted
    with pytest.raises(HarnessError, match="not made by class demo"):
        k.lab("alice")
