"""How many labs `class up` brings up at once by default."""

from __future__ import annotations

import pytest

from harness.training import classroom


@pytest.mark.parametrize(("provider", "accel", "want_one"), [("vagrant", "tcg", True), ("vagrant", "kvm", False),
                                                              ("lxc", "tcg", False)])
def test_vms_without_kvm_come_up_one_lab_at_a_time(monkeypatch: pytest.MonkeyPatch, provider: str, accel: str,
                                                   want_one: bool) -> None:
    monkeypatch.setenv("STORLAB_ACCEL", accel)
    n = classroom.default_parallel(provider)
    assert (n == 1) is want_one and n >= 1
