"""The ceph: section of a topology."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness.spec.topology import Name, Strict, Token, allow

CephCap = Annotated[str, allow(r"[A-Za-z0-9 _.,=*-]+", "ceph cap", "e.g. 'allow rwx pool=vms' or 'profile rbd pool=vms'")]
HealthCode = Annotated[str, allow(r"[A-Z][A-Z0-9_]*", "health check code", "e.g. POOL_NO_REDUNDANCY")]


class CephPool(Strict):
    name: Token
    pg_num: int = Field(32, ge=1)
    size: int = Field(2, ge=1)
    min_size: int | None = None
    application: Literal["rbd", "cephfs", "rgw"] = "rbd"


class CephClient(Strict):
    name: Annotated[str, Field(pattern=r"^client\.[A-Za-z0-9_.-]+$")]
    caps: dict[Literal["mon", "osd", "mgr", "mds"], CephCap]


class Ceph(Strict):
    osd_disk: Name | None = Field(None, description="disk name on each ceph-osd node; file-backed when omitted")
    osd_pool_default_size: int = Field(2, ge=1)
    heartbeat_grace: int = Field(20, ge=1)
    pools: list[CephPool] = []
    clients: list[CephClient] = []
    accept_warnings: list[HealthCode] = []
