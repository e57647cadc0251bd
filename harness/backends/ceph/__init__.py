"""Ceph: a cluster bootstrapped by hand from the distribution packages (monitors, a mgr,
BlueStore OSDs), RBD pools, least-privilege cephx clients; an `rbd` host pool with a libvirt
secret holding the client's key.

- schema.py   the topology's ceph: section
- rules.py    what validation checks of it (monitor count, OSD hosts against pool sizes, caps)
- plan.py     its section of the plan (fsid, monitors, OSD hosts)
- role.py     bring-up, the parsers of `ceph ... -f json`, health waits, a client's key and
              the backend's faults (an OSD stopped)
- chaos.py    what a chaos run writes through (librbd on the KVM host), waits for and promises
- templates/  ceph.conf
"""

from __future__ import annotations

from harness.backends.base import Backend, LabContext, Path_, PlanInputs, RoleStep, Rules, templates
from harness.backends.ceph import plan, role, rules
from harness.backends.ceph.chaos import CephChaos
from harness.backends.ceph.plan import CephHostPool, CephPlan, of
from harness.backends.ceph.role import ceph_key
from harness.backends.ceph.schema import Ceph
from harness.backends.ceph.upgrade import CephUpgrade
from harness.plan.model import Plan, need
from harness.spec.topology import Pool

_env = templates(__name__)


class CephBackend(Backend[Ceph, CephPlan, CephHostPool]):
    name = "ceph"
    order = 20
    section = Ceph
    plan_section = CephPlan
    pool_section = CephHostPool
    roles = ("ceph-admin", "ceph-mon", "ceph-mgr", "ceph-osd")
    section_roles = roles
    pool_types = ("rbd",)
    packages = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph-common")
    services = ("ceph.target", "ceph-mon.target", "ceph-osd.target", "ceph-mgr.target", "ceph-mds.target",
                "ceph-fuse.target", "rbdmap.service")

    def check(self, r: Rules, section: Ceph) -> None:
        rules.check(r, section)

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Ceph) -> None:
        if pool.rbd_pool and pool.rbd_pool not in {x.name for x in section.pools}:
            r.add(path + ("rbd_pool",), f"ceph pool '{pool.rbd_pool}' is not defined", "use a pool from ceph.pools")
        if pool.client and pool.client not in {c.name for c in section.clients}:
            r.add(path + ("client",), f"ceph client '{pool.client}' is not defined", "use a client from ceph.clients")

    def plan(self, inputs: PlanInputs, section: Ceph) -> CephPlan:
        return plan.make(inputs, section)

    def render(self, plan: Plan, section: CephPlan) -> dict[str, str]:
        conf = _env.get_template("ceph.conf.j2").render(plan=plan, ceph=section)
        return {f"nodes/{n.name}/etc/ceph/ceph.conf": conf for n in plan.nodes if set(n.roles) & set(self.roles)}

    def pool_extras(self, plan: Plan, section: CephPlan, pool: Pool, secret_uuid: str) -> dict[str, object]:
        return {"monitors": tuple(m.address for m in section.mons), "secret_uuid": secret_uuid}

    def steps(self, plan: Plan) -> list[RoleStep]:
        return [("ceph", role.apply)]

    def pool_secret(self, lab: LabContext, pool: CephHostPool) -> bytes | None:
        return ceph_key(lab, need(pool.client, f"pool {pool.name}: client"))

    def upgrade(self) -> CephUpgrade:
        return CephUpgrade()

    def chaos(self) -> CephChaos:
        return CephChaos()

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        if not set(roles) & set(self.roles):
            return []
        return [["sh", "-c", "systemctl status --no-pager 'ceph-*'; ceph -s --connect-timeout 5; "
                 "ceph health detail --connect-timeout 5"]]


def planned(plan: Plan) -> CephPlan:
    return need(of(plan), "ceph section")
