"""Base node set-up shared by every role: /etc/hosts with every lab node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..lab import Lab

NAME = "base"


def applies(plan: dict[str, Any]) -> bool:
    return True


def apply(lab: Lab) -> None:
    for node in lab.nodes.values():
        want = (lab.dir / "files" / "nodes" / node.name / "etc/hosts").read_text()
        if node.run(["cat", "/etc/hosts"], timeout=30).stdout != want:
            node.put("/etc/hosts", want)
