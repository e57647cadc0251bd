"""What an NFS client shows of its mounts and its connections: pure parsers of the kernel's
/proc/self/mountstats (each NFS mount's options and its RPC transports, one `xprt:` line each)
and of `ss -Htn`, and the readers that run them where a pool's mount is (a hypervisor node, or
the KVM host). Checks and lab tests are built on these (pyinfra's facts: a command + a parser)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: runs an argv where the mount is and returns its output (Node.succeed, harness.run.succeed)
Sh = Callable[..., str]

NFS_PORT = 2049
_DEVICE = re.compile(r"device (?P<dev>\S+) mounted on (?P<on>\S+) with fstype (?P<fstype>\S+)(?: statvers=\S+)?")


@dataclass(frozen=True)
class Xprt:
    """One RPC transport of a mount (a `xprt:` line): its protocol, the local port it is bound
    to (0 before it first connected; an NFSv4 transport shows 0 even when connected, as seen on
    Debian 12's 6.1 client) and, for TCP, how often it connected and sent."""
    proto: str
    srcport: int
    connects: int = 0
    sends: int = 0


@dataclass(frozen=True)
class NfsMount:
    """One NFS mount as /proc/self/mountstats shows it."""
    device: str  # SERVER:/export, as it was mounted
    mountpoint: str
    fstype: str  # nfs (v3) or nfs4
    opts: dict[str, str] = field(default_factory=dict)  # vers -> 4.2, nconnect -> 4, hard -> ''
    xprts: tuple[Xprt, ...] = ()

    @property
    def server(self) -> str:
        return self.device.partition(":/")[0]

    @property
    def version(self) -> str:
        """As the kernel prints it: 3, 4.0, 4.1, 4.2."""
        return self.opts.get("vers", "")

    @property
    def nconnect(self) -> int:
        """Connections asked for to the mounted address (the option; 1 when not given)."""
        return int(self.opts.get("nconnect", "1"))

    @property
    def max_connect(self) -> int:
        """Addresses the client may trunk over (NFSv4.1+; 1 when not given)."""
        return int(self.opts.get("max_connect", "1"))

    @property
    def srcports(self) -> frozenset[int]:
        """Local ports of the transports that have connected."""
        return frozenset(x.srcport for x in self.xprts if x.srcport)


def _unescape(text: str) -> str:
    """mountstats writes a space, tab, newline or backslash in a path as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _opts(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key:
            out[key.strip()] = value.strip()
    return out


def _xprt(text: str) -> Xprt | None:
    """`tcp SRCPORT BIND CONNECTS CONNECT_TIME IDLE SENDS ...`; `udp SRCPORT BIND SENDS ...`."""
    parts = text.split()
    if len(parts) < 3 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
        return None
    nums = [int(p) for p in parts[1:]]
    if parts[0] == "tcp" and len(nums) >= 6:
        return Xprt("tcp", nums[0], connects=nums[2], sends=nums[5])
    if parts[0] == "udp" and len(nums) >= 3:
        return Xprt("udp", nums[0], sends=nums[2])
    return Xprt(parts[0], nums[0] if parts[0] != "rdma" else 0)


@dataclass
class _Entry:
    """A mount's lines while they are read."""
    device: str
    mountpoint: str
    fstype: str
    opts: dict[str, str] = field(default_factory=dict)
    xprts: list[Xprt] = field(default_factory=list)

    def done(self) -> NfsMount:
        return NfsMount(self.device, self.mountpoint, self.fstype, self.opts, tuple(self.xprts))


def parse_mountstats(text: str) -> list[NfsMount]:
    """/proc/self/mountstats -> its NFS mounts (nfs, nfs4), in order; other mounts are skipped."""
    out: list[_Entry] = []
    current: _Entry | None = None
    for raw in text.splitlines():
        line = raw.strip()
        m = _DEVICE.fullmatch(line)
        if m:
            current = None
            if m.group("fstype") in ("nfs", "nfs4"):
                current = _Entry(_unescape(m.group("dev")), _unescape(m.group("on")), m.group("fstype"))
                out.append(current)
            continue
        key, _, rest = line.partition(":")
        if current is not None and key == "opts":
            current.opts = _opts(rest.strip())
        elif current is not None and key == "xprt":
            x = _xprt(rest)
            if x is not None:
                current.xprts.append(x)
    return [e.done() for e in out]


@dataclass(frozen=True)
class Conn:
    """One TCP socket as `ss -tn` lists it."""
    state: str
    local: tuple[str, int]
    peer: tuple[str, int]


def _endpoint(text: str) -> tuple[str, int] | None:
    """'10.0.0.2:2049', '[::ffff:10.0.0.2]:2049', '[fe80::1%eth0]:22' -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]").split("%", 1)[0]
    return host.removeprefix("::ffff:"), int(port)


def parse_ss(text: str) -> list[Conn]:
    """`ss -Htn` (State Recv-Q Send-Q Local:Port Peer:Port [Process]); a header line is skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[0] in ("State", "Netid", "Recv-Q"):
            continue
        local, peer = _endpoint(parts[3]), _endpoint(parts[4])
        if local is not None and peer is not None:
            out.append(Conn(parts[0], local, peer))
    return out


def to_server(conns: Iterable[Conn], addresses: Iterable[str], port: int = NFS_PORT) -> list[Conn]:
    """Established connections to ``port`` (NFS: 2049) of any of ``addresses``."""
    want = set(addresses)
    return [c for c in conns if c.state == "ESTAB" and c.peer[1] == port and c.peer[0] in want]


def of_mount(conns: Iterable[Conn], mount: NfsMount) -> list[Conn]:
    """The connections of ``mount``'s transports (matched by their local ports)."""
    ports = mount.srcports
    return [c for c in conns if c.local[1] in ports]


# -- readers: the same facts, where the mount is ----------------------------------------------
def mounts(sh: Sh) -> list[NfsMount]:
    return parse_mountstats(sh(["cat", "/proc/self/mountstats"], timeout=30))


def mount_at(sh: Sh, path: str) -> NfsMount | None:
    """The NFS mount at ``path`` (the last one made there, which is the one in use)."""
    found = [m for m in mounts(sh) if m.mountpoint == path]
    return found[-1] if found else None


def connections(sh: Sh) -> list[Conn]:
    return parse_ss(sh(["ss", "-Htn"], timeout=30))
