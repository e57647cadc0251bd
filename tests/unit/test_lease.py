"""Lease durations: what `--expire` and `storlab extend` take, and what `storlab list` shows."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.lab import lease


@pytest.mark.parametrize(("text", "seconds"), [("4h", 14400), ("90m", 5400), ("1d12h", 129600), ("30d", 2592000),
                                               ("1.5h", 5400), ("never", None), ("0", None)])
def test_durations(text: str, seconds: float | None) -> None:
    assert lease.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["9" * 400 + "s", "9" * 400 + "." + "9" * 400 + "w", "31d", "5w", "720h1s",
                                  "1" + "0" * 20 + "s"],
                         ids=["400-digits", "400.400-digits", "31d", "5w", "720h1s", "1e20s"])
def test_a_duration_past_the_longest_lease_is_refused(text: str) -> None:
    with pytest.raises(HarnessError, match="at most 30 days") as exc:
        lease.parse_duration(text)
    assert len(str(exc.value)) < 300  # a 400-digit input is not echoed whole


@pytest.mark.parametrize("text", ["", "4", "h", "4x", "-1h", "4h junk"])
def test_not_a_duration(text: str) -> None:
    with pytest.raises(HarnessError):
        lease.parse_duration(text)


def test_remaining_of_a_lease_an_older_storlab_stored_does_not_crash() -> None:
    """Before the bound, '9'*400+'s' was stored as an infinite (or enormous) expiry and `list` died."""
    assert lease.remaining(float("inf"), now=0) == "never"
    assert lease.remaining(1e300, now=0).endswith("left")
    assert lease.remaining(100.0, now=0) == "1m left"
