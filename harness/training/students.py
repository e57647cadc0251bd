"""One student's lab brought up for a class, in this process: the student's key, the lab (made as
`storlab up TOPOLOGY --name CLASS-STUDENT --authorize KEY` makes it), its baseline snapshot, and
a log of its own.

The labs of a class come up side by side in threads. What `storlab up` in a child process gave
for free is kept by hand here: each student's log records (from their thread, and from the node
threads it starts, which copy its context) go to that student's own files only (STUDENT-up.log and
the lab's storlab.log), not to the other students' files and not to the terminal, which shows the
class's progress lines; a failing student raises, and the class's runner (klass.each) reports it
and goes on with the others; the lab's lock is let go when its bring-up ends, as the child
process let it go when it exited.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from harness import locks, log, paths
from harness.errors import HarnessError
from harness.lab.lab import BASELINE, Lab
from harness.nodes.node import on_each
from harness.run import succeed
from harness.training import handout
from harness.training.klass import Klass, lab_name

#: the student whose bring-up this thread (or a node thread it started) is doing; None: none
_student: contextvars.ContextVar[str | None] = contextvars.ContextVar("storlab_student", default=None)


class _Student(logging.Filter):
    """Passes the records logged for one student (``None``: only those logged for no student)."""

    def __init__(self, student: str | None) -> None:
        super().__init__()
        self.student = student

    def filter(self, record: logging.LogRecord) -> bool:
        return _student.get() == self.student


class StudentLog:
    """While entered: this thread works for ``student``, and what it logs goes to the files
    ``add``ed (only: the other students' files filter it out)."""

    def __init__(self, student: str, first: Path) -> None:
        self.student, self.first = student, first
        self.handlers: list[logging.Handler] = []
        self.token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> StudentLog:
        self.token = _student.set(self.student)
        self.add(self.first, mode="w")
        return self

    def add(self, path: Path, mode: str = "a") -> None:
        """Also log to ``path``. A lab's own log file given here before ``lab.up()`` is the one
        `log.add_logfile` then finds (same path) and leaves alone, instead of adding a handler
        for every thread of the process."""
        path.parent.mkdir(parents=True, exist_ok=True)
        h = logging.FileHandler(path.resolve(), mode=mode)
        h.setLevel(logging.DEBUG)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.add_filter(h)  # redacted, as every storlab handler
        h.addFilter(_Student(self.student))
        log.log.setLevel(logging.DEBUG)
        log.log.addHandler(h)
        self.handlers.append(h)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for h in self.handlers:
            log.log.removeHandler(h)
            h.close()
        if self.token is not None:
            _student.reset(self.token)


@contextmanager
def quiet_terminal() -> Iterator[None]:
    """The logger's handlers (the terminal's, a log file set up before) get no student's records
    while the students' labs come up: each student's go to their own files (StudentLog)."""
    handlers = list(log.log.handlers)
    quiet = _Student(None)
    for h in handlers:
        h.addFilter(quiet)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(quiet)


def student_key(k: Klass, student: str) -> Path:
    """The student's key pair in their handout directory (made once); returns the public key."""
    hd = paths.private_dir(handout.handouts_dir(k.dir) / student)  # handouts/ itself 0700 too
    key = hd / "id_ed25519"
    if not key.exists():
        succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"storlab-{k.name}-{student}", "-f", str(key)],
                timeout=30)
    return key.with_suffix(".pub")


def replace_key(lab: Lab, old: str | None, new: str) -> None:
    """Authorize ``new`` in place of ``old`` on every node of ``lab`` now, as on every node from `up`
    on (a seat handed to another student). The file is replaced whole over the node's own ssh
    (inside the node, not through its disk on this host)."""
    lab.access.replace(old, new)
    keys = lab.access.authorized_keys()
    script = ("umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys.storlab && "
              "mv -f /root/.ssh/authorized_keys.storlab /root/.ssh/authorized_keys")
    on_each(list(lab.nodes.values()), lambda n: n.succeed(["sh", "-c", script], input=keys), "authorized keys")


def lab_up(k: Klass, student: str, topology: str, provider: str | None, expire: float | None, pub: Path,
           logs: StudentLog) -> Lab:
    """What `storlab up TOPOLOGY --name CLASS-STUDENT --authorize PUB [--on incus:REMOTE | --provider
    P] [--budget B] [--disk-budget D] [--untrusted] [--for-class ID] [--expire Ns]` does (cli/lab.py, cmd_up), in the
    same order; then the baseline snapshot that `reset` returns to (VM labs do not take it)."""
    lab = Lab.from_topology(topology, provider, name=lab_name(k.name, student), remote=k.remote, budget=k.budget,
                            untrusted=not k.trusted, klass=k.id or None, disk_budget=k.disk_budget)
    lab.authorize(pub.read_text())
    logs.add(lab.logfile)
    start = time.monotonic()
    lab.up()
    if expire:
        lab.lease(int(expire))
    log.info(f"lab {lab.name} is up in {time.monotonic() - start:.0f}s ({len(lab.nodes)} nodes, {lab.plan.provider})")
    if BASELINE not in lab.snapshots():
        lab.snapshot(BASELINE)  # VM labs: reset needs it
    return lab


def bring_up(k: Klass, student: str, topology: str, provider: str | None, expire: float | None,
             progress: Callable[[str], None], t0: float) -> float:
    """``student``'s lab of class ``k`` up; its time in seconds. Raises HarnessError naming the
    student's log when it fails (the lab removed as `storlab up` removes a failed first up)."""
    name = lab_name(k.name, student)
    pub = student_key(k, student)
    up_log = k.dir / "logs" / f"{student}-up.log"
    s0 = time.monotonic()
    progress(f"  {student}: up ... ({time.monotonic() - t0:.0f}s)")
    with StudentLog(student, up_log) as logs:
        try:
            lab_up(k, student, topology, provider, expire, pub, logs)
        except Exception as exc:
            log.info(f"storlab: error: {type(exc).__name__}: {exc}")  # in the student's log, as `storlab up` said it
            raise HarnessError(f"up failed after {time.monotonic() - s0:.0f}s: {exc} (log {up_log})") from exc
        finally:
            locks.release(name)  # the child process let it go when it exited
    took = time.monotonic() - s0
    progress(f"  {student}: lab {name} up in {took:.0f}s ({time.monotonic() - t0:.0f}s)")
    return took
