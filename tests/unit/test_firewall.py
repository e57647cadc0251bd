"""The firewall table for lab bridges (harness/host/firewall.py): its rules in the order that matters,
and the set of bridges that carry their own traffic taking only storlab's bridge names."""

from __future__ import annotations

import pytest

from harness import paths
from harness.host import firewall


def test_a_labs_own_traffic_is_accepted_before_anything_from_a_lab_bridge_is_dropped() -> None:
    forward = firewall.RULESET.split("chain forward")[1]
    assert forward.index("@bridged accept") < forward.index('iifname "slb*" counter drop')
    assert 'oifname "slb*" counter drop' in forward
    inp = firewall.RULESET.split("chain input")[1].split("chain forward")[0]
    assert inp.index("ct state established,related accept") < inp.index('iifname "slb*" counter drop')
    assert "policy accept" in inp  # the host's own traffic is not storlab's business
    assert "dport 67 accept" in inp and "53" not in inp  # DHCP for VM labs; no DNS: storlab's networks have none


@pytest.mark.parametrize("lab", ["gluster3", "a", "class1-s01", "x" * 31])
def test_every_lab_bridge_name_fits_the_pattern(lab: str) -> None:
    for i in (0, 1, 9, 15):
        assert firewall.BRIDGE_RE.fullmatch(paths.bridge_name(lab, i))
        assert paths.bridge_name(lab, i).startswith(firewall.BRIDGES.rstrip("*"))


@pytest.mark.parametrize("name", ['slb123456"; flush ruleset', "eth0", "slb12345g0", "slb1234560\n"])
def test_nothing_else_reaches_an_nft_command(name: str) -> None:
    assert not firewall.BRIDGE_RE.fullmatch(name)
