"""NVMe target role: the rendered configfs script run on the target node (modprobe nvmet and
nvmet-tcp, then subsystems, namespaces, hosts, ports and their links), checked through configfs;
and the target stopped and started again (the script's down and up) for the tests."""

from __future__ import annotations

from harness.backends.base import LabContext, NodeView
from harness.backends.nvme.plan import NvmePlan, of
from harness.errors import HarnessError
from harness.nodes.roles.base import prepare_disks
from harness.plan.model import need

SCRIPT = "/root/storlab-nvmet.sh"
CONFIGFS = "/sys/kernel/config/nvmet"


def expected(nvme: NvmePlan) -> list[str]:
    """The configfs entries (relative to /sys/kernel/config/nvmet) a configured target has."""
    out = []
    for s in nvme.subsystems:
        out += [f"subsystems/{s.nqn}/namespaces/{ns.nsid}" for ns in s.namespaces]
        out += [f"subsystems/{s.nqn}/allowed_hosts/{h}" for h in s.allowed_hosts]
        out += [f"ports/{pid}/subsystems/{s.nqn}" for pid in s.ports]
    return out


def missing(listing: str, nvme: NvmePlan) -> list[str]:
    """What of ``expected`` a `find /sys/kernel/config/nvmet` listing lacks."""
    have = {line.strip().removeprefix(CONFIGFS + "/") for line in listing.splitlines()}
    return [e for e in expected(nvme) if e not in have]


def _enabled(node: NodeView, nvme: NvmePlan) -> list[str]:
    """Namespaces configfs shows disabled (device_path unreadable, say): their subsystem serves nothing."""
    off = []
    for s in nvme.subsystems:
        for ns in s.namespaces:
            got = node.run(["cat", f"{CONFIGFS}/subsystems/{s.nqn}/namespaces/{ns.nsid}/enable"], timeout=15)
            if got.stdout.strip() != "1":
                off.append(f"{s.nqn} namespace {ns.nsid} ({ns.device})")
    return off


def check(node: NodeView, nvme: NvmePlan) -> None:
    lacks = missing(node.succeed(["find", CONFIGFS, "-maxdepth", "5"], timeout=30), nvme)
    off = _enabled(node, nvme)
    if lacks or off:
        raise HarnessError(f"{node.name}: nvmet lacks {', '.join(lacks + off)} after {SCRIPT} up")


def start(lab: LabContext) -> None:
    """Run the target's script (makes what is missing; a re-run changes nothing) and check it."""
    nvme = need(of(lab.plan), "nvme section")
    node = lab.node(nvme.target)
    node.succeed(["sh", SCRIPT, "up"], timeout=120)
    check(node, nvme)


def stop(lab: LabContext) -> None:
    """Remove the target's subsystems, ports and hosts from nvmet (backing files stay): hosts lose
    every path at once, as in a target restart; `start` brings the same NQNs and UUIDs back."""
    nvme = need(of(lab.plan), "nvme section")
    lab.node(nvme.target).succeed(["sh", SCRIPT, "down"], timeout=120)


def apply(lab: LabContext) -> None:
    nvme = of(lab.plan)
    if nvme is None:
        return
    node = lab.node(nvme.target)
    if any(ns.kind == "file" for s in nvme.subsystems for ns in s.namespaces):
        prepare_disks(node)  # file namespaces live on a mounted data disk (rules.py)
    node.put(SCRIPT, (lab.files(node.name) / SCRIPT.lstrip("/")).read_text(), "0700")
    start(lab)
