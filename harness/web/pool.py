"""Warm pools: a served class keeps ``warm`` labs up and unclaimed, so that a student's claim
takes one at once; a released seat goes back to its baseline (and its key is replaced) instead
of being destroyed; a claimed seat is released when its lease runs out.

Seats are the class's students in `storlab class` terms (s01, s02, ...: the lab is CLASS-sNN):
bring-up, reset, exercises, grading and removal are the class's own (training.classroom), so a
served class is also an ordinary class for the CLI. Long work (bring-up, reset) runs in two
worker threads (one builds, one resets: a reset never waits behind a bring-up); the capacity
check of `class up` is asked before each seat is built, and a seat with no room waits and is tried
again (RETRY_S) instead of failing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import locks, log
from harness.backends.base import backends
from harness.errors import HarnessError
from harness.lab.lab import Lab
from harness.lab.snapshots import BASELINE
from harness.training import classroom, handout, jump
from harness.training import exercise as training
from harness.training.klass import CLASS_RE, Klass, list_classes
from harness.training.students import replace_key, student_key
from harness.web.store import SEAT_RE, STUDENT_RE, Pool, Seat, Store

#: a lab's own lease runs this long past its seat's: a backstop for `storlab reap` if the service is down
LEASE_GRACE = 3600.0
MAX_SEATS = 99
#: a seat the host has no room for now is tried again this much later (s)
RETRY_S = 30.0


class NoRoom(HarnessError):
    """The host (or remote) has no room for another lab now; the seat waits."""


def topology_file(name: str, root: Path) -> Path:
    """A topology by name, from the allow-list: the .yaml files of ``root`` (topologies/)."""
    allowed = {p.stem: p for p in root.glob("*.yaml")}
    if name not in allowed:
        raise HarnessError(f"topology {name!r}: one of {', '.join(sorted(allowed)) or 'none'}")
    return allowed[name].resolve()


def _current(k: Klass) -> training.Exercise:
    """The class's current exercise (HarnessError while none is set)."""
    if not k.exercise:
        raise HarnessError("no exercise is set for this class yet")
    return training.load(k.exercise)


def _apply_current(k: Klass, lab: Lab) -> None:
    """The class's current exercise (if any) applied to a lab that joins the pool again (built or reset)."""
    if k.exercise:
        training.load(k.exercise).break_lab(lab)
        lab.save_state(exercise=k.exercise)


class Pools:
    def __init__(self, store: Store, topologies: Path, progress: Callable[[str], None] = log.info) -> None:
        self.store = store
        self.topologies = topologies
        self.progress = progress
        self.builds: queue.Queue[tuple[str, str]] = queue.Queue()
        self.resets: queue.Queue[tuple[str, str, bool]] = queue.Queue()
        self.queued: set[tuple[str, str]] = set()
        self.health: dict[tuple[str, str], str] = {}
        self.retry_at: dict[tuple[str, str], float] = {}
        self.grading = threading.Semaphore(2)
        self.stop = threading.Event()

    # -- classes ----------------------------------------------------------------------------
    def create(self, name: str, topology: str, warm: int, max_seats: int, lease_seconds: float | None,
               provider: str | None, trusted: bool, remote: str | None = None,
               budget: str | None = None) -> dict[str, str]:
        """A served class (refused before anything is made if it cannot be); its instructor and
        join tokens, returned once."""
        if not CLASS_RE.fullmatch(name):
            raise HarnessError(f"class name {name!r}: 1-12 lower-case letters and digits, starting with a letter")
        if name in self.store.pools() or name in list_classes():
            raise HarnessError(f"class {name} exists: pick another name")
        if jump.sshd_pid() is None:  # every seat's handout goes through it: refused now, not per seat later
            raise HarnessError("the jump sshd for student access is not running: run `bash ci/setup-host.sh --class`")
        if not 0 <= warm <= max_seats <= MAX_SEATS:
            raise HarnessError(f"warm {warm}, seats {max_seats}: 0 <= warm <= seats <= {MAX_SEATS}")
        topo = topology_file(topology, self.topologies)
        # the whole class sized and its isolation checked now, as `class up` does; nothing made yet
        classroom.check_capacity(str(topo), provider, max(1, warm), remote=remote, untrusted=not trusted)
        self.store.save_pool(Pool(name=name, topology=str(topo), warm=warm, max_seats=max_seats,
                                  lease_seconds=lease_seconds, provider=provider, trusted=trusted, remote=remote,
                                  budget=budget))
        return {"instructor": self.store.mint("instructor", klass=name),
                "join": self.store.mint("join", klass=name)}

    def end(self, name: str) -> list[str]:
        """Every lab of the class removed, its tokens revoked, its records gone; problems, if any.
        Refused, before anything changes, while another process (a running service) holds one of its
        labs: their locks are taken first, as `down` would take them."""
        klass = Klass.load(name) if name in list_classes() else None
        for lab in sorted(klass.labs().values() if klass else [], key=lambda lab: lab.name):
            try:
                locks.hold(lab.name)
            except locks.LabBusy:
                raise HarnessError(f"class {name} is being served: {locks.holder(lab.name)} holds lab {lab.name}; "
                                   f"end it through that service (DELETE /api/classes/{name} with the admin "
                                   "token), or stop the service and run this again") from None
        self.store.revoke(klass=name)
        with self.store.editing(name) as pool:
            pool.warm = 0
            pool.max_seats = 0
        problems = classroom.down(klass, progress=self.progress) if klass else []
        if not problems:
            self.store.drop_pool(name)
        return problems

    # -- seats ------------------------------------------------------------------------------
    def claim(self, name: str, student: str) -> tuple[str, str]:
        """A ready seat for ``student`` (or, none being ready, a new one that is built now): the seat and its token."""
        if not STUDENT_RE.fullmatch(student):
            raise HarnessError("a name of 1-40 letters, digits, spaces, '.', '_' or '-'")
        with self.store.editing(name) as pool:
            ready = sorted(s for s, st in pool.seats.items() if st.state == "ready")
            coming = sorted(s for s, st in pool.seats.items() if st.state == "building" and st.student is None)
            seat = next(iter(ready + coming), None) or pool.next_seat()  # ready; else on its way; else a new one
            if seat is None:
                raise HarnessError(f"class {name} is full ({pool.max_seats} seats)")
            st = pool.seats.setdefault(seat, Seat(state="building"))
            now = time.time()
            st.student, st.claimed, st.grade = student, now, None
            st.expires = now + pool.lease_seconds if pool.lease_seconds else None
            if st.state == "ready":
                st.state = "claimed"
            expires = st.expires
        token = self.store.mint("seat", klass=name, seat=seat, expires=expires)
        if seat in ready:
            self._lease(name, seat, expires)
        self.store.touch()
        return seat, token

    def _lease(self, name: str, seat: str, expires: float | None) -> None:
        lab = self.lab(name, seat)
        lab.lease(expires - time.time() + LEASE_GRACE if expires else None)

    def release(self, name: str, seat: str) -> None:
        """The student's tokens revoked; the seat back to its baseline with a new key, then ready."""
        self.store.revoke(klass=name, seat=seat)
        with self.store.editing(name) as pool:
            st = self._seat(pool, seat)
            st.student, st.claimed, st.expires, st.grade = None, None, None, None
            if st.state == "failed":  # built again (a lab left half up is removed first)
                st.state = "building"
            reset = st.state in ("ready", "claimed")  # a seat being built or reset just goes on: free
            st.state = "resetting" if reset else st.state
        if reset:
            self._queue_reset(name, seat, True)

    def reset(self, name: str, seat: str) -> None:
        """Back to the baseline, the class's exercise applied again; the same student keeps the seat."""
        with self.store.editing(name) as pool:
            st = self._seat(pool, seat)
            if st.state != "claimed":
                raise HarnessError(f"seat {seat} is {st.state}: only a claimed seat is reset")
            st.state, st.grade = "resetting", None
        self._queue_reset(name, seat, False)

    def extend(self, name: str, seat: str, seconds: float) -> float | None:
        with self.store.editing(name) as pool:
            st = self._seat(pool, seat)
            if st.state not in ("claimed", "resetting") or st.student is None:
                raise HarnessError(f"seat {seat} is not held by a student")
            st.expires = (st.expires or time.time()) + seconds
            expires = st.expires
        self.store.expire_seat_tokens(name, seat, expires)
        self._lease(name, seat, expires)
        return expires

    def _seat(self, pool: Pool, seat: str) -> Seat:
        if not SEAT_RE.fullmatch(seat) or seat not in pool.seats:
            raise HarnessError(f"class {pool.name} has no seat {seat!r}")
        return pool.seats[seat]

    def lab(self, name: str, seat: str) -> Lab:
        return Klass.load(name).lab(seat)

    # -- exercises and checks ---------------------------------------------------------------
    def apply_exercise(self, name: str, exercise: str) -> dict[str, str]:
        """The exercise on every lab of the class, the class's current exercise from now on (seats
        made or reset later get it too)."""
        ex = training.load(exercise)  # refuses a name not among the exercises
        out = classroom.exercise(Klass.load(name), ex.name)
        self.store.touch()
        return out

    def check(self, name: str, seat: str) -> dict[str, Any]:
        """The class's exercise graded on this seat's lab only; what each check says."""
        k = Klass.load(name)
        ex = _current(k)
        lab = k.lab(seat)
        with self.grading:
            g = training.grade(lab, ex, k.dir / "grades" / f"{seat}-{ex.name}.xml")
        result = {"exercise": ex.name, "passed": g.passed, "checks": g.checks, "messages": g.messages, "when": g.when}
        with self.store.editing(name) as pool:
            self._seat(pool, seat).grade = result
        return result

    def solve(self, name: str, seat: str) -> str:
        """The class's exercise's model solution on this seat's lab (the instructor shows the way)."""
        k = Klass.load(name)
        exercise = _current(k).name
        with self.store.editing(name) as pool:
            if self._seat(pool, seat).state not in ("claimed", "ready"):
                raise HarnessError(f"seat {seat} is {pool.seats[seat].state}")
        classroom.solve(k, exercise, seat)
        return exercise

    # -- the background work ----------------------------------------------------------------
    def _queue_reset(self, name: str, seat: str, new_key: bool) -> None:
        if (name, seat) not in self.queued:
            self.queued.add((name, seat))
            self.resets.put((name, seat, new_key))

    def tick(self) -> None:
        """Expired seats released; the pool filled up to ``warm`` ready seats; unfinished work queued
        (after a restart: seats building or resetting when the service stopped)."""
        now = time.time()
        for name in self.store.pools():
            pool = self.store.pool(name)
            for seat, st in pool.seats.items():
                if st.state == "claimed" and st.expires and now >= st.expires:
                    log.info(f"class {name}: seat {seat}'s lease ran out: released")
                    self.store.audit("service", "expire", f"{name}/{seat}", "released")
                    self.release(name, seat)
                elif st.state == "building" and (name, seat) not in self.queued \
                        and time.monotonic() >= self.retry_at.get((name, seat), 0):
                    self.queued.add((name, seat))
                    self.builds.put((name, seat))
                elif st.state == "resetting" and (name, seat) not in self.queued:
                    self._queue_reset(name, seat, st.student is None)
            # a failed seat holds its place (the instructor releases it to rebuild it): a bring-up that
            # fails does not make the pool try seat after seat
            with self.store.editing(name) as p:
                spare = sum(1 for st in p.seats.values() if st.state in ("ready", "building", "failed")
                            and st.student is None)
                if spare < p.warm and (new := p.next_seat()) is not None:
                    p.seats[new] = Seat(state="building")

    def _build(self, name: str, seat: str) -> None:
        pool = self.store.pool(name)
        try:  # the host's room now, for one more lab: without it the seat waits, it does not fail
            classroom.check_capacity(pool.topology, pool.provider, 1, remote=pool.remote, untrusted=not pool.trusted)
        except HarnessError as exc:
            self.retry_at[(name, seat)] = time.monotonic() + RETRY_S
            with self.store.editing(name) as p:
                p.seats[seat].error = f"waiting for room (again in {RETRY_S:.0f}s): {exc}"[:500]
            raise NoRoom(str(exc)) from None
        half = Klass.load(name).labs().get(seat) if name in list_classes() else None
        if half is not None and (not half.is_up() or BASELINE not in half.snapshots()):
            half.down()  # a bring-up the service's stop cut short
        k = classroom.up(pool.topology, [seat], name, provider=pool.provider, parallel=1, progress=self.progress,
                         trusted=pool.trusted, remote=pool.remote, budget=pool.budget)
        if seat in k.failed:
            raise HarnessError(k.failed[seat])
        lab = k.lab(seat)
        _apply_current(k, lab)
        locks.release(lab.name)
        with self.store.editing(name) as p:
            st = p.seats[seat]
            st.state, st.error = ("claimed" if st.student else "ready"), ""
            expires = st.expires
        if expires:
            self._lease(name, seat, expires)

    def _reset(self, name: str, seat: str, new_key: bool) -> None:
        k = Klass.load(name)
        lab = k.lab(seat)
        locks.hold(lab.name)
        try:
            lab.reset()
            pub = handout.handouts_dir(k.dir) / seat / "id_ed25519.pub"
            old = pub.read_text() if pub.exists() else None
            if new_key:  # the last student's key (and handout) opens nothing from now on
                pub.unlink(missing_ok=True)
                pub.with_suffix("").unlink(missing_ok=True)
            replace_key(lab, old, student_key(k, seat).read_text())
            _apply_current(k, lab)
            if new_key:  # back in the pool: no lease until the next claim
                lab.lease(None)
        finally:
            locks.release(lab.name)
        handout.refresh_access(k)
        with self.store.editing(name) as p:
            st = p.seats[seat]
            st.state, st.error = ("claimed" if st.student else "ready"), ""

    def _worker(self, jobs: queue.Queue[Any], fn: Callable[..., None], what: str) -> None:
        while not self.stop.is_set():
            try:
                job = jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            name, seat = job[0], job[1]
            t0 = time.monotonic()
            try:
                fn(*job)
                log.info(f"class {name}: seat {seat} {what} in {time.monotonic() - t0:.1f}s")
            except NoRoom as exc:
                log.info(f"class {name}: seat {seat} waits for room: {exc}")
            except Exception as exc:  # the seat is marked failed; the service goes on
                log.info(f"class {name}: seat {seat}: {what} failed: {exc}")
                try:
                    with self.store.editing(name) as p:
                        if seat in p.seats:
                            p.seats[seat].state, p.seats[seat].error = "failed", str(exc)[:500]
                except HarnessError:
                    pass  # the class ended meanwhile
            finally:
                self.queued.discard((name, seat))
                self.store.touch()

    def _health(self) -> None:
        """Each ready or claimed seat's backends asked whether they are whole (what a chaos run waits
        for: bricks online and nothing to heal, HEALTH_OK, sessions back), one seat after another."""
        while not self.stop.wait(2.0):
            for name in self.store.pools():
                try:
                    pool = self.store.pool(name)
                except HarnessError:
                    continue
                for seat, st in pool.seats.items():
                    if st.state not in ("ready", "claimed") or self.stop.is_set():
                        continue
                    before = self.health.get((name, seat))
                    self.health[(name, seat)] = self._seat_health(name, seat)
                    if self.health[(name, seat)] != before:
                        self.store.touch()

    def _seat_health(self, name: str, seat: str) -> str:
        try:
            lab = self.lab(name, seat)
            for b in backends():
                support = b.chaos() if b.planned(lab.plan) is not None else None
                if support is not None and (why := support.health(lab)):
                    return f"{b.name}: waiting for {why}"
            return "ok"
        except Exception as exc:  # shown on the instructor's table, not raised
            return f"unknown: {str(exc)[:120]}"

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._worker, args=(self.builds, self._build, "built"), daemon=True,
                                    name="storlab-serve-build"),
                   threading.Thread(target=self._worker, args=(self.resets, self._reset, "reset"), daemon=True,
                                    name="storlab-serve-reset"),
                   threading.Thread(target=self._health, daemon=True, name="storlab-serve-health"),
                   threading.Thread(target=self._loop, daemon=True, name="storlab-serve-pool")]
        for t in threads:
            t.start()
        return threads

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # logged; the next tick tries again
                log.info(f"serve: pool tick failed: {exc}")
            with self.store.changed:
                self.store.changed.wait(2.0)
