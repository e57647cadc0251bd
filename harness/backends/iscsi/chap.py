"""CHAP secrets of the target's ACLs: decided when the plan is made (generated, copied from the
topology's password_file, or a literal of the topology), read when a config is filled in.
They reach targetcli and tgt on stdin or in 0600 files, never argv or logs.

A password_file is read as root, so it may only be a file of the host's CHAP store,
$STORLAB_HOME/secrets/ (/var/lib/storlab/secrets as root), reached without following a symbolic
link below that directory, holding one line of 12-16 CHAP characters (CHAP_SECRET_RE)."""

from __future__ import annotations

import os
import re
import secrets
import stat
import string
from collections.abc import Callable
from pathlib import Path

from harness import paths
from harness.backends.base import LabContext, one_line_in
from harness.backends.iscsi.plan import AclPlan, IscsiPlan
from harness.backends.iscsi.schema import CHAP_CHARS, CHAP_PUNCT, Iscsi
from harness.errors import HarnessError
from harness.lab import secrets as labsecrets
from harness.plan.model import need

_ALPHABET = string.ascii_letters + string.digits
#: what a CHAP secret from a file may be: initiators take 12-16 characters; no space, quote,
#: line break or '#' (tgt.conf's parser starts a comment there)
CHAP_SECRET_RE = re.compile(f"[{CHAP_CHARS}]{{12,16}}")


def store_dir() -> Path:
    """The host's CHAP store: the one directory a topology's password_file may name a file in."""
    return paths.home() / "secrets"


def _in_store(path: str) -> Path | None:
    """``path`` relative to the store, when it names a file below it (lexically: no '..' is left)."""
    p = Path(os.path.normpath(path))
    for root in dict.fromkeys((Path(os.path.abspath(store_dir())), Path(os.path.realpath(store_dir())))):
        if p.is_relative_to(root) and p != root:
            return p.relative_to(root)
    return None


def password_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be a password_file (message; fix), None when it is in the store."""
    if _in_store(path) is None:
        return (f"password_file {path} is outside the CHAP store {store_dir()}: storlab reads it as root, so it "
                f"reads no other file; fix: put the secret in {store_dir()}/NAME (one line of 12-16 characters, "
                "mode 0600), or use generate: true")
    return None


def read_password_file(path: str) -> str:
    """The secret in a store file: opened below the store one name at a time without following
    a symbolic link, a regular file of one line of 12-16 CHAP characters. Errors never show it."""
    why = password_file_problem(path)
    rel = _in_store(path)
    if why is not None or rel is None:
        raise HarnessError((why or "").replace("; fix: ", "; "))
    fix = f"; write one line of 12-16 characters (letters, digits and {CHAP_PUNCT}) into {path}"
    fds: list[int] = []
    try:
        fds.append(os.open(store_dir(), os.O_RDONLY | os.O_DIRECTORY))
        for part in rel.parts[:-1]:
            fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fd = os.open(rel.parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HarnessError(f"password_file {path} is not a regular file{fix}")
        data = os.read(fd, 256)
    except OSError as exc:
        if any((store_dir() / Path(*rel.parts[:i + 1])).is_symlink() for i in range(len(rel.parts))):
            raise HarnessError(f"password_file {path} is, or is under, a symbolic link in {store_dir()}: storlab "
                               f"does not follow it; put the file itself there") from None
        raise HarnessError(f"password_file {path}: {exc.strerror}") from None
    finally:
        for f in reversed(fds):
            os.close(f)
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # one final newline is the end of the line
    if len(lines) > 1 or "\r" in text:
        raise HarnessError(f"password_file {path} holds {max(len(lines), 2)} lines, not one line{fix}")
    value = lines[0] if lines else ""
    if not 12 <= len(value) <= 16:
        raise HarnessError(f"password_file {path} holds {len(value)} characters; initiators need 12 to 16{fix}")
    if not CHAP_SECRET_RE.fullmatch(value):
        raise HarnessError(f"password_file {path} holds characters a CHAP secret may not have (a space, quote, "
                           f"'#' or other){fix}")
    return value


def decide(plan: IscsiPlan, section: Iscsi, store: Callable[[str, str], None]) -> None:
    literal = {a.initiator: a.chap for a in section.acls if a.chap}
    for acl in plan.acls:
        chap = acl.chap
        if not chap:
            continue
        if chap.generate:
            value = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        elif chap.password_file:
            value = read_password_file(chap.password_file)  # checked again: it may have changed since validation
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
            value = chap_password(lab, acl)
            if not re.fullmatch(f"[{CHAP_CHARS}]+", value):  # a line break here would be a second target
                raise HarnessError(f"the CHAP secret {acl.chap.secret_name} in {lab.secrets_dir} has characters "
                                   "a config line cannot take (a line break, space, quote or '#'); not filled in")
            text = text.replace(f"<secret:{acl.chap.secret_name}>", value)
    if "<secret:" in text:
        raise HarnessError("a config still has an unresolved <secret:...> placeholder")
    return text


#: the target templates' finalize: every value they print stays on its line
one_line = one_line_in("an iSCSI target config")
