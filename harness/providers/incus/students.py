"""Students of labs on an Incus remote: the gate script the jump host runs as their forced command
(`incus exec` into their own nodes' sshd), and the class account's own Incus client (its
certificate, trusted by the remote for the class's projects only). What the Remotes hook's
grant_students, revoke_students and project_lab do for Incus."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
from collections.abc import Sequence
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.providers.incus import client as incus
from harness.run import succeed


def gate_text(incus_bin: str, conf_root: Path, gate: str) -> str:
    """The gate: `ssh jump NODE` (SSH_ORIGINAL_COMMAND) must be one of the node names the key
    line gives; anything else is refused. The remote and project come from the key line only."""
    return f"""#!/bin/sh
# storlab's jump gate, written by storlab: the forced command of a student whose lab is on an
# Incus remote. Usage (from the key line): {gate} REMOTE PROJECT NODE...
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


def write_gate(gate: Path, conf: Path) -> None:
    """The gate script at ``gate``, for accounts whose client configurations are beside ``conf``."""
    incus_bin = shutil.which("incus")
    if incus_bin is None:
        raise HarnessError("the incus client is not installed: run ci/setup-host.sh --incus")
    gate.parent.mkdir(parents=True, exist_ok=True)
    text = gate_text(incus_bin, conf.parent, gate.name)
    if not gate.exists() or gate.read_text() != text:
        tmp = gate.with_suffix(".new")
        tmp.write_text(text)
        os.chmod(tmp, 0o755)
        tmp.rename(gate)


def write_client(klass: str, conf: Path, owner: tuple[int, int], remote: str) -> Path:
    """The class account's own Incus client in ``conf`` (certificate and key, the remote's address
    and server certificate), owned by the account (``owner``: uid, gid). Returns the certificate."""
    conf.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(conf.parent, 0o755)
    conf.mkdir(mode=0o700, exist_ok=True)
    os.chmod(conf, 0o700)  # before the private key is made in it: no one else may read it, even briefly
    (conf / "servercerts").mkdir(mode=0o700, exist_ok=True)
    crt, key = conf / "client.crt", conf / "client.key"
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
    shutil.copyfile(server_cert, conf / "servercerts" / f"{remote}.crt")
    (conf / "config.yml").write_text(yaml.safe_dump({
        "default-remote": remote,
        "remotes": {remote: {"addr": remotes[remote]["Addr"], "protocol": "incus", "auth_type": "tls",
                             "public": False}}}))
    for p in [conf, conf / "servercerts", *conf.rglob("*")]:
        os.chown(p, *owner)
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
    return crt


def grant(klass: str, conf: Path, gate: Path, owner: tuple[int, int], remote: str, projects: Sequence[str]) -> str:
    """The gate script and the class account's own Incus client, trusted by ``remote`` restricted
    to ``projects`` (the class's labs there). Idempotent; the projects are brought up to date.
    Returns the certificate's fingerprint."""
    write_gate(gate, conf)
    crt = write_client(klass, conf, owner, remote)
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


def revoke(klass: str, conf: Path, remote: str | None) -> list[str]:
    """The class's certificate removed from the remote's trust store (by its fingerprint: only
    the one storlab made), and the class account's Incus client configuration."""
    removed = []
    crt = conf / "client.crt"
    if remote and crt.exists():
        fp = cert_fingerprint(crt.read_text())
        client = incus.Incus(remote)
        if client.maybe(f"/1.0/certificates/{fp}") is not None:
            client.run("config", "trust", "remove", f"{remote}:{fp}")
            removed.append(f"certificate {_cert_name(klass)} ({fp[:12]}) on Incus remote {remote}")
    if conf.exists():
        shutil.rmtree(conf)
        removed.append(f"incus client {conf}")
    return removed


def project_lab(remote: str, project: str) -> str | None:
    """The lab whose project ``project`` is, when ``remote`` is a remote's name (None: not both)."""
    lab = project.removeprefix(incus.PROJECT_PREFIX)  # a lab's project: the prefix and a lab name
    return lab if incus.REMOTE_RE.fullmatch(remote) and project == incus.project_of(lab) else None
