"""A lab node as tests and roles see it: commands over ssh (whatever provider made it),
bounded waits, and fault verbs that go through the provider."""

from __future__ import annotations

import contextvars
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import log
from .errors import CommandError
from .model import NodePlan
from .run import CommandResult, run, wait_until

if TYPE_CHECKING:
    from .providers.base import Provider

Command = Sequence[str] | str
T = TypeVar("T")


def _remote(cmd: Command) -> str:
    """argv lists are quoted once, here; a plain string is a shell snippet run as is."""
    return cmd if isinstance(cmd, str) else shlex.join(str(a) for a in cmd)


class Node:
    def __init__(self, spec: NodePlan, ssh_config: Path, provider: Provider) -> None:
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.roles = spec.roles
        self.ssh_config = ssh_config
        self.provider = provider

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address}>"

    # -- commands ----------------------------------------------------------------------
    def ssh_argv(self, *extra: str) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", *extra, self.name]

    def run(self, cmd: Command, *, timeout: float = 120, input: str | None = None) -> CommandResult:
        remote = _remote(cmd)
        log.debug(f"{self.name}$ {log.redact(remote)}")
        res = run([*self.ssh_argv(), "--", remote], timeout=timeout, input=input)
        return res

    def succeed(self, cmd: Command, *, timeout: float = 120, input: str | None = None) -> str:
        res = self.run(cmd, timeout=timeout, input=input)
        if not res.ok:
            raise CommandError(res, f"{self.name}: `{log.redact(_remote(cmd))}` exited {res.rc}: "
                                    f"{log.redact((res.stderr or res.stdout).strip()[-800:])}")
        return res.stdout

    def close_connection(self) -> None:
        """End the persistent ssh connection to this node, if there is one (after a crash it
        would otherwise carry new commands into a dead TCP session until keepalives give up)."""
        if self.ssh_config.exists():
            run([*self.ssh_argv("-O", "exit")], timeout=10)

    def fail(self, cmd: Command, *, timeout: float = 120) -> str:
        """Run a command that must fail (e.g. access that must be refused)."""
        res = self.run(cmd, timeout=timeout)
        if res.ok:
            raise CommandError(res, f"{self.name}: `{_remote(cmd)}` succeeded but was expected to fail")
        return res.stderr + res.stdout

    def put(self, path: str, content: str, mode: str = "0644") -> None:
        """Write a file on the node; content travels on stdin (never in argv)."""
        self.succeed(["install", "-D", "-m", mode, "/dev/stdin", path], input=content)

    def ensure_file(self, path: str, content: str, mode: str = "0644") -> bool:
        """Write ``path`` only if its content differs; True when it changed."""
        if self.run(["cat", "--", path], timeout=30).stdout == content:
            return False
        self.put(path, content, mode)
        return True

    def get(self, path: str) -> str:
        return self.succeed(["cat", "--", path])

    def enable_units(self, units: Sequence[str], *, unmask: Sequence[str] = (), wait: str | None = None,
                     timeout: float = 120) -> None:
        """Unmask ``unmask`` + ``units``, enable and start ``units``, then wait for ``wait`` (default:
        the last unit) to be active. One ssh round trip and one daemon-reload: each reload costs
        seconds under TCG, and `unmask` + `enable --now` would do two."""
        names = list(dict.fromkeys([*unmask, *units]))
        parts = [["systemctl", "unmask", "--no-reload", *names], ["systemctl", "enable", "--no-reload", *units],
                 ["systemctl", "daemon-reload"], ["systemctl", "start", *units]]
        self.succeed(" && ".join(shlex.join(p) for p in parts), timeout=timeout)
        self.wait_for_unit(wait or units[-1], timeout=timeout)

    # -- waits -------------------------------------------------------------------------
    def wait_for_ssh(self, timeout: float = 120) -> None:
        def ok() -> bool:
            return self.run(["true"], timeout=15).ok
        wait_until(ok, timeout=timeout, what=f"ssh on {self.name} ({self.address})", interval=0.5,
                   terminal=lambda: None if self.provider.is_running(self.name) else f"{self.name} is not running")

    def wait_for_system(self, timeout: float = 180) -> str:
        """Wait until systemd finished booting; returns 'running' or 'degraded' (failed units logged)."""
        def state() -> str | None:
            r = self.run(["systemctl", "is-system-running"], timeout=15)
            s = r.stdout.strip()
            return s if s in ("running", "degraded") else None
        s = wait_until(state, timeout=timeout, what=f"systemd on {self.name} to finish booting")
        if s == "degraded":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], timeout=15).stdout.strip()
            log.info(f"{self.name}: systemd degraded; failed units: {failed.replace(chr(10), '; ')}")
        return s

    def wait_for_unit(self, unit: str, timeout: float = 120) -> None:
        """Wait for a unit to be active; fail at once if it enters 'failed'."""
        def active() -> bool:
            return self.run(["systemctl", "is-active", unit], timeout=15).stdout.strip() == "active"

        def failed() -> str | None:
            if self.run(["systemctl", "is-failed", unit], timeout=15).stdout.strip() == "failed":
                status = self.run(["systemctl", "status", "--no-pager", "-n", "20", unit], timeout=15).stdout
                return f"unit {unit} failed:\n{status}"
            return None
        wait_until(active, timeout=timeout, what=f"unit {unit} on {self.name}", terminal=failed)

    def wait_until_succeeds(self, cmd: Command, timeout: float = 60, what: str = "") -> str:
        def attempt() -> str | None:
            r = self.run(cmd, timeout=min(30, timeout))
            if not r.ok:
                raise CommandError(r)
            return r.stdout or "ok"
        return wait_until(attempt, timeout=timeout, what=what or f"`{_remote(cmd)}` on {self.name}")

    # -- faults (the lab's fault API logs them on the timeline) ------------------------
    def is_up(self) -> bool:
        return self.provider.is_running(self.name)

    def crash(self) -> None:
        self.provider.crash(self.name)
        self.close_connection()

    def set_link(self, up: bool, network: str | None = None) -> None:
        for net in ([network] if network else list(self.spec.addresses)):
            self.provider.set_link(self.name, net, up)

    def testinfra(self) -> Any:
        """A testinfra host for this node (ssh backend, the lab's ssh config)."""
        import testinfra
        return testinfra.get_host(f"ssh://{self.name}", ssh_config=str(self.ssh_config))



def on_each(nodes: Sequence[Node], fn: Callable[[Node], T], what: str) -> list[T]:
    """Run ``fn`` on every node at once, each in its own logged step ("NODE: what"); results in
    node order. Every node finishes before the first failure is raised (no half-started threads
    left behind): under TCG a role's per-node work is minutes of waiting on the guest, which
    nodes can do side by side."""
    def one(node: Node) -> T:
        with log.step(f"{node.name}: {what}"):
            return fn(node)
    if len(nodes) <= 1:
        return [one(n) for n in nodes]
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="storlab-node") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, n) for n in nodes]
        errors = [f.exception() for f in futures]
    for exc in errors:
        if exc is not None:
            raise exc
    return [f.result() for f in futures]
