"""Shared helpers for the unit tests: nothing here needs root, a network or a hypervisor."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # plain `python3 -m pytest tests/unit` from the repo root
    sys.path.insert(0, str(REPO))
