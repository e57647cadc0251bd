"""Nested, timed progress lines: terminal gets one line per step, the lab log gets everything.

Secrets registered with ``mask()`` are replaced by '****' in every line written.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_secrets: set[str] = set()
#: nesting of steps; a context variable, so steps run in worker threads (see node.on_each) nest
#: under the step that started them without disturbing each other
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("storlab_log_depth", default=0)
_t0 = time.monotonic()
log = logging.getLogger("storlab")


def mask(secret: str) -> None:
    if secret and len(secret) >= 4:
        _secrets.add(secret)


def redact(text: str) -> str:
    for s in _secrets:
        text = text.replace(s, "****")
    return text


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
    log.addHandler(fh)


def _stamp() -> str:
    return f"[{time.monotonic() - _t0:7.1f}s]"


def info(msg: str) -> None:
    log.info("%s %s%s", _stamp(), "  " * _depth.get(), msg)


def debug(msg: str) -> None:
    log.debug("%s %s%s", _stamp(), "  " * _depth.get(), msg)


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Log the start and end of a step with its duration; failures are logged with it."""
    info(f"{what} ...")
    start = time.monotonic()
    token = _depth.set(_depth.get() + 1)
    try:
        yield
    except BaseException as exc:
        _depth.reset(token)
        info(f"{what}: FAILED after {time.monotonic() - start:.1f}s ({type(exc).__name__})")
        raise
    _depth.reset(token)
    info(f"{what}: done in {time.monotonic() - start:.1f}s")
