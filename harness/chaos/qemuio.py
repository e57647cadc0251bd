"""Writers and readers through qemu's own block drivers: one long-lived `qemu-io` process per
client, fed commands on its stdin, so a chaos workload on the KVM host goes through the very
client a guest's disk would (qemu's gluster driver on libgfapi, rbd on librbd, iscsi on libiscsi,
nfs on libnfs), with its reconnects, timeouts and caches.

Writes are `write -f` (Force Unit Access; where a driver has none, qemu's block layer flushes
after the write) on an image opened with cache=none: "wrote" means durable as far as the client
was told. A command that does not answer within its timeout kills the process (the write is then
in doubt) and the next one starts a new client.

qemu's gluster driver gives an image up after a failed flush (every later request: ENOMEDIUM,
"No medium found"), because the data gfapi held may be gone: a guest's disk stays dead until its
qemu restarts. The writer then starts a new client, as an operator or an HA manager restarting
the guest would (measured: without it one quorum loss stalled the libgfapi writer for the rest
of a run, 79 s).

Everything that reaches qemu-io's option string or command line is checked against a pattern:
option keys and values from the plan, the run directory's block file path, and the `--object`s
a driver's options refer to. A secret reaches a client in a 0600 file of the run directory only,
never in argv: a CHAP password as a `secret` object read from its file (`file=PATH`), a cephx key
in the keyring that the client's ceph.conf (`conf=PATH`) names."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from harness.chaos.checker import Unreadable
from harness.chaos.ledger import Intent, block_digest, encode_block
from harness.errors import HarnessError

PROMPT = b"qemu-io> "
#: what may appear in an --image-opts key or value (a comma would start another option)
_OPT_KEY = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_OPT_VALUE = re.compile(r"^[A-Za-z0-9._/:@-]{1,255}$")
#: what may appear in a path qemu-io reads a block from (its command line splits on whitespace)
_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,4000}$")
_HEX_LINE = re.compile(rb"^[0-9a-f]{8}:  ((?:[0-9a-f]{2} ){1,16})")
#: the QOM objects a client may be given (qemu-io --object): a secret, read from a file
OBJECT_TYPES = frozenset({"secret"})
#: an object: qom-type, id and its properties (a driver option such as password-secret=ID names it)
QemuObject = Mapping[str, str | int]


def image_opts(opts: Mapping[str, str | int]) -> str:
    """The --image-opts string of ``opts`` (key -> value), each checked whole (HarnessError: not
    safe; fullmatch: `$` alone lets a final line break through)."""
    out = []
    for key, value in opts.items():
        text = str(value)
        if not _OPT_KEY.fullmatch(key) or not _OPT_VALUE.fullmatch(text):
            raise HarnessError(f"qemu-io option {key!r}={text!r} is not a safe block-driver option")
        out.append(f"{key}={text}")
    return ",".join(out)


def object_args(objects: Iterable[QemuObject]) -> list[str]:
    """qemu-io's `--object` arguments for ``objects``, each of a type in OBJECT_TYPES with an id
    and every key and value checked as image_opts checks them (HarnessError: not safe)."""
    out = []
    for obj in objects:
        if obj.get("qom-type") not in OBJECT_TYPES or "id" not in obj:
            raise HarnessError(f"qemu-io object {dict(obj)!r}: needs an id and a qom-type of {sorted(OBJECT_TYPES)}")
        out += ["--object", image_opts(obj)]
    return out


class QemuIo:
    """One qemu-io process on the image ``opts`` describe (raw, cache=none unless ``cache`` says
    writeback: a client library's own cache, e.g. librbd's, only works then), with the ``objects``
    its options refer to, its stderr (the client library's log) appended to ``log``; restarted
    after a command timed out."""

    def __init__(self, opts: Mapping[str, str | int], log: Path, timeout: float = 120,
                 objects: Sequence[QemuObject] = (), cache: str = "none") -> None:
        if cache not in ("none", "writeback"):
            raise HarnessError(f"qemu-io cache {cache!r}: none or writeback")
        self.argv = ["qemu-io", *object_args(objects), "-t", cache, "--image-opts",
                     image_opts({"driver": "raw", **opts})]
        self.log, self.timeout = log, timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as err:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True)
        self.proc = proc
        self._until_prompt(proc, self.timeout, "start")
        return proc

    def _until_prompt(self, proc: subprocess.Popen[bytes], timeout: float, what: str) -> bytes:
        assert proc.stdout is not None
        fd, buf, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
        while not buf.endswith(PROMPT):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.kill()
                raise TimeoutError(f"qemu-io: {what}: no answer within {timeout:g}s (client killed; see {self.log})")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.kill()
                raise OSError(f"qemu-io exited during {what} (see {self.log})")
            buf += chunk
        return buf[:-len(PROMPT)]

    def command(self, line: str, timeout: float | None = None) -> str:
        """Run one qemu-io command; its output (TimeoutError/OSError: the client died or hung)."""
        with self._lock:
            proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
            assert proc.stdin is not None
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            return self._until_prompt(proc, timeout or self.timeout, line.split(" ", 1)[0]).decode(errors="replace")

    def write(self, source: Path, offset: int, length: int, fua: bool = True) -> None:
        """Write ``length`` bytes of the file ``source`` at ``offset``, FUA unless ``fua`` is False
        (then "wrote" means the client took it: a guest disk with cache=unsafe). OSError: refused."""
        if not _PATH.fullmatch(str(source)):
            raise HarnessError(f"block file {source} has characters qemu-io's command line cannot take")
        out = self.command(f"write {'-f ' if fua else ''}-s {source} {int(offset)} {int(length)}")
        if f"wrote {length}/{length} bytes at offset {offset}" not in out:
            if "No medium found" in out:  # the driver gave the image up (see the module)
                self.kill()
                raise OSError(f"{out.strip().splitlines()[-1]} (the client gave the image up after a failed "
                              f"flush; restarted, as a guest would be)")
            raise OSError(out.strip().splitlines()[-1] if out.strip() else "write: no answer")

    def read(self, offset: int, length: int) -> bytes | Unreadable:
        out = self.command(f"read -v {int(offset)} {int(length)}").encode()
        if f"read {length}/{length} bytes at offset {offset}".encode() not in out:
            return Unreadable(out.decode(errors="replace").strip()[-300:] or "read: no answer")
        data = b"".join(bytes.fromhex(m.group(1).decode()) for line in out.splitlines()
                        if (m := _HEX_LINE.match(line)))
        return data if len(data) == length else Unreadable(f"read {len(data)} of {length} bytes")

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def close(self, flush: bool = True) -> None:
        """End the client: its writes flushed first (``flush``), then killed, not quit (libgfapi
        takes 10 s to say goodbye, twice per run)."""
        with self._lock:
            proc = self.proc
            if proc is not None and proc.poll() is None and flush:
                with contextlib.suppress(OSError, TimeoutError):
                    assert proc.stdin is not None
                    proc.stdin.write(b"flush\n")
                    proc.stdin.flush()
                    self._until_prompt(proc, self.timeout, "flush")
            self.kill()


class QemuIoWriter:
    """A LedgeredOp: ``writer``'s self-describing blocks at seq * size (wrapping at ``span``)
    written through ``client``; each block is first put in the private file ``scratch``.
    ``sync`` False: no FUA, acknowledged once the client took the write (cache=unsafe)."""

    def __init__(self, client: QemuIo, writer: str, target: str, scratch: Path, size: int = 4096,
                 span: int = 1 << 20, sync: bool = True) -> None:
        if span < size or span % size:
            raise ValueError(f"span {span}: a positive multiple of the block size {size}")
        encode_block(writer, 0, 0, size)  # refuses a bad writer id or size now, not in the thread
        self.client, self.writer, self.target, self.scratch = client, writer, target, scratch
        self.size, self.span, self.sync = size, span, sync

    def offset(self, seq: int) -> int:
        return seq * self.size % self.span

    def intent(self, seq: int) -> Intent:
        off = self.offset(seq)
        return Intent(self.writer, seq, self.target, off, self.size, block_digest(self.writer, seq, off, self.size))

    def __call__(self, seq: int) -> None:
        off = self.offset(seq)
        fd = os.open(self.scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(encode_block(self.writer, seq, off, self.size))
        self.client.write(self.scratch, off, self.size, fua=self.sync)


def read_blocks(opts: Mapping[str, str | int], log: Path, target: str,
                where: Iterable[tuple[str, int, int]], chunk: int = 256 * 1024,
                objects: Sequence[QemuObject] = ()) -> dict[tuple[str, int], bytes | Unreadable]:
    """Read back the locations of ``target`` through a new client on ``opts``: adjacent ones
    ``chunk`` bytes at a time, and one by one where a chunk cannot be read (an EIO costs one
    location). Not the writer's client: qemu's gluster driver, for one, refuses all I/O after a
    failed flush (ENOMEDIUM: the data it held may be gone), as a guest's disk would until
    restarted; what the storage kept is what a new client reads."""
    mine = sorted((o, n) for t, o, n in where if t == target)
    client = QemuIo(opts, log, objects=objects)
    out: dict[tuple[str, int], bytes | Unreadable] = {}
    try:
        for run in _runs(mine, chunk):
            start, end = run[0][0], run[-1][0] + run[-1][1]
            data = _read(client, start, end - start)
            for offset, size in run:
                out[(target, offset)] = data[offset - start:offset - start + size] if isinstance(data, bytes) \
                    else _read(client, offset, size)
    finally:
        client.close(flush=False)
    return out


def _runs(locs: list[tuple[int, int]], chunk: int) -> list[list[tuple[int, int]]]:
    """``locs`` (offset, size), sorted, in runs of adjacent locations at most ``chunk`` bytes long."""
    runs: list[list[tuple[int, int]]] = []
    for off, size in locs:
        if runs and runs[-1][-1][0] + runs[-1][-1][1] == off and off + size - runs[-1][0][0] <= chunk:
            runs[-1].append((off, size))
        else:
            runs.append([(off, size)])
    return runs


def _read(client: QemuIo, offset: int, size: int) -> bytes | Unreadable:
    try:
        return client.read(offset, size)
    except (OSError, TimeoutError) as exc:
        return Unreadable(str(exc))
