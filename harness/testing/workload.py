"""Background I/O workloads for fault tests: a writer that records when each write was
acknowledged, so tests can measure stalls and prove no acknowledged write was lost. Given a
ledger (harness.chaos.ledger) the writer also records each write's intent and ack there, on the
host and fsync'd, for the chaos checker (harness.chaos.checker); `BlockFileWriter` writes the
self-describing blocks that checker reads back."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.chaos.availability import longest_gap
from harness.chaos.ledger import Intent, Ledger, LedgeredOp, block_digest, encode_block
from harness.chaos.ledger import read as read_ledger
from harness.errors import HarnessError, WaitTimeout
from harness.run import wait_until


@dataclass
class WriteLog:
    acked: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, sequence number)
    errors: list[tuple[float, str]] = field(default_factory=list)

    @classmethod
    def from_ledger(cls, path: Path, writer: str) -> WriteLog:
        """``writer``'s log as its ledger kept it (after the test process that wrote it died)."""
        records = read_ledger(path)
        acked = [(r["t"], r["seq"]) for r in records.of("ack") if r["w"] == writer]
        return cls(acked, [(r["t"], r.get("err", "")) for r in records.of("error") if r["w"] == writer])

    def max_gap(self, start: float, end: float) -> float:
        """Longest time without an acknowledged write inside [start, end]."""
        return longest_gap([t for t, _ in self.acked], start, end)

    def first_ack_after(self, t0: float) -> float | None:
        return next((t for t, _ in self.acked if t > t0), None)

    def since(self, t0: float) -> str:
        """What happened after ``t0``, for a failure message: counts and the last error."""
        acked = sum(1 for t, _ in self.acked if t > t0)
        errors = [(t, e) for t, e in self.errors if t > t0]
        last = f"; last error {errors[-1][0] - t0:.1f}s in: {errors[-1][1][:200]}" if errors else ""
        return f"{acked} writes acknowledged and {len(errors)} refused in the {time.monotonic() - t0:.1f}s since{last}"


class Writer:
    """Calls ``op(seq)`` in a loop on a thread; each return is one acknowledged write. With a
    ``ledger``, ``op`` describes its writes (a LedgeredOp) and each one's intent is in the ledger
    before it is issued, its ack after it returned (a failed write is retried with the same seq)."""

    def __init__(self, name: str, op: Callable[[int], None], interval: float = 0.05, ledger: Ledger | None = None) -> None:
        if ledger is not None and not isinstance(op, LedgeredOp):
            raise TypeError(f"writer {name}: a ledger needs an op that describes its writes (LedgeredOp), not {op!r}")
        self.name = name
        self.op = op
        self.interval = interval
        self.ledger = ledger
        self._ledgered = op if ledger is not None and isinstance(op, LedgeredOp) else None
        self.broken: Exception | None = None  # the ledger failed: the writer stopped
        self.log = WriteLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"writer-{name}", daemon=True)
        self.seq = 0
        self.in_flight: float | None = None  # when the write now under way started

    def describe(self, t0: float) -> str:
        busy = f"; the current write has been under way for {time.monotonic() - self.in_flight:.1f}s" \
            if self.in_flight is not None else ""
        return self.log.since(t0) + busy

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.in_flight = time.monotonic()
            intent = self._ledgered.intent(self.seq) if self._ledgered is not None else None
            try:
                self._note(intent, None)
                self.op(self.seq)
                self.log.acked.append((time.monotonic(), self.seq))
                self._note(intent, "ack")
                self.seq += 1
            except _LedgerFailed:
                return
            except Exception as exc:  # recorded: the test decides whether an error is acceptable
                self.log.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                try:
                    self._note(intent, f"{type(exc).__name__}: {exc}")
                except _LedgerFailed:
                    return
            finally:
                self.in_flight = None
            self._stop.wait(self.interval)

    def _note(self, intent: Intent | None, what: str | None) -> None:
        """The ledger's record of ``intent``: issued (``what`` None), "ack", or the error's text."""
        if intent is None or self.ledger is None:
            return
        try:
            if what is None:
                self.ledger.intend(intent)
            elif what == "ack":
                self.ledger.ack(intent.writer, intent.seq)
            else:
                self.ledger.error(intent.writer, intent.seq, what)
        except Exception as exc:  # the harness broke, not the storage: stop, and say so at stop()
            self.broken = exc
            raise _LedgerFailed from exc

    def wait_refused(self, since: float, timeout: float, what: str) -> None:
        """Until a write fails after ``since``; else an AssertionError saying what the writer saw."""
        self._wait(lambda: self.log.errors and self.log.errors[-1][0] > since, since, timeout, what, 0.5)

    def wait_acked(self, since: float, timeout: float, what: str, interval: float = 0.5) -> None:
        """Until a write is acknowledged after ``since``; else an AssertionError saying what the writer saw."""
        self._wait(lambda: self.log.first_ack_after(since), since, timeout, what, interval)

    def _wait(self, seen: Callable[[], object], since: float, timeout: float, what: str, interval: float) -> None:
        try:
            wait_until(seen, timeout=timeout, interval=interval, what=what)
        except WaitTimeout:
            raise AssertionError(f"{what}: {self.describe(since)}") from None

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"writer {self.name} is hung: its last write has not returned after {timeout}s")
        if self.broken is not None:
            raise HarnessError(f"writer {self.name} stopped: its ledger failed: {self.broken}") from self.broken


class _LedgerFailed(Exception):
    pass


def block(seq: int, size: int = 4096) -> bytes:
    """Deterministic content for write ``seq``, so what was acknowledged can be re-derived."""
    return hashlib.sha256(f"storlab-{seq}".encode()).digest() * (size // 32)


def file_appender(path: str, size: int = 4096) -> Callable[[int], None]:
    """Append block(seq) and fsync: acknowledged means durable on the volume."""
    def op(seq: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, block(seq, size))
            os.fsync(fd)
        finally:
            os.close(fd)
    return op


class BlockFileWriter:
    """Writes ``writer``'s self-describing blocks (harness.chaos.ledger) into the file ``path`` at
    seq * size, wrapping at ``span`` bytes (None: never, an append log), then fsyncs: acknowledged
    means durable. ``target`` names the file in the ledger (default: ``path``)."""

    def __init__(self, path: str, writer: str, size: int = 4096, span: int | None = None,
                 target: str | None = None, sync: bool = True) -> None:
        if span is not None and (span < size or span % size):
            raise ValueError(f"span {span}: a positive multiple of the block size {size}")
        encode_block(writer, 0, 0, size)  # refuses a bad writer id or size now, not in the thread
        self.path, self.writer, self.size, self.span = path, writer, size, span
        self.target = target or path
        #: False: a write is acknowledged when pwrite returns, on a descriptor kept open (no fsync,
        #: no close: a guest disk with cache=unsafe); what a client cache holds may then be lost
        self.sync = sync
        self._fd: int | None = None

    def offset(self, seq: int) -> int:
        return seq * self.size % self.span if self.span else seq * self.size

    def intent(self, seq: int) -> Intent:
        off = self.offset(seq)
        return Intent(self.writer, seq, self.target, off, self.size, block_digest(self.writer, seq, off, self.size))

    def __call__(self, seq: int) -> None:
        off = self.offset(seq)
        data = encode_block(self.writer, seq, off, self.size)
        if not self.sync:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644) if self._fd is None else self._fd
            try:
                if os.pwrite(self._fd, data, off) != len(data):
                    raise OSError(f"short write at {off}")
            except OSError:
                self.close()
                raise
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if os.pwrite(fd, data, off) != len(data):
                raise OSError(f"short write at {off}")
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def expected_prefix_digest(count: int, size: int = 4096) -> str:
    h = hashlib.md5()
    for s in range(count):
        h.update(block(s, size))
    return h.hexdigest()


def qcow2_writer(path: str, span: int = 64 * 1024 * 1024, timeout: float = 60) -> Callable[[int], None]:
    """Write 64 KiB at a moving offset of a qcow2 image through qemu-io, the way a guest would."""
    def op(seq: int) -> None:
        off = (seq * 65536) % span
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {seq % 251} {off} 64k", "-c", "flush", path],
                       check=True, capture_output=True, timeout=timeout)
    return op


def check_appends(content: bytes, acked: list[int], attempted: int, size: int = 4096) -> list[str]:
    """Problems with an append log written by file_appender: every acknowledged block must be
    there, whole and in order; a block whose write failed (e.g. fsync refused after the data
    reached a brick) may be there too, possibly twice, but nothing else. [] means intact."""
    problems = []
    if len(content) % size:
        problems.append(f"torn write: {len(content)} bytes is not a multiple of {size}")
    known = {block(s, size): s for s in range(attempted + 1)}
    found = []
    for off in range(0, len(content) - len(content) % size, size):
        s = known.get(content[off:off + size])
        if s is None:
            problems.append(f"unknown data at offset {off}")
        else:
            found.append(s)
    missing, pos = [], 0
    for s in acked:  # acknowledged seqs must appear as a subsequence, in order
        try:
            pos = found.index(s, pos) + 1
        except ValueError:
            missing.append(s)
    if missing:
        problems.append(f"{len(missing)} acknowledged write(s) missing or out of order, first seq {missing[0]}")
    return problems


class Shell(Protocol):
    """Where a block device or file is written: a lab node (harness.nodes.node.Node)."""

    def succeed(self, cmd: Sequence[str] | str, *, timeout: float = ..., input: str | None = ...) -> str: ...


def write_direct(node: Shell, path: str, first: int, data: bytes, size: int = 4096, timeout: float = 120) -> None:
    """``data`` at block ``first`` of ``path`` (a device or a file) on ``node``, written through
    (O_DIRECT) and flushed: acknowledged means on the storage."""
    node.succeed(["sh", "-c", f'base64 -d | dd of="$1" bs={size} seek={first} count={len(data) // size} '
                  "iflag=fullblock oflag=direct conv=notrunc,fsync status=none", "sh", path],
                 input=base64.b64encode(data).decode(), timeout=timeout)


def read_direct(node: Shell, path: str, first: int, count: int, size: int = 4096, timeout: float = 120) -> bytes:
    """``count`` blocks from block ``first`` of ``path`` on ``node``, read past the page cache."""
    out = node.succeed(["sh", "-c", f'dd if="$1" bs={size} skip={first} count={count} iflag=direct status=none '
                        "| base64 -w0", "sh", path], timeout=timeout)
    return base64.b64decode(out)
