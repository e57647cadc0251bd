"""Per-lab secrets (CHAP passwords): generated into the lab directory (0600), read from a
file, or taken from the topology; always registered for masking in logs."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import log
from .errors import HarnessError

if TYPE_CHECKING:
    from .lab import Lab

_ALPHABET = string.ascii_letters + string.digits


def secret_file(lab: Lab, name: str) -> Path:
    return lab.dir / "secrets" / name


def chap_password(lab: Lab, acl: dict[str, Any]) -> str:
    chap = acl["chap"]
    if chap["generate"]:
        f = secret_file(lab, chap["secret_name"])
        if not f.exists():
            f.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, "".join(secrets.choice(_ALPHABET) for _ in range(16)).encode())
            os.close(fd)
        value = f.read_text().strip()
    elif chap["password_file"]:
        value = Path(chap["password_file"]).read_text().strip()
    else:  # a literal in the topology: read it from there, the plan never stores it
        from .yamlload import load_file
        data = load_file(lab.plan["topology"]).data
        value = next(a["chap"]["password"] for a in data["iscsi"]["acls"] if a["initiator"] == acl["initiator"])
    if not value:
        raise HarnessError(f"empty CHAP secret for {acl['initiator']}")
    log.mask(value)
    return value


def fill(text: str, lab: Lab, acls: list[dict[str, Any]]) -> str:
    """Replace <secret:NAME> placeholders of rendered configs with the real values."""
    for acl in acls:
        if acl["chap"]:
            text = text.replace(f"<secret:{acl['chap']['secret_name']}>", chap_password(lab, acl))
    if "<secret:" in text:
        raise HarnessError("a config still has an unresolved <secret:...> placeholder")
    return text
