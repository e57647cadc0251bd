"""The service's records on disk, under STORLAB_HOME/serve (0700): tokens, the served classes'
pools, and the audit log. A restart of the service reads them back and loses nothing.

Tokens are stored as their SHA-256 only (a copy of the file opens nothing), each with a scope:
``admin`` (the host: makes and ends classes), ``instructor`` (one class), ``join`` (claims a
seat of one class), ``seat`` (one seat of one class); each may expire and be revoked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import locks, paths
from harness.errors import HarnessError

SCOPES = ("admin", "instructor", "join", "seat")
#: a seat is named for its place in the pool; the lab is CLASS-SEAT (training.klass.lab_name)
SEAT_RE = re.compile(r"s[0-9]{2}")
#: what a student may call themselves on the page: shown (escaped) on the instructor's table, no more
STUDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}")
SEAT_STATES = ("building", "ready", "claimed", "resetting", "failed")


def serve_dir() -> Path:
    return paths.private_dir(paths.home() / "serve")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What a presented token may do."""
    scope: str
    klass: str | None = None
    seat: str | None = None
    expires: float | None = None
    id: str = ""  # the first 12 hex digits of its hash: names it in the audit log, opens nothing

    def who(self) -> str:
        return ":".join(x for x in (self.scope, self.klass, self.seat) if x) + f"#{self.id}"


@dataclass
class Seat:
    state: str = "building"
    student: str | None = None
    claimed: float | None = None
    expires: float | None = None
    error: str = ""
    #: the last Check (exercise, passed, checks, messages, when)
    grade: dict[str, Any] | None = None


@dataclass
class Pool:
    """A served class: its topology, how many labs are kept ready, its seats."""
    name: str
    topology: str
    warm: int
    max_seats: int
    lease_seconds: float | None = None
    provider: str | None = None
    trusted: bool = False
    #: an Incus remote the labs go on (each whole on one member, placed by Incus) and each lab's limits
    remote: str | None = None
    budget: str | None = None
    created: float = field(default_factory=time.time)
    seats: dict[str, Seat] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(SEAT_STATES, 0)
        for s in self.seats.values():
            out[s.state] = out.get(s.state, 0) + 1
        return out

    def next_seat(self) -> str | None:
        for i in range(1, self.max_seats + 1):
            if f"s{i:02d}" not in self.seats:
                return f"s{i:02d}"
        return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pool:
        seats = {k: Seat(**v) for k, v in data.pop("seats", {}).items()}
        return cls(**data, seats=seats)


class Store:
    """Every record of the service, behind one lock (the service's threads share it); ``changed``
    wakes whoever waits for the next change (the pages' live updates)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or serve_dir()
        (self.root / "pools").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0

    # -- files --------------------------------------------------------------------------------
    def _read(self, path: Path, default: Any) -> Any:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return default

    def _write(self, path: Path, data: Any) -> None:
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        tmp.replace(path)

    def touch(self) -> None:
        with self.changed:
            self.version += 1
            self.changed.notify_all()

    # -- tokens -------------------------------------------------------------------------------
    @property
    def _tokens_file(self) -> Path:
        return self.root / "tokens.json"

    def mint(self, scope: str, klass: str | None = None, seat: str | None = None,
             expires: float | None = None) -> str:
        """A new token (returned once, stored hashed)."""
        if scope not in SCOPES:
            raise HarnessError(f"token scope {scope!r}: one of {', '.join(SCOPES)}")
        secret = secrets.token_urlsafe(32)
        with self.lock, locks.exclusive("serve-tokens"):
            tokens = self._read(self._tokens_file, {})
            tokens[digest(secret)] = {"scope": scope, "klass": klass, "seat": seat, "expires": expires,
                                      "revoked": False, "created": time.time()}
            self._write(self._tokens_file, tokens)
        return secret

    def check(self, secret: str | None, now: float | None = None) -> Grant | None:
        """The grant of a token that exists, is not revoked and has not expired; else None."""
        if not secret or len(secret) > 128:
            return None
        h = digest(secret)
        with self.lock:
            rec = self._read(self._tokens_file, {}).get(h)
        if rec is None or rec["revoked"]:
            return None
        if rec["expires"] is not None and (now or time.time()) >= rec["expires"]:
            return None
        return Grant(scope=rec["scope"], klass=rec["klass"], seat=rec["seat"], expires=rec["expires"], id=h[:12])

    def check_any(self, scope: str) -> bool:
        """Whether a live token of ``scope`` exists."""
        now = time.time()
        with self.lock:
            tokens = self._read(self._tokens_file, {})
        return any(r["scope"] == scope and not r["revoked"] and (r["expires"] is None or r["expires"] > now)
                   for r in tokens.values())

    def revoke(self, scope: str | None = None, klass: str | None = None, seat: str | None = None) -> int:
        """Revoke every token matching all the given fields; how many."""
        n = 0
        with self.lock, locks.exclusive("serve-tokens"):
            tokens = self._read(self._tokens_file, {})
            for rec in tokens.values():
                if rec["revoked"] or (scope and rec["scope"] != scope) or (klass and rec["klass"] != klass) \
                        or (seat and rec["seat"] != seat):
                    continue
                rec["revoked"] = True
                n += 1
            self._write(self._tokens_file, tokens)
        return n

    def expire_seat_tokens(self, klass: str, seat: str, expires: float | None) -> None:
        """A seat's live tokens expire with its lease (extend moves them along)."""
        with self.lock, locks.exclusive("serve-tokens"):
            tokens = self._read(self._tokens_file, {})
            for rec in tokens.values():
                if rec["scope"] == "seat" and rec["klass"] == klass and rec["seat"] == seat and not rec["revoked"]:
                    rec["expires"] = expires
            self._write(self._tokens_file, tokens)

    # -- pools --------------------------------------------------------------------------------
    def _pool_file(self, name: str) -> Path:
        return self.root / "pools" / f"{name}.json"

    def pools(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "pools").glob("*.json"))

    def pool(self, name: str) -> Pool:
        with self.lock:
            data = self._read(self._pool_file(name), None)
        if data is None:
            raise HarnessError(f"no served class {name!r}")
        return Pool.from_json(data)

    def save_pool(self, pool: Pool) -> None:
        with self.lock:
            self._write(self._pool_file(pool.name), asdict(pool))
        self.touch()

    def drop_pool(self, name: str) -> None:
        with self.lock:
            self._pool_file(name).unlink(missing_ok=True)
        self.touch()

    @contextmanager
    def editing(self, name: str) -> Iterator[Pool]:
        """The pool, read and saved under the lock (a change made in the block is written whole)."""
        with self.lock:
            pool = self.pool(name)
            yield pool
            self.save_pool(pool)

    # -- audit --------------------------------------------------------------------------------
    def audit(self, who: str, action: str, target: str, outcome: str, client: str = "") -> None:
        """One line per action: when, who (the token's scope and hash prefix, never the token), from where."""
        line = json.dumps({"when": round(time.time(), 3), "who": who, "action": action, "target": target,
                           "outcome": outcome, "client": client}, sort_keys=True)
        with self.lock:
            fd = os.open(self.root / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(line + "\n")
