"""Browser terminals: one shell per (lab, node), ssh under a pseudo-terminal on this host, its
output fanned out to the websockets attached (the student's, and read-only the instructor's).

The ssh client runs with the lab's own config (address, key, pinned host key, an engine's proxy)
and with every way out of the node's shell switched off: no escape character (``~C`` would open
ssh's command line, where ``-L`` forwards a port of this host), no agent or X11 forwarding, no
forwardings at all, no local command. What the student types reaches the node's shell only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections import deque
from pathlib import Path

#: what a page attaching late (or the instructor) is shown first
SCROLLBACK = 64 * 1024


def ssh_argv(ssh_config: Path, node: str) -> list[str]:
    return ["ssh", "-F", str(ssh_config), "-tt", "-e", "none",
            "-o", "ClearAllForwardings=yes", "-o", "ForwardAgent=no", "-o", "ForwardX11=no",
            "-o", "PermitLocalCommand=no", "-o", "EnableEscapeCommandline=no",
            "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes", node]


class Session:
    def __init__(self, key: tuple[str, str], argv: list[str]) -> None:
        self.key, self.argv = key, argv
        self.subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.scrollback: deque[bytes] = deque()
        self.size = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.master = -1
        self.ended = asyncio.Event()

    async def start(self) -> None:
        self.master, slave = pty.openpty()
        self.resize(80, 24)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color", "LANG": "C.UTF-8",
               "HOME": os.environ.get("HOME", "/root")}
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdin=slave, stdout=slave, stderr=slave,
                                                         env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        if not data:
            self._end()
            return
        self.scrollback.append(data)
        self.size += len(data)
        while self.size > SCROLLBACK and len(self.scrollback) > 1:
            self.size -= len(self.scrollback.popleft())
        for q in list(self.subscribers):
            q.put_nowait(data)

    def _end(self) -> None:
        if self.ended.is_set():
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.ended.set()
        for q in list(self.subscribers):
            q.put_nowait(None)

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        q: asyncio.Queue[bytes | None] = asyncio.Queue()
        if self.scrollback:
            q.put_nowait(b"".join(self.scrollback))
        if self.ended.is_set():
            q.put_nowait(None)
        self.subscribers.add(q)
        return q

    def write(self, data: bytes) -> None:
        if not self.ended.is_set():
            with contextlib.suppress(OSError):
                os.write(self.master, data)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGWINCH)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
        self._end()


class Hub:
    """The open sessions, by (lab, node): a student's second tab shares the first one's shell."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], Session] = {}
        self.writers: dict[tuple[str, str], int] = {}

    async def open(self, lab: str, node: str, ssh_config: Path) -> Session:
        key = (lab, node)
        s = self.sessions.get(key)
        if s is None or s.ended.is_set():
            s = Session(key, ssh_argv(ssh_config, node))
            self.sessions[key] = s
            await s.start()
        self.writers[key] = self.writers.get(key, 0) + 1
        return s

    def watch(self, lab: str, node: str) -> Session | None:
        return self.sessions.get((lab, node))

    async def leave(self, s: Session) -> None:
        """A student's page let go of the session; the shell ends with the last one."""
        n = self.writers.get(s.key, 1) - 1
        self.writers[s.key] = n
        if n <= 0:
            self.writers.pop(s.key, None)
            if self.sessions.get(s.key) is s:
                del self.sessions[s.key]
            await s.close()

    async def close_lab(self, lab: str) -> None:
        """Every shell on ``lab`` ended (its seat released or reset: the next student starts afresh)."""
        for key in [k for k in self.sessions if k[0] == lab]:
            s = self.sessions.pop(key)
            self.writers.pop(key, None)
            await s.close()

    async def close_all(self) -> None:
        for key in list(self.sessions):
            await self.sessions.pop(key).close()
