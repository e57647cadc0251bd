"""Marks that say which storlab home made a shared object (paths.home_id): `reap` in one home, or
on one host of many sharing an Incus cluster, removes only its own home's orphans."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness import paths
from harness.providers.incus import projects as incus_projects


@pytest.fixture(autouse=True)
def storlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("STORLAB_HOME", str(home))
    return home


def test_a_home_has_one_id_made_once(storlab_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = paths.home_id()
    assert len(first) == 16 and paths.home_id() == first
    assert (storlab_home / "home-id").read_text().strip() == first
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "other"))
    assert paths.home_id() != first


def test_link_aliases_name_lab_network_and_home_and_older_ones_read_without_home() -> None:
    alias = paths.link_alias("gluster3", "storage")
    assert paths.alias_owner(alias) == ("gluster3", paths.home_id())
    assert paths.alias_owner("storlab:gluster3:storage") == ("gluster3", None)
    for other in ("", "storlab", "mylab:x:y", "storlab:Bad:x", "storlab:a:b:c:d:e"):
        assert paths.alias_owner(other) is None


class FakeIncus:
    projects: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, remote: str | None, project: str = "default") -> None:
        self.remote = remote

    def reachable(self) -> str | None:
        return None

    def where(self) -> str:
        return "this host's Incus"

    def query(self, path: str) -> list[dict[str, Any]]:
        assert path == "/1.0/projects?recursion=1"
        return self.projects


def test_reap_takes_only_this_homes_incus_projects(monkeypatch: pytest.MonkeyPatch) -> None:
    here = paths.home_id()
    FakeIncus.projects = [
        {"name": "storlab-mine", "config": {"user.storlab.lab": "mine", "user.storlab.home": here}},
        {"name": "storlab-live", "config": {"user.storlab.lab": "live", "user.storlab.home": here}},
        {"name": "storlab-theirs", "config": {"user.storlab.lab": "theirs", "user.storlab.home": "0123456789abcdef"}},
        {"name": "storlab-old", "config": {"user.storlab.lab": "old"}},  # an older storlab's: no home mark
        {"name": "default", "config": {}},
    ]
    monkeypatch.setattr(incus_projects, "Incus", FakeIncus)
    assert incus_projects.orphans({"live"}) == ["mine"]


def test_a_network_uuid_is_this_homes_mark() -> None:
    from harness.providers.vagrant import spec as vagrantspec
    a = vagrantspec.network_uuid("storlab-x_storage", paths.home_id())
    assert a == vagrantspec.network_uuid("storlab-x_storage", paths.home_id())
    assert a != vagrantspec.network_uuid("storlab-x_storage", "0123456789abcdef")
    assert a != vagrantspec.network_uuid("storlab-x_mgmt", paths.home_id())
