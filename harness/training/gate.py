"""Students of labs on an engine remote: the class account's shell and home for the jump's gate.
The gate script and the account's own engine client are the provider's (its Remotes hook:
grant_students, revoke_students; for Incus harness/providers/incus/students.py).
"""

from __future__ import annotations

import pwd
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.providers import capabilities
from harness.providers.capabilities import Remotes
from harness.run import succeed
from harness.training.jump import NO_HOME, NOLOGIN, account_name, gate_path, jump_dir

# A class on an engine remote: its account's shell, which sshd uses to run the key's forced command
# (the gate) and nothing else: every key line forces its command, and no environment is accepted.
GATE_SHELL = "/bin/sh"
# ... and its home: sshd changes to it before the command, and says "Could not chdir to home
# directory /nonexistent" on every student's ssh otherwise. Nothing there is the account's.
GATE_HOME = "/"


def _remotes() -> tuple[str, Remotes] | None:
    """The provider labs on remotes run on, and its Remotes hook (None: none is installed)."""
    name = capabilities.remote_provider()
    remotes = capabilities.remotes_of(name) if name else None
    return (name, remotes) if name and remotes else None


def client_conf(klass: str, provider: str) -> Path:
    """The class account's engine client configuration (INCUS_CONF of the gate, for Incus)."""
    return jump_dir() / provider / account_name(klass)


def grant_remote(klass: str, remote: str, projects: Sequence[str]) -> str:
    """The class account's own engine client, trusted by ``remote`` restricted to ``projects``
    (the class's labs there), and the gate script. Idempotent; the projects are brought up to
    date. Returns the client's identity (a certificate fingerprint for Incus)."""
    found = _remotes()
    if found is None:
        raise HarnessError(f"class on remote {remote}: no installed provider places labs on remotes")
    provider, remotes = found
    user = account_name(klass)
    pw = pwd.getpwnam(user)
    if (pw.pw_shell, pw.pw_dir) != (GATE_SHELL, GATE_HOME):  # sshd runs a forced command with the shell
        succeed(["usermod", "--shell", GATE_SHELL, "--home", GATE_HOME, user], timeout=30)
    return remotes.grant_students(klass, client_conf(klass, provider), gate_path(), (pw.pw_uid, pw.pw_gid),
                                  remote, projects)


def revoke_remote(klass: str, remote: str | None) -> list[str]:
    """What grant_remote gave taken back (the class's trust on the remote, the account's client),
    and the account's shell and home as a plain jump account's."""
    found = _remotes()
    removed = found[1].revoke_students(klass, client_conf(klass, found[0]), remote) if found else []
    try:
        pw = pwd.getpwnam(account_name(klass))
        if (pw.pw_shell, pw.pw_dir) != (NOLOGIN, NO_HOME):
            succeed(["usermod", "--shell", NOLOGIN, "--home", NO_HOME, account_name(klass)], timeout=30)
    except KeyError:
        pass
    return removed
