"""The base role's network-online unit: it waits for exactly the node's lab addresses, bounded."""

from __future__ import annotations

import subprocess

import pytest

from harness.nodes.roles import base


def test_online_unit_waits_for_each_lab_address_and_gives_up() -> None:
    unit = base.online_unit(["192.168.172.12", "192.168.161.12"])
    assert "Before=network-online.target" in unit and "WantedBy=network-online.target" in unit
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert start.startswith(f"ExecStart=/usr/bin/timeout {base.ONLINE_WAIT_S} /bin/sh -c '")
    assert '" 192.168.172.12/"' in start and '" 192.168.161.12/"' in start and "$" not in start


def test_online_unit_takes_only_addresses() -> None:
    with pytest.raises(ValueError):
        base.online_unit(["192.168.1.2/'; reboot; '"])


def test_online_unit_check_is_what_sh_runs() -> None:
    """The check, as the unit's shell runs it, against `ip -o addr show` output: done for the
    address that is there, not for a prefix of another (192.168.1.2 is not 192.168.1.20)."""
    start = next(line for line in base.online_unit(["192.168.1.2"]).splitlines() if line.startswith("ExecStart="))
    check = start.split("'until ", 1)[1].split("; do", 1)[0].replace("ip -o addr show", "printf '%s\\n' \"$ADDRS\"")
    def ok(addrs: str) -> bool:
        return subprocess.run(["sh", "-c", check], env={"ADDRS": addrs, "PATH": "/usr/bin:/bin"}, check=False).returncode == 0
    assert ok("3: eth1    inet 192.168.1.2/24 brd 192.168.1.255 scope global eth1")
    assert not ok("3: eth1    inet 192.168.1.20/24 brd 192.168.1.255 scope global eth1")
