"""libvirt connections: the one place libvirt-python is opened, with a clear error when it
cannot be (not installed, libvirtd not running). A base module: anything may use it."""

from __future__ import annotations

import threading
from typing import Any

from harness.errors import HarnessError

#: the host's system libvirt: VM domains, lab networks, host pools
SYSTEM_URI = "qemu:///system"


#: a remote connection (qemu+ssh:// to a hypervisor node) whose peer is silent this long is closed
#: by libvirt: without it, closing a connection to a node that crashed waits for the CLOSE reply
#: until ssh's TCP gives up (~15 min: measured 924 s after a hypervisor node was powered off)
KEEPALIVE = (5, 3)  # seconds between probes, probes unanswered
_events_started = threading.Lock()
_events: list[threading.Thread] = []


def _event_loop() -> None:
    """libvirt's default event loop on a daemon thread (keepalive needs one), started once."""
    import libvirt
    with _events_started:
        if _events:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()
        t = threading.Thread(target=run, name="libvirt-events", daemon=True)
        t.start()
        _events.append(t)


def connect(uri: str = SYSTEM_URI) -> Any:
    try:
        import libvirt
    except ImportError as exc:
        raise HarnessError("libvirt-python is not installed (pip install libvirt-python; needs libvirt-dev)") from exc
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors arrive as exceptions, not on stderr
    remote = "+ssh://" in uri
    if remote:
        _event_loop()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise HarnessError(f"cannot connect to libvirt at {uri}: {exc}; "
                           "is libvirtd running? (ci/setup-host.sh starts it)") from None
    if remote:
        conn.setKeepAlive(*KEEPALIVE)
    return conn
