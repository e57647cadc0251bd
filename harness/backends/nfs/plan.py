"""The nfs section of a plan: the server, the implementation validation chose, exports with
their clients resolved ('lab' -> the lab network)."""

from __future__ import annotations

from typing import Literal, cast

from harness.backends.base import PlanInputs
from harness.backends.nfs.schema import Nfs
from harness.plan.model import Frozen, HostPoolPlan, Plan


class NfsExportPlan(Frozen):
    path: str
    options: tuple[str, ...]
    clients: tuple[str, ...]


class NfsPlan(Frozen):
    server: str
    implementation: Literal["kernel", "ganesha"]
    address: str
    grace_period: int
    lease_time: int
    exports: tuple[NfsExportPlan, ...]


class NfsHostPool(HostPoolPlan):
    """A netfs host pool on one of the server's exports."""
    server: str | None = None


def make(inputs: PlanInputs, nfs: Nfs) -> NfsPlan:
    lab_net = inputs.networks[0]
    server = inputs.node(nfs.server)
    return NfsPlan(server=nfs.server, implementation=cast(Literal["kernel", "ganesha"], inputs.implementation),
                   address=server.address, grace_period=nfs.grace_period, lease_time=nfs.lease_time,
                   exports=tuple(NfsExportPlan(path=e.path, options=tuple(e.options),
                                               clients=tuple(lab_net.cidr if c == "lab" else c for c in e.clients))
                                 for e in nfs.exports))


def of(plan: Plan) -> NfsPlan | None:
    """The lab's nfs section, None when it has none."""
    return plan.section("nfs", NfsPlan)
