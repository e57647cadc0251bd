"""iSCSI: a target with fileio, block and LVM LUNs, initiator ACLs by IQN and CHAP, served by LIO
(targetcli) where the node has its own kernel and by tgt (userspace) where it shares a host
kernel without LIO; initiator nodes (open-iscsi + dm-multipath); `iscsi` and `iscsi-direct`
host pools logging in with the pool's IQN and CHAP; `logical`, `disk`, `scsi` and `mpath` pools
on a hypervisor node that logs in as an initiator.

- schema.py     the topology's iscsi: section
- rules.py      what validation checks of it (and of iscsi/iscsi-direct host pools on it)
- pool_rules.py what it checks of the pools wired on a node (logical, disk, scsi, mpath)
- plan.py       its section of the plan (portals, LUN devices, CHAP secrets named)
- chap.py       CHAP secrets decided at plan time, filled into configs on stdin/0600 files
- target.py     the target brought up and checked (`tgtadm` parsed, targetcli verified)
- initiator.py  initiator nodes, and a LUN attached on one (logged in, its multipath map)
- pools.py      pools on a node's sessions: a LUN's map named after its pool, the scsi adapter
- chaos.py      what a chaos run writes through (libiscsi on the KVM host), waits for and promises
- templates/    tgt's conf.d and a targetcli batch
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from harness.backends.base import Backend, Implementation, LabContext, NodeView, Path_, PlanInputs, RoleStep, Rules, templates
from harness.backends.iscsi import chap, initiator, plan, pools, rules, target
from harness.backends.iscsi.chaos import IscsiChaos
from harness.backends.iscsi.plan import IscsiHostPool, IscsiPlan, of
from harness.backends.iscsi.schema import Iscsi
from harness.backends.iscsi.upgrade import IscsiUpgrade
from harness.errors import CleanupReport
from harness.plan.model import Plan, need
from harness.run import CommandResult, run
from harness.spec.topology import Pool

_env = templates(__name__)
_env.finalize = chap.one_line  # every value printed into tgt.conf or the targetcli batch stays on its line


class IscsiBackend(Backend[Iscsi, IscsiPlan, IscsiHostPool]):
    name = "iscsi"
    order = 40
    section = Iscsi
    plan_section = IscsiPlan
    pool_section = IscsiHostPool
    roles = ("iscsi-target", "iscsi-initiator")
    section_roles = ("iscsi-target",)
    role_kernel: ClassVar[dict[str, str]] = {"iscsi-initiator": "iscsi_tcp"}
    implementations = (Implementation("lio", "LIO (targetcli)", kernel="lio"), Implementation("tgt", "tgt"))
    pool_types = ("iscsi", "iscsi-direct", *pools.NODE_POOLS)
    packages = ("targetcli-fb", "tgt", "open-iscsi", "multipath-tools", "libiscsi-bin")
    services = ("tgt.service",)

    block_ref = "lun"

    def check(self, r: Rules, section: Iscsi) -> None:
        rules.check(r, section)

    def check_block(self, r: Rules, path: Path_, section: Iscsi, ref: str | int, nodes: Sequence[str]) -> None:
        rules.check_block(r, path, section, ref, nodes)

    def attach_block(self, lab: LabContext, node: NodeView, ref: str | int) -> str:
        return initiator.attach(lab, node, int(ref))

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Iscsi) -> None:
        rules.check_pool(r, path, pool, section)

    def plan(self, inputs: PlanInputs, section: Iscsi) -> IscsiPlan:
        return plan.make(inputs, section)

    def render(self, plan: Plan, section: IscsiPlan) -> dict[str, str]:
        tgt = f"nodes/{section.target}"
        if section.implementation == "tgt":
            return {f"{tgt}/etc/tgt/conf.d/storlab.conf": _env.get_template("tgt.conf.j2").render(plan=plan, iscsi=section)}
        return {f"{tgt}/root/storlab-targetcli.txt": _env.get_template("targetcli.j2").render(plan=plan, iscsi=section)}

    def pool_extras(self, plan: Plan, section: IscsiPlan, pool: Pool, secret_uuid: str) -> dict[str, object]:
        if pool.type in pools.NODE_POOLS:
            return pools.extras(section, pool)
        extra: dict[str, object] = {"server": section.portal_addresses[0], "target_iqn": section.iqn}
        # when the target demands CHAP from this initiator, libvirt must log in with a secret
        acl = next((a for a in section.acls if a.initiator == pool.initiator), None)
        extra["chap"] = acl.chap if acl else None
        if extra["chap"]:
            extra["secret_uuid"] = secret_uuid
        return extra

    def decide_secrets(self, plan: IscsiPlan, section: Iscsi, store: Callable[[str, str], None]) -> None:
        chap.decide(plan, section, store)

    def steps(self, plan: Plan) -> list[RoleStep]:
        out: list[RoleStep] = [("iscsi", target.apply)]
        if any("iscsi-initiator" in n.roles for n in plan.nodes):
            out.append(("iscsi-initiator", initiator.apply))
        return out

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        out = []
        if "iscsi-target" in roles:  # tgt's or LIO's view of the target (neither shows CHAP passwords)
            out.append(["sh", "-c", "if systemctl -q is-active tgt.service; then tgtadm --lld iscsi --mode target "
                        "--op show; else targetcli ls; fi"])
        if "iscsi-initiator" in roles:  # sessions and paths (not `iscsiadm -m node`: it prints the CHAP password);
            # device-mapper's names and the aliases of LUN pools' maps
            out.append(["sh", "-c", "iscsiadm -m session -P 1; multipath -ll; dmsetup ls; "
                        "cat /etc/multipath/conf.d/*.conf 2>/dev/null"])
        return out

    def upgrade(self) -> IscsiUpgrade:
        return IscsiUpgrade()

    def chaos(self) -> IscsiChaos:
        return IscsiChaos()

    def pool_secret(self, lab: LabContext, pool: IscsiHostPool) -> bytes | None:
        if not pool.chap:
            return None
        acl = next(a for a in planned(lab.plan).acls if a.initiator == pool.initiator)
        return chap.chap_password(lab, acl).encode()

    def prepare_pool(self, lab: LabContext, pool: IscsiHostPool, sh: Callable[..., str]) -> None:
        if pool.type == "iscsi":
            prepare_iscsi_iface(lab, pool, sh)
        elif pool.type in pools.NODE_POOLS:
            pools.prepare(lab, pool)

    def pool_adapter(self, lab: LabContext, pool: IscsiHostPool, sh: Callable[..., str]) -> str | None:
        return pools.adapter(pool, sh) if pool.type == "scsi" else None

    def release_pool(self, lab: LabContext, pool: IscsiHostPool) -> CleanupReport:
        rep = CleanupReport()
        gone = remove_iscsi_iface(lab, pool) if pool.type == "iscsi" else None
        if gone is not None:
            what = f"iscsi iface {iscsi_iface(lab, pool)}"
            (rep.removed.append(what) if gone.ok else rep.failed.append((what, gone.stderr)))
        return rep

    def pool_leftovers(self, lab: LabContext, pool: IscsiHostPool) -> list[str]:
        return [f"iscsi iface {iscsi_iface(lab, pool)}"] if pool.type == "iscsi" and _host_has_iface(lab, pool) else []


def planned(plan: Plan) -> IscsiPlan:
    return need(of(plan), "iscsi section")


# -- an iscsi pool's open-iscsi interface ------------------------------------------------------
def iscsi_iface(lab: LabContext, pool: IscsiHostPool) -> str:
    """The open-iscsi interface an iscsi pool logs in through; it carries the lab's name."""
    return f"storlab-{lab.name}-{pool.name}"[:64]


def prepare_iscsi_iface(lab: LabContext, pool: IscsiHostPool, sh: Callable[..., str]) -> None:
    """Make the iface (with the pool's <initiator> IQN) and its node records before libvirt
    starts the pool. libvirt writes the pool's CHAP into the node records that exist, and only
    then, finding no iface with that IQN, makes one and discovers the target through it: the
    new records lack the CHAP and the target refuses the login (libvirt 9.0). With the iface
    there first, libvirt uses it and its records get the CHAP like the others."""
    iface = iscsi_iface(lab, pool)
    if iface not in sh(["iscsiadm", "-m", "iface"], timeout=30).split():
        sh(["iscsiadm", "-m", "iface", "-I", iface, "-o", "new"], timeout=30)
    sh(["iscsiadm", "-m", "iface", "-I", iface, "-o", "update", "-n", "iface.initiatorname", "-v", pool.initiator],
       timeout=30)
    sh(["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", pool.server, "-I", iface], timeout=60)


def _host_has_iface(lab: LabContext, pool: IscsiHostPool) -> bool:
    r = run(["iscsiadm", "-m", "iface"], timeout=30)
    return r.ok and iscsi_iface(lab, pool) in r.stdout.split()


def remove_iscsi_iface(lab: LabContext, pool: IscsiHostPool) -> CommandResult | None:
    """On the KVM host, after the pool is stopped: its node records and iface (lab nodes go with the lab)."""
    if not _host_has_iface(lab, pool):
        return None
    iface = iscsi_iface(lab, pool)
    run(["iscsiadm", "-m", "node", "-I", iface, "-o", "delete"], timeout=30)
    return run(["iscsiadm", "-m", "iface", "-I", iface, "-o", "delete"], timeout=30)
