"""Redaction at the source: every log record (storlab's handlers, pytest's capture), the JUnit
file, the terminal report and the matrix results lose registered secrets, private key blocks and
cephx keys before they are written."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import log
from harness.host.facts import PROFILES
from harness.lab import secrets
from harness.matrix import report as matrix_report
from harness.matrix import spec as mx

ROOT = Path(__file__).resolve().parents[2]
BODY = ["MIIEowIBAAKCAQEAzKq1pxBodyLineOneXyZ0123456789abcdefGHIJKLmnopqr",
        "QWERTYbodyLineTwoAbCdEf0123456789+/ghijklMNOPQRstuvwxYZ01234567"]
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(BODY) + "\n-----END RSA PRIVATE KEY-----\n"
OPENSSH = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQopensshBodyZZ\n"
           "-----END OPENSSH PRIVATE KEY-----")
PKCS8 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPkcs8BodyQQ\n-----END PRIVATE KEY-----"
CEPHX = "AQBkq4xfAAAAABAAB/9rCMBnR8gF0ZcOoHIqYQ=="
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPublicKeyStaysVisible0123456789 a@b"


def test_key_blocks_and_cephx_keys_are_redacted() -> None:
    text = f"key file:\n{PEM}then {OPENSSH} and {PKCS8}; ceph key = {CEPHX}\n{PUBLIC}\n"
    out = log.redact(text)
    for secret in (*BODY, "opensshBodyZZ", "pkcs8BodyQQ", CEPHX):
        assert secret not in out, out
    assert "-----BEGIN RSA PRIVATE KEY-----" in out and "key file:" in out and "then" in out
    assert PUBLIC in out  # a public key is not a secret


def test_a_key_block_cut_by_a_tail_or_a_head_is_still_redacted() -> None:
    head = PEM[: PEM.index(BODY[1]) + 10]  # a log line cut before the END line
    tail = PEM[PEM.index(BODY[0]) + 5:]    # a tail (stderr[-800:]) that starts inside the key
    for cut in (head, tail, "x\\n" + PEM.replace("\n", "\\n")):  # also repr()'d, with escaped newlines
        out = log.redact(f"before {cut} after")
        assert not any(b[8:] in out for b in BODY), out
        assert out.startswith("before ")


def test_registered_secrets_of_four_characters_and_more_are_masked_longest_first() -> None:
    log.mask("k9z!")
    log.mask("zq")  # 1-3 characters: not masked (documented in log.mask)
    assert log.redact("a k9z! b zq") == "a **** b zq"
    for short, long in (("Pw12", "Pw12-and-more"), ("xYz7long", "xYz7"), ("mno9", "mno9mno9mno9")):
        log.mask(short)
        log.mask(long)
        assert log.redact(f"<{long}>") == "<****>"


def test_secrets_stored_are_registered_at_once(tmp_path: Path) -> None:
    secrets.store(tmp_path / "s", "chap-x", "stored-only-1\n")
    assert "stored-only-1" not in log.redact("pw stored-only-1")


def test_the_filter_rewrites_the_record_for_pytest_capture(caplog: pytest.LogCaptureFixture) -> None:
    log.mask("caplog-secret-77")
    with caplog.at_level(logging.INFO):
        logging.getLogger("storlab").info("password %s", "caplog-secret-77")
        logging.getLogger("paramiko.transport").warning(f"auth with {CEPHX}")
    assert "caplog-secret-77" not in caplog.text and CEPHX not in caplog.text, caplog.text
    assert all("caplog-secret-77" not in r.getMessage() and CEPHX not in r.getMessage() for r in caplog.records)
    assert "password ****" in caplog.text


def test_the_filter_covers_exception_text() -> None:
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise RuntimeError(f"bad {CEPHX}")
    except RuntimeError:
        rec.exc_info = sys.exc_info()
    assert log.RedactFilter().filter(rec)
    assert rec.exc_text and CEPHX not in rec.exc_text and "RuntimeError" in rec.exc_text
    assert CEPHX not in logging.Formatter().format(rec)


def test_storlab_handlers_carry_the_filter(tmp_path: Path) -> None:
    log.setup(verbose=True, logfile=tmp_path / "storlab.log")
    try:
        ours = [h for h in log.log.handlers if getattr(h, "_storlab", False)]
        assert len(ours) == 2 and all(any(isinstance(f, log.RedactFilter) for f in h.filters) for h in ours)
        assert any(isinstance(f, log.RedactFilter) for f in log.log.filters)
    finally:
        for h in list(log.log.handlers):
            if getattr(h, "_storlab", False):
                log.log.removeHandler(h)
                h.close()


INNER = '''
import logging
from harness import log

SECRET = "inner-Secret-42"
log.mask(SECRET)
PEM = {pem!r}

def test_leaks(record_property):
    record_property("figure", "took 3s with " + SECRET)
    logging.getLogger("some.library").warning("connecting with " + SECRET)
    logging.getLogger("storlab").info("key:\\n" + PEM)
    print("stdout " + SECRET)
    assert SECRET == "x", "failed: " + PEM
'''


def test_pytest_report_and_junit_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER.format(pem=PEM))
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                          "-o", "junit_logging=all", "-o", "log_level=INFO", f"--junitxml={junit}",
                          str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 1, res.stdout + res.stderr  # the inner test fails, as it should
    xml = junit.read_text()
    assert "test_leaks" in xml and "connecting with ****" in xml, xml
    for where, text in (("junit", xml), ("terminal", res.stdout + res.stderr)):
        assert "inner-Secret-42" not in text, f"{where}:\n{text}"
        assert not any(b in text for b in BODY), f"{where}:\n{text}"


def test_matrix_results_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    f = tmp_path / "m.yaml"
    f.write_text(textwrap.dedent(f"""\
        matrix: g
        base: {ROOT / "topologies" / "gluster-3.yaml"}
        axes:
          ping:
            path: gluster.volumes[0].options["network.ping-timeout"]
            values: {{ping5: 5}}
        """))
    m = mx.load(f, PROFILES["ci"])
    log.mask("matrix-secret-9")
    results = {m.cells[0].name: {"test_x": {"outcome": "failed", "duration_s": 1.0, "figures": {"note": "matrix-secret-9"},
                                            "reason": f"E   {PEM[:90]}\nkey {CEPHX} pw matrix-secret-9"}}}
    md, html = matrix_report.save(m, m.cells, results, {})
    for p in (matrix_report.results_file(m), md, html):
        text = p.read_text()
        assert "matrix-secret-9" not in text and CEPHX not in text and BODY[0][8:] not in text, f"{p}:\n{text}"
    assert json.loads(matrix_report.results_file(m).read_text())["results"][m.cells[0].name]["test_x"]["outcome"] == "failed"
