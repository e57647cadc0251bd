"""`storlab image prune`: what is stale, what a lab keeps, and removal that never crosses a mount."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.host.facts import PROFILES
from harness.lab import images, lifecycle
from harness.lab.lab import Lab
from harness.plan.planner import make_plan
from harness.providers import base, image, stale
from harness.providers.vagrant import box, savedstate
from harness.spec import releases
from harness.spec.validate import validate_text
from harness.upgrade import bundle

OLD, USED = "0123456789abcdef", "fedcba9876543210"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path))
    return tmp_path


def _image(home: Path, key: str, *boxes: str) -> Path:
    d = home / "images" / key
    (d / "rootfs/etc").mkdir(parents=True)
    (d / "complete").write_text(key)
    for b in boxes:
        (d / b).mkdir()
    return d


def _lab(home: Path, name: str, state: dict[str, object]) -> None:
    d = home / "labs" / name
    d.mkdir(parents=True)
    (d / "plan.json").write_text("{}")
    (d / "state.json").write_text(json.dumps(state))


def test_labs_say_which_images_they_use_and_older_ones_do_not(home: Path) -> None:
    _lab(home, "a", {"status": "up", "images": [USED]})
    _lab(home, "b", {"status": "up"})
    assert images.in_use() == ({USED}, ["b"])


@pytest.fixture
def no_engines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Providers that cannot be asked (as on a host without vagrant or Incus): prune skips them."""
    def cannot(keep: set[str], in_use: set[str]) -> list[stale.Stale]:
        raise HarnessError("not installed")
    engines = {"vm": type("Vm", (), {"stale_cache": staticmethod(cannot)})}
    monkeypatch.setattr(base, "registered", lambda: engines)
    return list(engines)


def test_stale_images_are_those_no_release_builds_and_no_lab_uses(home: Path) -> None:
    _image(home, image.key_for(releases.DEFAULT))
    _image(home, OLD)
    _image(home, USED)
    (home / "images" / f".{OLD}.partial").mkdir()
    found = {(s.kind, s.name, s.why) for s in image.stale(images.current() | {USED})}
    assert found == {("image", OLD, "no release builds it"), ("image", f".{OLD}.partial", "an unfinished build")}


def test_box_files_of_an_older_format_are_stale_unless_a_box_is_installed_from_them(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    current = image.key_for(releases.DEFAULT)
    _image(home, current, f"box-{box.BOX_VERSION}", "box-3", "box-2")
    monkeypatch.setattr(box, "installed_boxes", lambda: {box.ref().name, f"storlab/debian12-{current}-b2",
                                                         f"storlab/debian12-{OLD}-b{box.BOX_VERSION}", "other/box"})
    monkeypatch.setattr(box, "_uploaded_size", lambda b: 7)
    found = {(s.kind, s.name, s.why) for s in box.stale(images.current())}
    assert found == {("vagrant box", f"storlab/debian12-{current}-b2", "an older box format"),
                     ("vagrant box", f"storlab/debian12-{OLD}-b{box.BOX_VERSION}", "no release builds its image"),
                     ("box files", f"{current}/box-3", "an older box format")}


def test_a_lab_from_before_the_record_keeps_every_image(home: Path, no_engines: list[str]) -> None:
    _image(home, OLD)
    _lab(home, "old", {"status": "up"})
    found = images.survey()
    assert found.stale == [] and found.unrecorded == ["old"]
    text = "\n".join(images.report(found, dry_run=True))
    assert "kept every image: lab(s) old" in text and "not looked at: vm: not installed" in text


def test_bundles_made_from_a_stale_image_are_stale(home: Path) -> None:
    for name, source in (("trixie-aaaa", image.key_for(releases.DEFAULT)), ("trixie-bbbb", OLD)):
        (home / "bundles" / name).mkdir(parents=True)
        (home / "bundles" / name / "bundle.json").write_text(json.dumps({"from_image": source}))
    assert [s.name for s in bundle.stale(images.current())] == ["trixie-bbbb"]


def test_saved_states_another_qemu_made_are_stale_unless_a_lab_uses_the_box(home: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(savedstate, "versions", lambda: "QEMU 9 / libvirt 11 / cpu")
    b = box.ref(releases.DEFAULT)
    label = "6.1-512m-1c-qemu"
    now = b.dir / "states" / f"{label}-{savedstate.state_key(b, label, 'QEMU 9 / libvirt 11 / cpu')}"
    before = b.dir / "states" / f"{label}-{savedstate.state_key(b, label, 'QEMU 7 / libvirt 9 / cpu')}"
    now.mkdir(parents=True)
    before.mkdir(parents=True)
    assert [s.name for s in savedstate.stale(set())] == [f"{b.key}/{before.name}"]
    assert savedstate.stale({b.key}) == []


def test_prune_removes_what_it_found_and_dry_run_nothing(home: Path, no_engines: list[str]) -> None:
    old = _image(home, OLD)
    found = images.prune(dry_run=True)
    assert [s.name for s in found.stale] == [OLD] and old.exists()
    images.prune()
    assert not old.exists()
    assert images.report(images.prune(), dry_run=False)[0] == "nothing to prune"


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_removal_never_descends_into_a_mount(tmp_path: Path) -> None:
    """A killed build's bind mount of /dev under a rootfs: rmtree would delete the host's nodes."""
    outside = tmp_path / "host-dev"
    outside.mkdir()
    (outside / "null").write_text("the host's")
    tree = tmp_path / "images" / OLD
    (tree / "rootfs/dev").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(outside), str(tree / "rootfs/dev")], check=True)
    try:
        assert stale.mounts_under(tree) == [str(tree / "rootfs/dev")]
        stale.remove_tree(tree)
    finally:
        subprocess.run(["umount", "-l", str(tree / "rootfs/dev")], check=False, capture_output=True)
    assert not tree.exists()
    assert (outside / "null").read_text() == "the host's"


def test_a_link_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(HarnessError, match="left alone"):
        stale.remove_tree(tmp_path / "link")
    assert target.exists()


def test_a_lab_records_its_images_before_they_are_built(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded first: an `up` killed in the image step already keeps what it began to use."""
    topo, res = validate_text("lab: im\nprovider: lxc\nrelease: bookworm\nnetworks: [{name: n}]\n"
                              "nodes: [{name: a}, {name: b, release: trixie}]\n", PROFILES["ci"])
    lab = Lab(make_plan(topo, res, "im.yaml", set(), PROFILES["ci"]))
    seen: list[list[str] | None] = []
    monkeypatch.setattr(image, "build", lambda release: seen.append(lab.state().images))
    lifecycle._image(lab)
    both = sorted(image.key_for(r) for r in ("bookworm", "trixie"))
    assert seen == [both, both] and lab.state().images == both
    (lab.dir / "plan.json").write_text("{}")  # what `up` writes before its steps
    assert images.in_use() == (set(both), [])


def test_image_list_names_the_release_of_current_images_and_sizes_them_as_prune_does(home: Path) -> None:
    current = _image(home, image.key_for("bookworm"))
    (current / "rootfs/etc/blob").write_bytes(b"x" * 3 * (1 << 20))
    _image(home, OLD)
    _image(home, USED).joinpath("complete").unlink()  # an unfinished build is not listed
    listed = {i["key"]: i for i in image.list_images()}
    assert set(listed) == {current.name, OLD}
    assert listed[current.name]["release"] == "bookworm" and listed[current.name]["current"] == "True"
    assert listed[OLD]["release"] == "-" and listed[OLD]["current"] == "False"
    assert listed[current.name]["size"] == stale.human(stale.size_of(current)) and "MiB" in listed[current.name]["size"]
