"""The one plugin loader: installed storage backends (`storlab.backends` entry points) and node
providers (`storlab.providers`), this package's and any other installed package's.

This module sits at the bottom of the layers so that the topology schema and the plan
models can take each backend's section from it; it reads only the static declarations a
backend makes (name, section models, roles, packages). The hooks a backend implements are
typed in harness.backends.base, a provider's in harness.providers.base (its registry of
provider classes is built on `providers()` here)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel


@runtime_checkable
class Declared(Protocol):
    """What every backend declares (see harness.backends.base.Backend)."""
    name: str
    order: int
    section: type[BaseModel]
    plan_section: type[BaseModel]
    pool_section: type[BaseModel]  # a harness.plan.model.HostPoolPlan subclass
    pool_options: type[BaseModel] | None  # what a pool on it takes under its name (host.pools[].NAME)
    roles: tuple[str, ...]
    packages: tuple[str, ...]
    services: tuple[str, ...]


BACKENDS = "storlab.backends"
PROVIDERS = "storlab.providers"


@cache
def declared() -> tuple[Declared, ...]:
    """Every installed backend, in bring-up order."""
    found = []
    for ep in entry_points(group=BACKENDS):
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


def provider_names() -> list[str]:
    """Every installed provider's name, in entry-point order (`provider: auto` takes the first that
    fits), read without loading a provider."""
    return list(dict.fromkeys(ep.name for ep in entry_points(group=PROVIDERS)))


@cache
def provider(name: str) -> type[Any] | None:
    """The provider class installed as ``name`` (loaded on first use), None when there is none.
    What the class must be is checked in harness.providers.base, which owns the interface."""
    for ep in entry_points(group=PROVIDERS):
        if ep.name != name:
            continue
        obj = ep.load()
        if not isinstance(obj, type) or getattr(obj, "name", None) != name:
            raise TypeError(f"entry point {PROVIDERS}:{name} ({ep.value}) is not a provider class named {name!r}")
        return obj
    return None


def providers() -> dict[str, type[Any]]:
    """Every installed provider class, by name."""
    return {n: cls for n in provider_names() if (cls := provider(n)) is not None}


def clear() -> None:
    """Forget what was found (tests that install a backend or a provider of their own)."""
    declared.cache_clear()
    provider.cache_clear()
