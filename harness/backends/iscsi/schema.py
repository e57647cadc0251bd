"""The iscsi: section of a topology."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from harness.spec.topology import AbsPath, Name, Size, Strict, Token, allow, at_least

IQN_RE = re.compile(r"iqn\.(\d{4})-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                    r"(:[A-Za-z0-9][A-Za-z0-9._:-]{0,200})?")  # fullmatch: "$" would let a final newline through
Iqn = str  # checked against IQN_RE by the rules (rules.check_iqn), with the RFC 3720 fix


ChapUser = Annotated[str, allow(r"[A-Za-z0-9._:@-]{1,64}", "CHAP username", "use letters, digits and . _ : @ -")]
#: the punctuation a CHAP secret may have: no space, quote or line break, and no '#' (tgt.conf's
#: parser, Config::General, starts a comment there and would cut the secret short)
CHAP_PUNCT = "._~!@%^*+=,:/-"
CHAP_CHARS = "A-Za-z0-9" + re.escape(CHAP_PUNCT)  # inside [...]
ChapSecret = Annotated[str, allow(f"[{CHAP_CHARS}]{{1,64}}", "CHAP secret",
                                   f"use letters, digits and {CHAP_PUNCT} (no spaces, quotes or '#')")]


class Chap(Strict):
    username: ChapUser
    password: ChapSecret | None = Field(None, description="literal secret (12-16 chars); prefer password_file or generate")
    password_file: AbsPath | None = None
    generate: bool = Field(False, description="generate a per-lab secret stored in the lab directory")


class IscsiLun(Strict):
    kind: Literal["fileio", "block", "lvm"]
    size: Annotated[Size, at_least(2**20, "a LUN")] | None = Field(None, description="fileio/lvm: at least 1M")
    path: AbsPath | None = Field(None, description="fileio: backing file")
    disk: Name | None = Field(None, description="block/lvm: name of a disk of the target node")
    vg: Token | None = None
    lv: Token | None = None


class IscsiAcl(Strict):
    initiator: Iqn
    chap: Chap | None = None


class Iscsi(Strict):
    target: Name
    implementation: Literal["auto", "lio", "tgt"] = "auto"
    iqn: Iqn
    portals: list[Annotated[str, Field(pattern=r"^(\*|[a-z][a-z0-9-]{0,30})$")]] = Field(
        ["*"], description="network names, or '*' for every lab network; port 3260")
    luns: list[IscsiLun] = Field(min_length=1)
    acls: list[IscsiAcl] = []
