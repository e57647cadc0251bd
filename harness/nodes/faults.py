"""A node's fault verbs: power off and on, freeze, hang, cut links, stop, kill or pause services and
processes, each logged on the lab's fault timeline, with their context managers; the network verbs
that run on the node (block, netem), the system ones (disk-full, clock) and the disk ones
(dm-flakey) are mixed in from netfaults, sysfaults and diskfaults. One layer over the provider. Mixed into `Node`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Self

from harness.nodes import verbs
from harness.nodes.diskfaults import DiskVerbs
from harness.nodes.netfaults import NetVerbs
from harness.nodes.sysfaults import SystemVerbs
from harness.nodes.verbs import Timeline

__all__ = ["FaultVerbs", "Timeline"]


class FaultVerbs(NetVerbs, SystemVerbs, DiskVerbs):
    """The fault verbs of `Node` (as the NixOS test driver's `machine.crash()`: faults are node
    verbs). What they use of the node is declared in harness.nodes.verbs.NodeVerbs; `Node` defines it."""

    def crash(self) -> None:
        """Hard power-off: no shutdown, no flushing."""
        self.timeline.mark(f"crash {self.name}")
        self.provider.crash(self.name)
        self.close_connection()

    def power_on(self) -> None:
        """Power the node on (after crash()) without waiting; see start()."""
        self.timeline.mark(f"start {self.name}")
        self.close_connection()
        if not self.is_up():
            self.provider.start(self.name)

    def start(self, timeout: float | None = None) -> float:
        """Power on and wait until booted, within the node's boot bound (the lab derives it
        from the boot it measured; logged with its reason) unless ``timeout`` is given."""
        self.power_on()
        return self.wait_booted(timeout)

    def freeze(self) -> None:
        """Hang the node: its processes stop, its sockets stay open."""
        self.timeline.mark(f"freeze {self.name}")
        self.provider.freeze(self.name)

    def thaw(self) -> None:
        self.timeline.mark(f"thaw {self.name}")
        self.provider.thaw(self.name)

    def hang(self) -> None:
        """A faithful hang: frozen and silent. A frozen container's kernel (the host's) still answers
        ARP and TCP, so its peers would see resets and ACKs, never the silence of a hung machine:
        the provider also drops all of its lab traffic, from the host (the host's ssh to it times
        out too, as it would; unhang() goes through the provider, not ssh). On a VM, freeze is
        silent already (qemu stopped)."""
        self.timeline.mark(f"hang {self.name}")
        self.provider.hang(self.name)

    def unhang(self) -> None:
        self.timeline.mark(f"unhang {self.name}")
        self.provider.unhang(self.name)

    def set_link(self, up: bool, network: str | None = None) -> None:
        """Take the node's interface on ``network`` (default: every lab network) down or up."""
        self.timeline.mark(f"link {'up' if up else 'down'} {self.name} {network or '(all)'}")
        for net in ([network] if network else list(self.spec.addresses)):
            self.provider.set_link(self.name, net, up)

    # -- services and processes -----------------------------------------------------------------
    def stop_service(self, unit: str, kill: bool = False) -> None:
        u = verbs.unit(unit)
        self.timeline.mark(f"{'kill' if kill else 'stop'} {u} on {self.name}")
        self.succeed(["systemctl", "kill", "-s", "KILL", u] if kill else ["systemctl", "stop", u])

    def start_service(self, unit: str) -> None:
        u = verbs.unit(unit)
        self.timeline.mark(f"start {u} on {self.name}")
        self.succeed(["systemctl", "start", u])
        self.wait_for_unit(u)

    def pause_service(self, unit: str) -> None:
        """SIGSTOP to every process of the unit (a daemon that hangs with its sockets open: peers see
        its kernel answer and its timeouts run). Every process of its cgroup: glusterd.service holds
        glusterd and the brick (glusterfsd) and self-heal processes it started; pause_process() takes
        one process name alone. The units the host's ssh needs are refused (CONTROL_UNITS)."""
        u = verbs.unit(unit, control_ok=False)
        self.timeline.mark(f"pause {u} on {self.name}")
        self.succeed(["systemctl", "kill", "--kill-whom=all", "-s", "SIGSTOP", u])

    def resume_service(self, unit: str) -> None:
        u = verbs.unit(unit, control_ok=False)
        self.timeline.mark(f"resume {u} on {self.name}")
        self.succeed(["systemctl", "kill", "--kill-whom=all", "-s", "SIGCONT", u])

    def pause_process(self, name: str) -> None:
        """SIGSTOP to every process named exactly ``name`` (`pkill -x`: the kernel's 15-character
        name), e.g. glusterfsd, the brick processes of every volume on the node, which run in
        glusterd.service's cgroup. No such process is an error (a pause that pauses nothing)."""
        n = verbs.process(name)
        self.timeline.mark(f"pause process {n} on {self.name}")
        self.succeed(["pkill", "-STOP", "-x", "--", n])

    def resume_process(self, name: str) -> None:
        """SIGCONT to every process named ``name``; one that died meanwhile is no error."""
        n = verbs.process(name)
        self.timeline.mark(f"resume process {n} on {self.name}")
        self.run(["pkill", "-CONT", "-x", "--", n], timeout=30)

    def kill_process(self, name: str) -> None:
        """SIGKILL to every process named ``name`` (a crashed daemon that is not a unit of its own).
        Bringing it back is its owner's: start_service() of its unit, or the backend's own restart
        (a gluster brick: `gluster volume start VOL force`, harness.backends.gluster.role)."""
        n = verbs.process(name)
        self.timeline.mark(f"kill process {n} on {self.name}")
        self.succeed(["pkill", "-KILL", "-x", "--", n])

    # -- for the duration of a block ---------------------------------------------------------------
    @contextlib.contextmanager
    def frozen(self) -> Iterator[Self]:
        self.freeze()
        try:
            yield self
        finally:
            self.thaw()

    @contextlib.contextmanager
    def hung(self) -> Iterator[Self]:
        self.hang()
        try:
            yield self
        finally:
            self.unhang()

    @contextlib.contextmanager
    def link_down(self, network: str | None = None) -> Iterator[Self]:
        self.set_link(False, network)
        try:
            yield self
        finally:
            self.set_link(True, network)

    @contextlib.contextmanager
    def service_stopped(self, unit: str, kill: bool = False) -> Iterator[Self]:
        self.stop_service(unit, kill)
        try:
            yield self
        finally:
            self.start_service(unit)

    @contextlib.contextmanager
    def service_paused(self, unit: str) -> Iterator[Self]:
        self.pause_service(unit)
        try:
            yield self
        finally:
            self.resume_service(unit)

    @contextlib.contextmanager
    def process_paused(self, name: str) -> Iterator[Self]:
        self.pause_process(name)
        try:
            yield self
        finally:
            self.resume_process(name)
