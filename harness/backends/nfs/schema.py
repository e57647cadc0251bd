"""The nfs: section of a topology."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness.spec.topology import AbsPath, Name, Strict, allow

ExportClient = Annotated[str, allow(r"\*|lab|[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?|[A-Za-z0-9][A-Za-z0-9.-]*",
                                     "export client", "use lab, *, an address, a CIDR or a host name")]
ExportOption = Annotated[str, allow(r"[a-z_]+(=[A-Za-z0-9_:.-]+)?", "export option",
                                     "one option per list item, e.g. [rw, sync, root_squash]")]


class NfsExport(Strict):
    path: AbsPath
    clients: list[ExportClient] = Field(["lab"], description="hosts/CIDRs, 'lab' = the lab network, '*' = everyone")
    options: list[ExportOption] = ["rw", "sync", "root_squash"]
    allow_insecure: bool = Field(False, description="permit '*' with no_root_squash")


class Nfs(Strict):
    server: Name
    implementation: Literal["auto", "kernel", "ganesha"] = "auto"
    exports: list[NfsExport] = Field(min_length=1)
    grace_period: int = Field(15, ge=10, le=3600, description="NFSv4 grace period after a server (re)start, seconds "
                              "(both servers default to 90; a lab restarts often)")
    lease_time: int = Field(10, ge=10, le=3600, description="NFSv4 lease time, seconds")
