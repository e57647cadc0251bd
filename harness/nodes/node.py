"""A lab node as tests and roles see it: commands over ssh (whatever provider made it),
bounded waits, and fault verbs that go through the provider."""

from __future__ import annotations

import contextlib
import contextvars
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness import log
from harness.backends.base import NodeView
from harness.errors import CommandError
from harness.nodes.faults import FaultVerbs, Timeline
from harness.plan.model import NodePlan
from harness.run import CommandResult, run, wait_until

if TYPE_CHECKING:
    import fabric

    from harness.providers.base import Provider

Command = Sequence[str] | str
T = TypeVar("T")
N = TypeVar("N", bound=NodeView)  # a Node, or what a role sees of one


def _remote(cmd: Command) -> str:
    """argv lists are quoted once, here; a plain string is a shell snippet run as is."""
    return cmd if isinstance(cmd, str) else shlex.join(str(a) for a in cmd)


class Node(FaultVerbs):
    """A lab node: commands over ssh, bounded waits, files; fault verbs from FaultVerbs."""

    def __init__(self, spec: NodePlan, ssh_config: Path, provider: Provider, timeline: Timeline) -> None:
        self.spec = spec
        self.timeline = timeline
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

    def enable_units(self, units: Sequence[str], *, unmask: Sequence[str] = (), mask: Sequence[str] = (),
                     wait: str | None = None, timeout: float = 120) -> None:
        """Mask ``mask`` (units that must not be pulled in), unmask ``unmask`` + ``units``, enable and
        start ``units``, then wait for ``wait`` (default: the last unit) to be active. One ssh round
        trip and one daemon-reload: each reload costs seconds under TCG, and `unmask` + `enable
        --now` would do two."""
        names = list(dict.fromkeys([*unmask, *units]))
        parts = [["systemctl", "mask", "--no-reload", *mask]] if mask else []
        parts += [["systemctl", "unmask", "--no-reload", *names], ["systemctl", "enable", "--no-reload", *units],
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

    # -- power: the fault verbs themselves are in FaultVerbs ------------------------------
    def is_up(self) -> bool:
        return self.provider.is_running(self.name)

    def wait_booted(self, timeout: float | None = None) -> float:
        """Wait for ssh and a booted systemd within the bound, counted from power-on; returns
        (and reports to the timeline) the boot time measured."""
        bound, why = (timeout, "given") if timeout else self.timeline.boot_bound(self.name)
        log.info(f"{self.name}: waiting up to {bound:.0f}s for ssh + systemd ({why})")
        t0 = self.provider.powered_at.get(self.name, time.monotonic())
        deadline = t0 + bound
        self.wait_for_ssh(timeout=max(1.0, deadline - time.monotonic()))
        self.wait_for_system(timeout=max(1.0, deadline - time.monotonic()))
        took = round(time.monotonic() - t0, 1)
        if self.name in self.provider.powered_at:  # a resumed `up` did not see the power-on: no figure
            self.timeline.booted(self.name, took)
        log.info(f"{self.name}: booted in {took:.0f}s")
        return took

    @contextlib.contextmanager
    def crashed(self) -> Iterator[Node]:
        """Powered off for the block, started again (and waited for) on exit."""
        with crashed(self):
            yield self

    def testinfra(self) -> Any:
        """A testinfra host for this node (ssh backend, the lab's ssh config)."""
        import testinfra
        return testinfra.get_host(f"ssh://{self.name}", ssh_config=str(self.ssh_config))

    def fabric(self, *, timeout: float = 120) -> fabric.Connection:
        """A fabric Connection to this node (file transfers, several commands), configured from the
        lab's ssh config as testinfra's is: address, user, ProxyCommand, ConnectTimeout, and only
        the lab's own key (IdentitiesOnly: no agent, no ~/.ssh keys). Paramiko reads the key file
        itself: it is never in argv or a log. Host keys are checked against the lab's known_hosts
        (ssh learnt them at bring-up); an unknown or changed key is refused. Each command has
        ``timeout`` seconds. Paramiko has no ControlMaster, so this is a connection of its own:
        use it as `with node.fabric() as c:` so it closes."""
        import fabric  # deferred: paramiko and cryptography cost every CLI start ~0.3 s
        import paramiko

        cfg = paramiko.SSHConfig.from_path(str(self.ssh_config))
        # lazy: the lab's ssh config only; no /etc/ssh/ssh_config, ~/.ssh/config or ~/.fabric.yaml
        # no stdin: a command must not wait on (or read) the test runner's input
        config = fabric.Config(ssh_config=cfg, lazy=True,
                               overrides={"timeouts": {"command": timeout}, "run": {"in_stream": False}})
        conn = fabric.Connection(self.name, config=config,
                                 connect_kwargs={"allow_agent": False, "look_for_keys": False})
        known = cfg.lookup(self.name).get("userknownhostsfile")
        if known and Path(known).exists():
            conn.client.get_host_keys().load(known)  # read only: nothing is written back
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        log.debug(f"{self.name}: fabric connection to {conn.user}@{conn.host} (ssh config {self.ssh_config})")
        return conn


def on_each(nodes: Sequence[N], fn: Callable[[N], T], what: str) -> list[T]:
    """Run ``fn`` on every node at once, each in its own logged step ("NODE: what"); results in
    node order. Every node finishes before the first failure is raised (no half-started threads
    left behind): under TCG a role's per-node work is minutes of waiting on the guest, which
    nodes can do side by side."""
    def one(node: N) -> T:
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


@contextlib.contextmanager
def crashed(*nodes: Node) -> Iterator[tuple[Node, ...]]:
    """Hard power-off ``nodes`` (in order) for the block; on exit they are powered on together
    and each waited for within its own boot bound, side by side."""
    for n in nodes:
        n.crash()
    try:
        yield nodes
    finally:
        for n in nodes:
            n.power_on()
        on_each(list(nodes), lambda n: n.wait_booted(), "restart")


@contextlib.contextmanager
def partition(*groups: Sequence[Node], direction: str = "both") -> Iterator[None]:
    """Cut traffic between groups of nodes; ssh from the host stays. ``direction`` 'both' (blackhole
    routes on each node) cuts every group from every other. One way, always where the packets
    arrive (nftables input rules: Node.block direction 'in'), so they are lost on the way as in a
    network, where a drop on the sender's output hook would hand it EPERM at once (measured: a
    UDP sendto failed with "Operation not permitted"): 'out', what the first group sends the
    others is lost (the others drop it; it still hears them); 'in', what the others send it is lost."""
    addrs_of = [[a for h in g for a in h.spec.addresses.values()] for g in groups]
    if direction == "both":
        cuts = [(member, [a for gj, other in enumerate(addrs_of) if gj != gi for a in other])
                for gi, g in enumerate(groups) for member in g]
    elif direction == "out":
        cuts = [(member, addrs_of[0]) for g in groups[1:] for member in g]
    else:
        cuts = [(member, [a for other in addrs_of[1:] for a in other]) for member in (groups[0] if groups else ())]
    how = "both" if direction == "both" else "in"
    done: list[tuple[Node, list[str]]] = []
    try:
        for member, addrs in cuts:
            done.append((member, addrs))
            member.block(addrs, direction=how)
        yield
    finally:
        for member, addrs in done:
            member.block(addrs, on=False, direction=how)
