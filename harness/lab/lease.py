"""Lease arithmetic: how long a lab may live (`--expire 4h`), shown as what is left."""

from __future__ import annotations

import math
import re
import time
from decimal import Decimal

from harness.errors import HarnessError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
#: the longest lease: a lab is for a class or a test run, and an unbounded number (400 digits) made
#: an infinite expiry that `storlab list` could not show; 'never' is what asks for no lease
MAX_SECONDS = 30 * 86400


def parse_duration(text: str) -> float | None:
    """'4h', '90m', '1d12h', 'never' -> seconds (None for never)."""
    t = text.strip().lower()
    if t in ("never", "none", "0"):
        return None
    parts = _RE.findall(t)
    if not parts or _RE.sub("", t).strip():
        raise HarnessError(f"duration {text!r}: use a number and a unit (s, m, h, d, w), e.g. 4h, 90m, 1d12h, or 'never'")
    exact = sum(Decimal(n) * _UNITS[u] for n, u in parts)  # Decimal: 400 digits do not become inf
    shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
    if exact <= 0:
        raise HarnessError(f"duration {shown!r} is not positive")
    if exact > MAX_SECONDS:
        raise HarnessError(f"duration {shown!r} is longer than a lease may be (at most 30 days, e.g. 30d or 4w); "
                           "extend it later with `storlab lease LAB DURATION`, or give 'never'")
    return float(exact)


def remaining(expires: float | None, now: float | None = None) -> str:
    """'3h58m left', 'expired 5m ago' or 'never'."""
    if not expires or not math.isfinite(expires):  # an infinite expiry an older storlab stored: never ends
        return "never"
    left = expires - (now if now is not None else time.time())
    span = abs(left)
    d, rest = divmod(int(span), 86400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    text = (f"{d}d{h}h" if d else f"{h}h{m:02d}m" if h else f"{m}m" if m else f"{int(span)}s")
    return f"{text} left" if left > 0 else f"expired {text} ago"
