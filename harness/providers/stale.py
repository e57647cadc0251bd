"""What `storlab image prune` removes, item by item, and removal that is safe on a shared host.

Golden images are cached by content (harness.providers.image): a changed package list, release or
builder makes a new key and leaves the old image behind, with what each engine made from it (a VM
box and its saved states, an Incus copy) and the upgrade bundles made from its package status.
Each place that makes such things says which of its own are stale (Provider.stale_cache,
image.stale, bundle.stale); harness.lab.images decides what is kept and removes the rest.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.run import run


@dataclass
class Stale:
    """One thing to remove: what it is, its name, its size in bytes (0: not known), why, and how."""

    kind: str
    name: str
    size: int
    why: str
    remove: Callable[[], None] = field(repr=False)


def size_of(path: Path) -> int:
    res = run(["du", "-sb", "--one-file-system", str(path)], timeout=600)
    return int(res.stdout.split()[0]) if res.ok and res.stdout.split() else 0


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (mountinfo's fifth field, its octal escapes undone)."""
    root = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == root or point.startswith(root + "/"):
            points.append(point)
    return points


def remove_tree(path: Path) -> None:
    """rmtree that never follows a link and never descends into a mount: a killed build's bind
    mount of /dev under a rootfs would take the host's device nodes with it. Mounts under ``path``
    are unmounted first; if one stays, nothing is removed."""
    if path.is_symlink() or not path.is_dir():
        raise HarnessError(f"{path}: not a directory of storlab's (a link, or gone): left alone")
    for point in sorted(mounts_under(path), key=len, reverse=True):
        run(["umount", "-l", point], timeout=60)
    left = mounts_under(path)
    if left:
        raise HarnessError(f"{path}: still mounted at {', '.join(left)}: not removed (unmount them, then prune again)")
    shutil.rmtree(path)


def tree(kind: str, name: str, path: Path, why: str) -> Stale:
    """A directory of storlab's to remove whole."""
    return Stale(kind, name, size_of(path), why, lambda: remove_tree(path))


def human(size: int) -> str:
    for unit, n in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= n:
            return f"{size / n:.1f} {unit}"
    return f"{size} B"
