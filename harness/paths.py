"""Where storlab keeps labs, images and logs, and how lab-owned objects are named."""

from __future__ import annotations

import os
import re
import secrets
import zlib
from pathlib import Path


def home() -> Path:
    env = os.environ.get("STORLAB_HOME")
    if env:
        return Path(env)
    return Path("/var/lib/storlab") if os.geteuid() == 0 else Path.home() / ".local/share/storlab"


def lab_dir(lab: str) -> Path:
    return home() / "labs" / lab


def staging_dir(lab: str) -> Path:
    """Where a new lab's plan and files are written before one rename makes them its lab
    directory: an `up` killed before that leaves no lab directory (the next `up`, `down LAB`
    or `reap` removes the staging directory)."""
    return home() / "labs" / f".{lab}.new"


def ssh_control_dir(lab: str) -> Path:
    """Where the lab's persistent ssh connections keep their sockets: under the lab directory when
    the path fits a unix socket (108 bytes, with ssh's 17-byte temporary suffix and an IPv4
    address), else a short per-lab directory under /run."""
    d = lab_dir(lab) / "ssh"
    if len(str(d)) + 1 + 15 + 17 < 100:
        return d
    return Path("/run/storlab-ssh") / f"{zlib.crc32(str(lab_dir(lab)).encode()):08x}"


def private_dir(d: Path) -> Path:
    """``d`` made where missing (with its parents) and 0700, also when it was there with another
    mode: for what only its owner may read or run (keys, secrets, a node's files and disks). The
    mode is set through the directory's own fd, opened without following a link put in its place."""
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return d


def home_id() -> str:
    """This home's id (16 hex digits, made once, kept in STORLAB_HOME/home-id). Marks on shared
    objects (bridges, Incus projects, VM domains) carry it, so that `reap` in one home, or on one
    host of many sharing an Incus cluster, removes only what this home made."""
    f = home() / "home-id"
    try:
        value = f.read_text().strip()
    except FileNotFoundError:
        f.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(8) + "\n")
        except FileExistsError:  # another process made it first
            pass
        value = f.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{16}", value):
        raise ValueError(f"{f}: not a storlab home id ({value[:40]!r}); remove the file to make a new one")
    return value


def other_home(home: str | None) -> str | None:
    """Whose an object marked with storlab home ``home`` is when it is not this home's (None: it
    is this home's): `reap` leaves it, and says so with this."""
    if home == home_id():
        return None
    return f"storlab home {home}'s" if home else "an older storlab's (no home mark)"


def link_alias(lab: str, net: str) -> str:
    """The alias storlab gives a lab's bridge: whose lab, which network, which home."""
    return f"storlab:{lab}:{net}:{home_id()}"


def alias_owner(alias: str) -> tuple[str, str | None] | None:
    """(lab, home id) of a link alias storlab wrote (home None: an older storlab's, which had none)."""
    parts = alias.split(":")
    if parts[0] != "storlab" or len(parts) not in (3, 4) or not _LAB.fullmatch(parts[1]):
        return None
    return parts[1], (parts[3] if len(parts) == 4 else None)


def image_dir() -> Path:
    return home() / "images"


def tag(lab: str) -> str:
    """Short stable id for names with tight length limits (Linux interfaces: 15 chars)."""
    return f"{zlib.crc32(lab.encode()) & 0xFFFFFF:06x}"


PREFIX = "storlab-"
#: between the lab's name and the rest of an object's name: lab, node, network, disk and pool names
#: are [a-z][a-z0-9-]* (topology.NAME_RE) and never hold it, so the first one ends the lab's name
SEP = "_"
_LAB = re.compile(r"[a-z][a-z0-9-]*")


def obj_name(lab: str, *parts: str) -> str:
    """Name of a libvirt domain/network/volume/pool or container owned by ``lab``:
    storlab-LAB_PART[_PART...]. Two labs never share one: lab `a` node `b-c` is storlab-a_b-c,
    lab `a-b` node `c` is storlab-a-b_c. (storlab before this named both storlab-a-b-c: see
    legacy_obj_name; a lab keeps the names its plan.json holds, so such labs still go down.)"""
    return PREFIX + SEP.join([lab, *parts])


def obj_prefix(lab: str) -> str:
    """What every object name of ``lab`` starts with, and no other lab's does."""
    return obj_name(lab, "")


def legacy_obj_name(lab: str, name: str) -> str:
    """The name an older storlab gave ``lab``'s object ``name``: storlab-LAB-NAME. Lab `a` and lab
    `a-b` both match storlab-a-*: such a name is a lab's only with its ownership mark (a domain's
    description, a container's owner file, a network's bridge), never by the name alone."""
    return f"{PREFIX}{lab}-{name}"


def lab_of(name: str) -> str | None:
    """The lab whose object ``name`` is, read from an obj_name; None for other names, and for an
    older storlab's (their lab only an ownership mark can tell: storlab-a-b-c could be lab a's or
    lab a-b's). Names never held '_' then, except vagrant-libvirt's extra root disks (NAME_1.img):
    read volumes with named_for and an ownership check instead."""
    lab, sep, _ = name.removeprefix(PREFIX).partition(SEP)
    return lab if name.startswith(PREFIX) and sep and _LAB.fullmatch(lab) else None


def named_for(lab: str, name: str) -> bool:
    """Whether ``name`` is named like ``lab``'s objects: obj_prefix(lab), or an older storlab's
    storlab-LAB-, which other labs' names match too (check an ownership mark as well)."""
    return name.startswith((obj_prefix(lab), legacy_obj_name(lab, "")))


def bridge_prefix(lab: str) -> str:
    """What every bridge of ``lab`` starts with (its tag); the network's index follows."""
    return f"slb{tag(lab)}"


def bridge_name(lab: str, index: int) -> str:
    return f"{bridge_prefix(lab)}{index}"


def veth_name(lab: str, node_index: int, net_index: int) -> str:
    return f"slv{tag(lab)}{node_index:02d}{net_index}"[:15]


def mac(lab: str, node: str, net: str) -> str:
    h = zlib.crc32(f"{lab}/{node}/{net}".encode())
    return f"52:54:00:{(h >> 16) & 0xFF:02x}:{(h >> 8) & 0xFF:02x}:{h & 0xFF:02x}"


def project_root() -> Path:
    """Where a matrix's `tests:` and the shared topologies/ are read from: the checkout storlab
    runs from (harness/ beside pyproject.toml and topologies/, also an editable install); when
    installed (`pip install .`), the current directory, i.e. the project storlab is run in."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "topologies").is_dir():
        return root
    return Path.cwd()
