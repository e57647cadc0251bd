"""Locks: one per lab around up/down/fault/reap, one host-wide around allocation (subnets,
bridge names), so that two storlab processes never build, tear down or number the same thing;
and `exclusive(name)` around a file several processes rewrite (a class's jump keys).

flock(2) on files under STORLAB_HOME/locks: the kernel drops a lock when its holder dies, so a
killed `up` never leaves a lab locked. A lab lock, once taken, is held by the process until it
releases it or exits (a test session holds its labs' locks while it uses them); taking it again
in the same process is a no-op. The lock file names the holder for the error message."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness import paths
from harness.errors import HarnessError
from harness.run import wait_until


class LabBusy(HarnessError):
    """Another process holds the lab (or the allocation) lock."""


_held: dict[str, IO[str]] = {}


def _file(name: str) -> Path:
    d = paths.home() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.lock"


def _try(name: str) -> IO[str] | None:
    # not through a link someone planted in the locks directory; kept open while the lock is held
    fd = os.open(_file(name), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    fh = os.fdopen(fd, "r+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()} {time.strftime('%H:%M:%S')} {' '.join(os.path.basename(a) for a in sys.argv[:3])}\n")
    fh.flush()
    return fh


def holder(name: str) -> str:
    try:
        pid, since, *cmd = _file(name).read_text().split()
    except (OSError, ValueError):
        return "another process"
    return f"pid {pid} (`{' '.join(cmd)}`, since {since})"


def hold(lab: str) -> None:
    """Take lab ``lab``'s lock for this process, or fail at once naming who holds it."""
    if lab in _held:
        return
    fh = _try(lab)
    if fh is None:
        raise LabBusy(f"lab {lab} is busy: {holder(lab)} holds it; wait for it to finish "
                      f"(or stop it; its lab is then continued by `storlab up` or removed by `storlab down {lab}`)")
    _held[lab] = fh


def release(lab: str) -> None:
    fh = _held.pop(lab, None)
    if fh is not None:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def is_held_elsewhere(lab: str) -> bool:
    if lab in _held:
        return False
    fh = _try(lab)
    if fh is None:
        return True
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()
    return False


class _Mine(threading.local):
    """The exclusive locks this thread holds, and how deeply (a holder may call a function that takes it again)."""

    def __init__(self) -> None:
        self.depth: dict[str, int] = {}


_mine = _Mine()


@contextlib.contextmanager
def exclusive(name: str, timeout: float = 120, what: str | None = None) -> Iterator[None]:
    """Hold lock ``name`` (waits its turn, up to ``timeout``) against every other process and
    thread; the same thread may take it again inside (no-op)."""
    if _mine.depth.get(name):
        _mine.depth[name] += 1
        try:
            yield
        finally:
            _mine.depth[name] -= 1
        return
    box: list[IO[str]] = []

    def got() -> bool:
        fh = _try(name)
        if fh is not None:
            box.append(fh)
        return fh is not None
    wait_until(got, timeout=timeout, interval=0.05, what=f"{what or 'lock ' + name} (held by {holder(name)})")
    _mine.depth[name] = 1
    try:
        yield
    finally:
        del _mine.depth[name]
        fcntl.flock(box[0], fcntl.LOCK_UN)
        box[0].close()


@contextlib.contextmanager
def allocation(timeout: float = 120) -> Iterator[None]:
    """The host-wide lock around choosing subnets and names and writing a lab's plan (waits its turn)."""
    with exclusive(".allocation", timeout=timeout, what="the allocation lock"):
        yield
