"""A backend from outside this repository plugs in through the registry alone: its section
is validated (schema and rules, located), planned, rendered and read back from plan.json,
and its role is known, without a line of the core naming it."""

from __future__ import annotations

import textwrap
from typing import ClassVar

import pytest

from harness import plugins as registry
from harness.backends.base import Backend, Implementation, Path_, PlanInputs, RoleStep, Rules, one_line_in
from harness.errors import HarnessError, TopologyError
from harness.host.facts import PROFILES
from harness.plan.model import Frozen, Plan
from harness.plan.planner import make_plan, render
from harness.spec.topology import Name, Pool, Strict, Token
from harness.spec.validate import validate_text


class Echo(Strict):
    server: Name
    greeting: Token = "hello"
    implementation: str = "auto"


class EchoPlan(Frozen):
    server: str
    address: str
    greeting: str
    implementation: str


class EchoBackend(Backend[Echo, EchoPlan]):
    name = "echo"
    order = 99
    section = Echo
    plan_section = EchoPlan
    roles = ("echo-server",)
    section_roles = ("echo-server",)
    implementations = (Implementation("kecho", "kernel echo", kernel="nfsd"), Implementation("uecho", "userspace echo"))
    pool_types: ClassVar[tuple[str, ...]] = ()
    packages = ("netcat-openbsd",)

    def check(self, r: Rules, section: Echo) -> None:
        r.node_ref(("echo", "server"), section.server, "echo-server")
        if section.greeting == "boo":
            r.add(("echo", "greeting"), "boo scares the clients", "say hello")

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Echo) -> None:
        pass

    def plan(self, inputs: PlanInputs, section: Echo) -> EchoPlan:
        return EchoPlan(server=section.server, address=inputs.node(section.server).address, greeting=section.greeting,
                        implementation=inputs.implementation or "")

    def render(self, plan: Plan, section: EchoPlan) -> dict[str, str]:
        return {f"nodes/{section.server}/etc/echo.conf": f"{section.greeting} from {section.address}\n"}

    def steps(self, plan: Plan) -> list[RoleStep]:
        return [("echo", lambda lab: None)]


@pytest.fixture
def with_echo(monkeypatch: pytest.MonkeyPatch) -> EchoBackend:
    echo = EchoBackend()
    installed = registry.declared()
    monkeypatch.setattr(registry, "declared", lambda: (*installed, echo))
    return echo


TOPO = textwrap.dedent("""\
    lab: echo
    nodes:
      - {name: e1, roles: [echo-server]}
    echo:
      server: e1
      greeting: GREETING
    """)


def test_a_backend_of_its_own_is_validated_planned_rendered_and_read_back(with_echo: EchoBackend) -> None:
    topo, res = validate_text(TOPO.replace("GREETING", "hi"), PROFILES["ci"])
    assert res.implementation("echo") == "uecho"  # lxc shares a kernel without nfsd: auto takes userspace
    plan = make_plan(topo, res, "echo.yaml", set(), PROFILES["ci"])
    section = with_echo.planned(plan)
    assert section is not None and section.greeting == "hi" and section.address == plan.node("e1").address
    assert render(plan)["nodes/e1/etc/echo.conf"] == f"hi from {section.address}\n"
    back = Plan.from_json(plan.to_json())
    assert back == plan and with_echo.planned(back) == section
    _, res_kvm = validate_text(TOPO.replace("GREETING", "hi"), PROFILES["kvm"])
    assert res_kvm.implementation("echo") == "kecho"


def test_its_rules_and_schema_report_located_problems(with_echo: EchoBackend) -> None:
    with pytest.raises(TopologyError) as exc:
        validate_text(TOPO.replace("GREETING", "boo"), PROFILES["ci"])
    assert [(p.line, p.message) for p in exc.value.problems] == [(6, "boo scares the clients")]
    with pytest.raises(TopologyError) as exc:
        validate_text(TOPO.replace("GREETING", "hi") + "  greting: x\n", PROFILES["ci"])
    (p,) = exc.value.problems
    assert p.line == 7 and "unknown key 'greting'" in p.message and "greeting" in p.fix


def test_without_it_its_section_and_role_are_unknown() -> None:
    with pytest.raises(TopologyError) as exc:
        validate_text(TOPO.replace("GREETING", "hi"), PROFILES["ci"])
    got = {(p.line, p.message.split(" ")[0]) for p in exc.value.problems}
    assert got == {(3, "Input"), (4, "unknown")}, exc.value.problems  # the role, and the section


class EchoTone(Strict):
    tone: Token = "la"


class EchoPooledBackend(EchoBackend):
    """Echo with dir pools, each of which may say how it sounds (`host.pools[].echo`)."""
    pool_types: ClassVar[tuple[str, ...]] = ("dir",)
    pool_options = EchoTone


def test_its_pool_options_come_under_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    echo = EchoPooledBackend()
    installed = registry.declared()
    monkeypatch.setattr(registry, "declared", lambda: (*installed, echo))
    pools = TOPO.replace("GREETING", "hi") + "host:\n  pools:\n    - {name: p, type: dir, backend: echo, path: /srv/p,\n"
    topo, _ = validate_text(pools + "       echo: {tone: do}}\n", PROFILES["ci"])
    opts = topo.host.pools[0].options("echo")
    assert isinstance(opts, EchoTone) and opts.tone == "do"
    with pytest.raises(TopologyError) as exc:
        validate_text(pools + "       echo: {tone: 'do re'}}\n", PROFILES["ci"])
    (p,) = exc.value.problems
    assert (p.line, p.field) == (10, "host.pools[0].echo.tone") and "characters storlab does not pass on" in p.message
    with pytest.raises(TopologyError) as exc:  # a local pool has no echo options
        validate_text(pools.replace("backend: echo", "backend: local") + "       echo: {tone: do}}\n", PROFILES["ci"])
    assert [p.field for p in exc.value.problems] == ["host.pools[0].echo"]


def test_one_line_in_refuses_a_value_that_would_start_a_line_of_its_own() -> None:
    """Every backend's templates print values through it (iscsi, nvme, clusterfs)."""
    check = one_line_in("an o2cb config")
    assert check("storlab") == "storlab" and check(7) == 7
    for bad in ("storlab\nnode:", "x\r"):
        with pytest.raises(HarnessError, match="line break reached an o2cb config"):
            check(bad)
