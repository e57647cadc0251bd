"""Pure parts of the fault-test workloads."""

from harness.testing.workload import WriteLog, block, check_appends


def test_intact_log_has_no_problems() -> None:
    assert check_appends(b"".join(block(s) for s in range(5)), [0, 1, 2, 3, 4], 4) == []


def test_failed_attempt_present_twice_is_allowed() -> None:
    # seq 2's first attempt reached a brick but its fsync failed; the retry succeeded
    content = b"".join(block(s) for s in (0, 1, 2, 2, 3))
    assert check_appends(content, [0, 1, 2, 3], 3) == []


def test_lost_acknowledged_write_is_reported() -> None:
    content = b"".join(block(s) for s in (0, 1, 3))
    assert "1 acknowledged write(s) missing or out of order, first seq 2" in check_appends(content, [0, 1, 2, 3], 3)


def test_reordered_and_foreign_and_torn_data_are_reported() -> None:
    assert check_appends(b"".join(block(s) for s in (1, 0)), [0, 1], 1)
    assert "unknown data at offset 4096" in check_appends(block(0) + b"x" * 4096, [0], 0)
    assert check_appends(block(0) + b"x", [0], 0)[0].startswith("torn write")


def test_max_gap_and_first_ack() -> None:
    log = WriteLog(acked=[(1.0, 0), (1.5, 1), (4.0, 2)])
    assert log.max_gap(1.0, 5.0) == 2.5
    assert log.first_ack_after(1.2) == 1.5 and log.first_ack_after(4.0) is None


def test_parse_exportfs_v() -> None:
    from harness.backends.nfs.role import parse_exportfs
    out = ("/srv/nfs/kvm  192.168.60.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,root_squash,no_all_squash)\n"
           "/srv/a-very-long-export-path-that-wraps\n\t\t*(ro,sync,root_squash)\n")
    got = parse_exportfs(out)
    assert "root_squash" in got["/srv/nfs/kvm"]["192.168.60.0/24"] and "rw" in got["/srv/nfs/kvm"]["192.168.60.0/24"]
    assert got["/srv/a-very-long-export-path-that-wraps"]["*"] == ["ro", "sync", "root_squash"]


def test_writer_reports_a_hung_write_and_what_happened_since() -> None:
    import threading
    import time

    from harness.testing.workload import Writer
    release = threading.Event()

    def op(seq: int) -> None:
        if seq == 1:
            raise OSError("connection refused")
        if seq >= 1:
            release.wait(5)

    calls = iter(range(100))
    with Writer("t", lambda _s: op(next(calls)), interval=0.01) as w:
        t0 = time.monotonic() - 0.001
        deadline = time.monotonic() + 5
        while w.in_flight is None or not w.log.errors:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.05)
        text = w.describe(t0)
        release.set()
    assert "refused" in text and "connection refused" in text, text
    assert "the current write has been under way for" in text, text
    assert w.in_flight is None


def test_writer_waits_report_what_the_writer_saw_on_timeout() -> None:
    import time

    import pytest

    from harness.testing.workload import Writer

    def op(seq: int) -> None:
        raise OSError("connection refused")

    with Writer("t", op, interval=0.01) as w:
        t0 = time.monotonic()
        w.wait_refused(t0, 5, "writes did not fail")
        with pytest.raises(AssertionError, match=r"writes did not resume: 0 writes acknowledged and \d+ refused"):
            w.wait_acked(t0, 0.3, "writes did not resume")
