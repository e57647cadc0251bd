"""Where storlab keeps labs, images and logs, and how lab-owned objects are named."""

from __future__ import annotations

import os
import zlib
from pathlib import Path


def home() -> Path:
    env = os.environ.get("STORLAB_HOME")
    if env:
        return Path(env)
    return Path("/var/lib/storlab") if os.geteuid() == 0 else Path.home() / ".local/share/storlab"


def lab_dir(lab: str) -> Path:
    return home() / "labs" / lab


def ssh_control_dir(lab: str) -> Path:
    """Where the lab's persistent ssh connections keep their sockets: under the lab directory when
    the path fits a unix socket (108 bytes, with ssh's 17-byte temporary suffix and an IPv4
    address), else a short per-lab directory under /run."""
    d = lab_dir(lab) / "ssh"
    if len(str(d)) + 1 + 15 + 17 < 100:
        return d
    return Path("/run/storlab-ssh") / f"{zlib.crc32(str(lab_dir(lab)).encode()):08x}"


def image_dir() -> Path:
    return home() / "images"


def tag(lab: str) -> str:
    """Short stable id for names with tight length limits (Linux interfaces: 15 chars)."""
    return f"{zlib.crc32(lab.encode()) & 0xFFFFFF:06x}"


def obj_name(lab: str, name: str) -> str:
    """Name of a libvirt domain/network/volume or container owned by ``lab``."""
    return f"storlab-{lab}-{name}"


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


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
