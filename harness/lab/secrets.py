"""Per-lab secrets (e.g. CHAP passwords), decided by their backend when the lab's plan is made
and kept in the lab's secrets directory (0700, one 0600 file each). Nothing reads the topology again later;
the plan names secrets, never holds them; every value is registered for masking in logs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from harness import log, paths
from harness.backends.base import backends
from harness.errors import HarnessError
from harness.plan.model import Plan
from harness.spec.topology import Topology

if TYPE_CHECKING:
    from harness.backends.base import LabContext

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def secret_file(secrets_dir: Path, name: str) -> Path:
    if not _NAME.fullmatch(name) or ".." in name:  # fullmatch: "$" lets a final newline through
        raise HarnessError(f"secret name {name!r} is not a plain file name")
    return secrets_dir / name


def store(secrets_dir: Path, name: str, value: str) -> None:
    """Write a secret once (0600, created exclusively); an existing one is kept. The value is
    registered for masking at once (the process that decides a secret also logs the lab's up)."""
    log.mask(value)
    f = secret_file(secrets_dir, name)
    paths.private_dir(secrets_dir)
    try:
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(value)


def decide(plan: Plan, topo: Topology, secrets_dir: Path) -> None:
    """Give every secret the plan names its value in ``secrets_dir`` (kept across runs): each
    backend decides its own (generated, copied from a file, or a literal of the topology)."""
    for b in backends():
        section, planned = b.of(topo), b.planned(plan)
        if section is not None and planned is not None:
            b.decide_secrets(planned, section, lambda name, value: store(secrets_dir, name, value))


def mask_all(secrets_dir: Path) -> None:
    """Register every secret in ``secrets_dir`` for masking: a process that works on a lab it did
    not make (a test session reusing a lab, `storlab class grade`) has read none of them yet."""
    try:
        files = [f for f in secrets_dir.iterdir() if f.is_file() and not f.is_symlink()]
    except OSError:
        return
    for f in files:
        try:
            log.mask(f.read_text())
        except (OSError, UnicodeDecodeError):
            continue


def read(lab: LabContext, name: str, what: str) -> str:
    """A secret's value (registered for masking in logs)."""
    f = secret_file(lab.secrets_dir, name)
    try:
        value = f.read_text().strip()
    except OSError:
        raise HarnessError(f"no {what} at {f} (decided when the plan is made: `storlab up` again)") from None
    log.mask(value)
    return value
