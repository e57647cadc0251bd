"""What every route shares: the service (records, pools, terminals, auth), and the checks that a
request may do what it asks: its token's scope, the class and seat it reaches, CSRF, audit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request, WebSocket

from harness.web.pool import Pools
from harness.web.security import Auth, TooMany, csrf_ok, same_origin
from harness.web.store import Grant, Store
from harness.web.terminal import Hub


@dataclass
class Service:
    store: Store
    pools: Pools
    hub: Hub
    auth: Auth
    #: cookies carry Secure (the service speaks TLS)
    secure: bool
    topologies: Path


def service(request: Request | WebSocket) -> Service:
    svc: Service = request.app.state.service
    return svc


def client(request: Request | WebSocket) -> str:
    return request.client.host if request.client else "?"


def grant(request: Request | WebSocket) -> Grant | None:
    try:
        return service(request).auth.grant(dict(request.headers), dict(request.cookies), client(request))
    except TooMany:
        raise HTTPException(429, "too many tries with tokens that open nothing") from None


def need(request: Request, *scopes: str, klass: str | None = None) -> Grant:
    """The request's grant, if it is one of ``scopes`` (and reaches ``klass``); else 401/403. A
    request changing something with cookies must carry the CSRF header (403 otherwise)."""
    g = grant(request)
    if g is None:
        raise HTTPException(401, "no valid token: open your link again, or ask your instructor for a new one")
    if g.scope not in scopes or (klass is not None and g.scope != "admin" and g.klass != klass):
        audit(request, g, "denied", request.url.path, "forbidden")
        raise HTTPException(403, "this token does not reach that")
    if not csrf_ok(request.method, dict(request.headers), dict(request.cookies)):
        audit(request, g, "denied", request.url.path, "csrf")
        raise HTTPException(403, "missing or wrong CSRF header: reload the page")
    return g


def need_ws(ws: WebSocket, *scopes: str) -> Grant | None:
    """A websocket's grant (None: refuse it): its cookie, and its page from this service's origin."""
    if not same_origin(dict(ws.headers)):
        return None
    try:
        g = grant(ws)
    except HTTPException:
        return None
    return g if g is not None and g.scope in scopes else None


def audit(request: Request | WebSocket, g: Grant | None, action: str, target: str, outcome: str) -> None:
    service(request).store.audit(g.who() if g else "anonymous", action, target, outcome, client(request))
