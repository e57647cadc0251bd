"""Gluster CLI parsers against output recorded from the gluster-3 lab (glusterfs 10.3)."""

from __future__ import annotations

from pathlib import Path

from harness.backends.gluster.role import parse_heal_count, parse_heal_info, parse_volume_clients

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
