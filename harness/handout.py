"""Student access without host access: a jump account per class on storlab's own sshd, each
student's key restricted to their own nodes' ssh ports, and a handout directory per student.

The jump sshd is a separate OpenSSH server (its own config, host key, port and pid file under
``STORLAB_HOME/jump``), not the host's: only members of the ``storlab-jump`` group may log in,
with a key, and get no shell, no tty, no agent/X11/socket forwarding and no tunnels; a key may
open a TCP channel only to the addresses its ``permitopen`` options list (``ssh -J``).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import HarnessError
from .run import run, succeed, wait_until

GROUP = "storlab-jump"
DEFAULT_PORT = 2222
ACCOUNT_RE = re.compile(r"slj-[a-z][a-z0-9-]{0,27}")
NOLOGIN = "/usr/sbin/nologin"


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
        "AllowTcpForwarding local",
        f"ForceCommand {NOLOGIN}",
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
        succeed(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", NOLOGIN,
                 "--comment", _gecos(klass), "--gid", GROUP, user], timeout=30)
    succeed(["usermod", "-p", "*", user], timeout=30)
    return user


def remove_account(klass: str) -> list[str]:
    user = account_name(klass)
    removed = []
    keys = jump_dir() / "keys" / user
    if keys.exists():
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
    targets: tuple[str, ...]  # "address:22" of the student's nodes


def key_line(access: StudentAccess) -> str:
    """One authorized_keys line: nothing but TCP channels to the student's own nodes' ssh."""
    opens = ",".join(f'permitopen="{t}"' for t in access.targets)
    return f'restrict,port-forwarding,{opens},command="{NOLOGIN}" {access.public_key.strip()}'


def write_keys(klass: str, students: list[StudentAccess]) -> Path:
    f = jump_dir() / "keys" / account_name(klass)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".new")
    tmp.write_text("".join(key_line(a) + "\n" for a in students))
    os.chmod(tmp, 0o644)
    tmp.rename(f)
    return f


def ssh_config(klass: str, jump_address: str, port: int, nodes: dict[str, str]) -> str:
    """The student's ssh config: `ssh -F ssh_config NODE` reaches the node through the jump."""
    out = ["# storlab class handout: ssh -F ssh_config NODE   (run from this directory)",
           "Host jump",
           f"  HostName {jump_address}",
           f"  Port {port}",
           f"  User {account_name(klass)}",
           "  IdentityFile ./id_ed25519",
           "  IdentitiesOnly yes",
           "  UserKnownHostsFile ./known_hosts",
           "  RequestTTY no",
           ""]
    for name, address in nodes.items():
        out += [f"Host {name}",
                f"  HostName {address}",
                "  User root",
                "  ProxyJump jump",
                "  IdentityFile ./id_ed25519",
                "  IdentitiesOnly yes",
                "  UserKnownHostsFile ./known_hosts",
                "  StrictHostKeyChecking accept-new",
                ""]
    return "\n".join(out)


def known_hosts(jump_address: str, port: int) -> str:
    pub = (jump_dir() / "ssh_host_ed25519_key.pub").read_text().split()
    return f"[{jump_address}]:{port} {pub[0]} {pub[1]}\n"


def handout_text(klass: str, student: str, lab_name: str, nodes: list[dict[str, str]], backends: list[str],
                 pools: list[str], exercise_title: str | None, exercise_text: str | None, expires: str,
                 unreachable: str | None = None) -> str:
    """The student's HANDOUT.md; ``unreachable`` says why the class host's jump cannot reach the
    lab (a lab on an Incus remote), in place of the ssh instructions."""
    rows = "\n".join(f"| {n['name']} | {n['address']} | {n['roles']} |" for n in nodes)
    first = nodes[0]["name"] if nodes else "NODE"
    reach = (["From this directory (keep `id_ed25519` private; it opens only your own nodes):", "",
              "```", f"ssh -F ssh_config {first}", "```", ""] if unreachable is None else
             [f"Not through the class host: {unreachable}. Your instructor opens a shell for you "
              f"(`storlab ssh {lab_name} NODE`); your key is root's on every node.", ""])
    parts = [f"# Lab {lab_name} (class {klass}, student {student})", "",
             f"Your own storage lab: {', '.join(backends) or 'plain nodes'}. It expires: {expires}.", "",
             "## Reach your nodes", "", *reach,
             "| node | address | roles |", "|---|---|---|", rows, "",
             "## The host's storage pools on your lab", "",
             *(f"- {p}" for p in pools), *(["- none"] if not pools else []), ""]
    parts += ["## Current exercise", ""]
    if exercise_title:
        parts += [f"**{exercise_title}**", "", (exercise_text or "").strip(), ""]
    else:
        parts += ["None yet: your instructor will hand one out.", ""]
    return "\n".join(parts)


def archive(directory: Path) -> Path:
    """directory.tar.gz beside it (what an instructor hands out)."""
    out = directory.parent / f"{directory.name}.tar.gz"
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    os.chmod(tmp, 0o600)  # it holds a private key
    tmp.rename(out)
    return out
