"""Writing into a node's root filesystem from the host (providers/nodefs.py): root in the node
controls every name there, so a link it planted, as the last or a middle component, is never
followed onto the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.providers import nodefs


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "upper"
    outside = tmp_path / "host-etc"
    root.mkdir()
    outside.mkdir()
    return root, outside


def test_files_are_written_with_their_mode_and_directories_made(node: tuple[Path, Path]) -> None:
    root, _ = node
    nodefs.write(root, "root/.ssh/authorized_keys", "ssh-ed25519 AAAA k\n", mode=0o600, dir_mode=0o700)
    f = root / "root/.ssh/authorized_keys"
    assert f.read_text() == "ssh-ed25519 AAAA k\n"
    assert f.stat().st_mode & 0o777 == 0o600 and (root / "root/.ssh").stat().st_mode & 0o777 == 0o700
    nodefs.write(root, "root/.ssh/authorized_keys", "new\n")  # replaced whole
    assert f.read_text() == "new\n"


def test_a_planted_directory_link_is_refused_not_followed(node: tuple[Path, Path]) -> None:
    root, outside = node
    (root / "root").mkdir()
    (root / "root/.ssh").symlink_to(outside)  # what a student's `ln -s /etc /root/.ssh` leaves in upper
    with pytest.raises(HarnessError, match=r"/root/\.ssh in the node is not a directory"):
        nodefs.write(root, "root/.ssh/authorized_keys", "key\n")
    assert list(outside.iterdir()) == []


def test_a_link_as_a_middle_component_is_refused(node: tuple[Path, Path]) -> None:
    root, outside = node
    (root / "etc").symlink_to(outside)
    with pytest.raises(HarnessError):
        nodefs.write(root, "etc/systemd/system/x.service", "")
    with pytest.raises(HarnessError):
        nodefs.mask(root, "etc/systemd/system", ["a.service"])
    assert list(outside.iterdir()) == []


def test_a_planted_file_link_is_replaced_and_its_target_untouched(node: tuple[Path, Path]) -> None:
    root, outside = node
    victim = outside / "passwd"
    victim.write_text("root:x:0:0\n")
    (root / "etc").mkdir()
    (root / "etc/hosts").symlink_to(victim)
    nodefs.write(root, "etc/hosts", "127.0.0.1 localhost\n")
    assert victim.read_text() == "root:x:0:0\n"
    assert not (root / "etc/hosts").is_symlink() and (root / "etc/hosts").read_text() == "127.0.0.1 localhost\n"


def test_masks_keep_what_the_node_has_and_never_follow(node: tuple[Path, Path]) -> None:
    root, outside = node
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "kept.service").symlink_to(outside / "dangling")
    nodefs.mask(root, "etc/systemd/system", ["kept.service", "new.service"])
    assert os.readlink(units / "kept.service") == str(outside / "dangling")
    assert os.readlink(units / "new.service") == "/dev/null"


@pytest.mark.parametrize("rel", ["../x", "etc/../../x", "", "/"])
def test_paths_that_leave_the_root_are_refused(node: tuple[Path, Path], rel: str) -> None:
    with pytest.raises(HarnessError, match="plain path"):
        nodefs.write(node[0], rel, "")
