"""Installed storage backends, found through the `storlab.backends` entry points (this
package's and any other installed package's).

This module sits at the bottom of the layers so that the topology schema and the plan
models can take each backend's section from it; it reads only the static declarations a
backend makes (name, section models, roles, packages). The hooks a backend implements are
typed in harness.backends.base."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from pydantic import BaseModel


@runtime_checkable
class Declared(Protocol):
    """What every backend declares (see harness.backends.base.Backend)."""
    name: str
    order: int
    section: type[BaseModel]
    plan_section: type[BaseModel]
    pool_section: type[BaseModel]  # a harness.plan.model.HostPoolPlan subclass
    roles: tuple[str, ...]
    packages: tuple[str, ...]
    services: tuple[str, ...]


@cache
def declared() -> tuple[Declared, ...]:
    """Every installed backend, in bring-up order."""
    found = []
    for ep in entry_points(group="storlab.backends"):
        obj = ep.load()
        backend = obj() if isinstance(obj, type) else obj
        if not isinstance(backend, Declared) or backend.name != ep.name:
            raise TypeError(f"entry point storlab.backends:{ep.name} ({ep.value}) is not a storlab backend named {ep.name!r}")
        found.append(backend)
    return tuple(sorted(found, key=lambda b: (b.order, b.name)))


def names() -> list[str]:
    return [b.name for b in declared()]


def roles() -> dict[str, str]:
    """Node role -> the backend that brings it."""
    return {r: b.name for b in declared() for r in b.roles}


def clear() -> None:
    """Forget what was found (tests that install a backend of their own)."""
    declared.cache_clear()
