"""The iscsi section of a plan: the target, its portals, LUNs (with their devices) and ACLs,
with each CHAP secret named (its value is decided into the lab's secrets directory)."""

from __future__ import annotations

from typing import Literal, cast

from harness.backends.base import PlanInputs
from harness.backends.iscsi.schema import Iscsi
from harness.plan.model import ChapPlan, Frozen, HostPoolPlan, Plan


class AclPlan(Frozen):
    initiator: str
    chap: ChapPlan | None


class LunPlan(Frozen):
    kind: Literal["fileio", "block", "lvm"]
    size: int | None
    path: str | None
    disk: str | None
    vg: str | None
    lv: str | None
    device: str | None


class IscsiPlan(Frozen):
    target: str
    implementation: Literal["lio", "tgt"]
    iqn: str
    portal_addresses: tuple[str, ...]
    acls: tuple[AclPlan, ...]
    chap: bool
    luns: tuple[LunPlan, ...]


class IscsiHostPool(HostPoolPlan):
    """A host pool on the target: the portal, the target and, for an iscsi or iscsi-direct pool
    whose initiator's ACL has CHAP, its credentials (the password is the lab's secret); for a
    logical or disk pool on a hypervisor node, its LUN (device: the LUN's map, named after it)."""
    server: str | None = None
    target_iqn: str | None = None
    chap: ChapPlan | None = None
    lun: int | None = None


def make(inputs: PlanInputs, iscsi: Iscsi) -> IscsiPlan:
    tnode = inputs.node(iscsi.target)
    disk_dev = {d.name: d.device for d in tnode.disks}
    portals = tuple(a for net, a in tnode.addresses.items() if "*" in iscsi.portals or net in iscsi.portals)
    acls = tuple(AclPlan(initiator=a.initiator, chap=ChapPlan(
        username=a.chap.username, secret_name=f"chap-{a.initiator.split(':')[-1]}", password_file=a.chap.password_file,
        generate=a.chap.generate, literal=a.chap.password is not None) if a.chap else None) for a in iscsi.acls)
    luns = tuple(LunPlan(**lun.model_dump(),
                         device=disk_dev.get(lun.disk or "") or (f"/dev/storlab/{lun.disk}" if lun.disk else None))
                 for lun in iscsi.luns)
    return IscsiPlan(target=iscsi.target, implementation=cast(Literal["lio", "tgt"], inputs.implementation), iqn=iscsi.iqn,
                     portal_addresses=portals, acls=acls, chap=any(a.chap for a in acls), luns=luns)


def of(plan: Plan) -> IscsiPlan | None:
    """The lab's iscsi section, None when it has none."""
    return plan.section("iscsi", IscsiPlan)
