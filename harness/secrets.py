"""Per-lab secrets (CHAP passwords), decided when the lab's plan is made: generated, copied
from the topology's password_file, or taken from a literal in the topology, and kept in the
lab's secrets directory (0700, one 0600 file each). Nothing reads the topology again later;
the plan names secrets, never holds them; every value is registered for masking in logs."""

from __future__ import annotations

import os
import re
import secrets
import string
from pathlib import Path
from typing import TYPE_CHECKING

from . import log
from .errors import HarnessError
from .model import AclPlan, Plan, need
from .topology import Topology

if TYPE_CHECKING:
    from .context import LabContext

_ALPHABET = string.ascii_letters + string.digits
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def secret_file(secrets_dir: Path, name: str) -> Path:
    if not _NAME.match(name) or ".." in name:
        raise HarnessError(f"secret name {name!r} is not a plain file name")
    return secrets_dir / name


def _store(secrets_dir: Path, name: str, value: str) -> None:
    """Write a secret once (0600, created exclusively); an existing one is kept."""
    f = secret_file(secrets_dir, name)
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(value)


def decide(plan: Plan, topo: Topology, secrets_dir: Path) -> None:
    """Give every CHAP secret of the plan its value in ``secrets_dir`` (kept across runs)."""
    literal = {a.initiator: a.chap for a in (topo.iscsi.acls if topo.iscsi else []) if a.chap}
    for acl in plan.iscsi.acls if plan.iscsi else ():
        chap = acl.chap
        if not chap:
            continue
        if chap.generate:
            value = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        elif chap.password_file:
            try:
                value = Path(chap.password_file).read_text().strip()
            except OSError as exc:
                raise HarnessError(f"CHAP password_file for {acl.initiator}: {exc}") from None
        else:
            value = literal[acl.initiator].password or ""
        if not value:
            raise HarnessError(f"empty CHAP secret for {acl.initiator}")
        _store(secrets_dir, chap.secret_name, value)


def chap_password(lab: LabContext, acl: AclPlan) -> str:
    f = secret_file(lab.secrets_dir, need(acl.chap, f"CHAP of {acl.initiator}").secret_name)
    try:
        value = f.read_text().strip()
    except OSError:
        raise HarnessError(f"no CHAP secret for {acl.initiator} at {f} (decided when the plan is made: "
                           f"`storlab up` again)") from None
    log.mask(value)
    return value


def fill(text: str, lab: LabContext, acls: tuple[AclPlan, ...]) -> str:
    """Replace <secret:NAME> placeholders of rendered configs with the real values."""
    for acl in acls:
        if acl.chap:
            text = text.replace(f"<secret:{acl.chap.secret_name}>", chap_password(lab, acl))
    if "<secret:" in text:
        raise HarnessError("a config still has an unresolved <secret:...> placeholder")
    return text
