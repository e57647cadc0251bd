"""The nfs: section of a topology."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

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


def _version_text(v: Any) -> Any:
    """YAML reads `version: 4.2` as a number and `3` as an int: both mean the text."""
    text = str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
    if text == "4":
        raise ValueError("version 4 leaves the minor version to the client and the server; fix: write 4.0, 4.1 or 4.2")
    return text


def _nconnect(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and not 1 <= v <= 16:
        raise ValueError(f"nconnect={v}: the Linux client opens 1 to 16 connections to an address; fix: give 1 to 16 "
                         "(more connections to more addresses: trunk:)")
    return v


#: NFS protocol versions a pool's client may ask for (the Linux client's vers=; libvirt's <protocol ver>)
NfsVersion = Annotated[Literal["3", "4.0", "4.1", "4.2"], BeforeValidator(_version_text)]
Nconnect = Annotated[int, Field(ge=1, le=16), BeforeValidator(_nconnect)]  # the schema says 1-16; ours says why first


class NfsClient(Strict):
    """How a pool's kernel NFS client mounts its export (host.pools[].nfs): a netfs pool's mount
    (libvirt's) and a dir pool's on an NFS mount (storlab's, on a hypervisor node)."""
    version: NfsVersion | None = Field(None, description="3, 4.0, 4.1 or 4.2; unset: client and server agree on "
                                       "the highest both speak (4.2 with kernel nfsd and NFS-Ganesha)")
    nconnect: Nconnect | None = Field(None, description="TCP connections to the server's address "
                                 "(Linux nconnect=, 1-16); unset: one")
    trunk: list[Name] = Field([], max_length=3, description="NFSv4.1 session trunking (dir pools): further lab "
                              "networks of the server, each mounted once more so the client adds a connection to "
                              "the server's address there to the same session (max_connect=)")
