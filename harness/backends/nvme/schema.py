"""The nvme: section of a topology: an NVMe over TCP target (Linux nvmet) with its subsystems,
their namespaces, the host NQNs each admits and the ports (network + TCP port) it listens on."""

from __future__ import annotations

import re
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


class NvmeNamespace(Strict):
    name: Name | None = Field(None, description="how a host pool names it (disk: NAME); default ns<NSID>")
    kind: Literal["file", "block"]
    path: AbsPath | None = Field(None, description="file: backing file under a mounted disk of the target node")
    size: Annotated[Size, at_least(2**20, "a namespace")] | None = Field(None, description="file: at least 1M")
    disk: Name | None = Field(None, description="block: a disk of the target node (filesystem: none)")


class NvmeHost(Strict):
    """A host a subsystem admits: a literal host NQN (written as a plain string) or a node of the lab."""
    nqn: Nqn | None = None
    node: Name | None = Field(None, description="a node with role nvme-host: its host NQN, decided when the plan is made")


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
