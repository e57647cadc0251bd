"""NFS: exports of one server node, served by kernel nfsd where the node has its own kernel and
by NFS-Ganesha (userspace) where it shares a host kernel without nfsd; `netfs` host pools and `dir`
pools on an NFS mount of a hypervisor node, each with its client's options (`nfs:` on the pool:
version, nconnect, session trunking).

- schema.py      the topology's nfs: section, and a pool's client options (NfsClient)
- rules.py       what validation checks of them
- plan.py        its section of the plan (implementation chosen, clients resolved), a pool's options
- role.py        the server brought up, `exportfs -v` parsed, ganesha's grace period awaited
- client.py      a dir pool's export mounted on its node (systemd mount units); mounts checked
- mountstats.py  pure parsers of /proc/self/mountstats and `ss -tn`, and their readers
- chaos.py       what a chaos run writes through (libnfs on the KVM host), waits for and promises
- templates/     /etc/exports, nfs.conf.d, ganesha.conf
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from harness.backends.base import Backend, Implementation, LabContext, Path_, PlanInputs, RoleStep, Rules, templates
from harness.backends.nfs import client, ganesha, plan, role, rules
from harness.backends.nfs.chaos import NfsChaos
from harness.backends.nfs.plan import NfsHostPool, NfsPlan, of
from harness.backends.nfs.schema import Nfs, NfsClient
from harness.backends.nfs.upgrade import NfsUpgrade
from harness.plan.model import Plan, need
from harness.spec.topology import Pool

_env = templates(__name__)


class NfsBackend(Backend[Nfs, NfsPlan, NfsHostPool]):
    name = "nfs"
    order = 30
    section = Nfs
    plan_section = NfsPlan
    pool_section = NfsHostPool
    roles = ("nfs-server",)
    section_roles = ("nfs-server",)
    implementations = (Implementation("kernel", "kernel nfsd", kernel="nfsd"), Implementation("ganesha", "NFS-Ganesha"))
    pool_types = ("netfs", "dir")
    pool_options = NfsClient
    packages = ("nfs-kernel-server", "nfs-common", "rpcbind", "nfs-ganesha", "nfs-ganesha-vfs")
    services = ("nfs-ganesha.service",)
    # a pool's client options: the pool is remounted with the new ones (client.reconfigure)
    reconfigurable = ("host.pools.*.nfs",)
    # NFS-Ganesha's VFS FSAL needs open_by_handle_at, which LXC's default seccomp denies
    syscalls: ClassVar[dict[str, tuple[str, ...]]] = {"nfs-server": ("open_by_handle_at",)}
    host_privilege: ClassVar[dict[str, str]] = {
        "nfs-server": "NFS-Ganesha's VFS FSAL needs open_by_handle_at, which Linux grants only to "
                      "CAP_DAC_READ_SEARCH in the host's user namespace (the call of the best-known container escape)"}

    def check(self, r: Rules, section: Nfs) -> None:
        rules.check(r, section)

    def check_pool(self, r: Rules, path: Path_, pool: Pool, section: Nfs) -> None:
        rules.check_pool(r, path, pool, section)

    def plan(self, inputs: PlanInputs, section: Nfs) -> NfsPlan:
        return plan.make(inputs, section)

    def render(self, plan: Plan, section: NfsPlan) -> dict[str, str]:
        srv = f"nodes/{section.server}"
        if section.implementation == "ganesha":
            files = {f"{srv}/etc/ganesha/ganesha.conf": ganesha.conf(plan, section)}
        else:
            files = {f"{srv}/etc/exports": _env.get_template("exports.j2").render(plan=plan, nfs=section),
                     f"{srv}/etc/nfs.conf.d/storlab.conf": _env.get_template("nfs.conf.j2").render(plan=plan, nfs=section)}
        return files | client.render(plan)

    def pool_extras(self, plan_: Plan, section: NfsPlan, pool: Pool, secret_uuid: str) -> dict[str, object]:
        return plan.pool_extras(plan_, section, pool)

    def squashes(self, section: Nfs, pool: Pool) -> bool:
        return pool.type in ("netfs", "dir") and any(e.path == pool.export and "no_root_squash" not in e.options
                                                     for e in section.exports)

    def prepare_pool(self, lab: LabContext, pool: NfsHostPool, sh: Callable[..., str]) -> None:
        """A dir pool's export mounted on its node (a netfs pool's mount is libvirt's, at its start)."""
        if pool.type == "dir":
            client.mount_dir_pool(lab, pool)

    def steps(self, plan: Plan) -> list[RoleStep]:
        return [("nfs", role.apply)]

    def reconfigure(self, lab: LabContext, before: Plan) -> list[str]:
        return client.reconfigure(lab, before)

    def upgrade(self) -> NfsUpgrade:
        return NfsUpgrade()

    def chaos(self) -> NfsChaos:
        return NfsChaos()

    def evidence(self, roles: tuple[str, ...]) -> list[list[str]]:
        out = []
        if "hypervisor" in roles:  # a pool's NFS mounts: their options and transports, the connections to 2049
            out.append(["sh", "-c", "findmnt -t nfs,nfs4; grep -E '^device .* fstype nfs|opts:|xprt:' "
                        "/proc/self/mountstats; ss -tn; systemctl --no-pager --all list-units '*.mount'"])
        if "nfs-server" not in roles:
            return out
        # kernel nfsd: what is exported; NFS-Ganesha: its config and log
        return out + [["sh", "-c", "if systemctl -q is-active nfs-server.service; then systemctl status --no-pager "
                 "nfs-server.service; exportfs -v; else systemctl status --no-pager nfs-ganesha.service; "
                 "cat /etc/ganesha/ganesha.conf; tail -n 200 /var/log/ganesha/ganesha.log; fi"]]


def planned(plan: Plan) -> NfsPlan:
    return need(of(plan), "nfs section")
