"""A node's system fault verbs: the filesystem under a data path filled (disk-full) and its wall
clock skewed. Both run on the node as root over ssh (what the node's files and clock do is the
node's business); every value on their command lines is checked or written by the code. Mixed
into `Node` through FaultVerbs."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from harness.errors import HarnessError
from harness.nodes.verbs import NodeVerbs, data_path, number

#: the file fill() makes at the mount point of the filesystem it fills
FILL_NAME = ".storlab-fill"
#: run on the node with `python3 - MODE MOUNT LEAVE` (the code on stdin, the data in argv): refuse a
#: MOUNT that is not mounted now (filling the directory would fill the filesystem under it: a
#: container's root is the host's own disk), the root and memory-backed filesystems (tmpfs would
#: fill the node's memory); then preallocate what root can still write (f_bfree: ext4's reserved
#: blocks included, which root may use; an unprivileged container's root cannot, and stops at
#: ENOSPC), and write zeros in smaller and smaller pieces until only LEAVE bytes are left or the
#: filesystem says ENOSPC. Prints what it did as JSON.
FILL_PY = r"""
import errno, json, os, sys
mode, mnt, leave = sys.argv[1], sys.argv[2], int(sys.argv[3])
types = [ln.split()[2] for ln in open("/proc/self/mounts") if ln.split()[1] == mnt]
if not types:
    sys.exit(f"refusing to fill {mnt}: nothing is mounted there")
fstype = types[-1]
if mnt == "/" or fstype in ("tmpfs", "ramfs", "devtmpfs", "overlay", "proc", "sysfs", "cgroup2"):
    sys.exit(f"refusing to fill {mnt} ({fstype}): not a data disk")
f = os.path.join(mnt, FILL_NAME)
def free():
    s = os.statvfs(mnt)
    return s.f_bfree * s.f_frsize, s.f_bavail * s.f_frsize, s.f_frsize, s.f_blocks * s.f_frsize
if mode == "unfill":
    if os.path.lexists(f):
        os.unlink(f)  # a link planted there is removed, never followed
else:
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        room, _, bs, cap = free()
        if room - leave > 0:
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, room - leave)
            except OSError:
                pass  # ENOSPC for the metadata it needs, or no fallocate here: written below
        chunk, written = 1 << 20, 0
        while written < cap:
            n = min(chunk, (free()[0] - leave) // bs * bs)
            if n < bs:
                break
            try:
                written += os.write(fd, bytes(n))
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                if chunk <= bs:
                    break
                chunk = max(bs, chunk // 16)
        try:
            os.fsync(fd)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
    finally:
        os.close(fd)
size = os.lstat(f).st_size if os.path.lexists(f) else 0
room, avail, _, _ = free()
print(json.dumps({"mount": mnt, "fstype": fstype, "size": size, "free": room, "avail": avail}))
""".replace("FILL_NAME", repr(FILL_NAME))
#: `python3 -c CLOCK_PY shift SECONDS` moves the wall clock by SECONDS from what it reads (read and
#: set within microseconds, so a slow ssh round trip adds no error); `set EPOCH` sets it
CLOCK_PY = ("import sys, time\n"
            "now = time.clock_gettime(time.CLOCK_REALTIME)\n"
            "t = now + float(sys.argv[2]) if sys.argv[1] == 'shift' else float(sys.argv[2])\n"
            "time.clock_settime(time.CLOCK_REALTIME, t)\n")
#: `python3 -c STROBE_PY DELTA PERIOD_MS`: the clock jumps DELTA seconds ahead, then back, every
#: PERIOD_MS (Jepsen's strobe-time) until SIGTERM, which leaves it where it would have been
STROBE_PY = ("import signal, sys, time\n"
             "delta, period = float(sys.argv[1]), float(sys.argv[2]) / 1000\n"
             "ahead = False\n"
             "def jump(sign):\n"
             "    time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + sign * delta)\n"
             "def stop(*_):\n"
             "    if ahead:\n"
             "        jump(-1)\n"
             "    sys.exit(0)\n"
             "signal.signal(signal.SIGTERM, stop)\n"
             "while True:\n"
             "    jump(-1 if ahead else 1)\n"
             "    ahead = not ahead\n"
             "    time.sleep(period)\n")
#: the transient unit the strobe runs in on the node
STROBE_UNIT = "storlab-clock-strobe.service"
#: time sync daemons a node may run: stopped while its clock is skewed (they would undo it)
TIME_SYNC = ("systemd-timesyncd.service", "chrony.service", "ntpsec.service", "ntp.service", "openntpd.service")
_SYNC_STOP = (f"for u in {' '.join(TIME_SYNC)}; do if systemctl is-active --quiet \"$u\"; "
              "then systemctl stop \"$u\" || exit 1; fi; done")
_SYNC_START = (f"for u in {' '.join(TIME_SYNC)}; do if systemctl is-enabled --quiet \"$u\" 2>/dev/null; "
               "then systemctl start \"$u\" || exit 1; fi; done")
#: a skew beyond a year is no clock fault storlab means to give
MAX_SKEW = 366 * 86400.0


@dataclass(frozen=True)
class Filled:
    """What fill()/unfill() left, as the node reported it (bytes)."""
    mount: str
    fstype: str
    size: int   # the fill file's size
    free: int   # free to root (f_bfree)
    avail: int  # free to other users (f_bavail; ext4 keeps reserved blocks from them)


def parse_filled(text: str) -> Filled:
    """The fill script's JSON line (the node's answer: only reported, never put on a command line)."""
    try:
        d = json.loads(text.strip().splitlines()[-1])
        return Filled(str(d["mount"]), str(d["fstype"]), int(d["size"]), int(d["free"]), int(d["avail"]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise HarnessError(f"the fill script answered {text[-300:]!r}, not its JSON line") from None


class SystemVerbs(NodeVerbs):
    """disk-full and clock faults (see the module)."""

    def _disk_mount(self, path: str) -> str:
        """The mount point of the node's data disk that holds ``path``, from the plan: fill() fills
        data disks only (a bounded filesystem of the lab's own), never what else is under a path."""
        p = data_path(path)
        for d in self.spec.disks:
            if d.mount and d.filesystem != "none" and (p == d.mount or p.startswith(d.mount.rstrip("/") + "/")):
                return data_path(d.mount)
        mounts = ", ".join(d.mount for d in self.spec.disks if d.mount and d.filesystem != "none") or "none"
        raise HarnessError(f"{self.name}: {path} is on none of its data disks with a filesystem (mounted: {mounts})")

    def _fill_script(self, mode: str, path: str, leave: int, timeout: float) -> Filled:
        if isinstance(leave, bool) or not isinstance(leave, int) or not 0 <= leave < 1 << 60:
            raise HarnessError(f"fill: leave {leave!r} is not a whole number of bytes")
        argv = ["python3", "-", mode, self._disk_mount(path), str(leave)]
        return parse_filled(self.succeed(argv, input=FILL_PY, timeout=timeout))

    def fill(self, path: str, leave: int = 0, timeout: float = 600) -> Filled:
        """Fill the data disk holding ``path`` (a brick, an OSD's data directory, an export: a disk of
        the plan with a filesystem) with FILL_NAME at its mount point until ``leave`` bytes are free
        to root (0: full; ext4's reserved blocks are filled too, as root in the node may use them).
        Preallocated where the filesystem can (seconds, not a disk's worth of writes), written
        otherwise. A disk that is not mounted now is refused (its directory is on the root
        filesystem). Where data disks are sparse files on the host (lxc, incus here; a VM's qcow2),
        the host's disk then holds the disk's whole size."""
        self.timeline.mark(f"fill {path} on {self.name} (leave {leave} B)")
        done = self._fill_script("fill", path, leave, timeout)
        self.timeline.mark(f"filled {done.mount} ({done.fstype}) on {self.name}: {done.size} B written, "
                           f"{done.free} B free to root, {done.avail} B to others")
        return done

    def unfill(self, path: str) -> Filled:
        """Remove what fill() wrote on the data disk holding ``path`` (none there: no error). XFS frees
        a removed file's blocks in the background: the free space it reports may lag a moment."""
        self.timeline.mark(f"unfill {path} on {self.name}")
        return self._fill_script("unfill", path, 0, 120)

    @contextlib.contextmanager
    def disk_filled(self, path: str, leave: int = 0) -> Iterator[Self]:
        self.fill(path, leave)
        try:
            yield self
        finally:
            self.unfill(path)

    def skew_clock(self, seconds: float) -> None:
        """Move the node's wall clock by ``seconds`` (negative: back), time sync daemons stopped
        first (none is in the golden image; a role may bring one). The shift is made on the node
        from its own reading, so it is exact whatever the ssh round trip costs (seconds under TCG)."""
        s = number(seconds, -MAX_SKEW, MAX_SKEW, "clock skew (s)")
        self.timeline.mark(f"clock {self.name} {float(s):+g}s")
        self.succeed(f"{_SYNC_STOP} && {shlex.join(['python3', '-c', CLOCK_PY, 'shift', s])}", timeout=120)

    def restore_clock(self, skew: float | None = None) -> None:
        """Undo skew_clock(): shift the clock back by ``skew`` when given (exact: the node's clock is
        where it would have been), else set it to the host's time (off by the time the command takes
        to reach the node: milliseconds on a container, up to seconds on a VM under TCG); then start
        the time sync daemons the node has enabled."""
        back = None
        if skew is not None:
            number(skew, -MAX_SKEW, MAX_SKEW, "clock skew (s)")  # a number, before it is negated
            back = number(-skew, -MAX_SKEW, MAX_SKEW, "clock skew (s)")
        self.timeline.mark(f"clock {self.name} restored ({f'shift {back}s' if back else 'host time'})")
        # the host's time is read last, right before it is sent
        args = ["shift", back] if back is not None else ["set", number(time.time(), 0, 1 << 40, "host time")]
        self.succeed(f"{shlex.join(['python3', '-c', CLOCK_PY, *args])} && {_SYNC_START}", timeout=120)

    def strobe_clock(self, delta: float, period_ms: float) -> None:
        """The node's clock jumps ``delta`` seconds ahead and back every ``period_ms`` until
        unstrobe_clock() (time sync daemons stopped first), in a transient unit on the node."""
        d, p = number(delta, 0.001, 3600, "strobe delta (s)"), number(period_ms, 10, 60000, "strobe period (ms)")
        self.timeline.mark(f"clock strobe {self.name} +-{d}s every {p} ms")
        run = shlex.join(["systemd-run", "--unit", STROBE_UNIT, "--collect", "-p", "KillSignal=SIGTERM",
                          "python3", "-c", STROBE_PY, d, p])
        self.succeed(f"{_SYNC_STOP} && {{ systemctl reset-failed {STROBE_UNIT} 2>/dev/null; {run}; }}", timeout=120)

    def unstrobe_clock(self) -> None:
        """Stop the strobe (its SIGTERM handler leaves the clock where it would have been), then
        start the time sync daemons the node has enabled."""
        self.timeline.mark(f"clock strobe {self.name} stopped")
        self.succeed(f"systemctl stop {STROBE_UNIT} 2>/dev/null; {_SYNC_START}", timeout=120)

    @contextlib.contextmanager
    def clock_skewed(self, seconds: float) -> Iterator[Self]:
        self.skew_clock(seconds)
        try:
            yield self
        finally:
            self.restore_clock(seconds)
