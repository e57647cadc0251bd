"""Writing into a node's root filesystem from the host without trusting it: root in the node
controls every name in there, so each path is walked one component at a time from the root's
directory fd with O_NOFOLLOW (a planted symlink, even as a middle component, is refused, never
followed onto the host), and files are replaced through a temporary name in the same directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(rel: str) -> list[str]:
    parts = [p for p in PurePosixPath(rel).parts if p != "/"]
    if not parts or any(p in (".", "..") for p in parts):
        raise HarnessError(f"node path {rel!r}: a plain path below the node's root is needed")
    return parts


@contextlib.contextmanager
def _dir(root: Path, parts: list[str], mode: int = 0o755) -> Iterator[int]:
    """An fd of root/parts..., made (mode) where missing; refuses a symlink or non-directory anywhere."""
    fd = os.open(root, _DIR)
    try:
        for i, name in enumerate(parts):
            try:
                nfd = os.open(name, _DIR, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(name, mode, dir_fd=fd)
                nfd = os.open(name, _DIR, dir_fd=fd)
            except OSError as exc:  # a link (ELOOP), a file (ENOTDIR), an overlay whiteout
                where = "/" + "/".join(parts[:i + 1])
                raise HarnessError(f"{root}: {where} in the node is not a directory (a symlink or a file put there "
                                   f"inside the node?); storlab never follows links a node holds: fix or reset "
                                   f"the node") from exc
            os.close(fd)
            fd = nfd
        yield fd
    finally:
        os.close(fd)


def write(root: Path, rel: str, data: str, mode: int = 0o644, dir_mode: int = 0o755) -> None:
    """root/rel := data (replaced whole, never through a link)."""
    *dirs, name = _parts(rel)
    with _dir(root, dirs, dir_mode) as dfd:
        tmp = f".{name}.storlab-tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            os.write(fd, data.encode())
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link itself, never its target


def mask(root: Path, rel_dir: str, units: list[str]) -> None:
    """Units masked (root/rel_dir/UNIT -> /dev/null) where nothing of that name exists yet."""
    with _dir(root, _parts(rel_dir)) as dfd:
        for unit in units:
            try:
                os.stat(unit, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                os.symlink("/dev/null", unit, dir_fd=dfd)

