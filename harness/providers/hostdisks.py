"""Data disks made on this host for container nodes: sparse image files, formatted as the
topology says (XFS, ext4) and loop-mounted under the lab directory, or handed over raw.
The lxc provider binds them into its containers, the incus provider (on this host's daemon)
attaches them as disk devices; both find what to unmount and free by the lab directory."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.plan.model import DiskPlan, NodePlan
from harness.run import run, succeed


def image(diskdir: Path, node: NodePlan, d: DiskPlan) -> Path:
    return diskdir / f"{node.name}-{d.name}.img"


def mountpoint(diskdir: Path, node: NodePlan, d: DiskPlan) -> Path:
    return diskdir / f"{node.name}-{d.name}.mnt"


def prepare(diskdir: Path, node: NodePlan, d: DiskPlan) -> Path | None:
    """Make (once) and mount (if it is not) one disk; the host path to hand to the node: the
    mounted directory of a disk with a filesystem, the image file of a raw disk (None: a disk with
    a filesystem and no mount point, which the node does not see)."""
    paths.private_dir(diskdir)  # what nodes write there is theirs alone
    img = image(diskdir, node, d)
    if not img.exists():
        mkfs = {"xfs": ["mkfs.xfs", "-q", "-f"], "none": []}.get(d.filesystem, ["mkfs.ext4", "-q", "-F"])
        _make(img, d.size, mkfs)
    if d.filesystem == "none":
        return img  # a raw disk: the backing file itself appears in the node (tgt, BlueStore use files too)
    if not d.mount:
        return None
    mnt = mountpoint(diskdir, node, d)
    mnt.mkdir(exist_ok=True)
    if not os.path.ismount(mnt):
        # what a node writes there is the node's: never a setuid program or a device for this host
        succeed(["mount", "-o", "loop,nosuid,nodev", str(img), str(mnt)], timeout=60)
    return mnt


def _make(img: Path, size: int, mkfs: list[str]) -> None:
    """A sparse image of ``size`` bytes formatted by ``mkfs`` (none: raw), made under another name
    and renamed once formatted: an `up` killed half-way leaves a partial file the next `up` makes
    again, never an image without its filesystem (which the next mount would refuse)."""
    part = img.with_name(img.name + ".part")
    part.unlink(missing_ok=True)
    with open(part, "wb") as fh:
        fh.truncate(size)
    if mkfs:
        succeed([*mkfs, str(part)], timeout=120)
    part.rename(img)


def budget_image(labdir: Path) -> Path:
    """The image of a lab's disk budget filesystem (beside its disk directory, which it is mounted on)."""
    return labdir / "disks.budget"


def hold_in_budget(labdir: Path, diskdir: Path, mib: int) -> None:
    """The lab's data disks kept within ``mib`` MiB of this host's disk (its `--disk-budget`): its
    disk directory is a filesystem of that size (ext4, 4 KiB blocks, a 4 MiB journal, no reserve,
    on a sparse image beside it, loop-mounted nosuid,nodev,noexec), so its sparse images can grow
    only that far: a lab that writes more gets errors on its own disks, and the host's filesystem
    never fills. Made once; mounted when it is not (after a host reboot too)."""
    img = budget_image(labdir)
    if not img.exists():
        if diskdir.exists() and any(diskdir.iterdir()):  # placement refuses a new budget for an existing lab
            raise HarnessError(f"{diskdir} holds disks made without a budget: `storlab down` the lab first")
        _make(img, mib * 2**20, ["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-J", "size=4", "-L", "storlab-budget"])
    paths.private_dir(diskdir)
    if not os.path.ismount(diskdir):
        succeed(["mount", "-o", "loop,nosuid,nodev,noexec", str(img), str(diskdir)], timeout=60)
    paths.private_dir(diskdir)  # the mounted filesystem's root: 0700 too


def budget_use(labdir: Path) -> tuple[int, int] | None:
    """(MiB used, MiB size) of a lab's disk budget filesystem, mounted on LABDIR/disks (None: the lab
    has none mounted)."""
    diskdir = labdir / "disks"
    if not budget_image(labdir).exists() or not os.path.ismount(diskdir):
        return None
    st = os.statvfs(diskdir)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 2**20, st.f_blocks * st.f_frsize // 2**20


def mounted(diskdir: Path, node: NodePlan) -> list[Path]:
    """The node's data disks that are mounted on the host now."""
    return [m for d in node.disks if d.filesystem != "none" and d.mount
            and os.path.ismount(m := mountpoint(diskdir, node, d))]


def mounts_under(root: Path) -> list[str]:
    """Every mount below ``root``, deepest first (the order to unmount them)."""
    out = []
    base = str(root) + "/"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mnt = line.split()[1].replace("\\040", " ")
        if mnt.startswith(base):
            out.append(mnt)
    return sorted(out, key=len, reverse=True)


def loops_of(diskdir: Path) -> list[str]:
    """Loop devices backed by files in ``diskdir``."""
    r = run(["losetup", "-J", "-l"], timeout=15)
    if not r.ok or not r.stdout.strip():
        return []
    return [d["name"] for d in json.loads(r.stdout).get("loopdevices", [])
            if str(d.get("back-file") or "").startswith(str(diskdir))]


@contextlib.contextmanager
def held_still(diskdir: Path, nodes: Iterable[NodePlan]) -> Iterator[None]:
    """Every mounted data disk of ``nodes`` fsfrozen (flushed to its image) for the block, thawed
    after it: the images can be copied crash-consistent while the nodes keep their mounts."""
    frozen: list[Path] = []
    try:
        for node in nodes:
            for mnt in mounted(diskdir, node):
                succeed(["fsfreeze", "-f", str(mnt)], timeout=60)
                frozen.append(mnt)
        yield
    finally:
        for mnt in frozen:
            run(["fsfreeze", "-u", str(mnt)], timeout=60)


def thaw_all(root: Path) -> None:
    """Thaw every mount below ``root``: a snapshot killed half-way (SIGKILL skips its `finally`)
    leaves disks fsfrozen, and such a disk cannot be unmounted."""
    for mnt in mounts_under(root):
        run(["fsfreeze", "-u", mnt], timeout=60)  # "Invalid argument" when it was not frozen: fine


def save(diskdir: Path, nodes: Iterable[NodePlan], dest: Path) -> None:
    """Copy the nodes' disk images into ``dest`` (sparse: holes stay holes)."""
    dest.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        for d in node.disks:
            img = image(diskdir, node, d)
            succeed(["cp", "--sparse=always", str(img), str(dest / img.name)], timeout=600)


def put_back(diskdir: Path, nodes: Iterable[NodePlan], src: Path) -> None:
    """Unmount the nodes' disks and put back the images ``save`` copied to ``src`` (the nodes are
    stopped; mounting them again is `prepare`'s)."""
    for node in nodes:
        for mnt in mounted(diskdir, node):
            succeed(["umount", str(mnt)], timeout=60)
        for d in node.disks:
            img = image(diskdir, node, d)
            succeed(["cp", "--sparse=always", str(src / img.name), str(img)], timeout=600)
