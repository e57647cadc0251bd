"""Offline package bundles for `storlab upgrade`: the Debian packages that take a node's backend to
another release's versions, with what they depend on, fetched on this host from the mirror its own
apt sources name (nodes reach nothing outside), into a flat repository a node installs from once
it is copied in. The starting point is the golden image of the release the node was built from (its
package status: storlab's own file, never one read from a node), so a bundle is made once per
(image, target release, packages) and cached by that content under STORLAB_HOME/bundles."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import log, paths
from harness.errors import HarnessError
from harness.providers import image
from harness.providers.stale import Stale, tree
from harness.run import run
from harness.spec import releases

#: a Debian package name (policy 5.6.1); anything else never reaches apt
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]{1,100}")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: bump when what a bundle holds or how it is laid out changes
BUNDLE_VERSION = 1


@dataclass(frozen=True)
class Bundle:
    path: Path
    key: str
    release: str
    packages: tuple[str, ...]
    #: package -> version, of every .deb in it
    debs: dict[str, str]
    #: the whole distribution (dist-upgrade), not only the backend's packages and what they need
    full: bool = False

    @property
    def tar(self) -> Path:
        return self.path / "bundle.tar"


def stale(keep: set[str]) -> list[Stale]:
    """Bundles made from a golden image not in ``keep``: their key starts from that image's package
    status, so no upgrade will use them again."""
    d = paths.home() / "bundles"
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        meta = p / "bundle.json"
        if p.is_symlink() or not p.is_dir() or meta.is_symlink() or not meta.is_file():
            continue
        source = json.loads(meta.read_text()).get("from_image")
        if source not in keep:
            out.append(tree("upgrade bundle", p.name, p, f"made from image {source}, which no release builds"))
    return out


def key_of(status: bytes, release: str, packages: tuple[str, ...], mirrors: tuple[str, str], full: bool = False) -> str:
    blob = json.dumps({"status": hashlib.sha256(status).hexdigest(), "to": release, "packages": sorted(packages),
                       **({"full": True} if full else {}),
                       "mirrors": list(mirrors), "v": BUNDLE_VERSION}).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _control(deb: Path) -> dict[str, str]:
    """The control fields of a .deb (dpkg-deb -f), continuation lines kept with their field."""
    text = run(["dpkg-deb", "-f", str(deb)], timeout=60, check=True).stdout
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and last:
            fields[last] += "\n" + line
        elif ":" in line:
            last, value = line.split(":", 1)
            fields[last] = value.strip()
    return fields


def packages_index(debs: list[Path]) -> str:
    """A flat repository's Packages file for ``debs`` (in the directory it indexes): each stanza its
    control fields, then Filename, Size and SHA256, as apt reads from a `deb [trusted=yes] file:DIR ./` line."""
    out = []
    for deb in sorted(debs):
        fields = _control(deb)
        fields.pop("Filename", None)
        data = deb.read_bytes()
        stanza = [f"{k}: {v}" for k, v in fields.items()]
        stanza += [f"Filename: ./{deb.name}", f"Size: {len(data)}", f"SHA256: {hashlib.sha256(data).hexdigest()}"]
        out.append("\n".join(stanza))
    return "\n\n".join(out) + "\n"


def _arch() -> str:
    """The host's Debian architecture (its images' and its nodes')."""
    return run(["dpkg", "--print-architecture"], timeout=30, check=True).stdout.strip()


def _apt(root: Path, *args: str, timeout: float) -> None:
    opts = [f"-oDir={root}", f"-oDir::State::status={root}/var/lib/dpkg/status", "-oDebug::NoLocking=1",
            f"-oAPT::Architecture={_arch()}", f"-oDir::Etc::trusted={KEYRING}", "-oAPT::Install-Recommends=0", "-q"]
    res = run(["apt-get", *opts, *args], timeout=timeout, env={**os.environ, "APT_CONFIG": str(root / "apt.conf")})
    if not res.ok:
        raise HarnessError(f"apt-get {args[0]} for the upgrade bundle failed: {(res.stderr or res.stdout)[-800:]}")


def make(from_release: str, to: str, packages: tuple[str, ...], full: bool = False) -> Bundle:
    """The bundle taking a node built from ``from_release``'s image to ``to``'s ``packages``
    (made unless cached); ``full``: with every other package of the image too (what `apt-get
    dist-upgrade` against ``to`` replaces)."""
    bad = [p for p in packages if not PACKAGE_RE.fullmatch(p)]
    if bad or not packages:
        raise HarnessError(f"upgrade bundle: not Debian package names: {bad or 'none given'}")
    rel = releases.of(to)
    status_file = image.rootfs(image.key_for(from_release)) / "var/lib/dpkg/status"
    if not status_file.is_file():
        raise HarnessError(f"the {from_release} golden image is not built ({status_file} missing): "
                           f"`storlab image build --release {from_release}`")
    status = status_file.read_bytes()
    mirror, security = image.debian_mirrors()
    key = key_of(status, to, packages, (mirror, security), full)
    final = paths.home() / "bundles" / f"{to}-{key}"
    if (final / "bundle.json").exists():
        meta = json.loads((final / "bundle.json").read_text())
        return Bundle(final, key, to, packages, meta["debs"], full)
    work = final.with_name(f".{final.name}.partial")
    if work.exists():
        shutil.rmtree(work)  # what a killed make left
    paths.private_dir(work)
    root = paths.private_dir(work / "apt")
    for d in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "var/lib/apt/lists/partial",
              "var/cache/apt/archives/partial", "var/lib/dpkg"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "apt.conf").write_text("")  # none of the host's apt settings
    (root / "var/lib/dpkg/status").write_bytes(status)
    (root / "etc/apt/sources.list").write_text("".join(
        f"deb [signed-by={KEYRING}] {uri} {suite} main\n" for uri, suite in
        ((mirror, rel.suite), (mirror, f"{rel.suite}-updates"), (security, f"{rel.suite}-security"))))
    with log.step(f"upgrade bundle {to}-{key}: {'the distribution and ' if full else ''}{', '.join(packages)} "
                  f"from {mirror}"):
        _apt(root, "update", timeout=600)
        if full:  # into the same archive: the install below finds what it needs there already
            _apt(root, "dist-upgrade", "--download-only", "-y", timeout=3600)
        _apt(root, "install", "--download-only", "-y", *packages, timeout=1800)
        debs_dir = work / "debs"
        debs_dir.mkdir()
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.rename(debs_dir / deb.name)
        debs = sorted(debs_dir.glob("*.deb"))  # none: the image has that release's versions already
        (debs_dir / "Packages").write_text(packages_index(debs) if debs else "")
        versions = {f["Package"]: f["Version"] for f in map(_control, debs)}
        subprocess.run(["tar", "-C", str(debs_dir), "-cf", str(work / "bundle.tar"), "."], check=True, timeout=300)
        shutil.rmtree(root)
        shutil.rmtree(debs_dir)  # the tar holds them: what is copied into nodes
        (work / "bundle.json").write_text(json.dumps({"to": to, "from_image": image.key_for(from_release),
                                                      "packages": list(packages), "full": full, "debs": versions},
                                                     indent=1))
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        log.info(f"upgrade bundle {to}-{key}: {len(debs)} packages{'' if debs else ' (a restart: nothing to replace)'}, "
                 f"{sum(d.stat().st_size for d in (final / 'debs').glob('*.deb')) // 2**20} MiB")
    return Bundle(final, key, to, packages, versions, full)
