"""What stands between the network and the service: bounded request bodies, rates per client,
who a request is (a bearer token, or a cookie set from a link), CSRF and Origin checks for what a
browser sends with cookies, and TLS material.

A page opened from a link (`/s/TOKEN`, `/i/TOKEN`) trades the token for an HttpOnly, SameSite=Strict
cookie and a CSRF cookie and redirects to a URL without it (no token in the history or in a
Referer). A request changing anything with a cookie must carry the CSRF cookie's value in the
``X-Storlab-CSRF`` header (a page of another origin cannot read it), and a websocket must come
from the service's own origin. API clients send ``Authorization: Bearer TOKEN`` and need neither.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.run import succeed
from harness.web.store import Grant, Store

MAX_BODY = 64 * 1024
COOKIES = {"seat": "sl_seat", "instructor": "sl_class"}
CSRF_COOKIE = "sl_csrf"
CSRF_HEADER = "x-storlab-csrf"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Bucket:
    """Token buckets by key: ``rate`` a second, up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.level: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self.lock:
            level, last = self.level.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            if level < 1:
                self.level[key] = (level, now)
                return False
            self.level[key] = (level - 1, now)
            if len(self.level) > 10000:  # forget the quietest clients
                self.level = dict(sorted(self.level.items(), key=lambda kv: kv[1][1])[-5000:])
            return True


class Guard:
    """ASGI middleware: request bodies bounded, requests per client rate-limited."""

    # a classroom often reaches the service from one address (NAT): each page polls every 2 s and
    # opens a websocket per node, so the rate is per address and generous; token guessing has its own
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], rate: float = 60, burst: float = 300,
                 max_body: int = MAX_BODY) -> None:
        self.app, self.max_body = app, max_body
        self.requests = Bucket(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        if not self.requests.take(client):
            await _plain(scope, send, 429, b"too many requests\n")
            return
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await _plain(scope, send, 413, b"request body too large\n")
                return
            seen = 0

            async def bounded() -> MutableMapping[str, Any]:
                nonlocal seen
                msg = await receive()
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise HarnessError("request body too large")
                return msg
            await self.app(scope, bounded, send)
            return
        await self.app(scope, receive, send)


async def _plain(scope: Scope, send: Send, status: int, body: bytes) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Auth:
    """Who a request is, from its bearer token or its cookies; failed tries counted per client."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures = Bucket(rate=20 / 60, burst=20)

    def grant(self, headers: dict[str, str], cookies: dict[str, str], client: str) -> Grant | None:
        auth = headers.get("authorization", "")
        presented = [auth[7:].strip()] if auth.lower().startswith("bearer ") else []
        presented += [cookies[c] for c in COOKIES.values() if c in cookies]
        for secret in presented:
            g = self.store.check(secret)
            if g is not None:
                return g
        if presented and not self.failures.take(client):
            raise TooMany()
        return None

    def from_link(self, secret: str, client: str) -> Grant | None:
        g = self.store.check(secret)
        if g is None and not self.failures.take(client):
            raise TooMany()
        return g


class TooMany(Exception):
    """A client tried too many tokens that open nothing."""


def csrf_ok(method: str, headers: dict[str, str], cookies: dict[str, str]) -> bool:
    """A request that changes something, made with cookies, carries the CSRF cookie's value."""
    if method in ("GET", "HEAD", "OPTIONS") or headers.get("authorization", "").lower().startswith("bearer "):
        return True
    want = cookies.get(CSRF_COOKIE, "")
    return bool(want) and secrets.compare_digest(want.encode(), headers.get(CSRF_HEADER, "").encode())


def same_origin(headers: dict[str, str]) -> bool:
    """A websocket (or a form post) comes from a page of this service: its Origin names this host."""
    origin = headers.get("origin")
    host = headers.get("host")
    if not origin or not host:
        return False
    return origin.split("://", 1)[-1].rstrip("/") == host


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def self_signed(directory: Path, hostname: str) -> tuple[Path, Path, str]:
    """A self-signed certificate for ``hostname`` (made once, kept in ``directory``): cert, key,
    and its SHA-256 fingerprint as browsers show it."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists() or not key.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        san = f"IP:{hostname}" if _is_ip(hostname) else f"DNS:{hostname}"
        succeed(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-days", "365", "-subj", "/CN=storlab serve", "-addext", f"subjectAltName={san}",
                 "-keyout", str(key), "-out", str(cert)], timeout=60)
        key.chmod(0o600)
    return cert, key, fingerprint(cert)


def fingerprint(cert: Path) -> str:
    pem = cert.read_text()
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    digest = hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
