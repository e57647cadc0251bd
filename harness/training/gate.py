"""Students of labs on an Incus remote: the jump's gate script, and the class account's own Incus
client (its certificate, trusted by the remote for the class's projects only). All the Incus
handout code is here, in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import ssl
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.providers.incus import client as incus
from harness.run import succeed
from harness.training.jump import GATE, NO_HOME, NOLOGIN, account_name, gate_path, jump_dir

# A class on an Incus remote: its account's shell, which sshd uses to run the key's forced command
# (the gate) and nothing else: every key line forces its command, and no environment is accepted.
GATE_SHELL = "/bin/sh"
# ... and its home: sshd changes to it before the command, and says "Could not chdir to home
# directory /nonexistent" on every student's ssh otherwise. Nothing there is the account's.
GATE_HOME = "/"


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
