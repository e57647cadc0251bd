"""The ceph section of a plan: fsid, monitors, mgrs, OSD hosts, pools and cephx clients."""

from __future__ import annotations

import uuid

from harness.backends.base import PlanInputs
from harness.backends.ceph.schema import Ceph
from harness.plan.model import Frozen, HostPoolPlan, Plan


class MonPlan(Frozen):
    name: str
    address: str


class CephPoolPlan(Frozen):
    name: str
    pg_num: int
    size: int
    min_size: int | None
    application: str


class CephClientPlan(Frozen):
    name: str
    caps: dict[str, str]


class CephHostPool(HostPoolPlan):
    """An rbd host pool: the monitors libvirt reaches the cluster through."""
    monitors: tuple[str, ...] = ()


class CephPlan(Frozen):
    fsid: str
    mons: tuple[MonPlan, ...]
    mgrs: tuple[str, ...]
    osds: tuple[str, ...]
    admin: tuple[str, ...]
    public_network: str
    osd_disk: str | None
    osd_pool_default_size: int
    heartbeat_grace: int
    pools: tuple[CephPoolPlan, ...]
    clients: tuple[CephClientPlan, ...]
    accept_warnings: tuple[str, ...]


#: health warnings a release's own Ceph packages raise from the start, accepted (and so named in the
#: plan) where a node of the cluster runs that release. trixie's reef 18.2.7: ceph-mgr loads its
#: modules in Python subinterpreters, which PyO3 modules (bcrypt, which mgr_util imports) refuse, so
#: 13 modules (balancer, crash, pg_autoscaler, progress, rbd_support, status, volumes, ...) never load
#: (ceph tracker #64213; upstream's option to load them in the main interpreter, ceph PR #66244, came
#: after reef). The monitors, the OSDs and RBD I/O do not need them.
RELEASE_WARNINGS = {"trixie": ("MGR_MODULE_DEPENDENCY",)}


def make(inputs: PlanInputs, ceph: Ceph) -> CephPlan:
    cluster = [n for n in inputs.nodes if any(r.startswith("ceph-") for r in n.roles)]
    packaged = [w for n in cluster for w in RELEASE_WARNINGS.get(n.release, ())]
    return CephPlan(
        fsid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"storlab:{inputs.lab}:ceph")),
        mons=tuple(MonPlan(name=m.name, address=m.address) for m in inputs.having("ceph-mon")),
        mgrs=tuple(n.name for n in inputs.having("ceph-mgr")), osds=tuple(n.name for n in inputs.having("ceph-osd")),
        admin=tuple(n.name for n in inputs.having("ceph-admin")), public_network=inputs.networks[0].cidr,
        osd_disk=ceph.osd_disk, osd_pool_default_size=ceph.osd_pool_default_size, heartbeat_grace=ceph.heartbeat_grace,
        pools=tuple(CephPoolPlan(**p.model_dump()) for p in ceph.pools),
        clients=tuple(CephClientPlan(**c.model_dump()) for c in ceph.clients),
        accept_warnings=tuple(dict.fromkeys([*ceph.accept_warnings, *packaged])))


def of(plan: Plan) -> CephPlan | None:
    """The lab's ceph section, None when it has none."""
    return plan.section("ceph", CephPlan)
