"""The kernels the golden image carries for nodes that boot a kernel of their own (VMs): a node
picks one with `kernel:` (default: the release's own), the image installs every one, the VM box
keeps each beside its disk for direct kernel boot, and validation reads what each can do.

Containers share the host's kernel, so `kernel:` is refused on them (validation says why)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Kernel:
    #: the Debian package that installs it (from the release or its security archive, both of
    #: which the image is built from)
    package: str
    #: the kernel release's prefix, as in /boot/vmlinuz-RELEASE (finds its files in the image)
    release_prefix: str
    #: what it can do beyond the default kernel, as the FEATURES names it
    features: frozenset[str]
    about: str


#: features a backend may need from a node's own kernel, and what each is in the kernel's config
FEATURES: Mapping[str, str] = {
    "nvme-auth": "NVMe in-band authentication (DH-HMAC-CHAP: CONFIG_NVME_TARGET_AUTH, CONFIG_NVME_HOST_AUTH)",
}

#: read from each package's /boot/config-*: Debian 12's 6.1 has no NVMe authentication; the 6.12
#: that bookworm-security carries (Debian 12's supported successor kernel) has it
KERNELS: Mapping[str, Kernel] = {
    "6.1": Kernel("linux-image-amd64", "6.1.", frozenset(), "Debian 12's own kernel"),
    "6.12": Kernel("linux-image-6.12-amd64", "6.12.", frozenset({"nvme-auth"}),
                   "Debian 12's 6.12 kernel from bookworm-security"),
}
DEFAULT = "6.1"


def of(name: str | None) -> Kernel:
    """A node's kernel (None: the default)."""
    return KERNELS[name or DEFAULT]


def with_feature(feature: str) -> list[str]:
    """The kernels that have ``feature``, in KERNELS order."""
    return [name for name, k in KERNELS.items() if feature in k.features]
