"""CHAP secrets of the target's ACLs: decided when the plan is made (generated, copied from the
topology's password_file, or a literal of the topology), read when a config is filled in.
They reach targetcli and tgt on stdin or in 0600 files, never argv or logs."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from pathlib import Path

from ... import secrets as labsecrets
from ...context import LabContext
from ...errors import HarnessError
from ...model import need
from .plan import AclPlan, IscsiPlan
from .schema import Iscsi

_ALPHABET = string.ascii_letters + string.digits


def decide(plan: IscsiPlan, section: Iscsi, store: Callable[[str, str], None]) -> None:
    literal = {a.initiator: a.chap for a in section.acls if a.chap}
    for acl in plan.acls:
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
        store(chap.secret_name, value)


def chap_password(lab: LabContext, acl: AclPlan) -> str:
    return labsecrets.read(lab, need(acl.chap, f"CHAP of {acl.initiator}").secret_name, f"CHAP secret for {acl.initiator}")


def fill(text: str, lab: LabContext, acls: tuple[AclPlan, ...]) -> str:
    """Replace <secret:NAME> placeholders of rendered configs with the real values."""
    for acl in acls:
        if acl.chap:
            text = text.replace(f"<secret:{acl.chap.secret_name}>", chap_password(lab, acl))
    if "<secret:" in text:
        raise HarnessError("a config still has an unresolved <secret:...> placeholder")
    return text
