"""A node's disk fault verbs: device-mapper under a mounted data disk. On VMs each mounted data
disk sits on a linear device-mapper device of its own (providers.vagrant.spec.dm_script), so a
verb swaps its table under the mounted filesystem: flakey() (dm-flakey: the disk works for UP
seconds, then fails for DOWN seconds, and again), delay_disk() (dm-delay), bad_blocks() (error
ranges), and dm_restore() puts the linear table back. A
filesystem that met the errors may have shut itself down (XFS does when a log write fails): then
the processes holding it are killed, it is mounted anew and their units restarted, as an operator
replacing a failed disk would, with the units that used the disk when the fault went in (noted on
the node then: a daemon may have died of the errors already, as a Gluster brick's health check
kills it). Mixed into `Node` through FaultVerbs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from harness.errors import HarnessError
from harness.nodes.verbs import NodeVerbs, number
from harness.plan.model import DiskPlan

#: what the disk does while it is down: every I/O fails (a dying disk), writes fail and reads
#: work, or writes are acknowledged and dropped (a disk that lies); dm-flakey's features
MODES = {"error": "", "error_writes": "1 error_writes", "drop_writes": "1 drop_writes"}

#: where a node keeps the units that used a disk when its fault went in (NOTE_PY), for RECOVER_PY
USERS_DIR = "/run/storlab/dm-users"

#: the head of NOTE_PY and RECOVER_PY (argv: NAME MOUNT ...): the processes using MOUNT and their units
_USERS_PY = f"USERS_DIR = {USERS_DIR!r}\n" + r"""
import json, os, re, subprocess, sys, time
name, mnt = sys.argv[1], sys.argv[-1]
UNIT = re.compile(r"[A-Za-z0-9@_.:-]+[.]service")
IN_CGROUP = re.compile(r"/(" + UNIT.pattern + r")(/|$)")
note = os.path.join(USERS_DIR, name)
def under(path):
    return path == mnt or path.startswith(mnt.rstrip("/") + "/")
def holders():
    # what /proc says each process has open, its cwd, root and mapped files: read as link text and
    # map lines, never stat()ed (a shut-down filesystem answers EIO; fuser -m found nothing there)
    out = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        p = f"/proc/{pid}"
        links = []
        try:
            links = [os.path.join(p, "fd", f) for f in os.listdir(os.path.join(p, "fd"))]
        except OSError:
            pass
        for link in links + [os.path.join(p, "cwd"), os.path.join(p, "root")]:
            try:
                if under(os.readlink(link).removesuffix(" (deleted)")):
                    out.add(int(pid))
                    break
            except OSError:
                pass
        try:
            if any(under(line.split(None, 5)[5].strip()) for line in open(os.path.join(p, "maps"))
                   if len(line.split(None, 5)) == 6):
                out.add(int(pid))
        except OSError:
            pass
    return out
def unit_of(pid):
    try:
        m = IN_CGROUP.search(open(f"/proc/{pid}/cgroup").read())
    except OSError:
        return None
    return m.group(1) if m else None
"""

#: run on the node with `python3 - NAME MOUNT` as a disk fault goes in: the units using the mounted
#: disk now, kept for RECOVER_PY (a daemon may die of the errors before the disk comes back).
NOTE_PY = _USERS_PY + r"""
os.makedirs(os.path.dirname(note), mode=0o700, exist_ok=True)
units = sorted({u for pid in holders() if (u := unit_of(pid))})
fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
os.write(fd, "\n".join(units).encode()); os.close(fd)
print(json.dumps(units))
"""

#: run on the node with `python3 - NAME DEVICE MOUNT` after the linear table is back: is the
#: filesystem usable? If not, kill what holds it, mount it anew, restart their units and those
#: NOTE_PY found using it when the fault went in. Prints JSON.
RECOVER_PY = _USERS_PY + r"""
def sh(*a):
    return subprocess.run(a, capture_output=True, text=True, timeout=300)
units = set()
try:
    fd = os.open(note, os.O_RDONLY | os.O_NOFOLLOW)
    units = {u for u in os.read(fd, 65536).decode(errors="replace").split() if UNIT.fullmatch(u)}
    os.close(fd)
    os.unlink(note)
except OSError:
    pass
probe = os.path.join(mnt, ".storlab-probe")
try:
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.write(fd, b"x"); os.fsync(fd); os.close(fd); os.unlink(probe)
    print(json.dumps({"remounted": False, "units": [], "error": ""})); sys.exit(0)
except OSError as e:
    error = f"{mnt}: {e.strerror}"
for _ in range(10):
    pids = holders()
    if not pids:
        break
    for pid in pids:
        if (u := unit_of(pid)):
            units.add(u)
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    time.sleep(1)
for _ in range(30):
    if sh("umount", mnt).returncode == 0 or sh("mountpoint", "-q", mnt).returncode != 0:
        break
    time.sleep(1)
else:
    sys.exit(f"{mnt} stays mounted after the fault (still held: {sorted(holders())})")
r = sh("mount", mnt)
if r.returncode != 0:
    sys.exit(f"{mnt} does not mount again after the fault: {r.stderr.strip()}")
for u in sorted(units):
    sh("systemctl", "reset-failed", u)
    sh("systemctl", "restart", u)
print(json.dumps({"remounted": True, "units": sorted(units), "error": error}))
"""


@dataclass(frozen=True)
class Recovered:
    """What dm_restore() found and did: the filesystem had shut down (``error``: what the probe met)
    and was mounted anew, ``units`` restarted."""
    remounted: bool
    units: tuple[str, ...]
    error: str


def parse_recovered(out: str) -> Recovered:
    d = json.loads(out.strip().splitlines()[-1])
    return Recovered(bool(d["remounted"]), tuple(str(u) for u in d["units"]), str(d["error"]))


def _whole(value: float, low: float, high: float, what: str) -> str:
    """``value`` (checked as it is given) rounded to a whole number for a device-mapper table."""
    number(value, low, high, what)
    return number(round(value), low, high, what)


class DiskVerbs(NodeVerbs):
    def _dm_disk(self, disk: str) -> DiskPlan:
        d = next((x for x in self.spec.disks if x.name == disk), None)
        if d is None or not d.mount or d.filesystem == "none" or not d.device:
            usable = ", ".join(x.name for x in self.spec.disks if x.mount and x.device and x.filesystem != "none")
            raise HarnessError(f"{self.name}: {disk!r} is not a mounted data disk on a block device "
                               f"({usable or 'none: containers get filesystems, not disks'})")
        if not self.run(["dmsetup", "info", d.dm_name], timeout=30).ok:
            raise HarnessError(f"{self.name}: disk {disk} has no device-mapper device {d.dm_name} (a lab brought "
                               "up by an older storlab): take the lab down and up again")
        return d

    def _sectors(self, d: DiskPlan) -> int:
        out = self.succeed(["blockdev", "--getsz", str(d.device)], timeout=30).strip()
        if not out.isdigit():
            raise HarnessError(f"{self.name}: blockdev --getsz {d.device} answered {out[:80]!r}")
        return int(out)

    def _load(self, d: DiskPlan, table: str, module: str | None = None, lockfs: bool = True) -> None:
        """``table`` (device-mapper lines, on stdin) in place of the device's own, suspended for the
        swap; a failed load must not leave the device suspended (every I/O on it would wait).
        ``lockfs`` False: a filesystem that shut itself down cannot be frozen for the suspend."""
        self.succeed(["sh", "-c", ('[ -z "$2" ] || modprobe "$2"; dmsetup suspend $3 "$1" && '
                                   '{ dmsetup load "$1"; rc=$?; dmsetup resume "$1"; exit $rc; }'),
                      "sh", d.dm_name, module or "", "" if lockfs else "--nolockfs"], input=table, timeout=120)

    def _fault(self, d: DiskPlan, table: str, module: str | None = None) -> None:
        """``table`` in place of the linear one, the units using the disk noted first (NOTE_PY)."""
        self.succeed(["python3", "-", d.dm_name, str(d.mount)], input=NOTE_PY, timeout=120)
        self._load(d, table, module)

    def flakey(self, disk: str, up_s: float, down_s: float, mode: str = "error") -> None:
        """dm-flakey under the mounted data disk ``disk``: it works for ``up_s`` seconds, then does
        ``mode`` (MODES) for ``down_s`` seconds, over and over, until dm_restore()."""
        if mode not in MODES:
            raise HarnessError(f"flakey: mode {mode!r} is not one of {', '.join(MODES)}")
        # whole seconds: dm-flakey's unit
        up, down = _whole(up_s, 0, 3600, "flakey up (s)"), _whole(down_s, 1, 3600, "flakey down (s)")
        d = self._dm_disk(disk)
        self.timeline.mark(f"flakey {disk} on {self.name}: up {up}s, down {down}s ({mode})")
        self._fault(d, f"0 {self._sectors(d)} flakey {d.device} 0 {up} {down} {MODES[mode]}".strip() + "\n",
                    "dm_flakey")

    def delay_disk(self, disk: str, delay_ms: float) -> None:
        """dm-delay under the mounted data disk ``disk``: every read and write waits ``delay_ms``
        (a slow or overloaded disk), until dm_restore()."""
        ms = _whole(delay_ms, 1, 60000, "disk delay (ms)")
        d = self._dm_disk(disk)
        self.timeline.mark(f"delay {disk} on {self.name}: {ms} ms")
        self._fault(d, f"0 {self._sectors(d)} delay {d.device} 0 {ms}\n", "dm_delay")

    def bad_blocks(self, disk: str, count: int, sectors: int = 128) -> list[tuple[int, int]]:
        """``count`` ranges of ``sectors`` bad sectors spread over the middle of the mounted data disk
        ``disk`` (reads and writes there fail with EIO; the start, where the filesystem keeps its
        superblock and log, is left alone), until dm_restore(). device-mapper's error target over
        each range: Debian's kernels have no dm-dust (CONFIG_DM_DUST), which fails reads only.
        Returns the (first sector, length) of each range."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1024:
            raise HarnessError(f"bad blocks: count {count!r} is not a whole number from 1 to 1024")
        if isinstance(sectors, bool) or not isinstance(sectors, int) or not 8 <= sectors <= 1 << 20:
            raise HarnessError(f"bad blocks: {sectors!r} sectors per range is not a whole number from 8 to 1048576")
        d = self._dm_disk(disk)
        total = self._sectors(d)
        lo, hi = total // 5, total * 4 // 5
        step = (hi - lo) // count
        if step < sectors:
            raise HarnessError(f"bad blocks: {count} ranges of {sectors} sectors do not fit in {d.name}")
        ranges = [(lo + i * step, sectors) for i in range(count)]
        lines, at = [], 0
        for start, n in ranges:
            lines.append(f"{at} {start - at} linear {d.device} {at}")
            lines.append(f"{start} {n} error")
            at = start + n
        lines.append(f"{at} {total - at} linear {d.device} {at}")
        self.timeline.mark(f"bad blocks on {disk} of {self.name}: {count} x {sectors} sectors")
        self._fault(d, "\n".join(lines) + "\n")
        return ranges

    def dm_restore(self, disk: str) -> Recovered:
        """The disk's linear table back, after flakey(), delay_disk() or bad_blocks(); a filesystem
        that shut itself down is mounted anew (see the module)."""
        d = self._dm_disk(disk)
        self.timeline.mark(f"restore {disk} on {self.name} (linear)")
        self._load(d, f"0 {self._sectors(d)} linear {d.device} 0\n", lockfs=False)
        done = parse_recovered(self.succeed(["python3", "-", d.dm_name, str(d.device), str(d.mount)],
                                            input=RECOVER_PY, timeout=600))
        if done.remounted:
            self.timeline.mark(f"{d.mount} on {self.name} had shut down ({done.error}): mounted anew, "
                               f"restarted {', '.join(done.units) or 'no unit'}")
        return done

    @contextlib.contextmanager
    def disk_flakey(self, disk: str, up_s: float, down_s: float, mode: str = "error") -> Iterator[Self]:
        self.flakey(disk, up_s, down_s, mode)
        try:
            yield self
        finally:
            self.dm_restore(disk)
