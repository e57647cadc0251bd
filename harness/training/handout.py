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
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import ssl
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import yaml

from harness import locks, paths
from harness.errors import HarnessError
from harness.providers.incus import client as incus
from harness.run import run, succeed, wait_until
from harness.spec.topology import NAME_RE

GROUP = "storlab-jump"
DEFAULT_PORT = 2222
ACCOUNT_RE = re.compile(r"slj-[a-z][a-z0-9-]{0,27}")
NOLOGIN = "/usr/sbin/nologin"
GATE = "storlab-gate"
# A class on an Incus remote: its account's shell, which sshd uses to run the key's forced command
# (the gate) and nothing else: every key line forces its command, and no environment is accepted.
GATE_SHELL = "/bin/sh"
# ... and its home: sshd changes to it before the command, and says "Could not chdir to home
# directory /nonexistent" on every student's ssh otherwise. Nothing there is the account's.
GATE_HOME = "/"
NO_HOME = "/nonexistent"


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
    lab = project.removeprefix(incus.PROJECT_PREFIX)  # a lab's project: the prefix and a lab name
    if not (incus.REMOTE_RE.fullmatch(remote) and project == incus.project_of(lab) and re.fullmatch(NAME_RE, lab)
            and nodes and all(re.fullmatch(NAME_RE, n) for n in nodes)):
        raise HarnessError(f"student {access.student}: refusing a gate line for remote {remote!r}, "
                           f"project {project!r}, nodes {nodes!r}")
    return f'restrict,command="{gate_path()} {remote} {project} {" ".join(nodes)}" {key}'


# -- students of labs on an Incus remote ------------------------------------------------------------
def gate_path() -> Path:
    return jump_dir() / "bin" / GATE


def incus_conf(klass: str) -> Path:
    """The class account's Incus client configuration (INCUS_CONF of the gate)."""
    return jump_dir() / "incus" / account_name(klass)


def gate_text(incus_bin: str, conf_root: Path) -> str:
    """The gate: `ssh jump NODE` (SSH_ORIGINAL_COMMAND) must be one of the node names the key
    line gives; anything else is refused. The remote and project come from the key line only."""
    return f"""#!/bin/sh
# storlab's jump gate, written by storlab: the forced command of a student whose lab is on an
# Incus remote. Usage (from the key line): {GATE} REMOTE PROJECT NODE...
set -eu
remote=$1
project=$2
shift 2
want=${{SSH_ORIGINAL_COMMAND:-}}
for node in "$@"; do
  if [ "$node" = "$want" ]; then
    INCUS_CONF={conf_root}/$(id -un)
    export INCUS_CONF
    exec {incus_bin} --project "$project" exec "$remote:$node" --force-noninteractive -- /usr/sbin/sshd -i
  fi
done
echo "storlab: ssh -F ssh_config NODE, with NODE one of: $*" >&2
exit 2
"""


def cert_fingerprint(pem: str) -> str:
    """Incus's certificate fingerprint: sha256 of the DER form, lower-case hex."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _root_incus_conf() -> Path:
    return Path(os.environ.get("INCUS_CONF") or Path.home() / ".config" / "incus")


def _cert_name(klass: str) -> str:
    return f"storlab-class-{klass}"


def grant_incus(klass: str, remote: str, projects: list[str]) -> str:
    """The class account's own Incus client (certificate, the remote's address and server
    certificate), trusted by ``remote`` restricted to ``projects`` (the class's labs there), and
    the gate script. Idempotent; the projects are brought up to date. Returns the fingerprint."""
    user = account_name(klass)
    pw = pwd.getpwnam(user)
    if (pw.pw_shell, pw.pw_dir) != (GATE_SHELL, GATE_HOME):  # sshd runs a forced command with the shell
        succeed(["usermod", "--shell", GATE_SHELL, "--home", GATE_HOME, user], timeout=30)
    incus_bin = shutil.which("incus")
    if incus_bin is None:
        raise HarnessError("the incus client is not installed: run ci/setup-host.sh --incus")
    gate = gate_path()
    gate.parent.mkdir(parents=True, exist_ok=True)
    text = gate_text(incus_bin, incus_conf(klass).parent)
    if not gate.exists() or gate.read_text() != text:
        tmp = gate.with_suffix(".new")
        tmp.write_text(text)
        os.chmod(tmp, 0o755)
        tmp.rename(gate)
    d = incus_conf(klass)
    d.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(d.parent, 0o755)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)  # before the private key is made in it: no one else may read it, even briefly
    (d / "servercerts").mkdir(mode=0o700, exist_ok=True)
    crt, key = d / "client.crt", d / "client.key"
    if not crt.exists() or not key.exists():
        succeed(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes",
                 "-keyout", str(key), "-out", str(crt), "-days", "3650", "-subj", f"/CN={_cert_name(klass)}"],
                timeout=60)
    remotes = json.loads(succeed(["incus", "remote", "list", "--format", "json"], timeout=30))
    if remote not in remotes:
        raise HarnessError(f"Incus remote {remote} is not known to this host's client (`incus remote list`)")
    server_cert = _root_incus_conf() / "servercerts" / f"{remote}.crt"
    if not server_cert.exists():
        raise HarnessError(f"no server certificate for Incus remote {remote} at {server_cert}")
    shutil.copyfile(server_cert, d / "servercerts" / f"{remote}.crt")
    (d / "config.yml").write_text(yaml.safe_dump({
        "default-remote": remote,
        "remotes": {remote: {"addr": remotes[remote]["Addr"], "protocol": "incus", "auth_type": "tls",
                             "public": False}}}))
    for p in [d, d / "servercerts", *d.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
    fp = cert_fingerprint(crt.read_text())
    client = incus.Incus(remote)
    have = client.maybe(f"/1.0/certificates/{fp}")
    if have is None:
        client.run("config", "trust", "add-certificate", f"{remote}:", str(crt), "--restricted",
                   "--projects", ",".join(sorted(projects)), "--name", _cert_name(klass),
                   "--description", f"storlab class {klass}: its students' gate to their own labs")
    elif not have.get("restricted") or sorted(have.get("projects") or []) != sorted(projects):
        client.query(f"/1.0/certificates/{fp}", "PATCH", {"restricted": True, "projects": sorted(projects)})
    return fp


def revoke_incus(klass: str, remote: str | None) -> list[str]:
    """The class's certificate removed from the remote's trust store (by its fingerprint: only
    the one storlab made), and the class account's Incus client configuration."""
    d = incus_conf(klass)
    removed = []
    crt = d / "client.crt"
    if remote and crt.exists():
        fp = cert_fingerprint(crt.read_text())
        client = incus.Incus(remote)
        if client.maybe(f"/1.0/certificates/{fp}") is not None:
            client.run("config", "trust", "remove", f"{remote}:{fp}")
            removed.append(f"certificate {_cert_name(klass)} ({fp[:12]}) on Incus remote {remote}")
    if d.exists():
        shutil.rmtree(d)
        removed.append(f"incus client {d}")
    try:
        pw = pwd.getpwnam(account_name(klass))
        if (pw.pw_shell, pw.pw_dir) != (NOLOGIN, NO_HOME):
            succeed(["usermod", "--shell", NOLOGIN, "--home", NO_HOME, account_name(klass)], timeout=30)
    except KeyError:
        pass
    return removed


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


def ssh_config(klass: str, jump_address: str, port: int, nodes: dict[str, str], lab: str | None = None) -> str:
    """The student's ssh config: `ssh -F ssh_config NODE` reaches the node through the jump
    (``lab`` given: the lab is on an Incus remote, and the jump's gate runs the node's sshd)."""
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
        via = ([f"  ProxyCommand ssh -F ssh_config jump {name}", f"  HostKeyAlias {lab}-{name}"] if lab
               else ["  ProxyJump jump"])
        out += [f"Host {name}",
                f"  HostName {address}",
                "  User root",
                *via,
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
                 where: str | None = None) -> str:
    """The student's HANDOUT.md; ``where``: the Incus remote and member holding the lab, when it
    is not the class host."""
    rows = "\n".join(f"| {n['name']} | {n['address']} | {n['roles']} |" for n in nodes)
    first = nodes[0]["name"] if nodes else "NODE"
    reach = ["From this directory (keep `id_ed25519` private; it opens only your own nodes):", "",
             "```", f"ssh -F ssh_config {first}", "```", ""]
    if where:
        reach += [f"Your lab runs on Incus {where}, not on the class host: the class host's jump starts "
                  "your node's ssh server for you there, and the addresses below are on that member's "
                  "lab networks (your nodes reach each other by them).", ""]
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


def handouts_dir(class_dir: Path) -> Path:
    """CLASS/handouts, 0700 (also one an older storlab left 0755): it holds every student's key
    and tarball, and a directory others can list is one step from reading them."""
    return paths.private_dir(class_dir / "handouts")


def archive(directory: Path) -> Path:
    """directory.tar.gz beside it (what an instructor hands out): it holds the student's private
    key, so it is 0600 from its first byte (a temporary file made new, never through a link, then
    renamed), in a parent directory made 0700."""
    paths.private_dir(directory.parent)
    out = directory.parent / f"{directory.name}.tar.gz"

    def write(fh: BinaryIO) -> None:
        with tarfile.open(fileobj=fh, mode="w:gz") as tar:
            tar.add(directory, arcname=directory.name)
    replace_file(directory.parent, out.name, 0o600, write)
    return out
