"""NVMe over TCP with DH-HMAC-CHAP (topologies/nvme-auth.yaml, VMs): kvm1 connects to both
subsystems with the keys the lab decided (bidirectional: the target proves its key too), and I/O
runs through the logical pool on the authenticated paths; the target refuses kvm1's own host NQN
without a key or with a wrong key, and kvm1 refuses a target answering to a wrong controller key
(each time nvme connect fails and no controller is left), then connects again with its key; and
the target restarted under a writer: the host authenticates again with the keys it kept, writes
resume, nothing acknowledged is lost. Select with `pytest -k nvme_auth` (marked `vm`).

Needs kernels with NVMe authentication on the nodes (CONFIG_NVME_TARGET_AUTH, CONFIG_NVME_HOST_AUTH):
Debian 12's own 6.1 kernel has neither, so both nodes boot the image's 6.12 (`kernel: "6.12"`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.nvme import dhchap
from harness.backends.nvme import host as nvmehost
from harness.backends.nvme.plan import DhchapPlan, HostNqnPlan, NvmeHostPool, NvmePlan, PortPlan, SubsystemPlan, of
from harness.host.pools import node_uri
from harness.host.virt import connect
from harness.lab import secrets as labsecrets
from harness.lab.lab import Lab
from harness.nodes.node import Node
from harness.plan.model import need
from harness.run import wait_until
from lab import test_nvme

pytestmark = [pytest.mark.topology("nvme-auth.yaml"), pytest.mark.vm]

#: where the test puts its /dev/nvme-fabrics options (keys, wrong ones too) on kvm1 (0600, removed at the end)
WRONG = "/root/storlab-test-dhchap.json"


def nvme_plan(lab: Lab) -> NvmePlan:
    return need(of(lab.plan), "nvme section")


@pytest.fixture(scope="module")
def hv(lab: Lab) -> Iterator[tuple[Node, Any]]:
    spec = next(p for p in lab.plan.host.pools if isinstance(p, NvmeHostPool))
    conn = connect(node_uri(lab, spec.host))
    yield lab.node(spec.host), conn
    conn.close()


@pytest.fixture(scope="module")
def volume(lab: Lab, hv: tuple[Node, Any]) -> Iterator[str]:
    yield from test_nvme.make_volume(lab, hv)


def test_nvme_auth_pool_io_over_authenticated_paths(lab: Lab, hv: tuple[Node, Any], volume: str) -> None:
    node, _ = hv
    nvme = nvme_plan(lab)
    h = need(nvme.host(node.name), "kvm1's NQN")
    assert nvme.auth(h.nqn) is not None, "the topology gives kvm1 DH-HMAC-CHAP"
    assert node.succeed(["stat", "-c", "%a", dhchap.NODE_CONFIG]).strip() == "600"
    test_nvme.test_nvme_pool_io_through_the_namespace(lab, hv, volume)


def _key(lab: Lab, name: str | None) -> str:
    return labsecrets.read(lab, need(name, "a key's name"), f"DH-HMAC-CHAP key {name}")


def _attempts(lab: Lab, d: DhchapPlan) -> list[tuple[str, str, str]]:
    """(what is wrong, the host key, the controller key kvm1 tries; "" for none)."""
    host_key, ctrl_key = _key(lab, d.key), _key(lab, need(d.ctrl_key, "ctrl key"))
    return [("no key", "", ""), ("a wrong host key", dhchap.generate_key(), ctrl_key),
            ("a wrong controller key", host_key, dhchap.generate_key())]


def fabrics_options(sub: SubsystemPlan, port: PortPlan, h: HostNqnPlan, host_key: str, ctrl_key: str) -> str:
    """The connect the kernel is asked for through /dev/nvme-fabrics: exactly these keys. Not
    `nvme connect`: libnvme 1.3 gives a new controller the DH-HMAC-CHAP secret it reads from the
    sysfs of the host NQN's other controllers, so even --config=none connects with the host's key
    while kvm1 holds its pool's controllers (seen on this lab: "no key" authenticated)."""
    opts = [f"transport=tcp,traddr={port.address},trsvcid={port.port},nqn={sub.nqn}",
            f"hostnqn={h.nqn},hostid={h.hostid},ctrl_loss_tmo=0"]
    opts += [f"dhchap_secret={host_key}"] if host_key else []
    opts += [f"dhchap_ctrl_secret={ctrl_key}"] if ctrl_key else []
    return ",".join(opts)


def _refused(node: Node, sub: SubsystemPlan, port: PortPlan, h: HostNqnPlan, what: str, host_key: str,
             ctrl_key: str) -> None:
    # the options (keys too) go to the kernel from a 0600 file, never in an argv
    node.put(WRONG, fabrics_options(sub, port, h, host_key, ctrl_key), "0600")
    r = node.run(["sh", "-c", 'cat -- "$1" > /dev/nvme-fabrics', "sh", WRONG], timeout=120)
    assert not r.ok, f"{h.nqn} connected to {sub.nqn} with {what}"
    left = nvmehost.paths(node).get(sub.nqn, [])
    assert not left, f"a controller to {sub.nqn} is left after a connect with {what}: {left}"


def test_nvme_auth_wrong_keys_are_refused(lab: Lab, hv: tuple[Node, Any]) -> None:
    """On the scratch subsystem (the pool is on the other): kvm1's controllers to it removed, then
    no key, a wrong host key and a wrong controller key each refused with nothing connected; its
    own keys (the role's config) connect it again."""
    node, _ = hv
    nvme = nvme_plan(lab)
    sub = next(s for s in nvme.subsystems if not any(ns.name == "pool" for ns in s.namespaces))
    h = need(nvme.host(node.name), "kvm1's NQN")
    d = need(nvme.auth(h.nqn), "kvm1's DH-HMAC-CHAP")
    port = nvme.port(sub.ports[0])
    node.succeed(["nvme", "disconnect", "-n", sub.nqn], timeout=60)
    wait_until(lambda: not nvmehost.paths(node).get(sub.nqn), timeout=60, what=f"kvm1 disconnected from {sub.nqn}")
    try:
        for what, host_key, ctrl_key in _attempts(lab, d):
            _refused(node, sub, port, h, what, host_key, ctrl_key)
        # the same path with kvm1's own keys connects: the attempts above failed for their keys alone
        node.put(WRONG, fabrics_options(sub, port, h, _key(lab, d.key), _key(lab, d.ctrl_key)), "0600")
        node.succeed(["sh", "-c", 'cat -- "$1" > /dev/nvme-fabrics', "sh", WRONG], timeout=120)
        wait_until(lambda: nvmehost.live(nvmehost.paths(node), sub, [port]), timeout=60,
                   what=f"kvm1 connected to {sub.nqn} through /dev/nvme-fabrics with its own keys")
        node.succeed(["nvme", "disconnect", "-n", sub.nqn], timeout=60)
        wait_until(lambda: not nvmehost.paths(node).get(sub.nqn), timeout=60, what=f"kvm1 disconnected from {sub.nqn}")
        nvmehost.connect(node, sub, port, h, dhchap.NODE_CONFIG)
        wait_until(lambda: nvmehost.live(nvmehost.paths(node), sub, [port]), timeout=60,
                   what=f"kvm1 connected to {sub.nqn} with its own keys")
    finally:
        node.run(["rm", "-f", WRONG], timeout=15)
        if not nvmehost.paths(node).get(sub.nqn):  # leave the lab as the role made it
            node.run(nvmehost.connect_argv(sub, port, h, dhchap.NODE_CONFIG), timeout=120)


def test_nvme_auth_target_restart_while_writing(lab: Lab, hv: tuple[Node, Any], volume: str) -> None:
    """The target's nvmet config removed and made again (with the keys from their files): the host
    reconnects and authenticates again with the keys it kept; nothing acknowledged is lost."""
    test_nvme.test_nvme_target_restart_while_writing(lab, hv, volume)
