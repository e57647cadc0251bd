"""NVMe host role: a node with role nvme-host gets its host NQN and id (decided at plan time)
and a discovery.conf, discovers the target and connects over every port of each subsystem that
admits it (two ports: native NVMe multipath, one block device per namespace); then waits for
each namespace's /dev/disk/by-id/nvme-uuid.UUID link. A host with DH-HMAC-CHAP gets its keys in
a 0600 /etc/nvme/config.json (on ssh's stdin) that `nvme connect --config` reads: never argv.
Pure parsers of nvme-cli's JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from harness.backends.base import LabContext, NodeView
from harness.backends.nvme import dhchap
from harness.backends.nvme.plan import HostNqnPlan, NamespacePlan, NvmePlan, PortPlan, SubsystemPlan, namespace_for, of
from harness.errors import HarnessError
from harness.lab import secrets as labsecrets
from harness.run import CommandResult, wait_until

MULTIPATH = "/sys/module/nvme_core/parameters/multipath"
#: how a host rides out a lost path or target: try again every 2 s for 10 min, and notice a dead
#: connection within 5 s (the kernel's default keep-alive); queued I/O resumes when a path is back
CONNECT_OPTS = ("--ctrl-loss-tmo=600", "--reconnect-delay=2", "--keep-alive-tmo=5")


def by_id(ns: NamespacePlan) -> str:
    """The link udev makes for the namespace: its wwid is "uuid.UUID" when the target sets a UUID."""
    return f"/dev/disk/by-id/nvme-uuid.{ns.uuid}"


def admitted(nvme: NvmePlan, host_nqn: str) -> list[SubsystemPlan]:
    return [s for s in nvme.subsystems if s.allow_any_host or host_nqn in s.allowed_hosts]


def ports_for(nvme: NvmePlan, host_nqn: str) -> list[PortPlan]:
    pids = dict.fromkeys(pid for s in admitted(nvme, host_nqn) for pid in s.ports)
    return [nvme.port(pid) for pid in pids]


# -- parsers (nvme-cli 2.x JSON; 1.x's list-subsys shape is read too) --------------------------
def address(text: str) -> dict[str, str]:
    """"traddr=10.0.0.2,trsvcid=4420,src_addr=10.0.0.3" -> {"traddr": ..., "trsvcid": ..., ...}."""
    out = {}
    for part in text.replace(" ", ",").split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_list_subsys_hosts(text: str) -> dict[str, dict[str, list[dict[str, str]]]]:
    """`nvme list-subsys -o json` -> {host NQN: {subsystem NQN: [{"name", "transport", "traddr",
    "trsvcid", "state"}]}} (1.x printed no host: its NQN is "")."""
    data: Any = json.loads(text) if text.strip() else []
    hosts = data if isinstance(data, list) else [data]  # 2.x: a list of hosts; 1.x: one object
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for h in hosts:
        subs = out.setdefault(h.get("HostNQN", ""), {})
        for sub in h.get("Subsystems", []):
            paths = subs.setdefault(sub.get("NQN", ""), [])
            for p in sub.get("Paths", []):
                addr = address(p.get("Address", ""))
                paths.append({"name": p.get("Name", ""), "transport": p.get("Transport", ""),
                              "traddr": addr.get("traddr", ""), "trsvcid": addr.get("trsvcid", ""),
                              "state": p.get("State", "")})
    return out


def parse_list_subsys(text: str) -> dict[str, list[dict[str, str]]]:
    """`nvme list-subsys -o json` -> {subsystem NQN: [paths]}, whichever host NQN connected them."""
    out: dict[str, list[dict[str, str]]] = {}
    for subs in parse_list_subsys_hosts(text).values():
        for nqn, paths in subs.items():
            out.setdefault(nqn, []).extend(paths)
    return out


def parse_discovery(text: str) -> list[dict[str, str]]:
    """`nvme discover -o json` -> its log records: [{"subnqn", "traddr", "trsvcid", "subtype"}]."""
    data: Any = json.loads(text) if text.strip() else {}
    return [{k: str(r.get(k, "")) for k in ("subnqn", "traddr", "trsvcid", "subtype", "trtype")}
            for r in data.get("records", [])]


# -- a host node ----------------------------------------------------------------------------
def paths(node: NodeView) -> dict[str, list[dict[str, str]]]:
    r = node.run(["nvme", "list-subsys", "-o", "json"], timeout=60)
    return parse_list_subsys(r.stdout) if r.ok else {}


def discover(node: NodeView, port: PortPlan, host_nqn: str) -> list[dict[str, str]]:
    """What the target's discovery service on ``port`` offers ``host_nqn`` (nvmet lists only the
    subsystems that admit it); no record is an empty list."""
    r = node.run(["nvme", "discover", "-t", "tcp", "-a", port.address, "-s", str(port.port), f"--hostnqn={host_nqn}",
                  "-o", "json"], timeout=60)
    if not r.ok:
        return []
    return parse_discovery(r.stdout)


def connect_argv(s: SubsystemPlan, port: PortPlan, h: HostNqnPlan, config: str | None = None) -> list[str]:
    """`nvme connect` as ``h`` to ``s`` over ``port``; ``config``: the libnvme JSON config holding
    its DH-HMAC-CHAP keys (or "none"): the keys themselves are never arguments."""
    return ["nvme", "connect", "-t", "tcp", "-a", port.address, "-s", str(port.port), "-n", s.nqn,
            f"--hostnqn={h.nqn}", f"--hostid={h.hostid}", *CONNECT_OPTS, *([f"--config={config}"] if config else [])]


def connect(node: NodeView, s: SubsystemPlan, port: PortPlan, h: HostNqnPlan, config: str | None = None) -> None:
    node.succeed(connect_argv(s, port, h, config), timeout=60)


def live(found: dict[str, list[dict[str, str]]], s: SubsystemPlan, ports: list[PortPlan]) -> bool:
    got = {(p["traddr"], p["trsvcid"]) for p in found.get(s.nqn, []) if p["state"] == "live"}
    return all((p.address, str(p.port)) in got for p in ports)


def _live(node: NodeView, s: SubsystemPlan, ports: list[PortPlan]) -> bool:
    return live(paths(node), s, ports)


def put_auth(lab: LabContext, node: NodeView, nvme: NvmePlan, h: HostNqnPlan) -> str | None:
    """For a host with DH-HMAC-CHAP: check its kernel can authenticate, put its libnvme config
    (0600, content on stdin) and return that config's path; None for a host without."""
    d = nvme.auth(h.nqn)
    if d is None:
        return None
    if not node.run(list(dhchap.HOST_AUTH_PROBE), timeout=60).ok:
        kernel = node.run(["uname", "-r"], timeout=15).stdout.strip()
        raise HarnessError(f"{node.name}: its kernel ({kernel}) cannot authenticate to an NVMe target (no "
                           f"{dhchap.HOST_AUTH_SYMBOL} in /proc/kallsyms); {dhchap.KERNEL_FIX}")

    def read(name: str) -> str:
        return labsecrets.read(lab, name, f"DH-HMAC-CHAP key {name}")
    node.put(dhchap.NODE_CONFIG, dhchap.host_config(nvme, h, d, read), "0600")
    return dhchap.NODE_CONFIG


def multipath_problem(subs: list[SubsystemPlan], value: str) -> str | None:
    """Why two ports would not give one device (``value``: the multipath parameter read there)."""
    if any(len(s.ports) > 1 for s in subs) and value.strip() != "Y":
        return (f"native NVMe multipath is off ({MULTIPATH} is not Y): two ports would give two block devices for "
                "one namespace; boot with nvme_core.multipath=Y")
    return None


def apply_node(lab: LabContext, node: NodeView, nvme: NvmePlan, h: HostNqnPlan) -> None:
    files = lab.files(node.name)
    for name in ("hostnqn", "hostid", "discovery.conf"):
        node.put(f"/etc/nvme/{name}", (files / "etc/nvme" / name).read_text())
    node.succeed(["modprobe", "nvme-tcp"], timeout=60)
    config = put_auth(lab, node, nvme, h)
    subs = admitted(nvme, h.nqn)
    why = multipath_problem(subs, node.run(["cat", MULTIPATH], timeout=15).stdout)
    if why:
        raise HarnessError(f"{node.name}: {why}")
    for s in subs:
        ports = [nvme.port(pid) for pid in s.ports]
        have = {(p["traddr"], p["trsvcid"]) for p in paths(node).get(s.nqn, [])}
        for port in ports:
            if (port.address, str(port.port)) in have:
                continue  # a resumed `up`: this path is there already
            if s.nqn not in {r["subnqn"] for r in discover(node, port, h.nqn)}:
                raise HarnessError(f"{node.name}: the target's discovery on {port.address}:{port.port} does not offer "
                                   f"{s.nqn} to {h.nqn}")
            connect(node, s, port, h, config)
        _wait_for(node, s, ports)


def wait_block(run: Callable[..., CommandResult], device: str, what: str) -> None:
    """Until ``device`` (a namespace's by-id link) is a block device where ``run`` runs: udev
    makes it after the connect."""
    wait_until(lambda: run(["test", "-b", device], timeout=15).ok, timeout=60, what=what)


def _wait_for(node: NodeView, s: SubsystemPlan, ports: list[PortPlan]) -> None:
    """Every path live, then each namespace's by-id link there."""
    wait_until(lambda: _live(node, s, ports), timeout=60, what=f"{node.name}: every path to {s.nqn} live")
    for ns in s.namespaces:
        wait_block(node.run, by_id(ns), f"{node.name}: {by_id(ns)} (namespace {ns.nsid} of {s.nqn})")


def apply(lab: LabContext) -> None:
    nvme = of(lab.plan)
    if nvme is None:
        return
    for h in nvme.hosts:
        apply_node(lab, lab.node(h.node), nvme, h)


def attach(lab: LabContext, node: NodeView, name: str) -> str:
    """The namespace ``name`` as another backend's block device on ``node`` (an nvme-host the
    role connected): the device its by-id link points at."""
    nvme = of(lab.plan)
    found = namespace_for(nvme, name, None) if nvme is not None else None
    if found is None:
        raise HarnessError(f"the lab's nvme section has no namespace named {name!r}")
    link = by_id(found[1])
    wait_block(node.run, link, f"{node.name}: {link}")
    return node.succeed(["readlink", "-e", "--", link], timeout=15).strip()
