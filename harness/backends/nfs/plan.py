"""The nfs section of a plan: the server, the implementation validation chose, exports with
their clients resolved ('lab' -> the lab's networks); and the host pools on an export with their
client options resolved (the version, nconnect=, the server's addresses to trunk over)."""

from __future__ import annotations

from typing import Any, Literal, cast

from harness.backends.base import PlanInputs
from harness.backends.nfs.schema import Nfs, NfsClient
from harness.plan.model import Frozen, HostPoolPlan, Plan
from harness.spec.topology import Pool


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
    """A netfs pool on one of the server's exports (libvirt mounts it), or a dir pool on an NFS
    mount of one (storlab mounts it, on a hypervisor node). The client options are set only where
    the topology gave them (plan.json keeps what was set)."""
    server: str | None = None
    version: str | None = None  # 3, 4.0, 4.1, 4.2; None: negotiated
    nconnect: int | None = None
    trunk: tuple[str, ...] = ()  # the server's further addresses, one more connection each (session trunking)
    client_opts: tuple[str, ...] = ()  # the client's mount options besides vers: nconnect=N, max_connect=N

    @property
    def connections(self) -> int:
        """TCP connections the client opens to the server's first address."""
        return self.nconnect or 1


def _clients(inputs: PlanInputs, given: list[str]) -> tuple[str, ...]:
    """'lab' is every network of the lab (a client trunking over a second one is admitted there too)."""
    lab = [n.cidr for n in inputs.networks]
    return tuple(dict.fromkeys(x for c in given for x in (lab if c == "lab" else [c])))


def make(inputs: PlanInputs, nfs: Nfs) -> NfsPlan:
    server = inputs.node(nfs.server)
    return NfsPlan(server=nfs.server, implementation=cast(Literal["kernel", "ganesha"], inputs.implementation),
                   address=server.address, grace_period=nfs.grace_period, lease_time=nfs.lease_time,
                   exports=tuple(NfsExportPlan(path=e.path, options=tuple(e.options), clients=_clients(inputs, e.clients))
                                 for e in nfs.exports))


def client_opts(client: NfsClient) -> tuple[str, ...]:
    """The client's options besides the version, in the Linux mount's spelling."""
    out = [f"nconnect={client.nconnect}"] if client.nconnect else []
    return (*out, f"max_connect={1 + len(client.trunk)}") if client.trunk else tuple(out)


def pool_extras(plan: Plan, nfs: NfsPlan, pool: Pool) -> dict[str, Any]:
    """A pool's server, and what its `nfs:` options resolve to; a netfs pool hands the version and
    the options to libvirt (<protocol ver>, <fs:mount_opts>), a dir pool's mount is storlab's."""
    out: dict[str, Any] = {"server": nfs.address}
    client = pool.options("nfs")
    if not isinstance(client, NfsClient):
        return out
    opts = client_opts(client)
    given = {"version": client.version, "nconnect": client.nconnect, "client_opts": opts,
             "trunk": tuple(plan.node(nfs.server).addresses[net] for net in client.trunk)}
    if pool.type == "netfs":
        given |= {"protocol_ver": client.version, "mount_opts": opts}
    return out | {k: v for k, v in given.items() if v}


def of(plan: Plan) -> NfsPlan | None:
    """The lab's nfs section, None when it has none."""
    return plan.section("nfs", NfsPlan)
