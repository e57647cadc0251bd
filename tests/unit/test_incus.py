"""The incus provider's pure parts: where a lab goes (--on), its budget (--budget, the project's
limits) and the refusal of a lab over it before anything exists, and the parsers of Incus API
answers (recorded from incusd 6.0.4 on this project's machine: a standalone daemon and a
two-member cluster)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.lab.lab import Lab
from harness.plan.planner import load_plan
from harness.providers.capabilities import parse_on
from harness.providers.incus import client as incus
from harness.providers.incus.client import Budget
from harness.providers.incus.provider import IncusProvider
from harness.providers.incus.settings import networkd
from harness.providers.incus.setup import budget, need

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "incus"
NODES3 = str(REPO / "topologies" / "nodes-3.yaml")
GLUSTER3 = str(REPO / "topologies" / "gluster-3.yaml")
FACTS = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "incus"}))


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def answer(name: str) -> object:
    return json.loads((DATA / name).read_text())


# -- --on ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "want"), [
    ("incus", ("incus", None)), ("incus:lab-cluster", ("incus", "lab-cluster")), ("lxc", ("lxc", None)),
    ("incus:my.remote_1", ("incus", "my.remote_1")), ("incus:lab-cluster@fast", ("incus", "lab-cluster@fast"))])
def test_on_names_provider_and_remote(value: str, want: tuple[str, str | None]) -> None:
    assert parse_on(value) == want


@pytest.mark.parametrize(("value", "says"), [
    ("lxc:x", "only incus has remotes"), ("incus:-rf", "remote name"), ("incus:a b", "remote name"),
    ("incus:a:b", "remote name"), (":x", "say where"), ("incus:c@", "cluster group"), ("incus:c@-x", "cluster group")])
def test_on_refuses_what_is_not_a_remote(value: str, says: str) -> None:
    with pytest.raises(HarnessError, match=says):
        parse_on(value)


# -- budgets --------------------------------------------------------------------------------------
NEED = Budget(instances=3, memory_mib=1536, cpus=3, disk_gib=27)


def test_budget_fields_default_to_the_need_and_take_units() -> None:
    assert Budget.parse("", NEED) == NEED
    assert Budget.parse("memory=8GiB,instances=5", NEED) == Budget(5, 8192, 3, 27)
    assert Budget.parse("memory=700MiB, disk=2048MiB, cpus=2", NEED) == Budget(3, 700, 2, 2)


@pytest.mark.parametrize("text", ["ram=1G", "memory", "cpus=2GiB", "memory=lots", "instances=-1"])
def test_budget_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(HarnessError, match="--budget"):
        Budget.parse(text, NEED)


def test_over_budget_says_both_numbers() -> None:
    small = Budget(instances=2, memory_mib=1024, cpus=3, disk_gib=100)
    assert small.over(NEED) == ["instances: the lab needs 3, its project allows 2",
                                "memory: the lab needs 1536 MiB, its project allows 1024 MiB"]
    assert NEED.over(NEED) == []


def test_project_limits_are_the_budget_and_read_back() -> None:
    assert NEED.project_config() == {"limits.instances": "3", "limits.memory": "1536MiB", "limits.cpu": "3",
                                     "limits.disk": "27GiB"}
    recorded = answer("project.json")  # `storlab up nodes-3.yaml --on incus --budget memory=4GiB,instances=4`
    assert isinstance(recorded, dict)
    assert incus.project_budget(recorded) == Budget(instances=4, memory_mib=4096, cpus=3, disk_gib=27)
    assert incus.owner(recorded) == "nodes3"
    assert incus.project_budget({"config": {"limits.memory": "4GiB"}}) is None


def test_plan_carries_remote_and_budget_and_need_counts_nodes_and_disks() -> None:
    plan = load_plan(GLUSTER3, FACTS, "incus")
    # 3 nodes; each a root disk (8 GiB) and its brick
    assert need(plan) == Budget(instances=3, memory_mib=sum(n.memory for n in plan.nodes),
                                cpus=sum(n.cpus for n in plan.nodes),
                                disk_gib=3 * incus.ROOT_GIB + sum(-(-d.size // incus.GIB) for n in plan.nodes
                                                                  for d in n.disks))
    assert budget(plan) == need(plan)  # no --budget: exactly what the lab needs


def test_a_lab_over_its_budget_is_refused_before_anything_is_made(storlab_home: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        Lab.from_topology(NODES3, "incus", facts=FACTS, budget="memory=512MiB,instances=2")
    msg = str(exc.value)
    assert "instances: the lab needs 3, its project allows 2" in msg
    assert "memory: the lab needs" in msg and "its project allows 512 MiB" in msg
    assert not (storlab_home / "labs" / "nodes3").exists()  # no plan, no lab directory


def test_a_lab_within_its_budget_is_planned_with_it(storlab_home: Path) -> None:
    lab = Lab.from_topology(NODES3, "incus", facts=FACTS, remote="cluster1", budget="memory=8GiB")
    assert lab.plan.remote == "cluster1"
    assert lab.plan.budget is not None and lab.plan.budget.memory_mib == 8192
    # a resumed up may not move the lab or change its budget
    with pytest.raises(HarnessError, match="exists with remote"):
        Lab.from_topology(NODES3, "incus", facts=FACTS, remote="cluster2")
    again = Lab.from_topology(NODES3, "incus", facts=FACTS)
    assert again.plan.remote == "cluster1"


def test_only_incus_takes_a_remote() -> None:
    with pytest.raises(HarnessError, match="only the incus provider has remotes"):
        Lab.from_topology(NODES3, "lxc", facts=FACTS, remote="cluster1")


# -- how nodes are reached and configured --------------------------------------------------------------
def test_nodes_are_reached_through_incus_exec_and_sshd_inetd_mode() -> None:
    lab = Lab.from_topology(NODES3, "incus", facts=FACTS, remote="cluster1")
    assert isinstance(lab.provider, IncusProvider)
    text = lab.access.ssh_config_text()
    assert ("ProxyCommand incus exec cluster1:node1 --project storlab-nodes3 --force-noninteractive -- "
            "/usr/sbin/sshd -i") in text
    assert lab.provider.host_reach() is not None  # host pools are skipped, with the reason
    local = Lab.from_topology(NODES3, "incus", facts=FACTS, name="nodes3b")
    assert isinstance(local.provider, IncusProvider) and local.provider.host_reach() is None


def test_a_cluster_group_is_where_incus_places_a_lab() -> None:
    assert incus.split_remote("lab-cluster@fast") == ("lab-cluster", "fast")
    assert incus.split_remote("lab-cluster") == ("lab-cluster", None)
    assert incus.split_remote(None) == (None, None)
    lab = Lab.from_topology(NODES3, "incus", facts=FACTS, remote="lab-cluster@fast")
    assert isinstance(lab.provider, IncusProvider)
    assert lab.provider.api.remote == "lab-cluster" and lab.provider.group == "fast"
    assert "incus exec lab-cluster:node1 " in lab.access.ssh_config_text()


def test_networkd_file_pins_the_address_to_the_planned_mac() -> None:
    text = networkd("eth0", "52:54:00:aa:bb:cc", "192.168.100.11", 24)
    assert "MACAddress=52:54:00:aa:bb:cc" in text and "Address=192.168.100.11/24" in text
    assert "DHCP" not in text


# -- recorded API answers -------------------------------------------------------------------------------
def test_standalone_instances_have_no_location_and_carry_the_mark() -> None:
    insts = answer("instances-standalone.json")
    assert isinstance(insts, list)
    assert [incus.location(i) for i in insts] == [None, None, None]
    assert {incus.owner(i) for i in insts} == {"nodes3"}
    assert incus.spread(insts, {}) == {"local": {"nodes3"}}


def test_host_side_veth_is_read_from_instance_state() -> None:
    state = answer("state.json")
    assert isinstance(state, dict)
    assert incus.host_name(state, "eth0") == "slvc40da9000"
    assert incus.host_name(state, "eth9") is None


def test_lab_networks_are_marked_and_isolated() -> None:
    nets = answer("networks.json")
    assert isinstance(nets, list)
    lab_nets = [n for n in nets if incus.owner(n) == "nodes3"]
    assert lab_nets, "the recorded answer holds the lab's network"
    for n in lab_nets:
        cfg = n["config"]
        assert (cfg["ipv4.nat"], cfg["ipv4.routing"], cfg["ipv4.firewall"], cfg["ipv4.dhcp"]) == ("false",) * 4
        assert cfg["ipv6.address"] == "none" and cfg["dns.mode"] == "none"


def test_cluster_members_and_where_a_lab_landed() -> None:
    """Recorded on the two-member cluster ci/incus-cluster.sh makes, with ceph-5 placed on it."""
    members = incus.members(answer("cluster-members.json"))  # type: ignore[arg-type]
    assert [(m.name, m.status) for m in members] == [("m1", "Online"), ("m2", "Online")]
    insts = answer("instances-cluster.json")
    assert isinstance(insts, list)
    assert {incus.location(i) for i in insts} == {"m1"}  # all of the lab's nodes on one member
    assert incus.spread(insts, {}) == {"m1": {"ceph5"}}


def test_free_memory_cpus_and_pool_space_of_a_member() -> None:
    res = answer("resources-m2.json")
    pool = answer("pool-resources-m2.json")
    assert isinstance(res, dict) and isinstance(pool, dict)
    assert incus.free_of(res) == ((25769803776 - 1569685504) >> 20, 2)
    assert incus.pool_free_mib(pool) == (21474836480 - 6062080) >> 20
