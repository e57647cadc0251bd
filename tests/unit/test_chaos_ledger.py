"""The write ledger and its checker: self-describing blocks, a ledger that survives a crash of the
writing process, planted losses of every kind caught with the write's identity, a clean run clean."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from harness.chaos.checker import Unreadable, check, locations, read_file_blocks
from harness.chaos.ledger import BLOCK_HEADER, Ledger, LedgeredOp, decode_block, encode_block, read
from harness.errors import HarnessError
from harness.testing.workload import BlockFileWriter, WriteLog, Writer

SIZE = 512


def test_blocks_describe_themselves() -> None:
    b = encode_block("w1", 17, 8704, SIZE)
    assert len(b) == SIZE and b == encode_block("w1", 17, 8704, SIZE) != encode_block("w1", 18, 8704, SIZE)
    d = decode_block(b)
    assert d is not None and (d.writer, d.seq, d.offset, d.size, d.intact) == ("w1", 17, 8704, SIZE, True)
    flipped = bytearray(b)
    flipped[SIZE - 1] ^= 1
    assert (d2 := decode_block(bytes(flipped))) is not None and d2.seq == 17 and not d2.intact
    assert decode_block(bytes(SIZE)) is None and decode_block(b"x" * SIZE) is None
    assert (d3 := decode_block(b[:SIZE // 2])) is not None and not d3.intact  # cut short: torn
    for bad in ("", "a-writer-id-too-long", "nul\0"):
        with pytest.raises(ValueError):
            encode_block(bad, 0, 0, SIZE)
    with pytest.raises(ValueError):
        encode_block("w", 0, 0, BLOCK_HEADER - 8)


def test_the_ledger_survives_a_crash_of_the_writing_process(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    pid = os.fork()
    if pid == 0:  # the test process: writes, then dies mid-line without closing or flushing anything
        try:
            ledger = Ledger.open(path, seed=7, lab="gluster3")
            op = BlockFileWriter(str(tmp_path / "vol"), "w1", SIZE)
            for seq in range(5):
                ledger.intend(op.intent(seq))
                op(seq)
                ledger.ack("w1", seq)
            ledger.intend(op.intent(5))  # in flight when it died
            os.write(os.open(path, os.O_WRONLY | os.O_APPEND), b'{"ev":"ack","t":1')
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    records = read(path)
    assert records.torn == [13] and records.header["seed"] == 7 and records.header["lab"] == "gluster3"
    assert [r["seq"] for r in records.of("ack")] == [0, 1, 2, 3, 4]
    v = check(records, read_file_blocks(str(tmp_path / "vol"), str(tmp_path / "vol"), locations(records)))
    assert v.ok and (v.acked, v.in_doubt) == (5, 1) and v.ledger_torn_lines == [13] and v.seed == 7
    log = WriteLog.from_ledger(path, "w1")
    assert [s for _, s in log.acked] == [0, 1, 2, 3, 4]


def _run(tmp_path: Path, n: int = 24, span_blocks: int = 8, doubt: int = 0) -> tuple[Path, Path, BlockFileWriter]:
    """A run of ``n`` acknowledged writes wrapping every ``span_blocks``, then ``doubt`` never acknowledged."""
    vol, lpath = tmp_path / "vol.img", tmp_path / "ledger.jsonl"
    op = BlockFileWriter(str(vol), "w1", SIZE, span=span_blocks * SIZE, target="vol.img")
    with Ledger.open(lpath, seed=99) as ledger:
        for seq in range(n + doubt):
            ledger.intend(op.intent(seq))
            op(seq)
            if seq < n:
                ledger.ack("w1", seq)
    return vol, lpath, op


def _reads(vol: Path, lpath: Path) -> dict[tuple[str, int], bytes | Unreadable]:
    return read_file_blocks(str(vol), "vol.img", locations(read(lpath)))


def test_a_clean_run_reports_nothing(tmp_path: Path) -> None:
    vol, lpath, _ = _run(tmp_path)
    v = check(read(lpath), _reads(vol, lpath))
    assert v.ok and v.findings == [] and v.notes == []
    assert (v.acked, v.in_doubt, v.superseded) == (24, 0, 16)
    assert v.lines()[0] == "seed 99: 24 writes acknowledged, 0 in doubt; 0 lost (0 unreadable), 0 torn, 0 corrupt, 0 stale"


def test_every_kind_of_damage_is_caught_with_the_writes_identity(tmp_path: Path) -> None:
    vol, lpath, op = _run(tmp_path)  # seqs 16..23 are the last at offsets 0..7 blocks
    reads = _reads(vol, lpath)
    at = {seq: ("vol.img", op.offset(seq)) for seq in range(16, 24)}
    reads[at[16]] = bytes(SIZE)                                            # lost: zeros
    good = reads[at[17]]
    assert isinstance(good, bytes)
    reads[at[17]] = good[:SIZE // 2] + encode_block("w1", 9, op.offset(17), SIZE)[SIZE // 2:]  # torn
    reads[at[18]] = os.urandom(SIZE)                                       # corrupt: foreign
    reads[at[19]] = encode_block("w1", 20, op.offset(20), SIZE)            # corrupt: misdirected
    reads[at[20]] = encode_block("w1", 12, op.offset(20), SIZE)            # stale: older write there
    reads[at[21]] = Unreadable("Input/output error")                       # unreadable, counted as lost
    reads[at[22]] = b""                                                    # lost: file too short
    v = check(read(lpath), reads)
    got = {(f.category, f.write.seq) for f in v.findings}
    assert got == {("lost", 16), ("torn", 17), ("corrupt", 18), ("corrupt", 19), ("stale", 20),
                   ("unreadable", 21), ("lost", 22)}
    assert not v.ok and v.counts() == {"lost": 3, "unreadable": 1, "torn": 1, "corrupt": 2, "stale": 1}
    for f in v.findings:
        assert f.write.writer == "w1" and f.write.target == "vol.img" and f.write.offset == op.offset(f.write.seq)
        assert f.write.acked is not None and f.write.acked_wall is not None
        assert f"writer w1 seq {f.write.seq} at vol.img+{op.offset(f.write.seq)}" in f.describe(v.start)
    text = "\n".join(v.lines())
    assert "stale: writer w1 seq 20 at vol.img+2048" in text and "the older writer w1 seq 12" in text
    assert "unreadable: writer w1 seq 21" in text and "Input/output error" in text
    assert v.to_dict()["counts"]["lost"] == 3 and v.to_dict()["findings"][0]["writer"] == "w1"


def test_damage_an_in_doubt_write_may_have_caused_is_noted_not_reported(tmp_path: Path) -> None:
    vol, lpath, op = _run(tmp_path, n=20, doubt=2)  # seqs 20, 21 issued, never acknowledged
    reads = dict(_reads(vol, lpath))
    assert check(read(lpath), reads).ok  # the in-doubt writes landed: fine
    reads[("vol.img", op.offset(20))] = encode_block("w1", 12, op.offset(20), SIZE)  # acked 12, not 20: fine
    reads[("vol.img", op.offset(21))] = bytes(SIZE)  # zeroed while 21 was in flight: noted
    v = check(read(lpath), reads)
    assert v.ok and len(v.notes) == 1 and "after 1 write(s) in doubt (last acknowledged: writer w1 seq 13" in v.notes[0]
    reads[("vol.img", op.offset(20))] = encode_block("w1", 4, op.offset(20), SIZE)  # older than the acked 12
    assert [(f.category, f.write.seq) for f in check(read(lpath), reads).findings] == [("stale", 12)]


def test_a_read_back_missing_a_location_is_the_harnesss_failure(tmp_path: Path) -> None:
    vol, lpath, _ = _run(tmp_path, n=4)
    reads = _reads(vol, lpath)
    reads.pop(("vol.img", 0))
    with pytest.raises(HarnessError, match=r"lacks 1 of the ledger's 4 locations, first vol.img\+0"):
        check(read(lpath), reads)
    gone = read_file_blocks(str(tmp_path / "nope"), "vol.img", locations(read(lpath)))
    assert all(isinstance(r, Unreadable) and "No such file" in r.error for r in gone.values()) and len(gone) == 4


def test_the_writer_records_into_the_ledger_and_the_checker_agrees(tmp_path: Path) -> None:
    lpath = tmp_path / "ledger.jsonl"
    calls = iter(range(10_000))

    class Flaky(BlockFileWriter):  # every 5th attempt fails before it writes; retried with the same seq
        def __call__(self, seq: int) -> None:
            if next(calls) % 5 == 4:
                raise OSError("Transport endpoint is not connected")
            super().__call__(seq)

    ops = [Flaky(str(tmp_path / f"f{i}"), f"w{i}", SIZE, span=16 * SIZE, target=f"f{i}") for i in (1, 2)]
    assert isinstance(ops[0], LedgeredOp)
    with Ledger.open(lpath, seed=3) as ledger, Writer("a", ops[0], 0.001, ledger) as a, \
            Writer("b", ops[1], 0.001, ledger) as b:
        deadline = time.monotonic() + 10
        while (len(a.log.acked) < 40 or len(b.log.acked) < 40) and time.monotonic() < deadline:
            time.sleep(0.01)
    records = read(lpath)
    assert not records.torn and len(a.log.errors) >= 1
    reads = {k: v for op in ops for k, v in read_file_blocks(op.path, op.target, locations(records)).items()}
    v = check(records, reads)
    assert v.ok, v.lines()
    assert v.acked == len(a.log.acked) + len(b.log.acked) and v.availability.errors == len(a.log.errors) + len(b.log.errors)
    assert [s for _, s in WriteLog.from_ledger(lpath, "w1").acked] == [s for _, s in a.log.acked]


def test_a_ledger_needs_an_op_that_describes_its_writes_and_its_failure_stops_the_writer(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l")
    with pytest.raises(TypeError, match="LedgeredOp"):
        Writer("x", lambda seq: None, ledger=ledger)
    ledger.close()  # every record now fails: the harness broke, not the storage
    w = Writer("x", BlockFileWriter(str(tmp_path / "v"), "x", SIZE), 0.001, ledger)
    w.__enter__()
    deadline = time.monotonic() + 5
    while w.broken is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(HarnessError, match="writer x stopped: its ledger failed"):
        w.stop()
    assert not w.log.acked and not (tmp_path / "v").exists()


def test_the_ledger_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    path = tmp_path / "l"
    with Ledger(path, sync=False) as ledger:
        def many(i: int) -> None:
            for s in range(300):
                ledger.ack(f"w{i}", s)
        threads = [threading.Thread(target=many, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = read(path)
    assert not records.torn and len(records.lines) == 2400
