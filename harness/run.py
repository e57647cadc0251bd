"""Run local commands: argv lists, a timeout on every call, one result type, secrets masked."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from harness import log
from harness.errors import CommandError, WaitTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def command(self) -> str:
        return log.redact(shlex.join(self.argv))

    def __str__(self) -> str:
        tail = (self.stderr.strip() or self.stdout.strip())[-800:]
        return log.redact(f"`{self.command}` exited {self.rc} after {self.duration:.1f}s: {tail}")


def run(argv: Sequence[str], *, timeout: float = 120, input: str | None = None,
        check: bool = False, env: dict[str, str] | None = None, cwd: str | None = None) -> CommandResult:
    """Run ``argv`` locally. Secrets go through ``input`` (stdin), never argv."""
    argv = tuple(str(a) for a in argv)
    start = time.monotonic()
    log.debug(f"$ {log.redact(shlex.join(argv))}")
    try:
        p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                           env=env, cwd=cwd, check=False)
        res = CommandResult(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - start)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        res = CommandResult(argv, 124, out, f"timed out after {timeout}s", time.monotonic() - start)
    except FileNotFoundError:
        res = CommandResult(argv, 127, "", f"{argv[0]}: command not found", 0.0)
    if not res.ok:
        log.debug(f"  -> rc={res.rc} {log.redact(res.stderr.strip()[-400:])}")
    if check and not res.ok:
        raise CommandError(res)
    return res


def succeed(argv: Sequence[str], **kw: object) -> str:
    return run(argv, check=True, **kw).stdout  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5,
               terminal: Callable[[], str | None] | None = None) -> T:
    """Poll ``predicate`` until it returns a truthy value, with a monotonic deadline.

    ``terminal`` may return a reason to give up at once (e.g. a unit entered 'failed').
    The last observation (return value or exception) is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # the predicate's failure is an observation, not the verdict
            last = exc
        if terminal is not None:
            reason = terminal()
            if reason:
                raise WaitTimeout(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {log.redact(repr(last))[:500]}")
        _pause(min(interval, max(0.0, deadline - time.monotonic())))


def _pause(seconds: float) -> None:
    # The one place the harness sleeps: between polls of a bounded wait.
    import threading
    threading.Event().wait(seconds)
