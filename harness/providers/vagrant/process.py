"""Running vagrant: bounded and watched (python-vagrant builds the argv and parses its output, but
has no timeout), stopping a vagrant a killed `up` left running, and reading what went wrong in its log."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import log
from harness.errors import HarnessError, WaitTimeout
from harness.run import wait_until

POLL = 2.0


def vagrant_class() -> Any:
    try:
        import vagrant
    except ImportError as exc:
        raise HarnessError("python-vagrant is not installed (pip install python-vagrant)") from exc

    class Watched(vagrant.Vagrant):
        """python-vagrant builds the argv and parses machine-readable output; it has no timeout
        and swallows the process, so running the command is done here, bounded and watched."""

        watch: Any = None
        timeout: float = 600
        #: the running vagrant's process group id goes here, so a later `down` can stop a vagrant
        #: whose parent was killed (it runs in its own session and would carry on alone)
        pidfile: Path | None = None

        def _call_vagrant_command(self, args: list[str | None]) -> None:
            command = self._make_vagrant_command(args)  # type: ignore[no-untyped-call]
            with self.out_cm() as out:
                log.debug(f"$ {' '.join(command)} (in {self.root}, output in {getattr(out, 'name', '?')})")
                proc = subprocess.Popen(command, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
                if self.pidfile is not None:
                    self.pidfile.write_text(f"{proc.pid}\n")
                deadline = time.monotonic() + self.timeout
                try:
                    while True:
                        try:
                            rc = proc.wait(timeout=POLL)
                            break
                        except subprocess.TimeoutExpired:
                            pass
                        if self.watch is not None:
                            self.watch()  # raises to abort
                        if time.monotonic() > deadline:
                            raise HarnessError(f"`vagrant {' '.join(a for a in args if a)}` still running after "
                                               f"{self.timeout:.0f}s")
                except BaseException:
                    _kill_group(proc)
                    raise
                finally:
                    if self.pidfile is not None:
                        self.pidfile.unlink(missing_ok=True)
            if rc != 0:
                raise subprocess.CalledProcessError(rc, command)

    return Watched


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_orphan(pidfile: Path) -> str | None:
    """Stop the vagrant a killed `storlab up` left running (its pid file names the process group).
    Only a process that is still a vagrant in this lab directory is touched."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError, IndexError):
        pidfile.unlink(missing_ok=True)
        return None
    if cwd != str(pidfile.parent.parent) or not any(b"vagrant" in a for a in cmdline[:3]):
        pidfile.unlink(missing_ok=True)
        return None
    def gone() -> bool:
        try:  # a zombie has exited: its parent (now init) just has not reaped it yet
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return True
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        try:
            wait_until(gone, timeout=15, what=f"vagrant (pid {pid}) to exit after {sig.name}", interval=0.2)
            break
        except WaitTimeout:
            continue
    pidfile.unlink(missing_ok=True)
    return f"vagrant process group {pid}"


def file_cm(path: Path) -> Any:
    import vagrant
    return vagrant.make_file_cm(str(path))  # type: ignore[no-untyped-call]


def tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not written)"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")
    return text[-chars:] if text.strip() else f"({path} is empty)"


def vagrant_error(text: str, context: int = 3) -> str:
    """What went wrong in a vagrant log: the last run's final progress lines and every line
    after them except Ruby backtrace frames (vagrant puts the message above ~60 of those)."""
    last = text.rsplit("\n===== ", 1)[-1]
    lines = [ln for ln in last.splitlines() if ln.strip() and not re.match(r"\s*from /", ln)]
    progress = [i for i, ln in enumerate(lines) if ln.startswith(("==> ", "    "))]
    cut = progress[-1] + 1 if progress else 0
    before = [ln for ln in lines[:cut] if ln.startswith("==> ")][-context:]
    return "\n".join(before + lines[cut:])


def port_open(addr: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.0):
            return True
    except OSError:
        return False
