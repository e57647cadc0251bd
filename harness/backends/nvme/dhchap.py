"""DH-HMAC-CHAP keys of the nvme backend: decided when the plan is made (generated, or a literal
of the topology) into the lab's secrets directory, and carried to where they are used without
ever being in an argv, a rendered file, plan.json or a log:

- the target: one 0600 file per key under KEYS_DIR on the target node, written through ssh's
  stdin (NodeView.put); the rendered nvmet script names the file and copies it into configfs
  (`cat FILE > .../hosts/NQN/dhchap_key`), so the key is in neither the script nor an argument;
- a host (a node, or the KVM host): a 0600 JSON config of libnvme (nvme-cli 2.3 / libnvme 1.3
  read it with `nvme connect --config=FILE`): the host entry's `dhchap_key` and each port's
  `dhchap_ctrl_key`, which libnvme writes into /dev/nvme-fabrics itself. nvme-cli's
  --dhchap-secret / --dhchap-ctrl-secret would put the key in the node's argv (and, through
  ssh, in the KVM host's): never used.
"""

from __future__ import annotations

import base64
import json
import secrets
import zlib
from collections.abc import Callable

from harness.backends.nvme.plan import DhchapPlan, HostNqnPlan, NvmePlan, dhchaps
from harness.backends.nvme.schema import Nvme, dhchap_key_problem
from harness.errors import HarnessError
from harness.spec import kernels

#: where the target role puts the key files the nvmet script copies into configfs (0600 each)
KEYS_DIR = "/root/storlab-nvme-keys"
#: libnvme's JSON config on a host node (nvme-cli's default --config); 0600, written by the host role
NODE_CONFIG = "/etc/nvme/config.json"


def generate_key() -> str:
    """A random 32-byte secret as `nvme gen-dhchap-key` writes one: DHHC-1:00:BASE64(key + CRC-32):
    (hash 00: the key is used as it is)."""
    key = secrets.token_bytes(32)
    return "DHHC-1:00:" + base64.b64encode(key + zlib.crc32(key).to_bytes(4, "little")).decode() + ":"


def decide(plan: NvmePlan, section: Nvme, store: Callable[[str, str], None]) -> None:
    """Give each key the plan names its value: generated, or the topology's literal."""
    hosts = {h.node: h for h in plan.hosts}
    if plan.kvm_host is not None:
        hosts[plan.kvm_host.node] = plan.kvm_host
    given = dhchaps(section, hosts)
    for d in plan.dhchap:
        _, lit = given[d.host]
        store(d.key, generate_key() if d.generate else lit.key or "")
        if d.ctrl_key:
            store(d.ctrl_key, generate_key() if d.generate else lit.ctrl_key or "")


def checked(value: str, name: str) -> str:
    """A key read back from the lab's secrets, checked again before it reaches a file or configfs
    (the error names the secret, never the value)."""
    why = dhchap_key_problem(value)
    if why is not None:
        raise HarnessError(f"the lab's secret {name} {why}; not used (it was decided when the plan was made)")
    return value


def key_file(name: str) -> str:
    """The file on the target node that holds the secret ``name``."""
    return f"{KEYS_DIR}/{name}"


def target_files(plan: NvmePlan, read: Callable[[str], str]) -> dict[str, str]:
    """What the target role puts under KEYS_DIR: file -> key (one line), each key checked."""
    out = {}
    for d in plan.dhchap:
        for name in (d.key, d.ctrl_key):
            if name:
                out[key_file(name)] = checked(read(name), name) + "\n"
    return out


def host_config(plan: NvmePlan, h: HostNqnPlan, d: DhchapPlan, read: Callable[[str], str]) -> str:
    """libnvme's JSON config for host ``h``: its NQN, id and key, and every port of each subsystem
    admitting it with the controller's key when authentication is bidirectional. nvme connect
    finds the host by NQN and id, the port by transport, address and service id (libnvme 1.3
    nvmf_add_ctrl), as the host role connects."""
    ctrl = checked(read(d.ctrl_key), d.ctrl_key) if d.ctrl_key else None
    subsystems = []
    for s in plan.subsystems:
        if s.allow_any_host or h.nqn not in s.allowed_hosts:
            continue
        ports = [{"transport": "tcp", "traddr": p.address, "trsvcid": str(p.port),
                  **({"dhchap_ctrl_key": ctrl} if ctrl else {})} for p in (plan.port(pid) for pid in s.ports)]
        subsystems.append({"nqn": s.nqn, "ports": ports})
    host = {"hostnqn": h.nqn, "hostid": h.hostid, "dhchap_key": checked(read(d.key), d.key), "subsystems": subsystems}
    return json.dumps([host], indent=2) + "\n"


#: the symbol the kernel's NVMe host has when it can authenticate (CONFIG_NVME_AUTH in 6.1,
#: CONFIG_NVME_HOST_AUTH from 6.7): Debian 12's 6.1 kernel is built without it
HOST_AUTH_SYMBOL = "nvme_auth_negotiate"
KERNEL_FIX = (f"boot a kernel that has it (a VM node's kernel: \"{kernels.with_feature('nvme-auth')[0]}\" in the "
              f"topology: {kernels.FEATURES['nvme-auth']}), or drop dhchap: from the topology")

#: exits 0 where the host's authentication code is in the running kernel (nvme_core loaded)
HOST_AUTH_PROBE = ("grep", "-q", "-w", "-F", HOST_AUTH_SYMBOL, "/proc/kallsyms")
