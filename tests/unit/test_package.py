"""What `pip install .` gives: the wheel holds every file of harness/ the code reads at run time
(templates, the Vagrantfile, the shipped exercises with their .py files), and an installed storlab
reads a matrix's tests and topologies from the directory it runs in, not from site-packages. The
whole installed path (validate, plan, exercise list, an LXC lab up and down) is ci/install-check.sh."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness import paths

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    shutil.copytree(REPO / "harness", src / "harness", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "whl"), str(src)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    [wheel] = (tmp_path / "whl").glob("storlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    files = {p.relative_to(src).as_posix() for p in (src / "harness").rglob("*") if p.is_file()}
    assert files - names == set(), "files of harness/ missing from the wheel (package-data in pyproject.toml)"
    assert {"harness/providers/vagrant/Vagrantfile", "harness/plan/templates/hosts.j2"} <= names
    assert len([n for n in names if n.startswith("harness/training/exercises/") and n.endswith("/exercise.py")]) >= 4


def test_the_top_level_vagrantfile_is_the_packaged_one() -> None:
    assert (REPO / "Vagrantfile").resolve() == (REPO / "harness/providers/vagrant/Vagrantfile").resolve()


def test_a_checkout_reads_its_own_topologies_and_an_install_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert paths.project_root() == REPO
    site = tmp_path / "site-packages" / "harness"
    site.mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(site / "paths.py"))
    monkeypatch.chdir(tmp_path)
    assert paths.project_root() == tmp_path
