"""Locks: one per lab around up/down/fault/reap, one host-wide around allocation (subnets,
bridge names), so that two storlab processes never build, tear down or number the same thing.

flock(2) on files under STORLAB_HOME/locks: the kernel drops a lock when its holder dies, so a
killed `up` never leaves a lab locked. A lab lock, once taken, is held by the process until it
releases it or exits (a test session holds its labs' locks while it uses them); taking it again
in the same process is a no-op. The lock file names the holder for the error message."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from . import paths
from .errors import HarnessError
from .run import wait_until


class LabBusy(HarnessError):
    """Another process holds the lab (or the allocation) lock."""


_held: dict[str, IO[str]] = {}


def _file(name: str) -> Path:
    d = paths.home() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.lock"


def _try(name: str) -> IO[str] | None:
    fh = open(_file(name), "a+")  # noqa: SIM115 - kept open while the lock is held
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


@contextlib.contextmanager
def allocation(timeout: float = 120) -> Iterator[None]:
    """The host-wide lock around choosing subnets and names and writing a lab's plan (waits its turn)."""
    box: list[IO[str]] = []

    def got() -> bool:
        fh = _try(".allocation")
        if fh is not None:
            box.append(fh)
        return fh is not None
    wait_until(got, timeout=timeout, interval=0.2, what=f"the allocation lock (held by {holder('.allocation')})")
    try:
        yield
    finally:
        fcntl.flock(box[0], fcntl.LOCK_UN)
        box[0].close()
