"""Progress lines (harness.log): steps nest and time themselves, and a long step that says nothing
says that it is still running, once per quiet spell, for the innermost steps only."""

from __future__ import annotations

import contextvars
import logging
import re
import threading

import pytest

from harness import log


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split("] ", 1)[1] for r in caplog.records]


def test_a_quiet_step_says_it_is_still_running_at_its_own_depth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storlab")
    with log.step("upgrade"), log.step("nfs1: install the distribution"):
        t = log._said[0]
        assert log.still_running(t + log.QUIET - 1) == []  # something was said a moment ago
        lines = log.still_running(t + log.QUIET + 1)
        assert len(lines) == 1 and re.fullmatch(r"nfs1: install the distribution: still running after 6\ds", lines[0])
        # said now: the next quiet spell starts here, so there is no second line at once
        assert log.still_running(log._said[0] + 1) == []
    assert messages(caplog)[2] == "  " + lines[0]  # at its step's depth, as its "done" line will be
    assert messages(caplog)[-1].startswith("upgrade: done in")
    assert log.still_running(log._said[0] + 10 * log.QUIET) == []  # no step open: nothing to say


def test_steps_in_worker_threads_are_the_innermost_not_the_step_that_waits_for_them() -> None:
    inside, release = threading.Barrier(3), threading.Event()

    def node(name: str) -> None:
        with log.step(f"{name}: install"):
            inside.wait(5)
            release.wait(5)

    with log.step("install on each node"):
        workers = [threading.Thread(target=contextvars.copy_context().run, args=(node, n)) for n in ("nfs1", "nfs2")]
        for w in workers:
            w.start()
        inside.wait(5)
        lines = log.still_running(log._said[0] + log.QUIET)
        release.set()
        for w in workers:
            w.join(5)
    assert sorted(line.split(": still")[0] for line in lines) == ["nfs1: install", "nfs2: install"]


def test_a_failed_step_is_no_longer_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storlab")
    with pytest.raises(RuntimeError), log.step("doomed"):
        raise RuntimeError("x")
    assert messages(caplog)[-1].startswith("doomed: FAILED after")
    assert log.still_running(log._said[0] + 10 * log.QUIET) == []
