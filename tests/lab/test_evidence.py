"""Failure evidence on a real lab: an inner pytest session on gluster-3 (as `ev-gluster3`) with a
test that fails after stopping glusterd on one node, an expected failure, and a test that fails
while another node is frozen. The failed tests' evidence outlives the lab (it is removed at the
end of the inner session), holds every node's journal and the backend's own state, and is named
on the terminal and in the JUnit file; the expected failure collects nothing; a frozen node costs
seconds, not minutes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.lab.lab import list_labs

TOPO = Path(__file__).resolve().parents[2] / "topologies" / "gluster-3.yaml"
PREFIX = "ev"
LAB = f"{PREFIX}-gluster3"
NODES = ("gluster1", "gluster2", "gluster3")

INNER = f'''
import pytest

pytestmark = pytest.mark.topology({str(TOPO)!r})


def test_glusterd_stays_up(nodes):
    for name, node in nodes.items():
        node.succeed(["logger", "-t", "evtest", f"{{name}}: the test begins"], timeout=30)
    nodes["gluster3"].stop_service("glusterd.service")
    state = nodes["gluster3"].run(["systemctl", "is-active", "glusterd.service"], timeout=30).stdout.strip()
    assert state == "active", f"glusterd on gluster3 is {{state}}"


@pytest.mark.xfail(reason="fails on purpose", strict=True)
def test_expected_failure(nodes):
    assert nodes["gluster1"].run(["false"], timeout=30).ok


@pytest.fixture
def gluster2_frozen(nodes):
    nodes["gluster2"].freeze()
    yield nodes["gluster2"]
    nodes["gluster2"].thaw()


def test_with_a_frozen_node(lab, gluster2_frozen):
    assert False, "gluster2 is frozen"
'''

JOURNAL_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d{2}:?\d{2} \S+ ", re.M)


@pytest.fixture
def inner_session(tmp_path: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], Path, float]]:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    if LAB in list_labs():
        pytest.fail(f"a lab {LAB} exists already (not this test's): `storlab down {LAB}` if it is a leftover")
    module = tmp_path / "test_inner.py"
    module.write_text(INNER)
    junit = tmp_path / "junit.xml"
    before = set(os.listdir(paths.home() / "evidence")) if (paths.home() / "evidence").is_dir() else set()
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", str(module), "--lab-prefix", PREFIX,
                            f"--junitxml={junit}", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull],
                           capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
        yield r, junit, time.monotonic() - t0
    finally:
        if LAB in list_labs():  # made by the inner session (checked absent above): never left behind
            subprocess.run([sys.executable, "-m", "harness.cli", "down", LAB], capture_output=True, timeout=600,
                           check=False)
        made = set(os.listdir(paths.home() / "evidence")) - before if (paths.home() / "evidence").is_dir() else set()
        if not os.environ.get("STORLAB_KEEP_EVIDENCE"):
            for name in made:
                if name.startswith(f"{LAB}-"):
                    shutil.rmtree(paths.home() / "evidence" / name, ignore_errors=True)


def test_failed_lab_tests_leave_evidence(inner_session: tuple[subprocess.CompletedProcess[str], Path, float]) -> None:
    r, junit, took = inner_session
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-4000:]  # the inner tests failed (and nothing else went wrong)
    assert re.search(r"2 failed, 1 xfailed", out), out[-2000:]
    assert LAB not in list_labs()  # the session removed its lab: evidence is what is left of it

    # the terminal names each failure's evidence, and the JUnit file holds it for the failed tests only
    named = dict(re.findall(r"evidence for test_inner\.py::(\w+): (\S+) \(collected in", out))
    assert set(named) == {"test_glusterd_stays_up", "test_with_a_frozen_node"}, out[-4000:]
    props = {case.get("name"): [p.get("value") for p in case.iter("property") if p.get("name") == "storlab_evidence"]
             for case in ET.parse(junit).getroot().iter("testcase")}
    assert props == {"test_glusterd_stays_up": [named["test_glusterd_stays_up"]], "test_expected_failure": [],
                     "test_with_a_frozen_node": [named["test_with_a_frozen_node"]]}, props

    for test, path in named.items():
        d = Path(path)
        assert d.parent == paths.home() / "evidence" and d.name.startswith(f"{LAB}-{test}-"), d
        assert sorted(f.name for f in d.iterdir()) == sorted(
            [*(f"{n}.txt" for n in NODES), "reason.txt", "storlab.log", "timeline.txt"]), sorted(os.listdir(d))
        assert f"test_inner.py::{test} failed (call)" in (d / "reason.txt").read_text()

    # glusterd stopped: the node's journal says so, the timeline has the fault, the peers' gluster state is there
    d = Path(named["test_glusterd_stays_up"])
    assert "glusterd on gluster3 is inactive" in (d / "reason.txt").read_text()
    assert "stop glusterd.service on gluster3" in (d / "timeline.txt").read_text()
    g3 = (d / "gluster3.txt").read_text()
    assert re.search(r"Stopp(ing|ed) glusterd", g3), g3[-3000:]
    assert not re.search(r"Start(ing|ed) glusterd", g3), "the journal starts once the lab is up, not at its bring-up"
    for n in NODES:
        text = (d / f"{n}.txt").read_text()
        assert re.search(rf"{JOURNAL_LINE.pattern}evtest\[\d+\]: {n}: the test begins$", text, re.M), \
            f"{n}: no journal line of the test\n{text[-2000:]}"
        assert "$ systemctl --failed" in text
    g1 = (d / "gluster1.txt").read_text()
    assert "Volume Name: kvmgluster" in g1 and "pending heals of kvmgluster" in g1, g1[:4000]

    # a frozen node: said so, its console log instead; the others' evidence still comes, within the bound
    d = Path(named["test_with_a_frozen_node"])
    g2 = (d / "gluster2.txt").read_text()
    assert "DOES NOT ANSWER" in g2 and "console log" in g2, g2[:2000]
    g1 = (d / "gluster1.txt").read_text()
    assert re.search(r"^\$ journalctl .*\(rc=0", g1, re.M) and "Volume Name: kvmgluster" in g1, g1[:4000]
    seconds = {t: float(s) for t, s in re.findall(r"test_inner\.py::(\w+): \S+ \(collected in ([\d.]+)s\)", out)}
    assert seconds["test_with_a_frozen_node"] < 60, f"evidence with a frozen node took {seconds}"
    print(f"inner session {took:.0f}s; evidence collected in {seconds}")
