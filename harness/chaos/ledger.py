"""The write ledger: self-describing blocks (writer, sequence, offset, checksum) and an append-only
record on the host of every write's intent (before it is issued) and acknowledgement (after it
returned), with monotonic and wall times, plus the faults applied and their undoing. Each line is
JSON, written whole with one write(2) and fsync'd before the write it records goes on, so the
ledger survives a crash of the test process: a write whose ack line is missing was never
acknowledged as far as the checker knows (in doubt: it may be there, need not be).

Block layout (BLOCK_HEADER bytes, then a payload derived from writer and sequence):
magic "STLBLK01" | writer (16 bytes, NUL-padded UTF-8) | seq u64 | offset u64 | size u32 |
reserved u32 | digest (first 16 bytes of SHA-256 over the block with the digest zeroed)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness import __version__
from harness.errors import HarnessError

MAGIC = b"STLBLK01"
_HEAD = struct.Struct(">8s16sQQII16s")
BLOCK_HEADER = _HEAD.size  # 64
WRITER_MAX = 16


# -- blocks ---------------------------------------------------------------------------------
def _payload(writer: str, seq: int, size: int) -> bytes:
    seed = hashlib.sha256(f"storlab:{writer}:{seq}".encode()).digest()
    n = size - BLOCK_HEADER
    return (seed * (n // len(seed) + 1))[:n]


def _writer_bytes(writer: str) -> bytes:
    raw = writer.encode()
    if not raw or len(raw) > WRITER_MAX or b"\0" in raw:
        raise ValueError(f"writer id {writer!r}: 1 to {WRITER_MAX} bytes of UTF-8 without NUL")
    return raw


def encode_block(writer: str, seq: int, offset: int, size: int = 4096) -> bytes:
    """The block write ``seq`` of ``writer`` puts at ``offset``: deterministic, so the ledger needs
    only its digest, and self-describing, so a block read back says whose it is."""
    if size < BLOCK_HEADER or size % 8:
        raise ValueError(f"block size {size}: at least {BLOCK_HEADER} bytes, a multiple of 8")
    head = _HEAD.pack(MAGIC, _writer_bytes(writer), seq, offset, size, 0, bytes(16))
    body = _payload(writer, seq, size)
    digest = hashlib.sha256(head + body).digest()[:16]
    return head[:-16] + digest + body


def block_digest(writer: str, seq: int, offset: int, size: int = 4096) -> str:
    return encode_block(writer, seq, offset, size)[BLOCK_HEADER - 16:BLOCK_HEADER].hex()


@dataclass(frozen=True)
class Decoded:
    """What a block read back says it is. ``intact``: its digest matches its content."""
    writer: str
    seq: int
    offset: int
    size: int
    digest: str
    intact: bool


def decode_block(data: bytes) -> Decoded | None:
    """The block's own account of itself; None when ``data`` does not start with a block header
    (zeros, foreign data, a block overwritten from its start)."""
    if len(data) < BLOCK_HEADER or not data.startswith(MAGIC):
        return None
    _, writer, seq, offset, size, _, digest = _HEAD.unpack_from(data)
    try:
        name = writer.rstrip(b"\0").decode()
    except UnicodeDecodeError:
        return None
    blank = data[:BLOCK_HEADER - 16] + bytes(16) + data[BLOCK_HEADER:size]
    intact = len(data) >= size and hashlib.sha256(blank).digest()[:16] == digest
    return Decoded(name, seq, offset, size, digest.hex(), intact)


# -- the ledger file ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    """A write about to be issued: ``writer``'s ``seq``-th block, ``size`` bytes at ``offset`` of ``target``."""
    writer: str
    seq: int
    target: str
    offset: int
    size: int
    digest: str


@runtime_checkable
class LedgeredOp(Protocol):
    """A workload operation whose writes the ledger can describe before they are issued
    (harness.testing.workload.block_file_writer is one)."""

    def intent(self, seq: int) -> Intent: ...

    def __call__(self, seq: int) -> None: ...


class Ledger:
    """Appends records to ``path`` (JSON lines), each fsync'd before `record` returns (``sync``);
    safe to share between writer threads. A run's first line says what it is (`open`)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self.path, self.sync = path, sync
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @classmethod
    def open(cls, path: Path, *, seed: int | None = None, sync: bool = True, **about: Any) -> Ledger:
        """A ledger for a new run (appended to ``path``), its first record the run's seed, the
        storlab version and ``about`` (lab, workload...)."""
        ledger = cls(path, sync=sync)
        ledger.record("run", seed=seed, storlab=__version__, **about)
        return ledger

    def record(self, ev: str, **fields: Any) -> None:
        line = json.dumps({"ev": ev, "t": time.monotonic(), "wall": time.time(), **fields}, separators=(",", ":"))
        data = (line + "\n").encode()
        with self._lock:
            if os.write(self._fd, data) != len(data):  # a regular file takes it whole, or says why
                raise HarnessError(f"ledger {self.path}: short write")
            if self.sync:
                os.fsync(self._fd)

    def intend(self, i: Intent) -> None:
        self.record("intent", w=i.writer, seq=i.seq, target=i.target, off=i.offset, len=i.size, sum=i.digest)

    def ack(self, writer: str, seq: int) -> None:
        self.record("ack", w=writer, seq=seq)

    def error(self, writer: str, seq: int, text: str) -> None:
        self.record("error", w=writer, seq=seq, err=text[:500])

    def fault(self, event: int, kind: str, phase: str, what: str) -> None:
        """A fault applied (phase "start") or undone ("end"): the checker's fault windows."""
        self.record("fault", id=event, kind=kind, phase=phase, what=what)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Records:
    """A ledger read back: its records in order, and what could not be read (a torn last line
    after a crash is expected; torn lines elsewhere are not)."""
    path: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    torn: list[int] = field(default_factory=list)  # line numbers

    def of(self, ev: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.lines if r.get("ev") == ev)

    @property
    def header(self) -> Mapping[str, Any]:
        """The run's first record (seed, storlab version...), {} when the ledger has none."""
        return next(self.of("run"), {})

    @property
    def start(self) -> float:
        return self.lines[0]["t"] if self.lines else 0.0

    @property
    def end(self) -> float:
        return self.lines[-1]["t"] if self.lines else 0.0


_NEEDS = {"intent": ("w", "seq", "target", "off", "len", "sum"), "ack": ("w", "seq"), "error": ("w", "seq"),
          "fault": ("id", "kind", "phase")}


def read(path: Path) -> Records:
    """The ledger at ``path``: every whole record; a line that is not one is noted in ``torn``."""
    out = Records(str(path))
    with open(path, "rb") as fh:
        for no, raw in enumerate(fh, 1):
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                out.torn.append(no)
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("t"), int | float) or \
                    any(k not in rec for k in _NEEDS.get(str(rec.get("ev")), ())):
                out.torn.append(no)
                continue
            out.lines.append(rec)
    return out
