"""Student access without host access: a jump account per class on storlab's own sshd, each
student's key restricted to their own nodes' ssh ports, and a handout directory per student.

The jump sshd is a separate OpenSSH server (its own config, host key, port and pid file under
``STORLAB_HOME/jump``), not the host's: only members of the ``storlab-jump`` group may log in,
with a key, and get no shell, no tty, no agent/X11/socket forwarding and no tunnels. Every key
line is written by storlab with ``restrict`` and a forced command:
- a lab on this host: the command is nologin, and the key may open a TCP channel only to the
  addresses its ``permitopen`` options list (``ssh -J``);
- a lab on an Incus remote (its networks are on a cluster member, not here): the command is the
  gate, which starts sshd on the student's own node with `incus exec` (stdin/stdout), as one
  of the node names fixed in the key line, in the lab's project fixed in the key line, with the
  class's own Incus client certificate, which the remote restricts to the class's projects.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harness import locks, paths
from harness.errors import HarnessError
from harness.providers import capabilities
from harness.run import run, succeed, wait_until
from harness.spec.topology import NAME_RE

GROUP = "storlab-jump"
DEFAULT_PORT = 2222
ACCOUNT_RE = re.compile(r"slj-[a-z][a-z0-9-]{0,27}")
NOLOGIN = "/usr/sbin/nologin"
NO_HOME = "/nonexistent"
#: the forced command of a student whose lab is on an Incus remote (gate.py writes it)
GATE = "storlab-gate"


def jump_dir() -> Path:
    return paths.home() / "jump"


def sshd_config_text(port: int, root: Path) -> str:
    return "\n".join([
        "# storlab's jump sshd for training classes (storlab class jump-setup); not the host's sshd",
        f"Port {port}",
        f"HostKey {root / 'ssh_host_ed25519_key'}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'keys'}/%u",
        f"AllowGroups {GROUP}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitRootLogin no",
        "UsePAM no",
        "PermitTTY no",
        "PermitUserRC no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "AllowTcpForwarding local",  # each key line narrows it (restrict, permitopen) and forces its command
        "PermitUserEnvironment no",
        "LogLevel VERBOSE",
        "",
    ])


def sshd_pid() -> int | None:
    f = jump_dir() / "sshd.pid"
    try:
        pid = int(f.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def setup_jump(port: int = DEFAULT_PORT) -> str:
    """Idempotent: group, host key, config, keys directory, and the sshd started (by hand: the
    host may have no systemd as PID 1). Returns a one-line report."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        raise HarnessError("OpenSSH server missing: run ci/setup-host.sh --class (apt install openssh-server)")
    root = jump_dir()
    (root / "keys").mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    os.chmod(root / "keys", 0o755)
    if run(["getent", "group", GROUP], timeout=10).rc != 0:
        succeed(["groupadd", "--system", GROUP], timeout=30)
    hostkey = root / "ssh_host_ed25519_key"
    if not hostkey.exists():
        succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "storlab-jump", "-f", str(hostkey)], timeout=30)
    conf = root / "sshd_config"
    text = sshd_config_text(port, root)
    changed = not conf.exists() or conf.read_text() != text
    conf.write_text(text)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    succeed([sshd, "-t", "-f", str(conf)], timeout=30)
    pid = sshd_pid()
    if pid and changed:
        os.kill(pid, 1)  # SIGHUP: sshd re-reads its config
    elif not pid:
        succeed([sshd, "-f", str(conf), "-E", str(root / "sshd.log")], timeout=30)
        wait_until(sshd_pid, timeout=15, interval=0.1, what=f"the jump sshd to write {root / 'sshd.pid'}")
    return f"jump sshd on port {port} (config {conf}, pid {sshd_pid()})"


def stop_jump() -> None:
    pid = sshd_pid()
    if pid:
        os.kill(pid, 15)


def jump_port() -> int:
    conf = jump_dir() / "sshd_config"
    m = re.search(r"^Port (\d+)$", conf.read_text(), re.MULTILINE) if conf.exists() else None
    return int(m.group(1)) if m else DEFAULT_PORT


def account_name(klass: str) -> str:
    name = f"slj-{klass}"
    if not ACCOUNT_RE.fullmatch(name):
        raise HarnessError(f"class {klass!r} makes no valid account name")
    return name


def _gecos(klass: str) -> str:
    return f"storlab class {klass}"


def ensure_account(klass: str) -> str:
    """The class's jump account: a system user in GROUP, no home, no shell, no password (not
    locked either: sshd refuses locked accounts even for keys)."""
    if sshd_pid() is None:
        raise HarnessError("the jump sshd is not running: run `storlab class jump-setup` (ci/setup-host.sh --class)")
    user = account_name(klass)
    try:
        pw = pwd.getpwnam(user)
        if pw.pw_gecos != _gecos(klass):
            raise HarnessError(f"user {user} exists and was not made by storlab for class {klass}: left alone")
    except KeyError:
        succeed(["useradd", "--system", "--no-create-home", "--home-dir", NO_HOME, "--shell", NOLOGIN,
                 "--comment", _gecos(klass), "--gid", GROUP, user], timeout=30)
    succeed(["usermod", "-p", "*", user], timeout=30)
    return user


def remove_account(klass: str) -> list[str]:
    user = account_name(klass)
    removed = []
    keys = jump_dir() / "keys" / user
    with locks.exclusive(keys_lock(klass), what=f"the jump keys lock of class {klass}"):
        if keys.exists() or keys.is_symlink():
            keys.unlink()
            removed.append(f"jump keys {keys}")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return removed
    if pw.pw_gecos == _gecos(klass):
        subprocess.run(["pkill", "-u", user], check=False, capture_output=True)
        succeed(["userdel", user], timeout=30)
        removed.append(f"user {user}")
    return removed


@dataclass(frozen=True)
class StudentAccess:
    student: str
    public_key: str  # one line, checked by Lab.authorize's pattern
    targets: tuple[str, ...] = ()  # "address:22" of the student's nodes (a lab on this host)
    # a lab on an Incus remote: (remote, project, node names) for the gate
    gate: tuple[str, str, tuple[str, ...]] | None = None


def key_line(access: StudentAccess) -> str:
    """One authorized_keys line: nothing but TCP channels to the student's own nodes' ssh, or
    (a lab on an Incus remote) nothing but the gate to the student's own nodes."""
    key = access.public_key.strip()
    if access.gate is None:
        opens = ",".join(f'permitopen="{t}"' for t in access.targets)
        return f'restrict,port-forwarding,{opens},command="{NOLOGIN}" {key}'
    remote, project, nodes = access.gate
    # the words go into a command line that sshd hands to a shell: each must match its pattern
    remotes = capabilities.remotes_of(capabilities.remote_provider() or "")
    lab = remotes.project_lab(remote, project) if remotes else None  # a remote's name and a lab's project
    if not (lab is not None and re.fullmatch(NAME_RE, lab) and nodes and all(re.fullmatch(NAME_RE, n) for n in nodes)):
        raise HarnessError(f"student {access.student}: refusing a gate line for remote {remote!r}, "
                           f"project {project!r}, nodes {nodes!r}")
    return f'restrict,command="{gate_path()} {remote} {project} {" ".join(nodes)}" {key}'


def gate_path() -> Path:
    return jump_dir() / "bin" / GATE


def keys_lock(klass: str) -> str:
    """The lock around a class's jump keys file (locks.exclusive): `class up`, `down` and every
    `storlab down`/`reap` rewrite it, and two at once would lose each other's lines."""
    return f"jump-keys-{account_name(klass)}"


def write_keys(klass: str, students: list[StudentAccess]) -> Path:
    """The class account's authorized_keys, replaced whole under the class's keys lock: written to
    a new temporary file (0600 while written, exclusive, no link followed) in the keys directory,
    then renamed over the old one (a link planted there is replaced, never followed). 0644: sshd
    reads it as the account."""
    text = "".join(key_line(a) + "\n" for a in students)  # refused lines raise before anything is written
    keys = jump_dir() / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    with locks.exclusive(keys_lock(klass), what=f"the jump keys lock of class {klass}"):
        replace_file(keys, account_name(klass), 0o644, lambda fh: fh.write(text.encode()))
    return keys / account_name(klass)


def replace_file(directory: Path, name: str, mode: int, write: Callable[[BinaryIO], object]) -> None:
    """``directory/name`` replaced atomically by what ``write`` writes, with ``mode``, never through
    a link: the directory is opened without following one, the temporary file is made new (O_EXCL,
    O_NOFOLLOW) and stays 0600 until it is complete, then is renamed over ``name``."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        tmp = f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)
