"""Gluster CLI parsers against output recorded from the gluster-3 lab (glusterfs 10.3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.backends.gluster.role import missing, parse_heal_count, parse_heal_info, parse_volume_clients

DATA = Path(__file__).parent / "data"
B = "192.168.149.1{}:/gluster/bricks/1/brick"

HEAL_INFO_ONE_DOWN = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cliOutput><healInfo><bricks>
  <brick hostUuid="f61f"><name>192.168.149.11:/gluster/bricks/1/brick</name><status>Connected</status>
    <numberOfEntries>0</numberOfEntries></brick>
  <brick hostUuid="208f"><name>192.168.149.12:/gluster/bricks/1/brick</name><status>Connected</status>
    <numberOfEntries>3</numberOfEntries></brick>
  <brick hostUuid="70e8"><name>192.168.149.13:/gluster/bricks/1/brick</name>
    <status>Transport endpoint is not connected</status><numberOfEntries>-</numberOfEntries></brick>
</bricks></healInfo><opRet>0</opRet><opErrno>0</opErrno><opErrstr/></cliOutput>"""


def test_heal_count_with_a_node_down() -> None:
    counts = parse_heal_count((DATA / "gluster_heal_count_node_down.txt").read_text())
    assert counts == {B.format(1): 2, B.format(2): 2, B.format(3): None}


def test_heal_count_all_healed() -> None:
    text = "\n".join(f"Brick {B.format(i)}\nNumber of entries: 0\n" for i in (1, 2, 3))
    assert parse_heal_count(text) == {B.format(i): 0 for i in (1, 2, 3)}


def test_heal_count_of_nothing_is_empty() -> None:
    assert parse_heal_count("Volume kvmgluster is not started.\n") == {}


def test_heal_info_counts_only_connected_bricks() -> None:
    assert parse_heal_info(HEAL_INFO_ONE_DOWN) == {B.format(1): 0, B.format(2): 3, B.format(3): None}


CLIENTS = """Client connections for volume kvmgluster
----------------------------------------------
Brick : 192.168.102.11:/gluster/bricks/1/brick
Clients connected : 2
Hostname                                               BytesRead    BytesWritten       OpVersion
--------                                               ---------    ------------       ---------
192.168.102.1:49150                                       347024           17964          100000
192.168.102.12:49141                                         904             636          100000
----------------------------------------------
Brick : 192.168.102.12:/gluster/bricks/1/brick
Clients connected : 0
Hostname                                               BytesRead    BytesWritten       OpVersion
--------                                               ---------    ------------       ---------
----------------------------------------------
"""


def test_volume_clients_per_brick() -> None:
    assert parse_volume_clients(CLIENTS) == {B.format(1).replace("149", "102"): {"192.168.102.1", "192.168.102.12"},
                                             B.format(2).replace("149", "102"): set()}


# -- whether a volume is whole (role.missing), on recorded answers ------------------------------------------
def status_xml(online: tuple[bool, ...]) -> str:
    nodes = "".join(f"<node><hostname>192.168.149.1{i + 1}</hostname><path>/gluster/bricks/1/brick</path>"
                    f"<status>{'1' if up else '0'}</status><pid>{100 + i}</pid><port>49152</port></node>"
                    for i, up in enumerate(online))
    shd = "<node><hostname>Self-heal Daemon</hostname><path>localhost</path><status>1</status></node>"
    return f"<cliOutput><volStatus><volumes><volume>{nodes}{shd}</volume></volumes></volStatus></cliOutput>"


def heal_xml(counts: tuple[int, ...]) -> str:
    bricks = "".join(f"<brick><name>{B.format(i + 1)}</name><status>Connected</status>"
                     f"<numberOfEntries>{c}</numberOfEntries></brick>" for i, c in enumerate(counts))
    return f"<cliOutput><healInfo><bricks>{bricks}</bricks></healInfo></cliOutput>"


class Answers:
    """A node answering gluster's commands from a table (the first key found in the command)."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table, self.asked = table, []  # type: ignore[var-annotated]

    def _answer(self, cmd: Sequence[str]) -> str:
        line = " ".join(cmd)
        self.asked.append(line)
        return next((out for key, out in self.table.items() if line.endswith(key)), "")

    def succeed(self, cmd: Sequence[str], *, timeout: float = 120, input: str | None = None) -> str:
        return self._answer(cmd)

    def run(self, cmd: Sequence[str], *, timeout: float = 120, input: str | None = None) -> Any:
        return self._answer(cmd)


CLIENTS_ALL = "".join(f"Brick : {B.format(i)}\nClients connected : 1\nHostname x\n--------\n192.168.149.1:49150 1 1 1\n"
                      "----------------------------------------------\n" for i in (1, 2, 3))


@pytest.mark.parametrize(("table", "kw", "want"), [
    ({"--xml": status_xml((True, True, False))}, {}, "bricks online (2 of 3)"),
    ({"status v --xml": status_xml((True, True)), }, {"bricks": 3}, "bricks online (2 of 3)"),
    ({"status v --xml": status_xml((True,) * 3), "clients": CLIENTS.replace("102", "149")},
     {"host": "192.168.149.1"}, "the KVM host's client connected to every brick"),
    ({"status v --xml": status_xml((True,) * 3), "info --xml": heal_xml((0, 2, 0)), "split-brain --xml": heal_xml((0,) * 3)},
     {}, "nothing left to heal (2 entries)"),
    ({"status v --xml": status_xml((True,) * 3), "info --xml": heal_xml((0, 2, 0)), "split-brain --xml": heal_xml((0, 1, 0))},
     {"split_brain_ok": True}, None),
    ({"status v --xml": status_xml((True,) * 3), "info --xml": heal_xml((0, 2, 0))}, {"replica": 1}, None),
    ({"status v --xml": status_xml((True,) * 3), "clients": CLIENTS_ALL, "info --xml": heal_xml((0, 0, 0))},
     {"bricks": 3, "host": "192.168.149.1"}, None),
])
def test_what_keeps_a_volume_from_being_whole(table: dict[str, str], kw: dict[str, Any], want: str | None) -> None:
    got = missing(Answers(table), "v", **kw)  # type: ignore[arg-type]
    assert got == (f"v: {want}" if want else None)
