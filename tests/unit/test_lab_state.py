"""The typed lab state: a state.json as storlab wrote it before LabState reads without error and
keeps its values, a state round-trips, keys this storlab does not know are kept, and `is_up` is
the state's word and every node's answer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from harness.host.facts import PROFILES
from harness.lab.lab import Lab
from harness.lab.state import VERSION, LabState, Reverted, SnapshotInfo, migrate
from harness.plan.planner import make_plan
from harness.spec.validate import validate_text


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    topo, res = validate_text("lab: st\nprovider: lxc\nnetworks: [{name: n}]\nnodes: [{name: a}, {name: b}]\n",
                              PROFILES["ci"])
    return Lab(make_plan(topo, res, "st.yaml", set(), PROFILES["ci"]))


# what Lab.update_state wrote before LabState: json.dumps of a dict, no version, None as null,
# tuples as lists, an infinite lease as Infinity (an older `storlab lease LAB never`)
OLD = """{
  "status": "destroy-failed",
  "owner_pid": null,
  "owner_host": "ci-7",
  "created": 1764500000.5,
  "steps_done": ["image", "nodes", "ready", "role base"],
  "timings": {"image": 1.25, "nodes": 4.5},
  "location": "member2",
  "boot_seconds": {"a": 12, "b": 13.5},
  "owned": ["pool storlab-st-p"],
  "snapshots": {"up": {"taken": 1764500100.0, "seconds": 0.4, "bytes": 40960}},
  "reverted": {"to": "up", "at": 1764500200.0, "seconds": 6.3},
  "expires": Infinity,
  "exercise": null,
  "failures": [["container storlab-st-a", "device busy"]],
  "lab": "st",
  "provider": "lxc",
  "topology": "st.yaml",
  "updated": 1764500300.0
}"""


def test_an_old_state_json_reads_typed(lab: Lab) -> None:
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text(OLD)
    st = lab.state()
    assert st.version == VERSION and st.status == "destroy-failed" and st.owner_pid is None
    assert st.steps_done == ["image", "nodes", "ready", "role base"] and st.timings["nodes"] == 4.5
    assert st.boot_seconds == {"a": 12.0, "b": 13.5} and st.location == "member2"
    assert st.snapshots == {"up": SnapshotInfo(taken=1764500100.0, seconds=0.4, bytes=40960)}
    assert st.reverted == Reverted(to="up", at=1764500200.0, seconds=6.3)
    assert st.failures == [("container storlab-st-a", "device busy")]
    assert st.owned == ["pool storlab-st-p"] and lab.owns("pool storlab-st-p")
    assert not st.expired() and st.unknown_keys() == []
    assert lab.where() == "local:member2" and sorted(lab.snapshots()) == ["up"]
    assert lab.boot_bound("b")[0] >= 13.5
    # the first write brings the file to the new version and loses nothing
    lab.save_state(status="up")
    again = json.loads(lab.state_file.read_text())
    assert again["version"] == VERSION and again["status"] == "up"
    assert again["boot_seconds"] == {"a": 12.0, "b": 13.5} and again["failures"] == [["container storlab-st-a",
                                                                                        "device busy"]]


@pytest.mark.parametrize("text", ["", "{", "[]", "{}", '{"status": "up"}'])
def test_missing_or_partial_state_reads_with_defaults(lab: Lab, text: str) -> None:
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text(text)
    st = lab.state()
    assert st.steps_done == [] and st.snapshots == {} and st.expires is None and not st.expired()
    assert st.status in (None, "up")


def test_old_shapes_and_unreadable_values(caplog: pytest.LogCaptureFixture) -> None:
    raw = {"steps_done": None, "owned": None, "failures": [["only what"], "bare"], "snapshots": ["up", "before"],
           "boot_seconds": {"a": "slow"}, "expires": 5.0, "status": "up"}
    with caplog.at_level(logging.INFO, logger="storlab"):
        st = migrate(raw, "old/state.json")
    assert st.steps_done == [] and st.owned == []
    assert st.failures == [("only what", "?"), ("bare", "?")]
    assert sorted(st.snapshots) == ["before", "up"] and st.snapshots["up"].bytes == 0
    assert st.boot_seconds == {} and "dropped unreadable value(s) of boot_seconds" in caplog.text
    assert st.status == "up" and st.expired(now=6.0) and not st.expired(now=4.0)


def test_round_trip(lab: Lab) -> None:
    lab.save_state(status="creating", owner_pid=42, owner_host="h", created=1.5, steps_done=["image"],
                   timings={"image": 0.5}, failures=[("x", "why")], reverted={"to": "up", "at": 2.0, "seconds": 1.0})
    lab.booted("a", 7.0)
    lab.claim("pool p")
    lab.claim("pool p")  # claimed once
    st = lab.state()
    assert st.lab == "st" and st.provider == "lxc" and st.topology == lab.plan.topology and st.updated
    assert st.boot_seconds == {"a": 7.0} and st.owned == ["pool p"] and st.reverted == Reverted(to="up", at=2.0,
                                                                                              seconds=1.0)
    assert migrate(json.loads(st.to_json())) == st
    assert LabState.model_validate_json(st.to_json()) == st


def test_unknown_keys_are_kept_through_writes(lab: Lab) -> None:
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text(json.dumps({"version": VERSION + 1, "status": "up", "quota": {"cpus": 4},
                                          "note": "from a newer storlab"}))
    st = lab.state()
    assert st.status == "up" and st.unknown_keys() == ["note", "quota"]
    lab.save_state(exercise="nfs-no-root-squash")
    written = json.loads(lab.state_file.read_text())
    assert written["quota"] == {"cpus": 4} and written["note"] == "from a newer storlab"
    assert written["exercise"] == "nfs-no-root-squash" and written["version"] == VERSION


def test_a_field_that_is_not_there_is_an_error_not_a_new_key(lab: Lab) -> None:
    with pytest.raises(TypeError, match="statsu"):
        lab.save_state(statsu="up")
    assert lab.state().status is None


def test_is_up_is_the_state_and_every_node(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    running = {"a": True, "b": True}
    monkeypatch.setattr(lab.provider, "is_running", lambda node: running[node])
    assert not lab.is_up()  # no state yet
    lab.save_state(status="up")
    assert lab.is_up()
    running["b"] = False
    assert not lab.is_up()
    running["b"] = True
    lab.save_state(status="failed")
    assert not lab.is_up()


def test_what_reading_had_to_say_is_said_once_per_lab(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text(json.dumps({"version": VERSION + 1, "timings": {"image": "slow"}}))
    with caplog.at_level(logging.INFO, logger="storlab"):
        for _ in range(3):
            assert lab.state().timings == {}
    assert caplog.text.count("dropped unreadable value(s) of timings") == 1
    assert caplog.text.count("written by a newer storlab") == 1
