"""The KVM host as an NVMe/TCP host, for a pool with host: kvm (validation allows it only where
this host's kernel has nvme-tcp): connected with its own host NQN (decided at plan time) over
every port of the pool's subsystem before libvirt defines the pool, and disconnected at `down`
controller by controller: only the lab's own (its KVM host NQN, its subsystems, its target's
addresses), never another lab's connection to a subsystem of the same NQN. Commands run here
through harness.run (argv lists, a timeout each); no module is loaded (this host loads none).
DH-HMAC-CHAP keys reach nvme-cli in a 0600 libnvme config inside the lab's 0700 secrets
directory, never in argv; without keys, `--config=none` keeps this host's own config out."""

from __future__ import annotations

import os
from pathlib import Path

from harness.backends.base import LabContext
from harness.backends.nvme import dhchap, host
from harness.backends.nvme.plan import HostNqnPlan, NvmeHostPool, NvmePlan, PortPlan, SubsystemPlan, namespace_for, of
from harness.errors import CleanupReport, HarnessError
from harness.lab import secrets as labsecrets
from harness.plan.model import need
from harness.run import CommandResult, run, wait_until

#: the KVM host's libnvme config, in the lab's secrets directory
CONFIG_NAME = "nvme-kvm-host.json"
NO_CLI = "nvme-cli is not installed on this host: `apt-get install nvme-cli` (a pool with host: kvm connects this host)"


def nvme(*argv: str, timeout: float = 60) -> CommandResult:
    r = run(["nvme", *argv], timeout=timeout)
    if r.rc == 127:
        raise HarnessError(NO_CLI)
    return r


def _planned(lab: LabContext) -> tuple[NvmePlan, HostNqnPlan]:
    section = need(of(lab.plan), "nvme section")
    return section, need(section.kvm_host, "the KVM host's NQN (a subsystem admitting {node: kvm})")


def subsystem(section: NvmePlan, h: HostNqnPlan, pool: NvmeHostPool) -> tuple[SubsystemPlan, list[PortPlan]]:
    found = namespace_for(section, pool.disk, h.nqn)
    if found is None:
        raise HarnessError(f"pool {pool.name}: no namespace of the lab's target for the KVM host")
    sub = found[0]
    return sub, [section.port(pid) for pid in sub.ports]


def mine(section: NvmePlan, h: HostNqnPlan, listing: str) -> list[tuple[str, str, str]]:
    """The lab's controllers on this host in a `nvme list-subsys -o json` listing: (name,
    subsystem NQN, "address:port") of those with the lab's KVM host NQN, to one of its subsystems
    at one of its target's ports."""
    ports = {(p.address, str(p.port)) for p in section.ports}
    subs = {s.nqn for s in section.subsystems}
    found = host.parse_list_subsys_hosts(listing).get(h.nqn, {})
    return [(p["name"], nqn, f"{p['traddr']}:{p['trsvcid']}") for nqn, paths in found.items() if nqn in subs
            for p in paths if (p["traddr"], p["trsvcid"]) in ports and p["name"]]


def _listing() -> str:
    """`nvme list-subsys -o json` here; empty where it fails (no nvme-cli: nothing was connected)."""
    r = run(["nvme", "list-subsys", "-o", "json"], timeout=60)
    return r.stdout if r.ok else ""


def write_config(path: Path, text: str) -> None:
    """Write the libnvme config 0600, never through a link (the directory is the lab's 0700 one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def config(lab: LabContext, section: NvmePlan, h: HostNqnPlan) -> str:
    """The --config this host connects with: its keys' config, or "none" (no DH-HMAC-CHAP)."""
    d = section.auth(h.nqn)
    if d is None:
        return "none"
    if not run(list(dhchap.HOST_AUTH_PROBE), timeout=60).ok:
        raise HarnessError(f"this host's kernel ({os.uname().release}) cannot authenticate to an NVMe target (no "
                           f"{dhchap.HOST_AUTH_SYMBOL} in /proc/kallsyms); boot one that has CONFIG_NVME_HOST_AUTH, "
                           "or drop dhchap: from {node: kvm}")

    def read(name: str) -> str:
        return labsecrets.read(lab, name, f"DH-HMAC-CHAP key {name}")
    path = lab.secrets_dir / CONFIG_NAME
    write_config(path, dhchap.host_config(section, h, d, read))
    return str(path)


def connect(lab: LabContext, pool: NvmeHostPool) -> None:
    """Connect this host to the pool's subsystem over each of its ports not connected yet, and
    wait for every path to be live (the pool's by-id link is waited for by the pool hook)."""
    section, h = _planned(lab)
    sub, ports = subsystem(section, h, pool)
    why = host.multipath_problem([sub], Path(host.MULTIPATH).read_text() if os.path.exists(host.MULTIPATH) else "")
    if why:
        raise HarnessError(f"this host: {why}")
    nvme("version", timeout=30)  # nvme-cli here at all (else: how to install it)
    cfg = config(lab, section, h)
    have = {addr for _, nqn, addr in mine(section, h, _listing()) if nqn == sub.nqn}
    for port in ports:
        if f"{port.address}:{port.port}" in have:
            continue  # a resumed `up`
        r = run(host.connect_argv(sub, port, h, cfg), timeout=60)
        if not r.ok:
            raise HarnessError(f"this host could not connect to {sub.nqn} at {port.address}:{port.port} as {h.nqn}: "
                               f"{(r.stderr or r.stdout).strip()[-400:]}")
    wait_until(lambda: host.live(host.parse_list_subsys_hosts(_listing()).get(h.nqn, {}), sub, ports), timeout=60,
               what=f"this host: every path to {sub.nqn} live")


def disconnect(lab: LabContext) -> CleanupReport:
    """`down`: each of the lab's controllers on this host, by its name (nvme disconnect -d)."""
    rep = CleanupReport()
    section, h = _planned(lab)
    for name, nqn, addr in mine(section, h, _listing()):
        what = f"nvme controller {name} ({nqn} at {addr})"
        r = nvme("disconnect", "-d", name, timeout=60)
        (rep.removed.append(what) if r.ok else rep.failed.append((what, r.stderr.strip()[-400:])))
    if os.path.lexists(lab.secrets_dir / CONFIG_NAME):
        (lab.secrets_dir / CONFIG_NAME).unlink()
    return rep


def leftovers(lab: LabContext) -> list[str]:
    section, h = _planned(lab)
    return [f"nvme controller {name} ({nqn} at {addr})" for name, nqn, addr in mine(section, h, _listing())]
