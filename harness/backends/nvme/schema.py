"""The nvme: section of a topology: an NVMe over TCP target (Linux nvmet) with its subsystems,
their namespaces, the host NQNs each admits (each optionally with DH-HMAC-CHAP keys) and the ports
(network + TCP port) it listens on."""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from harness.spec.topology import AbsPath, Name, Size, Strict, at_least

#: NVMe Qualified Name (NVMe base spec 4.5): nqn.YYYY-MM.reverse.domain:name, at most 223 bytes.
#: Checked with fullmatch ("$" would let a final newline through); no space, quote or shell character.
NQN_RE = re.compile(r"nqn\.(\d{4})-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                    r":[A-Za-z0-9][A-Za-z0-9._:-]*")
NQN_MAX = 223
NQN_FIX = "write nqn.YYYY-MM.reverse.domain:name (at most 223 bytes), e.g. nqn.2024-12.lab.storlab:data"


def check_nqn(v: str) -> str:
    if len(v.encode()) > NQN_MAX or not NQN_RE.fullmatch(v) or ".." in v:
        raise ValueError(f"{v!r} is not an NVMe qualified name; fix: {NQN_FIX}")
    return v


Nqn = Annotated[str, AfterValidator(check_nqn)]

#: a DH-HMAC-CHAP secret as NVMe writes it (base spec 8.3.5.5.8; `nvme gen-dhchap-key`):
#: DHHC-1:HH:BASE64(key + CRC-32 of the key, little-endian):, HH how the key is transformed
#: (00 not at all, 01/02/03 with SHA-256/384/512, which then needs a 32/48/64-byte key).
#: Checked with fullmatch: no line break, quote or space ever reaches a file or configfs.
DHCHAP_KEY_RE = re.compile(r"DHHC-1:0([0-3]):([A-Za-z0-9+/]{46,92}={0,2}):")
DHCHAP_KEY_FIX = ("write a key made by `nvme gen-dhchap-key --nqn HOSTNQN` (DHHC-1:00:BASE64:), or use generate: true "
                  "and let the lab decide one")
#: what the key's hash id needs of its length (00: any of the three)
_KEY_LEN = {1: 32, 2: 48, 3: 64}


def dhchap_key_problem(v: str) -> str | None:
    """Why ``v`` is not a DH-HMAC-CHAP secret the kernel takes, None when it is (the message never shows the key)."""
    m = DHCHAP_KEY_RE.fullmatch(v)
    if m is None:
        return "is not a DH-HMAC-CHAP secret in the form DHHC-1:0[0-3]:BASE64:"
    try:
        raw = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        return "has a base64 part that does not decode"
    key, crc = raw[:-4], raw[-4:]
    if len(key) not in (32, 48, 64):
        return f"holds a {len(key)}-byte key; the kernel takes 32, 48 or 64 bytes"
    want = _KEY_LEN.get(int(m.group(1)))
    if want and len(key) != want:
        return f"says hash 0{m.group(1)}, which needs a {want}-byte key, and holds {len(key)} bytes"
    if zlib.crc32(key).to_bytes(4, "little") != crc:
        return "has a CRC-32 that does not match its key (mistyped?)"
    return None


def check_dhchap_key(v: str) -> str:
    why = dhchap_key_problem(v)
    if why is not None:
        raise ValueError(f"this key {why}; fix: {DHCHAP_KEY_FIX}")
    return v


DhchapKey = Annotated[str, AfterValidator(check_dhchap_key)]


class NvmeDhchap(Strict):
    """NVMe in-band authentication (DH-HMAC-CHAP) of one host: nvmet keeps the keys on the host's
    entry, so they hold for every subsystem that admits the host."""
    generate: bool = Field(False, description="the lab decides a random key when the plan is made (kept in its "
                           "secrets directory)")
    key: DhchapKey | None = Field(None, description="the host's key, DHHC-1:0[0-3]:BASE64: (prefer generate: true)")
    bidirectional: bool = Field(False, description="the host authenticates the target too (a controller key: "
                                "generated with generate: true, else ctrl_key)")
    ctrl_key: DhchapKey | None = Field(None, description="the controller's key for a literal key (implies bidirectional)")
    hash: Literal["sha256", "sha384", "sha512"] = Field("sha256", description="the HMAC the target asks for")
    dhgroup: Literal["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"] = Field(
        "null", description="the Diffie-Hellman group the target asks for (null: none)")


class NvmeNamespace(Strict):
    name: Name | None = Field(None, description="how a host pool names it (disk: NAME); default ns<NSID>")
    kind: Literal["file", "block"]
    path: AbsPath | None = Field(None, description="file: backing file under a mounted disk of the target node")
    size: Annotated[Size, at_least(2**20, "a namespace")] | None = Field(None, description="file: at least 1M")
    disk: Name | None = Field(None, description="block: a disk of the target node (filesystem: none)")


class NvmeHost(Strict):
    """A host a subsystem admits: a literal host NQN (written as a plain string), a node of the lab,
    or the KVM host (node: kvm); optionally with its DH-HMAC-CHAP keys."""
    nqn: Nqn | None = None
    node: Name | None = Field(None, description="a node with role nvme-host, or kvm (the KVM host): its host NQN, "
                              "decided when the plan is made")
    dhchap: NvmeDhchap | None = Field(None, description="DH-HMAC-CHAP: the host must authenticate with its key")


def _host(v: object) -> object:
    return {"nqn": v} if isinstance(v, str) else v  # "- nqn.2014-08...." is short for "- {nqn: ...}"


class NvmePort(Strict):
    network: Name = Field(description="a lab network: the target listens on its address there")
    port: int = Field(4420, ge=1024, le=65535, description="TCP port (4420, NVMe/TCP's)")


class NvmeSubsystem(Strict):
    nqn: Nqn
    namespaces: list[NvmeNamespace] = Field(min_length=1, max_length=32)
    allowed_hosts: list[Annotated[NvmeHost, BeforeValidator(_host)]] = Field(
        [], description="host NQNs or {node: NAME}; empty admits no host (unless allow_any_host)")
    allow_any_host: bool = Field(False, description="admit every host NQN (never implied)")
    ports: list[NvmePort] = Field(min_length=1, max_length=2, description="one, or two on two networks (multipath)")


class Nvme(Strict):
    target: Name
    subsystems: list[NvmeSubsystem] = Field(min_length=1, max_length=16)
