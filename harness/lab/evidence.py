"""Failure evidence: what an engineer needs from every node of a lab when something failed (a
bring-up, a lab test), written where it outlives the lab.

Per node that is up: `systemctl --failed`, each backend's own commands (`Backend.evidence`) and
the journal (since the test started, or of this boot for a failed `up`); for a node that is down
or does not answer, that fact and the provider's console log. Then the lab's fault timeline
(logs/faults.log, written by `Lab.mark`), the tail of its storlab.log, and the reason.

Every text written goes through `redact` (the secrets registered with `log.mask`, the lab's own
secrets, anything shaped like a cephx key). Time is bounded: a node must answer `true` within
PROBE_TIMEOUT, each command runs under COMMAND_TIMEOUT (on the node too: `timeout`), nodes are
read side by side and each within NODE_BUDGET, so a lab of frozen nodes costs seconds, not minutes.

Lab tests: `collect(lab, test_name, since_epoch, reason)` -> STORLAB_HOME/evidence/LAB-TEST-STAMP/,
called by the pytest plugin for a failed test. A failed `up`: `write(lab, dest, reason)`."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from harness import log, paths
from harness.backends.base import backends
from harness.errors import HarnessError
from harness.run import CommandResult

#: journal lines kept per node (the last ones), and storlab.log lines kept
JOURNAL_LINES = 2000
LOG_LINES = 2000
#: seconds a node has to answer `true` over ssh before it counts as not answering (frozen, cut off)
PROBE_TIMEOUT = 5.0
#: seconds one command may take, and all of one node's evidence (nodes are read side by side)
COMMAND_TIMEOUT = 20.0
NODE_BUDGET = 45.0
#: seconds the journal starts before the test did (clocks of VM nodes, the epoch's rounding)
JOURNAL_MARGIN = 2
#: at most this many characters of a failure's full text in reason.txt
REASON_CHARS = 20_000

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: a cephx key: base64 of 28 bytes whose first (the key type, 1) makes it start with AQ
_CEPHX_KEY = re.compile(r"\bAQ[A-Za-z0-9+/]{36}==")


class EvidenceNode(Protocol):
    """What evidence needs of a node (harness.nodes.node.Node; a fake in unit tests)."""

    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    def is_up(self) -> bool: ...

    def run(self, cmd: Sequence[str] | str, *, timeout: float = ..., input: str | None = ...) -> CommandResult: ...


class ConsoleLog(Protocol):
    def console_log(self, node: str) -> str: ...


class EvidenceLab(Protocol):
    """What evidence needs of a lab (harness.lab.lab.Lab; a fake in unit tests)."""

    @property
    def name(self) -> str: ...

    @property
    def nodes(self) -> Mapping[str, EvidenceNode]: ...

    @property
    def provider(self) -> ConsoleLog: ...

    @property
    def logs(self) -> Path: ...

    @property
    def secrets_dir(self) -> Path: ...


# -- names and redaction ------------------------------------------------------------------
def sanitize(text: str, limit: int = 80) -> str:
    """``text`` as a safe file-name part: runs of anything but [A-Za-z0-9_.-] become '_', no
    leading or trailing '.', '_' or '-' (no hidden files, no '..'), at most ``limit`` characters."""
    out = _UNSAFE.sub("_", text)[:limit].strip("._-")
    return out or "unnamed"


def evidence_root() -> Path:
    return paths.home() / "evidence"


def new_dir(lab: str, test: str, when: float | None = None, root: Path | None = None) -> Path:
    """A new directory ROOT/LAB-TEST-YYYYmmdd-HHMMSS (with -2, -3... if that second is taken)."""
    root = root or evidence_root()
    base = f"{sanitize(lab)}-{sanitize(test)}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        d = root / (base if i == 1 else f"{base}-{i}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise HarnessError(f"no free evidence directory name for {base} under {root}")


def redact(text: str) -> str:
    """``log.redact`` (every secret registered with log.mask), then anything shaped like a cephx key."""
    return _CEPHX_KEY.sub("****", log.redact(text))


def mask_lab_secrets(lab: EvidenceLab) -> None:
    """Register the lab's own secrets (CHAP passwords...) for masking: a session that reused a
    lab brought up elsewhere has not read them yet."""
    try:
        files = [f for f in lab.secrets_dir.iterdir() if f.is_file()]
    except OSError:
        return
    for f in files:
        try:
            log.mask(f.read_text().strip())
        except OSError:
            continue


# -- one node -------------------------------------------------------------------------------
def journal_command(since_epoch: float | None) -> list[str]:
    """The node's journal since ``since_epoch`` (this boot's when None), its last JOURNAL_LINES lines."""
    window = ["--since", f"@{int(since_epoch) - JOURNAL_MARGIN}"] if since_epoch else ["-b"]
    return ["journalctl", *window, "--no-pager", "-o", "short-iso-precise", "-n", str(JOURNAL_LINES)]


def node_commands(roles: tuple[str, ...], since_epoch: float | None) -> list[list[str]]:
    """What is run on an up node, in this order: failed units and the journal (local to the node,
    quick), then each backend's own evidence (which may wait on other nodes: a frozen peer
    makes it hang until its timeout). The journal is written last in the node's file."""
    out = [["systemctl", "--failed", "--no-pager"], journal_command(since_epoch)]
    out += [list(cmd) for b in backends() for cmd in b.evidence(roles)]
    # what runs there: its release and its backends' versions (an upgrade half done shows here)
    pkgs = list(dict.fromkeys(p for b in backends() if set(roles) & set(b.roles) for p in b.packages))
    out += [["cat", "/etc/debian_version"], *([["dpkg-query", "-W", *pkgs]] if pkgs else [])]
    return out


def _run(node: EvidenceNode, cmd: list[str], seconds: float) -> str:
    # `timeout` on the node ends the command there too (a killed ssh client leaves it running)
    t = max(1, int(seconds))
    t0 = time.monotonic()
    r = node.run(["timeout", "-k", "2", str(t), *cmd], timeout=t + 4)
    took = time.monotonic() - t0
    status = f"rc={r.rc}" + (" TIMED OUT" if r.rc in (124, 137) else "")
    return f"$ {' '.join(cmd)}   ({status}, {took:.1f}s)\n{r.stdout}{r.stderr}".rstrip("\n") + "\n"


def node_report(lab: EvidenceLab, node: EvidenceNode, since_epoch: float | None, console: bool = False) -> str:
    """The text of one node's evidence (not yet redacted). ``console``: the provider's console log
    even when the node is up (a failed boot)."""
    deadline = time.monotonic() + NODE_BUDGET
    head = f"# node {node.name} of lab {lab.name} (roles: {', '.join(node.roles) or 'none'})\n"
    head += f"# collected {time.strftime('%Y-%m-%d %H:%M:%S')}"
    if since_epoch:
        head += f"; journal since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since_epoch))} (test start)"
    parts = [head + "\n"]
    up = node.is_up()
    answers = None
    if not up:
        parts.append(f"NODE {node.name} IS DOWN (its provider reports it not running): no commands run\n")
    else:
        answers = node.run(["true"], timeout=PROBE_TIMEOUT)
        if not answers.ok:
            parts.append(f"NODE {node.name} DOES NOT ANSWER: `ssh {node.name} true` gave rc={answers.rc} within "
                         f"{PROBE_TIMEOUT:.0f}s ({answers.stderr.strip()[-300:]}): frozen, cut off or hung; no commands "
                         "run\n")
    if answers is not None and answers.ok:
        outputs = []
        for cmd in node_commands(node.roles, since_epoch):
            left = deadline - time.monotonic()
            if left < 1:
                outputs.append(f"$ {' '.join(cmd)}   (skipped: the node's {NODE_BUDGET:.0f}s evidence budget is spent)\n")
                continue
            outputs.append(_run(node, cmd, min(COMMAND_TIMEOUT, left)))
        parts += [outputs[0], *outputs[2:], outputs[1]]  # the (long) journal last
    if console or answers is None or not answers.ok:
        parts.append(f"--- console log (provider)\n{lab.provider.console_log(node.name) or '(none)'}\n")
    return "\n".join(parts)


def write_nodes(lab: EvidenceLab, dest: Path, since_epoch: float | None, console: bool = False) -> list[Path]:
    """NODE.txt in ``dest`` for every node, read side by side (each within NODE_BUDGET)."""
    nodes = list(lab.nodes.values())

    def one(node: EvidenceNode) -> Path:
        f = dest / f"{sanitize(node.name)}.txt"
        try:
            text = node_report(lab, node, since_epoch, console)
        except Exception as exc:  # one node's trouble does not cost the others their evidence
            text = f"# node {node.name}: collecting evidence failed: {type(exc).__name__}: {exc}\n"
        f.write_text(redact(text))
        return f

    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="storlab-evidence") as pool:
        return list(pool.map(one, nodes))


# -- the lab's own logs ---------------------------------------------------------------------
def tail(path: Path, lines: int, max_bytes: int = 4_000_000) -> str:
    """The last ``lines`` lines of a file (reading at most its last ``max_bytes``)."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        data = fh.read().decode(errors="replace")
    return "".join(data.splitlines(keepends=True)[-lines:])


def write_logs(lab: EvidenceLab, dest: Path, since_epoch: float | None) -> None:
    """timeline.txt (the lab's fault log) and storlab.log (its tail)."""
    faults = lab.logs / "faults.log"
    start = (f"# test started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since_epoch))} (its lab up)\n"
             if since_epoch else "")
    timeline = faults.read_text(errors="replace") if faults.exists() else f"(no faults marked on lab {lab.name})\n"
    (dest / "timeline.txt").write_text(redact(f"# fault timeline of lab {lab.name} ({faults})\n{start}{timeline}"))
    logfile = lab.logs / "storlab.log"
    if logfile.exists():
        (dest / "storlab.log").write_text(redact(tail(logfile, LOG_LINES)))


def write(lab: EvidenceLab, dest: Path, reason: str, since_epoch: float | None = None, console: bool = False) -> Path:
    """Everything into ``dest`` (made if missing): reason.txt, NODE.txt per node, timeline.txt, storlab.log."""
    dest.mkdir(parents=True, exist_ok=True)
    mask_lab_secrets(lab)
    (dest / "reason.txt").write_text(redact(reason).rstrip("\n") + "\n")
    write_nodes(lab, dest, since_epoch, console)
    write_logs(lab, dest, since_epoch)
    return dest


def collect(lab: EvidenceLab, test_name: str, since_epoch: float | None, reason: str,
            root: Path | None = None) -> Path:
    """A failed lab test's evidence, in a new STORLAB_HOME/evidence/LAB-TEST-YYYYmmdd-HHMMSS/
    (outside the lab's directory: labs are removed at the end of the session)."""
    return write(lab, new_dir(lab.name, test_name, root=root), reason, since_epoch)


def reason_text(nodeid: str, when: str, short: str, full: str = "") -> str:
    """reason.txt for a failed test: what failed where, its short message, then its full text."""
    text = f"{nodeid} failed ({when})\n{short.strip()}\n"
    if full.strip() and full.strip() != short.strip():
        text += f"\n--- full failure text\n{full.strip()[-REASON_CHARS:]}\n"
    return text
