"""A lab's persisted state (state.json) as a typed model, its migration from what older storlabs
wrote, and the locked read-change-write that every writer goes through."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import log

#: the shape written now; a file without "version" is version 1 (storlab before LabState)
VERSION = 2


class SnapshotInfo(BaseModel):
    """One snapshot of the lab: when, how long it took, how big it is on disk."""
    model_config = ConfigDict(extra="allow")
    taken: float = 0.0
    seconds: float = 0.0
    bytes: int = 0


class Reverted(BaseModel):
    """The last revert: to which snapshot, when, how long it took."""
    model_config = ConfigDict(extra="allow")
    to: str
    at: float = 0.0
    seconds: float = 0.0


class LabState(BaseModel):
    """What state.json holds. Keys this storlab does not know (written by a newer one, or an
    older one's leftovers) are kept and written back as they were: extra="allow"."""
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    version: int = VERSION
    # stamped on every write (Lab's identity)
    lab: str | None = None
    provider: str | None = None
    topology: str | None = None
    updated: float | None = None
    # lifecycle
    status: str | None = None  # creating, up, failed, destroying, destroy-failed (a newer storlab's: as is)
    owner_pid: int | None = None
    owner_host: str | None = None
    created: float | None = None
    location: str | None = None  # the engine remote's member the nodes are on
    steps_done: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    boot_seconds: dict[str, float] = Field(default_factory=dict)
    failures: list[tuple[str, str]] = Field(default_factory=list)  # what `down` could not remove
    owned: list[str] = Field(default_factory=list)  # host objects the lab made (claimed before made)
    images: list[str] | None = None  # golden image keys its nodes were made from (None: not recorded)
    # snapshots, lease, training
    snapshots: dict[str, SnapshotInfo] = Field(default_factory=dict)
    reverted: Reverted | None = None
    expires: float | None = None
    exercise: str | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and self.expires <= (now or time.time())

    def unknown_keys(self) -> list[str]:
        return sorted(self.model_extra or {})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2)


def migrate(raw: dict[str, Any], where: str = "state.json", say: Callable[[str], None] = log.info) -> LabState:
    """A LabState from what any storlab wrote: missing keys take their defaults, version 1's
    shapes are brought up to date, unknown keys are kept, and a known key whose value cannot be
    read is dropped with a log line (a lab whose state is half-readable can still be taken down)."""
    data = dict(raw)
    version = data.get("version", 1)
    if not isinstance(version, int) or version > VERSION:
        say(f"{where}: written by a newer storlab (version {version!r}); read as version {VERSION}, "
            "unknown keys kept")
    data["version"] = VERSION
    data = _from_v1(data)
    try:
        return LabState.model_validate(data)
    except ValidationError as exc:
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        say(f"{where}: dropped unreadable value(s) of {', '.join(bad)}")
        return LabState.model_validate({k: v for k, v in data.items() if k not in bad})


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (a plain dict) wrote null for "not set" and, before 2026-11-30, replaced whole
    maps; a snapshot entry or a revert may lack fields, a failure may be a one-element list."""
    for key in ("steps_done", "timings", "boot_seconds", "failures", "owned", "snapshots"):
        if data.get(key, ...) is None:
            del data[key]
    if isinstance(data.get("failures"), list):
        data["failures"] = [(list(f) + ["?"])[:2] if isinstance(f, list | tuple) else [str(f), "?"]
                            for f in data["failures"]]
    if isinstance(data.get("snapshots"), list):  # names only
        data["snapshots"] = {str(n): {} for n in data["snapshots"]}
    return data


class StateFile:
    """state.json in a lab's directory: read at any time, changed only under the lab's state lock
    (flock on .state.lock, one open file per writer so threads of a process exclude each other
    too), written to a per-writer temporary file and renamed over the old one (atomic)."""

    def __init__(self, directory: Path, stamp: Callable[[], dict[str, Any]]) -> None:
        self.dir = directory
        self.path = directory / "state.json"
        self._stamp = stamp
        self._told: set[str] = set()  # what reading the file had to say, said once per lab object

    def read(self) -> LabState:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return LabState()
        if not isinstance(raw, dict):
            log.info(f"{self.path}: not a JSON object; read as empty")
            return LabState()
        st = migrate(raw, str(self.path), self._once(log.info))
        if st.unknown_keys():
            self._once(log.debug)(f"{self.path}: keys this storlab does not know, kept as they are: "
                                  f"{', '.join(st.unknown_keys())}")
        return st

    def _once(self, say: Callable[[str], None]) -> Callable[[str], None]:
        def once(msg: str) -> None:
            if msg not in self._told:
                self._told.add(msg)
                say(msg)
        return once

    def update(self, change: Callable[[LabState], object]) -> LabState:
        """Read, change and write under the lock: nodes restarted side by side record their boots
        from threads at once, and another process may set a lease meanwhile."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".state.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            st = self.read()
            change(st)
            for key, value in {**self._stamp(), "updated": time.time(), "version": VERSION}.items():
                setattr(st, key, value)
            tmp = self.dir / f".state.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_text(st.to_json())
            tmp.replace(self.path)
            return st

    def save(self, **changes: Any) -> LabState:
        """Set fields (checked against LabState: an unknown field is an error, not a new key)."""
        unknown = sorted(set(changes) - set(LabState.model_fields))
        if unknown:
            raise TypeError(f"LabState has no field(s) {', '.join(unknown)}")

        def apply(st: LabState) -> None:
            for key, value in changes.items():
                setattr(st, key, value)
        return self.update(apply)
