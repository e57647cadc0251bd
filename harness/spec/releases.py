"""The Debian releases a lab's nodes can run, each a golden image of its own (built offline from the
host's mirror), and the backend versions each brings. A topology picks one with `release:` (the lab's
default) and a node may override it: mixed versions (a rolling upgrade half done, old clients against
new servers) are part of what a lab tests. The KVM host's own clients stay whatever the host has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Release:
    suite: str
    debian: str
    #: what the release's packages are, as its archive has them (`apt-cache policy` on the mirror)
    versions: Mapping[str, str]
    #: the kernel packages its image installs for VM nodes (containers share the host's kernel)
    kernel_packages: tuple[str, ...] = field(default=())
    #: the kernels (harness.spec.kernels names) those packages give, the first a node's default
    kernels: tuple[str, ...] = field(default=())
    #: what the release ships apart that the image needs (a package the other release has inside another)
    packages: tuple[str, ...] = field(default=())


RELEASES: Mapping[str, Release] = {
    "bookworm": Release("bookworm", "12", {"glusterfs": "10.3", "ceph": "16.2 (pacific)", "nfs-ganesha": "4.3",
                                           "tgt": "1.0.85", "targetcli-fb": "2.1.53", "libvirt": "9.0", "qemu": "7.2"},
                        ("linux-image-amd64", "linux-image-6.12-amd64"), ("6.1", "6.12")),
    "trixie": Release("trixie", "13", {"glusterfs": "11.1", "ceph": "18.2.7 (reef)", "nfs-ganesha": "6.5",
                                       "tgt": "1.0.85", "targetcli-fb": "2.1.53", "libvirt": "11.3", "qemu": "10.0"},
                      ("linux-image-amd64",), ("6.12",),
                      # libvirt 11's storage backends are packages of their own (bookworm's 9.0 has these
                      # in libvirt-daemon-driver-storage): what a hypervisor node's pools use beside dir/netfs
                      tuple(f"libvirt-daemon-driver-storage-{b}" for b in ("logical", "disk", "iscsi", "scsi", "mpath"))),
}
DEFAULT = "bookworm"


def of(name: str | None) -> Release:
    return RELEASES[name or DEFAULT]


def about(name: str) -> str:
    r = RELEASES[name]
    return f"Debian {r.debian} ({name}): " + ", ".join(f"{k} {v}" for k, v in r.versions.items())


def kernel_of(kernel: str | None, release: str | None) -> str:
    """The kernel a VM node boots: the one it names, else its release's default."""
    return kernel or of(release).kernels[0]
