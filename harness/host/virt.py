"""libvirt connections: the one place libvirt-python is opened, with a clear error when it
cannot be (not installed, libvirtd not running). A base module: anything may use it."""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError

#: the host's system libvirt: VM domains, lab networks, host pools
SYSTEM_URI = "qemu:///system"


def connect(uri: str = SYSTEM_URI) -> Any:
    try:
        import libvirt
    except ImportError as exc:
        raise HarnessError("libvirt-python is not installed (pip install libvirt-python; needs libvirt-dev)") from exc
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors arrive as exceptions, not on stderr
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HarnessError(f"cannot connect to libvirt at {uri}: {exc}; "
                           "is libvirtd running? (ci/setup-host.sh starts it)") from None
