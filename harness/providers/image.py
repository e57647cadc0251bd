"""The offline golden images: a Debian root filesystem per release (harness.spec.releases; Debian 12
by default) built with mmdebstrap from the host's own Debian mirror, cached by content. LXC nodes
use it as an overlay lower layer; the vagrant box is made from it (see providers/vagrant.py)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from harness import log, paths
from harness import plugins as registry
from harness.errors import HarnessError
from harness.providers.stale import Stale, human, size_of, tree
from harness.run import run
from harness.spec import kernels, releases

BUILDER_VERSION = "6"
SUITE = releases.DEFAULT  # the default release's suite (what a plan without `release:` runs)

# Everything the core's roles use, baked in so that no node ever needs the network; each backend
# adds its own (Backend.packages): see packages().
CORE_PACKAGES = [
    # base system
    "systemd", "systemd-sysv", "dbus", "udev", "kmod", "openssh-server", "python3", "iproute2", "iputils-ping",
    "procps", "less", "ca-certificates", "psmisc", "util-linux", "findutils", "gnupg", "rsync", "attr", "acl",
    # one-way partitions: nftables rules on the node (harness.nodes.netfaults)
    "nftables",
    # every kernel a VM node may boot (harness.spec.kernels): the box keeps each beside its disk
    *(k.package for k in kernels.KERNELS.values()), "initramfs-tools",
    # disks
    "xfsprogs", "e2fsprogs", "lvm2", "parted",
    # hypervisor nodes: libvirtd for pools wired inside the lab (no qemu needed for pools), with the
    # kernel iSCSI initiator and the NFS client their pools log in and mount with
    "libvirt-daemon-system", "libvirt-clients", "qemu-utils", "qemu-system-x86", "open-iscsi", "nfs-common", "rpcbind",
]


def packages(release: str = SUITE) -> list[str]:
    """The image's packages: the core's and every installed backend's, each once; the kernels the
    release has (a kernel package one release has may not be another's) and what it ships apart."""
    kernel_pkgs = {k.package for k in kernels.KERNELS.values()}
    core = [p for p in CORE_PACKAGES if p not in kernel_pkgs or p in releases.of(release).kernel_packages]
    core += [p for p in releases.of(release).kernel_packages if p not in core]
    core += list(releases.of(release).packages)
    return list(dict.fromkeys([*core, *(p for b in registry.declared() for p in b.packages)]))

# Only an ed25519 host key: `ssh-keygen -A` also makes RSA-3072 and ECDSA keys, which took 52 s
# of a VM's boot under TCG (measured with systemd-analyze blame).
# Units of the image's packages that only the roles needing them start: every provider masks them
# on its nodes, so an idle node runs none of them (roles unmask them; see Node.enable_units).
CORE_SERVICES = ["rpcbind.service", "rpcbind.socket", "libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket",
                 "libvirtd-admin.socket", "virtlogd.socket", "virtlockd.socket"]


def role_services() -> list[str]:
    """The core's and every installed backend's (Backend.services)."""
    return list(dict.fromkeys([*CORE_SERVICES, *(s for b in registry.declared() for s in b.services)]))

FIRSTBOOT_UNIT = """[Unit]
Description=storlab: per-node ssh host key
DefaultDependencies=no
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
"""


BUILD_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

# While packages install, no daemon starts (policy-rc.d) and no initramfs is made: only a VM boots
# one, so the box build makes it (box.py), and the LXC path does not pay its ~20 s.
_HOLD = ('printf "#!/bin/sh\\nexit 101\\n" > "$1/usr/sbin/policy-rc.d" && chmod 755 "$1/usr/sbin/policy-rc.d" && '
         'chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && '
         'printf "#!/bin/sh\\nexit 0\\n" > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"')
_RELEASE = ('rm -f "$1/usr/sbin/policy-rc.d" "$1/usr/sbin/update-initramfs" && '
            'chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs')


def mmdebstrap_argv(wanted: list[str], root: Path, mirror: str, security: str, suite: str = SUITE) -> list[str]:
    """One mmdebstrap run: the essential set, then every wanted package in a single apt call
    (debootstrap + a second apt run took 15-30 s longer here), with the release's security
    updates (and the kernels that come from there). The hooks are storlab's own text; nothing
    from a topology reaches this command."""
    return ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
            "--include=" + ",".join(["apt-utils", "ca-certificates", *wanted]),
            "--essential-hook=" + _HOLD, "--customize-hook=" + _RELEASE,
            "--aptopt=Dpkg::Use-Pty \"0\"", suite, str(root),
            f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main",
            f"deb {security} {suite}-security main"]


def debian_mirrors() -> tuple[str, str]:
    """(the Debian mirror, the security mirror) the host's own apt sources name (never hard-coded)."""
    main: str | None = None
    security: str | None = None
    for src in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if not src.exists():
            continue
        text = src.read_text()
        entries = []  # (suites, first URI): deb822 stanzas, then one-line entries
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(URIs|Suites):\s*(.+?)\s*$", stanza, re.MULTILINE))
            if "URIs" in fields and "Suites" in fields:
                entries.append((fields["Suites"].split(), fields["URIs"].split()[0]))
        entries += [([m.group(2)], m.group(1)) for m in re.finditer(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.MULTILINE)]
        for suites, uri in entries:
            if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
                security = security or uri
            else:
                main = main or uri
    if main is None:
        raise HarnessError("no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list")
    if security is None:
        raise HarnessError(f"the host's apt sources name no {SUITE}-security archive: the golden image takes its "
                           "security updates and kernels from there; add it to /etc/apt/sources.list.d/debian.sources")
    return main, security


def content_key(wanted: list[str] | None = None, release: str = SUITE) -> str:
    """Cache key: the package list, suite and builder version (bump BUILDER_VERSION when
    the build or finalisation steps change what ends up in the image)."""
    pk = sorted(wanted or packages(release))
    blob = json.dumps({"packages": pk, "suite": releases.of(release).suite, "builder": BUILDER_VERSION}).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def image_path(key: str | None = None) -> Path:
    return paths.image_dir() / (key or content_key())


def rootfs(key: str | None = None) -> Path:
    return image_path(key) / "rootfs"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    mounted: list[Path] = []
    try:
        for src, dst, args in (("proc", root / "proc", ["-t", "proc"]), ("sysfs", root / "sys", ["-t", "sysfs"]),
                               ("/dev", root / "dev", ["--bind"]), ("/dev/pts", root / "dev/pts", ["--bind"])):
            dst.mkdir(parents=True, exist_ok=True)
            run(["mount", *args, src, str(dst)], check=True, timeout=30)
            mounted.append(dst)
        yield
    finally:
        for dst in reversed(mounted):
            run(["umount", "-l", str(dst)], timeout=30)


@contextlib.contextmanager
def builds() -> Iterator[None]:
    """The lock every build of an image or of what is made from one (a VM box) holds, and prune."""
    with _lock(paths.image_dir() / ".build.lock"):
        yield


def key_for(release: str) -> str:
    """The content key of ``release``'s image."""
    return content_key(packages(release), release)


def build(force: bool = False, release: str = SUITE) -> Path:
    """Build ``release``'s golden rootfs unless an identical one is cached; returns the image directory."""
    wanted = packages(release)
    key = content_key(wanted, release)
    suite = releases.of(release).suite
    final = image_path(key)
    with builds():
        if (final / "complete").exists() and not force:
            log.info(f"golden image {key}: cached at {final}")
            return final
        work = paths.image_dir() / f".{key}.partial"
        if work.exists():
            run(["umount", "-R", "-l", str(work / "rootfs")], timeout=30)  # leftovers of a killed build
            shutil.rmtree(work)
        work.mkdir(parents=True)
        root = work / "rootfs"
        mirror, security = debian_mirrors()
        with log.step(f"image {key}: mmdebstrap {suite} (minbase + {len(wanted)} packages, one apt run) from {mirror}"):
            res = run(mmdebstrap_argv(wanted, root, mirror, security, suite), timeout=2400, env=BUILD_ENV)
            (work / "build.log").write_text(res.stdout + res.stderr)
            if not res.ok:
                raise HarnessError(f"mmdebstrap failed (log: {work / 'build.log'}): {res.stderr[-800:]}")
        with log.step(f"image {key}: finalise"):
            _finalise(root)
        (work / "packages.json").write_text(json.dumps(sorted(wanted)))
        (work / "complete").write_text(key + "\n")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        log.info(f"golden image {key}: ready at {final}")
        return final


def _finalise(root: Path) -> None:
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    # every clone gets its own machine-id and ssh host keys at first boot
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    unit = root / "etc/systemd/system/storlab-hostkeys.service"
    unit.write_text(FIRSTBOOT_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "storlab-hostkeys.service").unlink(missing_ok=True)
    (wants / "storlab-hostkeys.service").symlink_to("/etc/systemd/system/storlab-hostkeys.service")
    sshd = root / "etc/ssh/sshd_config.d/storlab.conf"
    sshd.write_text("PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
                    "HostKey /etc/ssh/ssh_host_ed25519_key\n")
    # networkd configures the lab interfaces (files written per node by the provider)
    for unit_name in ("systemd-networkd.service",):
        link = wants / unit_name
        link.unlink(missing_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit_name}")
    # nothing in a lab may wait on the network being "online" beyond the lab
    (root / "etc/systemd/system/systemd-networkd-wait-online.service").unlink(missing_ok=True)
    (root / "etc/systemd/system/systemd-networkd-wait-online.service").symlink_to("/dev/null")
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    (root / "etc/hostname").write_text("storlab\n")


def stale(keep: set[str]) -> list[Stale]:
    """Image directories whose key is not in ``keep``, and builds that were killed (call with the
    build lock held: harness.lab.images does)."""
    d = paths.image_dir()
    out = []
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        if p.is_symlink() or not p.is_dir():
            continue
        if p.name.startswith(".") and p.name.endswith(".partial"):
            out.append(tree("image", p.name, p, "an unfinished build"))
        elif not p.name.startswith(".") and p.name not in keep:
            out.append(tree("image", p.name, p, "no release builds it"))
    return out


def list_images() -> list[dict[str, str]]:
    out = []
    d = paths.image_dir()
    if d.is_dir():
        keys = {r: key_for(r) for r in releases.RELEASES}
        for p in sorted(d.iterdir()):
            if (p / "complete").exists():
                current = [r for r, key in keys.items() if p.name == key]
                out.append({"key": p.name, "path": str(p), "size": human(size_of(p)),
                            "current": str(bool(current)), "release": ", ".join(current) or "-"})
    return out
