"""What a node provider can give a lab, declared by the provider and read by validation and
the plan, so that neither names a provider: its own kernel or the host's, disks as block
devices, a management network, memory taken whole from the host, freeze and snapshots.

Providers are found by the one plugin loader (harness.plugins, the `storlab.providers` entry
points); each provider class carries its Capabilities."""

from __future__ import annotations

from dataclasses import dataclass

from harness import plugins


@dataclass(frozen=True)
class Capabilities:
    name: str
    #: nodes run a kernel of their own (kernel nfsd, LIO, iscsi_tcp, a hypervisor's kvm); else they
    #: share the host's, and have what it has
    own_kernel: bool
    #: data disks reach the node as block devices (/dev/vdb, ...) that the node formats itself;
    #: else as filesystems the provider mounts for it
    disk_devices: bool
    #: the provider needs a management network of its own beside the lab's (vagrant-libvirt)
    management_network: bool
    #: a node's memory is taken whole from the host (a VM), not shared with it (a container)
    reserves_memory: bool
    freeze: bool
    snapshot: bool
    #: the host command the provider needs, and how to get it
    tool: str
    install_hint: str
    #: picked by `provider: auto` on a host without usable KVM when no node needs a kernel of its own
    fast: bool
    #: what keeps root in a node off the host, for labs whose users are not the host's admins
    #: (students): "vm" (a kernel of its own), "userns" (unprivileged containers with an id map of
    #: their own: only roles that run there), "none" (root in a node is root on the host)
    isolation: str = "none"


def available() -> dict[str, Capabilities]:
    """Every installed provider's capabilities, by provider name (empty when storlab was
    installed before providers were entry points: `pip install -e .` again)."""
    out: dict[str, Capabilities] = {}
    for name, cls in plugins.providers().items():
        caps = getattr(cls, "capabilities", None)
        if isinstance(caps, Capabilities):
            out[name] = caps
    return out
