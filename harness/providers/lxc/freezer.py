"""Freezing containers together straight through the cgroup freezer (v1 or v2), and thawing them
through the same control (lxc-unfreeze trusts its own record of the state, which a direct freeze
does not update)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.run import wait_until

#: the provider's `lxc-TOOL -P LXCPATH -n CONTAINER ARGS...` runner: (tool, node, *args, timeout=, check=)
Lxc = Callable[..., Any]
#: a freezer control: (file, the value that freezes, how 'frozen' reads back)
Control = tuple[Path, str, str]


def control(lxc: Lxc, node: str) -> Control | None:
    """The container's freezer control (file, value that freezes, how 'frozen' reads back),
    cgroup v1 or v2, found from its init's /proc/PID/cgroup."""
    r = lxc("lxc-info", node, "-p", "-H", timeout=15)
    pid = r.stdout.strip()
    if not (r.ok and pid.isdigit()):
        return None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        top = path.removesuffix("/init.scope")
        if controllers == "freezer":
            return Path("/sys/fs/cgroup/freezer") / top.lstrip("/") / "freezer.state", "FROZEN", "FROZEN"
        if controllers == "" and (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():
            return Path("/sys/fs/cgroup") / top.lstrip("/") / "cgroup.freeze", "1", "frozen 1"
    return None



def frozen(control: Control) -> bool:
    """Whether a freezer control (see control) reads frozen."""
    f, _, want = control
    try:
        text = (f.parent / "cgroup.events").read_text() if f.name == "cgroup.freeze" else f.read_text()
    except OSError:
        return False
    return want in text


def freeze_all(lxc: Lxc, nodes: list[str], timeout: float = 30) -> None:
    """Freeze nodes together, straight through the cgroup freezer: lxc-freeze polls its
    state once a second, so three nodes took 2 s; this takes milliseconds."""
    controls = {n: control(lxc, n) for n in nodes}
    for n, c in controls.items():
        if c is None:
            lxc("lxc-freeze", n, timeout=30, check=True)
        else:
            c[0].write_text(c[1])
    wait_until(lambda: all(frozen(c) for c in controls.values() if c is not None), timeout=timeout,
               interval=0.01, what=f"nodes {', '.join(nodes)} frozen")


def thaw_all(lxc: Lxc, nodes: list[str]) -> None:
    for n in nodes:
        c = control(lxc, n)
        if c is None:
            lxc("lxc-unfreeze", n, timeout=30, check=True)
        else:
            c[0].write_text("THAWED" if c[1] == "FROZEN" else "0")
