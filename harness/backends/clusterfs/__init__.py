"""A cluster filesystem on a shared LUN: OCFS2 with its o2cb stack on an iSCSI LUN or an NVMe
namespace of the lab that two or more hypervisor nodes reach, mounted on each, so that their
libvirt `dir` pools are one store (a volume made through one is listed and used through the
other; a guest defined on one starts on the other). Kernel code: nodes with their own kernel.

- schema.py     the topology's clusterfs: section (gfs2 is refused with the reason)
- rules.py      what validation checks of it (nodes reach the device; mounts; o2cb timeouts)
- plan.py       its section of the plan (node numbers and addresses, each filesystem's device)
- role.py       o2cb online, the device logged in, mkfs once, mounted everywhere
- templates/    /etc/ocfs2/cluster.conf and /etc/default/o2cb
"""

from __future__ import annotations

from typing import ClassVar

from harness.backends.base import Backend, Path_, PlanInputs, RoleStep, Rules, one_line_in, templates
from harness.backends.clusterfs import plan, role, rules
from harness.backends.clusterfs.plan import ClusterfsHostPool, ClusterfsPlan
from harness.backends.clusterfs.schema import Clusterfs
from harness.plan.model import Plan
from harness.spec.topology import Pool

_env = templates(__name__)
_env.finalize = one_line_in("an o2cb config")


class ClusterfsBackend(Backend[Clusterfs, ClusterfsPlan, ClusterfsHostPool]):
    name = "clusterfs"
    order = 50  # after the iscsi target and the nvme hosts: the nodes log in to what they serve
    section = Clusterfs
    plan_section = ClusterfsPlan
    pool_section = ClusterfsHostPool
    roles = ("clusterfs-node",)
    section_roles = ("clusterfs-node",)
    role_kernel: ClassVar[dict[str, str]] = {"clusterfs-node": "ocfs2"}
    pool_types = ("dir",)
    packages = ("ocfs2-tools",)
    services = ("o2cb.service", "ocfs2.service")

    def check(self, r: Rules, section: Clusterfs) -> None:
        rules.check(r, section)

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Clusterfs) -> None:
        rules.check_pool(r, path, pool, section)

    def plan(self, inputs: PlanInputs, section: Clusterfs) -> ClusterfsPlan:
        return plan.make(inputs, section)

    def render(self, plan_: Plan, section: ClusterfsPlan) -> dict[str, str]:
        out = {}
        for n in section.nodes:
            out[f"nodes/{n.name}/etc/ocfs2/cluster.conf"] = _env.get_template("cluster.conf.j2").render(cfs=section)
            out[f"nodes/{n.name}/etc/default/o2cb"] = _env.get_template("o2cb.j2").render(plan=plan_, cfs=section)
        return out

    def pool_extras(self, plan_: Plan, section: ClusterfsPlan, pool: Pool, secret_uuid: str) -> dict[str, object]:
        return {"filesystem": next((f.name for f in section.filesystems if f.mount == pool.path), None)}

    def steps(self, plan_: Plan) -> list[RoleStep]:
        return [("clusterfs", role.apply)]

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        if "clusterfs-node" not in roles:
            return []
        return [["sh", "-c", "cat /etc/ocfs2/cluster.conf; /etc/init.d/o2cb status; findmnt -t ocfs2; "
                 "mounted.ocfs2 -f 2>&1; iscsiadm -m session 2>&1; multipath -ll 2>&1; "
                 "dmesg | grep -iE 'o2|ocfs2|dlm' | tail -n 40"]]
