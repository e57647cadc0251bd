"""Fakes of libvirt's objects and of a lab, for unit tests of what storlab does on the KVM host."""

from __future__ import annotations

from pathlib import Path

import libvirt

from harness.plan.model import Plan


class FakeSecret:
    def __init__(self, xml: str) -> None:
        self.xml, self.value, self.undefined = xml, b"", False

    def XMLDesc(self, flags: int) -> str:
        return self.xml

    def setValue(self, value: bytes, flags: int) -> None:
        self.value = value

    def undefine(self) -> None:
        self.undefined = True


class FakePool:
    def __init__(self) -> None:
        self.undefined = False

    def isActive(self) -> bool:
        return False

    def undefine(self) -> None:
        self.undefined = True


class FakeConn:
    def __init__(self, pools: dict[str, FakePool], secrets: dict[str, FakeSecret] | None = None) -> None:
        self.pools, self.secrets = pools, secrets or {}

    def storagePoolLookupByName(self, name: str) -> FakePool:
        if name not in self.pools:
            raise libvirt.libvirtError(f"no pool {name}")
        return self.pools[name]

    def secretLookupByUUIDString(self, uuid: str) -> FakeSecret:
        if uuid not in self.secrets:
            raise libvirt.libvirtError(f"no secret {uuid}")
        return self.secrets[uuid]

    def close(self) -> None:
        pass


class FakeLab:
    def __init__(self, plan: Plan, owned: list[str]) -> None:
        self.plan, self.name, self.owned = plan, plan.lab, owned
        self.logs = Path("/nonexistent")

    def owns(self, thing: str) -> bool:
        return thing in self.owned

    def claim(self, thing: str) -> None:
        self.owned.append(thing)

    def files(self, where: str) -> Path:
        return Path("/nonexistent")
