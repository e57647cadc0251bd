"""The gluster section of a plan: each volume with its bricks, the nodes holding them and its
options as gluster takes them."""

from __future__ import annotations

import ipaddress

from harness.backends.base import PlanInputs
from harness.backends.gluster.schema import Gluster
from harness.plan.model import Frozen, HostPoolPlan, NetworkPlan, NodePlan, Plan


class GlusterVolumePlan(Frozen):
    name: str
    replica: int
    arbiter: int = 0
    bricks: tuple[str, ...]
    nodes: tuple[str, ...]
    options: dict[str, str]


class GlusterPlan(Frozen):
    volumes: tuple[GlusterVolumePlan, ...]


class GlusterHostPool(HostPoolPlan):
    """A host pool on a gluster volume: the servers the KVM host mounts or reaches it from."""
    server: str | None = None
    backup_servers: tuple[str, ...] = ()


def make(inputs: PlanInputs, g: Gluster) -> GlusterPlan:
    lab_net = inputs.networks[0]

    def option(k: str, val: str | int | bool) -> str:
        if k == "auth.allow" and val == "lab":
            return lab_clients(lab_net, inputs.nodes)
        return "on" if val is True else "off" if val is False else str(val)
    return GlusterPlan(volumes=tuple(GlusterVolumePlan(
        name=v.name, replica=v.replica, arbiter=v.arbiter, bricks=tuple(v.bricks),
        nodes=tuple(dict.fromkeys(b.split(":")[0] for b in v.bricks)),
        options={k: option(k, val) for k, val in v.options.items()}) for v in g.volumes))


def lab_clients(net: NetworkPlan, nodes: tuple[NodePlan, ...]) -> str:
    """auth.allow takes addresses and '*' wildcards, not CIDRs: the lab network as a wildcard
    where the prefix allows it, else every node address plus the host's bridge address."""
    cidr = ipaddress.IPv4Network(net.cidr)
    if cidr.prefixlen in (8, 16, 24):
        octets = str(cidr.network_address).split(".")[: cidr.prefixlen // 8]
        return ".".join(octets + ["*"] * (4 - len(octets)))
    return ",".join([net.host_address] + [n.addresses[net.name] for n in nodes])


def of(plan: Plan) -> GlusterPlan | None:
    """The lab's gluster section, None when it has none."""
    return plan.section("gluster", GlusterPlan)
