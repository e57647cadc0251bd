"""Hostile topologies (tests/hostile/*.yaml): each is refused by `storlab validate` and by
`storlab plan` with exit 2 and a problem located at the field its `# expect:` line names,
before anything is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import main as cli

CORPUS = sorted((Path(__file__).resolve().parents[1] / "hostile").glob("*.yaml"))


def expected_field(path: Path) -> str:
    m = re.search(r"^# expect: (\S+)$", path.read_text(), re.MULTILINE)
    assert m, f"{path.name} has no '# expect: FIELD' line"
    return m.group(1)


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("topology", CORPUS, ids=[p.stem for p in CORPUS])
def test_hostile_topology_is_refused_at_its_field(topology: Path, tmp_path: Path, storlab_home: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    field = expected_field(topology)
    assert cli.main(["validate", str(topology), "--host-profile", "kvm"]) == 2
    err = capsys.readouterr().err
    located = re.findall(rf"^{re.escape(str(topology))}:(\d+):\d+: {re.escape(field)}: ", err, re.MULTILINE)
    assert located, f"no problem located at {field}:\n{err}"
    assert "Traceback" not in err and "fix:" in err
    out = tmp_path / "out"
    assert cli.main(["plan", str(topology), "--host-profile", "kvm", "-o", str(out)]) == 2
    assert not out.exists() and not storlab_home.exists(), "something was written for a refused topology"


def test_unreadable_or_oversized_files_are_problems_not_tracebacks(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"lab: t\nnodes: [{name: n\xe91}]\n")
    big = tmp_path / "big.yaml"
    big.write_text("lab: t\nnodes: [{name: n1}]\n" + "#" * (2 << 20) + "\n")
    for f, want in ((bad, "not UTF-8 text"), (big, "a topology has a few thousand")):
        assert cli.main(["validate", str(f), "--host-profile", "kvm"]) == 2
        err = capsys.readouterr().err
        assert want in err and "Traceback" not in err, err


@pytest.mark.parametrize(("text", "field", "want"), [
    ("lab: t\nnodes: [{name: n1}]\nx:\n  <<: {a: 1}\n", "x", "merge keys"),
    ("lab: t\ndescription: 2020-13-45\nnodes: [{name: n1}]\n", "description", "reads as a date"),
    ("lab: t\nnodes: [{name: n1}]\nx: !custom 1\n", "x", "YAML tag"),
    ("lab: t\nnodes: [{name: n1}]\nx: !!set {a, b}\n", "x", "YAML tag"),
    ("lab: t\nnodes: [{name: n1, cpus: " + "9" * 5000 + "}]\n", "nodes[0].cpus", "5000 digits"),
], ids=["merge-key", "bad-date", "custom-tag", "set", "int-past-pythons-str-limit"])
def test_yaml_the_safe_loader_would_choke_on_is_a_located_problem(text: str, field: str, want: str) -> None:
    from harness.errors import TopologyError
    from harness.spec.yamlload import load_text
    with pytest.raises(TopologyError) as exc:
        load_text(text, "t.yaml")
    p = exc.value.problems[0]
    assert (p.field, p.line is not None) == (field, True) and want in p.message, exc.value


def test_nesting_at_the_depth_limit_still_loads() -> None:
    from harness.spec.yamlload import MAX_DEPTH, load_text
    assert load_text("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", "t.yaml").data["a"] is not None
