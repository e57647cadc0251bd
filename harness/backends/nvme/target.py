"""NVMe target role: the rendered configfs script run on the target node (modprobe nvmet and
nvmet-tcp, then hosts with their DH-HMAC-CHAP keys, subsystems, namespaces, ports and their
links), checked through configfs; and the target stopped and started again (the script's down
and up) for the tests. DH-HMAC-CHAP keys reach the node as 0600 files through ssh's stdin."""

from __future__ import annotations

from harness.backends.base import LabContext, NodeView
from harness.backends.nvme import dhchap
from harness.backends.nvme.plan import NvmePlan, of
from harness.errors import HarnessError
from harness.lab import secrets as labsecrets
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


#: exits 0 when host entry $1 has a key (and a controller key when $2 is 1), hash $3 and DH group
#: $4: the keys are compared with nothing and stay on the node (only the exit status comes back)
AUTH_SET = ('[ -n "$(cat "$1/dhchap_key")" ] && { [ "$2" != 1 ] || [ -n "$(cat "$1/dhchap_ctrl_key")" ]; } && '
            '[ "$(cat "$1/dhchap_hash")" = "$3" ] && [ "$(cat "$1/dhchap_dhgroup")" = "$4" ]')


def _unauthenticated(node: NodeView, nvme: NvmePlan) -> list[str]:
    """Host entries whose DH-HMAC-CHAP is not what the plan says (a host admitted without its key)."""
    return [f"DH-HMAC-CHAP of {d.host}" for d in nvme.dhchap
            if not node.run(["sh", "-c", AUTH_SET, "sh", f"{CONFIGFS}/hosts/{d.host}", "1" if d.ctrl_key else "0",
                             d.hash, d.dhgroup], timeout=15).ok]


def check(node: NodeView, nvme: NvmePlan) -> None:
    lacks = missing(node.succeed(["find", CONFIGFS, "-maxdepth", "5"], timeout=30), nvme)
    off = _enabled(node, nvme) + _unauthenticated(node, nvme)
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
    put_keys(lab, node, nvme)
    start(lab)


def put_keys(lab: LabContext, node: NodeView, nvme: NvmePlan) -> None:
    """The DH-HMAC-CHAP keys the script copies into configfs, as 0600 files (content on stdin)."""
    def read(name: str) -> str:
        return labsecrets.read(lab, name, f"DH-HMAC-CHAP key {name}")
    for path, text in dhchap.target_files(nvme, read).items():
        node.put(path, text, "0600")
