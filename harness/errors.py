"""The two kinds of failure: the harness/infrastructure broke (HarnessError family),
or the user's input is wrong (TopologyError). Test failures stay plain AssertionError."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One mistake in a topology file, located precisely enough to fix it."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field or '<top>'}: {self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


class HarnessError(Exception):
    """The harness or the infrastructure under it failed (not a test verdict)."""


class TopologyError(HarnessError):
    """A topology file is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CommandError(HarnessError):
    """A command the harness ran exited non-zero where success was required."""

    def __init__(self, result: object, what: str = "") -> None:
        self.result = result
        super().__init__(what or str(result))


class WaitTimeout(HarnessError):
    """A bounded wait ran out; the message says what was awaited and what was seen last."""


class LabStateError(HarnessError):
    """The lab's persisted state does not allow the requested action."""


@dataclass
class CleanupReport:
    """Outcome of a teardown that continues past failing items."""

    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def merge(self, other: CleanupReport) -> None:
        self.removed += other.removed
        self.failed += other.failed
