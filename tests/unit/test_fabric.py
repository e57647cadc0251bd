"""`node.fabric()`: a fabric Connection configured from the lab's ssh config (the file testinfra
and plain ssh use), with only the lab's own key and the lab's pinned host keys. No ssh runs here:
paramiko's connect is replaced by a recorder; the lab test of a real transfer is in
tests/lab/test_lifecycle.py."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import paramiko
import pytest

from harness.host.facts import PROFILES
from harness.lab.lab import Lab

REPO = Path(__file__).resolve().parents[2]
NODES3 = str(REPO / "topologies" / "nodes-3.yaml")
FACTS = dataclasses.replace(PROFILES["ci"], tools=frozenset({"lxc-start", "incus"}))
KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nstorlab-test-key-material-never-shown\n"
HOSTKEY = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """An lxc nodes3 lab on paper: its ssh config, a key file and node2's pinned host key; a user
    ssh config and fabric config that must not be read (HOME)."""
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    home = tmp_path / "user"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User mallory\n  IdentityFile ~/.ssh/other\n  Port 2222\n")
    (home / ".fabric.yaml").write_text("user: mallory\nconnect_kwargs: {allow_agent: true}\n")
    monkeypatch.setenv("HOME", str(home))
    lab = Lab.from_topology(NODES3, "lxc", facts=FACTS)
    lab.access.write_ssh_config()
    lab.key.write_text(KEY_TEXT)
    os.chmod(lab.key, 0o600)
    (lab.dir / "known_hosts").write_text(f"{lab.node('node2').address} ssh-ed25519 {HOSTKEY}\n")
    return lab


def test_the_connection_takes_the_labs_ssh_config_and_nothing_else(lab: Lab) -> None:
    node = lab.node("node2")
    c = node.fabric(timeout=33)
    assert (c.original_host, c.host, c.user, c.port) == ("node2", node.address, "root", 22)
    assert c.connect_timeout == 5  # ConnectTimeout
    assert c.gateway is None  # lxc: straight to the address
    # IdentitiesOnly: the lab's key, no agent, no ~/.ssh keys
    assert c.connect_kwargs == {"allow_agent": False, "look_for_keys": False, "key_filename": [str(lab.key)]}
    assert c.config.timeouts.command == 33  # every command has a timeout
    assert c.config.run.in_stream is False  # no stdin: under pytest, reading it fails (output captured)
    assert not c.is_connected


def test_host_keys_are_the_labs_and_an_unknown_one_is_refused(lab: Lab) -> None:
    known = lab.dir / "known_hosts"
    before = known.read_text()
    c = lab.node("node2").fabric()
    assert c.client.get_host_keys().lookup(lab.node("node2").address)["ssh-ed25519"].get_base64() == HOSTKEY
    assert isinstance(c.client._policy, paramiko.RejectPolicy)  # fabric's default would accept any key
    assert known.read_text() == before  # read, never written back


def test_open_hands_paramiko_the_lab_settings_and_no_key_material(lab: Lab, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(paramiko.SSHClient, "connect", lambda self, **kw: seen.update(kw))
    caplog.set_level(logging.DEBUG)
    node = lab.node("node2")
    with node.fabric() as c:
        c.open()
    assert seen == {"hostname": node.address, "port": 22, "username": "root", "timeout": 5,
                    "key_filename": [str(lab.key)], "allow_agent": False, "look_for_keys": False}
    out, err = capfd.readouterr()
    for where in (caplog.text, out, err, repr(seen)):
        assert "storlab-test-key-material" not in where


def test_incus_nodes_are_reached_through_the_labs_proxy_command(lab: Lab) -> None:
    inc = Lab.from_topology(NODES3, "incus", facts=FACTS, name="nodes3i")
    inc.access.write_ssh_config()
    c = inc.node("node1").fabric()
    assert c.gateway == inc.provider.ssh_proxy("node1")
    assert c.gateway.startswith("incus exec ") and str(inc.key) not in c.gateway
    assert c.connect_kwargs["key_filename"] == [str(inc.key)]
