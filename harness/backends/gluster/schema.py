"""The gluster: section of a topology."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from harness.spec.topology import NAME_RE, Strict, abs_path, allow

OptionKey = Annotated[str, allow(r"[a-z0-9][a-z0-9_.-]*", "option name", "use lower-case letters, digits and . _ -")]
OptionValue = Annotated[str, allow(r"[A-Za-z0-9_.,*:/-]*", "option value", "use letters, digits and . , * : / _ -")]


def _brick(v: str) -> str:
    node, sep, path = v.partition(":")
    if not sep or not re.fullmatch(NAME_RE, node):
        raise ValueError(f"brick {v!r} is not node:/absolute/path; fix: write e.g. gluster1:/gluster/bricks/1/brick")
    return f"{node}:{abs_path(path)}"


class GlusterVolume(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]
    replica: int = Field(3, ge=1)
    arbiter: int = Field(0, ge=0, le=1, description="1: replica 3 arbiter 1 (each set's last brick keeps metadata only)")
    bricks: list[Annotated[str, AfterValidator(_brick)]] = Field(min_length=1, description="node:/path")
    options: dict[OptionKey, OptionValue | int | bool] = {}


class Gluster(Strict):
    volumes: list[GlusterVolume] = Field(min_length=1)
