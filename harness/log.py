"""Nested, timed progress lines: terminal gets one line per step, the lab log gets everything.

Redaction happens at the source: ``RedactFilter`` rewrites every log record (its message, its
arguments, its exception text) before any handler formats it. It sits on the ``storlab`` logger,
on every handler storlab installs, and (harness/testing/plugin.py) on the handlers pytest puts on
the root logger (log capture, live log, log file), so that what pytest captures, prints and puts
in a JUnit file is redacted too. ``redact`` masks:
- every secret registered with ``mask()`` (CHAP passwords, cephx keys read from a lab...), longest
  first, so a secret that contains another is not left half-shown;
- private key blocks (``-----BEGIN ... PRIVATE KEY-----`` ... ``-----END ... PRIVATE KEY-----``,
  PEM and OpenSSH alike), also when a tail or a head of the text cut the block in two;
- anything shaped like a cephx key (``AQ`` + 36 base64 characters + ``==``) or an NVMe
  DH-HMAC-CHAP secret (``DHHC-1:NN:`` + base64 + ``:``).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: secrets shorter than this are not masked: a value of 1-3 characters would turn most words of a
#: log into stars (and where the stars fell would show the value); the backends generate 16 or more
MIN_SECRET = 4
MASK = "****"

_secrets: set[str] = set()
_ordered: list[str] = []  # _secrets, longest first
_secrets_lock = threading.Lock()
#: nesting of steps; a context variable, so steps run in worker threads (see node.on_each) nest
#: under the step that started them without disturbing each other
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("storlab_log_depth", default=0)
_t0 = time.monotonic()
_ids = itertools.count(1)
log = logging.getLogger("storlab")

_KEY_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----")
_KEY_END = re.compile(r"-----END ((?:[A-Z0-9]+ )*)PRIVATE KEY-----")
#: what a key body is made of: base64 and line breaks, also escaped ones (a repr()); no blanks,
#: so that masking back from an END stops at the words before the key
_KEY_BODY = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\\\r\n")
_CEPHX_KEY = re.compile(r"(?<![A-Za-z0-9+/])AQ[A-Za-z0-9+/]{36}==")
_DHCHAP_KEY = re.compile(r"DHHC-1:[0-9]{2}:[A-Za-z0-9+/]+=*:?")


def mask(secret: str) -> bool:
    """Register ``secret`` (surrounding white space ignored) for masking everywhere from now on.
    Values of fewer than MIN_SECRET characters are not masked (False)."""
    secret = secret.strip()
    if len(secret) < MIN_SECRET:
        return False
    with _secrets_lock:
        if secret not in _secrets:
            _secrets.add(secret)
            _ordered[:] = sorted(_secrets, key=len, reverse=True)
    return True


def _redact_keys(text: str) -> str:
    """Private key blocks: whole ones, one whose END a cut removed (masked to the end), and the
    body before an END whose BEGIN a cut removed (masked back to where the base64 starts)."""
    if "PRIVATE KEY-----" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        begin = _KEY_BEGIN.search(text, pos)
        end = _KEY_END.search(text, pos)
        if end is not None and (begin is None or end.start() < begin.start()):
            start = end.start()  # an END with no BEGIN before it: the body runs back from it
            while start > pos and text[start - 1] in _KEY_BODY:
                start -= 1
            out += [text[pos:start], MASK, end.group(0)]
            pos = end.end()
            continue
        if begin is None:
            out.append(text[pos:])
            return "".join(out)
        end = _KEY_END.search(text, begin.end())
        out += [text[pos:begin.end()], MASK]
        if end is None:
            return "".join(out)
        out.append(end.group(0))
        pos = end.end()


def redact(text: str) -> str:
    """``text`` without any registered secret, private key block or cephx key."""
    for s in list(_ordered):
        if s in text:
            text = text.replace(s, MASK)
    return _DHCHAP_KEY.sub(MASK, _CEPHX_KEY.sub(MASK, _redact_keys(text)))


def redact_data(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, tuples, strings, numbers) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value


class RedactFilter(logging.Filter):
    """Rewrites a record in place: its message with the arguments merged in, its exception and
    stack text, all redacted, so every handler after this one (and every formatter) sees only that."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it; nothing to rewrite
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactFilter()


def add_filter(handler: logging.Handler | logging.Logger) -> None:
    """Put the redaction filter on ``handler`` (or a logger), once."""
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(_FILTER)


add_filter(log)  # storlab's own records, whichever handler (ours, pytest's, a library user's) gets them


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(verbose: bool = False, logfile: Path | None = None) -> None:
    log.setLevel(logging.DEBUG)
    for h in list(log.handlers):
        if getattr(h, "_storlab", False):
            log.removeHandler(h)
    term = logging.StreamHandler(sys.stderr)
    term.setLevel(logging.DEBUG if verbose else logging.INFO)
    term.setFormatter(_Redacting("%(message)s"))
    term._storlab = True  # type: ignore[attr-defined]
    add_filter(term)
    log.addHandler(term)
    if logfile:
        add_logfile(logfile)


def add_logfile(logfile: Path) -> None:
    log.setLevel(logging.DEBUG)  # also when used as a library (pytest) without setup()
    logfile.parent.mkdir(parents=True, exist_ok=True)
    for h in log.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == logfile.resolve():
            return
    fh = logging.FileHandler(logfile)
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(_Redacting("%(asctime)s %(levelname)s %(message)s"))
    fh._storlab = True  # type: ignore[attr-defined]
    add_filter(fh)
    log.addHandler(fh)


#: a step that runs this long while nothing else is said says that it is still running (the
#: innermost open steps, once per QUIET seconds of silence): long work is never silent, and work that
#: says what it does is not interrupted
QUIET = 60.0
_TICK = 5.0


@dataclass(frozen=True)
class _Open:
    what: str
    start: float
    depth: int
    parent: int | None


_open: dict[int, _Open] = {}  # the steps running now, by id
_open_lock = threading.Lock()
_current: contextvars.ContextVar[int | None] = contextvars.ContextVar("storlab_log_step", default=None)
_said = [time.monotonic()]  # when the last progress line was said
_ticker: list[threading.Thread] = []


def _stamp() -> str:
    return f"[{time.monotonic() - _t0:7.1f}s]"


def _say(depth: int, msg: str) -> None:
    _said[0] = time.monotonic()
    log.info("%s %s%s", _stamp(), "  " * depth, msg)


def info(msg: str) -> None:
    _say(_depth.get(), msg)


def still_running(now: float) -> list[str]:
    """After QUIET seconds in which nothing was said: a line for each innermost open step (one that
    no open step runs under), said at its depth; nothing otherwise."""
    if now - _said[0] < QUIET:
        return []
    with _open_lock:
        steps = dict(_open)
    parents = {s.parent for s in steps.values()}
    lines = []
    for sid, s in sorted(steps.items(), key=lambda kv: kv[1].start):
        if sid not in parents:
            lines.append(f"{s.what}: still running after {now - s.start:.0f}s")
            _say(s.depth, lines[-1])
    return lines


def _tick() -> None:
    while True:
        time.sleep(_TICK)
        still_running(time.monotonic())


@contextlib.contextmanager
def _inside(what: str) -> Iterator[None]:
    """Step ``what`` open (for still_running) and one level deeper, until it ends however it ends."""
    sid = next(_ids)
    with _open_lock:
        _open[sid] = _Open(what, time.monotonic(), _depth.get(), _current.get())
        if not _ticker:
            _ticker.append(threading.Thread(target=_tick, name="storlab-still-running", daemon=True))
            _ticker[0].start()
    token, inside = _depth.set(_depth.get() + 1), _current.set(sid)
    try:
        yield
    finally:
        _current.reset(inside)
        _depth.reset(token)
        with _open_lock:
            _open.pop(sid, None)


def debug(msg: str) -> None:
    log.debug("%s %s%s", _stamp(), "  " * _depth.get(), msg)


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Log the start and end of a step with its duration; failures are logged with it."""
    info(f"{what} ...")
    start = time.monotonic()
    try:
        with _inside(what):
            yield
    except BaseException as exc:
        info(f"{what}: FAILED after {time.monotonic() - start:.1f}s ({type(exc).__name__})")
        raise
    info(f"{what}: done in {time.monotonic() - start:.1f}s")
