"""The vagrant-libvirt box: the golden rootfs as a qcow2 disk with each of its kernels and initrds
beside it (direct kernel boot: a node boots the one its plan names), built offline without
mounting anything and cached by the image key.

The box accepts ssh as root with a build key kept next to it; each lab then installs its own
key through a provisioner (see the top-level Vagrantfile), so a lab key never opens another lab.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import log, paths
from harness.errors import HarnessError
from harness.host.virt import connect
from harness.providers import image
from harness.providers.stale import Stale, size_of, tree
from harness.run import run, succeed
from harness.spec import kernels, releases

#: bump when what goes into the box changes (files added to the tree, masks, disk size)
BOX_VERSION = "4"
DISK_SIZE = "8G"  # sparse: the qcow2 holds only what the rootfs uses
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
#: the pool vagrant-libvirt uploads boxes into and creates node disks in. Not libvirt's
#: 'default' (/var/lib/libvirt/images): labs mount Gluster under that directory, and a pool
#: refresh stat()s every entry, so a hung FUSE mount there would hang the VM provider too.
STORAGE_POOL = "storlab"


def pool_path() -> Path:
    return paths.home() / "pool"

#: vagrant-libvirt names the pool volume it uploads a box into after the box name
_SLASH = "-VAGRANTSLASH-"

# In a VM the kernel has everything, so only units that would slow boot (TCG) or act without
# being asked are masked; roles unmask and start what they use, exactly as on the lxc provider.
# Measured with systemd-analyze blame on a TCG guest: e2scrub_reap 52 s, rtslib-fb-targetctl 26 s
# (the LIO role enables it once it has a config to restore), multipathd 5.6 s (the initiator
# role's), lvm2-monitor 3.4 s; timers are masked so that no apt/fstrim/e2scrub job runs mid-test.
VM_MASKS = ["smartmontools.service", "libvirt-guests.service", "nfs-server.service",
            "nfs-kernel-server.service", "nvmf-autoconnect.service",
            "e2scrub_reap.service", "e2scrub_all.timer", "rtslib-fb-targetctl.service",
            "multipathd.service", "multipathd.socket", "iscsid.service", "iscsid.socket", "open-iscsi.service",
            "lvm2-monitor.service", "lvm2-lvmpolld.socket", "dm-event.socket", "nfs-blkmap.service",
            "blk-availability.service", "ceph-crash.service", "apt-daily.timer", "apt-daily-upgrade.timer",
            "dpkg-db-backup.timer", "fstrim.timer", "logrotate.timer", "man-db.timer"]

MGMT_NETWORK = """# storlab box: the vagrant management NIC (eth0) takes its address from libvirt's DHCP.
# Lab networks (eth1..) are written by vagrant's Debian guest plugin as 50-vagrant-ethN.network.
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDNS=no
UseDomains=no
"""

BOX_VAGRANTFILE = """# storlab box {name}: defaults that make the box usable on its own
# (`vagrant init {name}`); storlab's top-level Vagrantfile sets all of them per lab.
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.box_check_update = false
  config.ssh.username = "root"
  config.ssh.insert_key = false
  config.ssh.sudo_command = "%c"
  config.ssh.shell = "bash"
  config.ssh.private_key_path = ["{build_key}"]
  config.vm.provider :libvirt do |lv|
    lv.kernel = "{kernel}"
    lv.initrd = "{initrd}"
    lv.cmd_line = "{cmdline}"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
end
"""


@dataclass(frozen=True)
class Box:
    """Where a box lives; pure (no I/O), so plans and unit tests can name it."""

    key: str
    name: str
    dir: Path
    #: the Debian release its golden image is (harness.spec.releases)
    release: str = releases.DEFAULT

    @property
    def kernels(self) -> tuple[str, ...]:
        """The kernels it keeps (harness.spec.kernels names), the first a node's default."""
        return releases.of(self.release).kernels

    def kernel(self, name: str | None = None) -> Path:
        """The kernel ``name`` of harness.spec.kernels (None: the release's own), as the box keeps it."""
        return self.dir / f"vmlinuz-{releases.kernel_of(name, self.release)}"

    def initrd(self, name: str | None = None) -> Path:
        return self.dir / f"initrd.img-{releases.kernel_of(name, self.release)}"

    @property
    def build_key(self) -> Path:
        return self.dir / "build_key"

    @property
    def pool_volume_prefix(self) -> str:
        """Name prefix of the volume vagrant-libvirt uploads this box into (one per box version)."""
        return self.name.replace("/", _SLASH) + "_vagrant_box_image_"


def ref(release: str = releases.DEFAULT) -> Box:
    """The box of ``release``'s golden image."""
    key = image.key_for(release)
    return Box(key=key, name=f"storlab/debian{releases.of(release).debian}-{key}-b{BOX_VERSION}",
               dir=image.image_path(key) / f"box-{BOX_VERSION}", release=release)


#: box commands run where no Vagrantfile is found upwards (vagrant leaves .vagrant/ next to one)
NEUTRAL_CWD = "/"


def vagrant_env() -> dict[str, str]:
    """Environment for every vagrant call: offline, no colour, libvirt by default."""
    env = dict(os.environ)
    env.update(VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_BOX_UPDATE_CHECK_DISABLE="1", VAGRANT_NO_COLOR="1",
               VAGRANT_DEFAULT_PROVIDER="libvirt", LIBVIRT_DEFAULT_URI="qemu:///system")
    env.pop("STORLAB_PLAN", None)
    return env


def installed_boxes() -> set[str]:
    import vagrant  # python-vagrant: argv and the machine-readable parser
    v = vagrant.Vagrant(quiet_stdout=True, quiet_stderr=True, env=vagrant_env())  # type: ignore[no-untyped-call]
    argv = v._make_vagrant_command(["box", "list", "--machine-readable"])  # type: ignore[no-untyped-call]
    res = run(argv, timeout=120, env=vagrant_env(), cwd=NEUTRAL_CWD)
    if not res.ok:
        raise HarnessError(f"`vagrant box list` failed: {res.stderr.strip()[-500:]}")
    parsed = v._parse_machine_readable_output(res.stdout)  # type: ignore[no-untyped-call]
    return {data for _, _, kind, data in parsed if kind == "box-name"}


def added_dir(name: str) -> Path:
    """Where `vagrant box add` unpacked the box ``name`` (VAGRANT_HOME/boxes/...)."""
    home = Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")
    return home / "boxes" / name.replace("/", _SLASH)


def is_built(box: Box) -> bool:
    return (box.dir / "complete").exists() and box.name in installed_boxes()


def _write_new(path: Path, text: str, mode: int = 0o644) -> None:
    """Create ``path`` fresh. The staging tree is a hard-link copy of the golden rootfs, so an
    existing file must be unlinked first: writing into it would change the golden image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


def _mask(tree: Path, unit: str) -> None:
    link = tree / "etc/systemd/system" / unit
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to("/dev/null")


def _customise(tree: Path, pubkey: str) -> None:
    ssh = tree / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    _write_new(ssh / "authorized_keys", pubkey, 0o600)
    _write_new(tree / "etc/systemd/network/10-storlab-mgmt.network", MGMT_NETWORK)
    _write_new(tree / "etc/fstab", "# storlab box: / is /dev/vda, mounted rw by the kernel (root=/dev/vda rw)\n"
                                   "/dev/vda / ext4 rw,errors=remount-ro 0 0\n")
    for unit in image.role_services() + VM_MASKS:
        _mask(tree, unit)


def _version_key(path: Path) -> list[int | str]:
    return [int(x) if x.isdigit() else x for x in path.name.replace("-", ".").split(".")]


def kernel_files(tree: Path, name: str) -> tuple[Path, Path]:
    """The newest /boot/vmlinuz-RELEASE of kernel ``name`` (its release prefix) and its initrd."""
    k = kernels.KERNELS[name]
    found = sorted((tree / "boot").glob(f"vmlinuz-{k.release_prefix}*"), key=_version_key)
    if not found:
        raise HarnessError(f"no kernel {name} (vmlinuz-{k.release_prefix}*) in {tree / 'boot'}: "
                           f"the image needs {k.package}")
    kernel = found[-1]
    initrd = tree / "boot" / kernel.name.replace("vmlinuz-", "initrd.img-")
    if not initrd.exists():
        raise HarnessError(f"{kernel} has no initrd at {initrd}")
    return kernel, initrd


#: the box's own initramfs configuration (a new directory: the tree's files are the golden image's,
#: hard-linked): only what mounting the root needs (root=/dev/vda, ext4 on virtio-blk), not
#: MODULES=most. Measured under TCG (one 1 GiB VM, power-on to the login prompt): 24.4-25.7 s
#: against 26.4-29.9 s, the initramfs 11 MB against 40 MB, /init run at 2.7 s against 4.2 s.
INITRAMFS_CONF = "etc/storlab-initramfs"
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "ext4"]


def _initramfs_conf(tree: Path) -> None:
    conf = tree / INITRAMFS_CONF
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(tree / "etc/initramfs-tools", conf)  # copies: the golden image's files stay as they are
    text = (conf / "initramfs.conf").read_text()
    (conf / "initramfs.conf").write_text(re.sub(r"(?m)^MODULES=.*$", "MODULES=list", text))
    (conf / "modules").write_text("# storlab box: what mounting root=/dev/vda (ext4) needs\n"
                                  + "".join(f"{m}\n" for m in INITRAMFS_MODULES))


def _make_initrd(tree: Path) -> None:
    """The golden image has no initramfs (containers boot none; image.py holds update-initramfs
    while packages install): the box makes a lean one for each kernel (INITRAMFS_CONF).
    mkinitramfs writes only its output file, a new inode, so the hard-linked golden rootfs stays
    as it is."""
    _initramfs_conf(tree)
    for kernel in sorted((tree / "boot").glob("vmlinuz-*")):
        version = kernel.name.removeprefix("vmlinuz-")
        if (tree / "boot" / f"initrd.img-{version}").exists():
            continue
        with log.step(f"mkinitramfs {version} (lean: {', '.join(INITRAMFS_MODULES)})"), image._chroot_mounts(tree):
            succeed(["chroot", str(tree), "mkinitramfs", "-d", f"/{INITRAMFS_CONF}", "-o", f"/boot/initrd.img-{version}",
                     version], timeout=900)


def _uploaded(conn: Any, box: Box) -> list[Any]:
    """The volumes vagrant-libvirt uploaded ``box`` into in pool storlab (none without the pool)."""
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(STORAGE_POOL)
    except libvirt.libvirtError:
        return []  # no pool yet, so nothing was uploaded
    if not pool.isActive():
        return []
    pool.refresh(0)
    return [v for v in pool.listAllVolumes() if v.name().startswith(box.pool_volume_prefix)]


def _remove_stale_pool_volumes(box: Box) -> None:
    """A rebuilt box keeps its name, but vagrant-libvirt would reuse the old uploaded volume."""
    conn = connect()
    try:
        for vol in _uploaded(conn, box):
            log.info(f"box {box.name}: deleting the stale uploaded volume {vol.name()} from pool {STORAGE_POOL}")
            vol.delete(0)
    finally:
        conn.close()


def build(force: bool = False, release: str = releases.DEFAULT) -> Box:
    """Build and `vagrant box add` the box of ``release``'s golden image unless it is installed."""
    box = ref(release)
    image.build(release=release)
    with image.builds():  # after image.build, which takes it too: box builds and prune wait on each other
        if not force and is_built(box):
            log.info(f"box {box.name}: installed (files in {box.dir})")
            return box
        if shutil.which("vagrant") is None:
            raise HarnessError("vagrant is not installed; run ci/setup-host.sh --vm")
        rootfs = image.rootfs(box.key)
        work = box.dir.parent / f".box-{BOX_VERSION}.partial"
        if work.exists():
            shutil.rmtree(work)  # a hard-link tree: removing it leaves the golden rootfs alone
        work.mkdir(parents=True)
        t0 = time.monotonic()
        with log.step(f"box {box.name}: build from {rootfs}"):
            key = work / "build_key"
            succeed(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"storlab-box-{box.key}", "-f", str(key)],
                    timeout=30)
            os.chmod(key, 0o600)
            tree = work / "tree"
            with log.step("hard-link copy of the rootfs"):
                succeed(["cp", "-al", str(rootfs), str(tree)], timeout=600)
            _customise(tree, key.with_suffix(".pub").read_text())
            _make_initrd(tree)
            for name in box.kernels:
                kernel, initrd = kernel_files(tree, name)
                shutil.copy(kernel, work / box.kernel(name).name)
                shutil.copy(initrd, work / box.initrd(name).name)
            raw = work / "disk.img"
            with log.step(f"mkfs.ext4 -d (no mount), {DISK_SIZE}"):
                succeed(["mkfs.ext4", "-q", "-F", "-L", "storlab-root", "-d", str(tree), str(raw), DISK_SIZE], timeout=900)
            with log.step("qemu-img convert to qcow2"):
                succeed(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "box.img")], timeout=900)
            raw.unlink()
            shutil.rmtree(tree)
            final_dir = box.dir
            (work / "metadata.json").write_text(json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": int(DISK_SIZE.rstrip("G"))}) + "\n")
            (work / "Vagrantfile").write_text(BOX_VAGRANTFILE.format(
                name=box.name, build_key=final_dir / "build_key", kernel=box.kernel(), initrd=box.initrd(),
                cmdline=CMDLINE))
            with log.step("tar (no compression)"):
                succeed(["tar", "-cf", str(work / "box.tar"), "-C", str(work),
                         "metadata.json", "Vagrantfile", "box.img"], timeout=600)
            (work / "box.img").unlink()
            if final_dir.exists():
                shutil.rmtree(final_dir)
            work.rename(final_dir)
            with log.step(f"vagrant box add {box.name}"):
                _remove_stale_pool_volumes(box)
                res = run(["vagrant", "box", "add", "--force", "--name", box.name, "--provider", "libvirt",
                           str(final_dir / "box.tar")], timeout=900, env=vagrant_env(), cwd=NEUTRAL_CWD)
                (final_dir / "box-add.log").write_text(res.stdout + res.stderr)
                if not res.ok:
                    raise HarnessError(f"vagrant box add failed (log {final_dir / 'box-add.log'}): {res.stderr.strip()[-800:]}")
            (final_dir / "box.tar").unlink()
            (final_dir / "complete").write_text(f"{box.name} {time.monotonic() - t0:.1f}s\n")
        return box


#: an installed box's name, as ref() makes it: storlab/debian12-KEY-b4
BOX_NAME = re.compile(r"^storlab/debian\d+-(?P<key>[0-9a-f]{16})-b(?P<version>\d+)$")


def stale(keep: set[str]) -> list[Stale]:
    """Installed boxes of images not in ``keep`` or of an older box format (removed with their
    uploaded volume and files), and box files no box is installed from (an older format, a killed
    build) under the images that are kept. Call with the image build lock held."""
    out, installed = [], set()
    for name in sorted(installed_boxes()):
        m = BOX_NAME.match(name)
        if not m:
            continue
        b = Box(key=m["key"], name=name, dir=image.image_path(m["key"]) / f"box-{m['version']}")
        installed.add(b.dir)
        if m["key"] in keep and m["version"] == BOX_VERSION:
            continue
        files = size_of(b.dir) if m["key"] in keep and b.dir.is_dir() else 0  # else counted with its image
        unpacked = added_dir(name)
        added = size_of(unpacked) if unpacked.is_dir() else 0
        why = "an older box format" if m["key"] in keep else "no release builds its image"
        out.append(Stale("vagrant box", name, _uploaded_size(b) + files + added, why, functools.partial(remove, b)))
    for key in sorted(keep):
        for p in sorted(image.image_path(key).glob("box-*")) + sorted(image.image_path(key).glob(".box-*.partial")):
            if p.name != f"box-{BOX_VERSION}" and p not in installed and not p.is_symlink():
                out.append(tree("box files", f"{key}/{p.name}", p,
                                "an unfinished box build" if p.name.startswith(".") else "an older box format"))
    return out


def _uploaded_size(box: Box) -> int:
    conn = connect()
    try:
        return sum(v.info()[2] for v in _uploaded(conn, box))
    finally:
        conn.close()


def remove(box: Box | None = None) -> None:
    """Remove the box from vagrant, its uploaded pool volume and its files."""
    box = box or ref()
    run(["vagrant", "box", "remove", "--force", "--provider", "libvirt", box.name], timeout=300, env=vagrant_env(),
        cwd=NEUTRAL_CWD)
    _remove_stale_pool_volumes(box)
    shutil.rmtree(box.dir, ignore_errors=True)
