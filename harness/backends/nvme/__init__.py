"""NVMe over TCP: a target served by the Linux kernel (nvmet + nvmet-tcp, configured through
configfs by a rendered script, since Debian has no nvmetcli), with subsystems, namespaces (a
file on a data disk, or a whole disk), the host NQNs each admits (optionally with DH-HMAC-CHAP
keys) and one or two ports; host nodes (role nvme-host) that connect with a host NQN decided at
plan time, over every port (native NVMe multipath); and `logical` host pools on a namespace,
found by its fixed UUID, on a hypervisor node or on the KVM host where its kernel has nvme-tcp.

- schema.py     the topology's nvme: section (NQNs checked against NQN_RE, fullmatch)
- rules.py      what validation checks of it (and of host pools on it)
- plan.py       its section of the plan (ports with addresses, namespace UUIDs, host NQNs)
- target.py     the target brought up (the script run), checked through configfs, restarted
- host.py       host nodes connected; pure parsers of `nvme list-subsys`/`nvme discover` JSON
- kvmhost.py    the KVM host connected for a pool with host: kvm (where its kernel has nvme-tcp)
- dhchap.py     DH-HMAC-CHAP keys: decided at plan time, carried in 0600 files (never argv)
- templates/    the nvmet configfs script and a host's /etc/nvme/discovery.conf
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import ClassVar

from harness.backends.base import Backend, LabContext, NodeView, Path_, PlanInputs, RoleStep, Rules, one_line_in, templates
from harness.backends.nvme import dhchap, host, kvmhost, plan, rules, target
from harness.backends.nvme.plan import NvmeHostPool, NvmePlan
from harness.backends.nvme.schema import Nvme
from harness.errors import CleanupReport
from harness.plan.model import Plan
from harness.run import CommandResult, run
from harness.spec.topology import Pool

#: the templates' finalize: every value they print stays on its line
one_line = one_line_in("the NVMe target script")


def shell_quote(value: object) -> str:
    """The templates' `q` filter: one shell word, whatever the value holds."""
    return shlex.quote(str(one_line(value)))


_env = templates(__name__)
_env.finalize = one_line
_env.filters["q"] = shell_quote
_env.filters["keyfile"] = dhchap.key_file  # a key's file on the target, never the key


class NvmeBackend(Backend[Nvme, NvmePlan, NvmeHostPool]):
    name = "nvme"
    order = 45
    section = Nvme
    plan_section = NvmePlan
    pool_section = NvmeHostPool
    roles = ("nvme-target", "nvme-host")
    section_roles = ("nvme-target", "nvme-host")
    # both sides are kernel code: nodes sharing a kernel without them (containers here) cannot serve
    role_kernel: ClassVar[dict[str, str]] = {"nvme-target": "nvmet", "nvme-host": "nvme_tcp"}
    pool_types = ("logical",)
    packages = ("nvme-cli",)

    block_ref = "namespace"

    def check(self, r: Rules, section: Nvme) -> None:
        rules.check(r, section)

    def check_block(self, r: Rules, path: Path_, section: Nvme, ref: str | int, nodes: Sequence[str]) -> None:
        rules.check_block(r, path, section, ref, nodes)

    def attach_block(self, lab: LabContext, node: NodeView, ref: str | int) -> str:
        return host.attach(lab, node, str(ref))

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Nvme) -> None:
        rules.check_pool(r, path, pool, section)

    def plan(self, inputs: PlanInputs, section: Nvme) -> NvmePlan:
        return plan.make(inputs, section)

    def render(self, plan: Plan, section: NvmePlan) -> dict[str, str]:
        out = {f"nodes/{section.target}/root/storlab-nvmet.sh": _env.get_template("nvmet.sh.j2").render(
            plan=plan, nvme=section, hosts=list(dict.fromkeys(h for s in section.subsystems for h in s.allowed_hosts)),
            auth={d.host: d for d in section.dhchap})}
        for h in section.hosts:
            ports = host.ports_for(section, h.nqn)
            out[f"nodes/{h.node}/etc/nvme/discovery.conf"] = _env.get_template("discovery.conf.j2").render(
                plan=plan, host=h, ports=ports)
            out[f"nodes/{h.node}/etc/nvme/hostnqn"] = f"{one_line(h.nqn)}\n"
            out[f"nodes/{h.node}/etc/nvme/hostid"] = f"{one_line(h.hostid)}\n"
        return out

    def pool_extras(self, plan_: Plan, section: NvmePlan, pool: Pool, secret_uuid: str) -> dict[str, object]:
        h = section.host(pool.host or "")
        found = plan.namespace_for(section, pool.disk, h.nqn if h else None)
        if found is None:
            return {}
        sub, ns = found
        return {"subsystem": sub.nqn, "namespace": ns.nsid, "namespace_uuid": ns.uuid, "device": host.by_id(ns)}

    def decide_secrets(self, plan: NvmePlan, section: Nvme, store: Callable[[str, str], None]) -> None:
        dhchap.decide(plan, section, store)

    def steps(self, plan_: Plan) -> list[RoleStep]:
        out: list[RoleStep] = [("nvme-target", target.apply)]
        if any("nvme-host" in n.roles for n in plan_.nodes):
            out.append(("nvme-host", host.apply))
        return out

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        out = []
        if "nvme-target" in roles:  # what nvmet holds, and what the kernel said about it
            out.append(["sh", "-c", "find /sys/kernel/config/nvmet -maxdepth 5 | sort; "
                        "dmesg | grep -i nvmet | tail -n 30"])
        if "nvme-host" in roles:  # paths, namespaces and whether native multipath is on
            out.append(["sh", "-c", "cat /sys/module/nvme_core/parameters/multipath; nvme list-subsys; nvme list; "
                        "ls -l /dev/disk/by-id | grep nvme; dmesg | grep -i nvme | tail -n 30"])
        return out

    def prepare_pool(self, lab: LabContext, pool: NvmeHostPool, sh: Callable[..., str]) -> None:
        """The pool's device is the namespace's by-id link on its host: there once the host is
        connected (a node: the nvme-host role; the KVM host: here) and udev has run; wait for it
        rather than fail the define."""
        device = pool.device or ""
        there: Callable[..., CommandResult] = run if pool.host == plan.KVM else lab.node(pool.host).run
        if pool.host == plan.KVM:
            kvmhost.connect(lab, pool)
        host.wait_block(there, device, f"{device} on {pool.host} (namespace {pool.namespace} of {pool.subsystem})")

    def release_pool(self, lab: LabContext, pool: NvmeHostPool) -> CleanupReport:
        """`down`, after the pool is gone from the KVM host's libvirt: the lab's controllers there."""
        return kvmhost.disconnect(lab) if pool.host == plan.KVM else CleanupReport()

    def pool_leftovers(self, lab: LabContext, pool: NvmeHostPool) -> list[str]:
        return kvmhost.leftovers(lab) if pool.host == plan.KVM else []
