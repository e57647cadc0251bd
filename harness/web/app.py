"""`storlab serve`: the ASGI application (FastAPI on Starlette, served by uvicorn).

FastAPI because the service is an HTTP API first (classes, seats, claim, release, reset, extend,
exercises, grades, events) and FastAPI documents it as OpenAPI from the same typed models that
validate each request (pydantic, which the plan already uses); Starlette underneath gives the
websockets (terminals) and streaming (server-sent events); uvicorn serves it, with TLS.

Links: /s/TOKEN (a student's seat), /i/TOKEN (an instructor's class), /j/TOKEN (a class's join
page: a student names themselves and gets a seat). The API's reference is at /docs (OpenAPI at
/openapi.json)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from harness.errors import HarnessError
from harness.web import klass, pages, seat
from harness.web.context import Service, audit, client, service
from harness.web.pool import Pools
from harness.web.security import COOKIES, CSRF_COOKIE, Auth, Guard, TooMany
from harness.web.store import Store
from harness.web.terminal import Hub

STATIC = Path(__file__).resolve().parent / "static"
HEADERS = {"Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                      # xterm.js sizes its rows with inline styles; scripts stay 'self' only
                                      "style-src 'self' 'unsafe-inline'; "
                                      "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def create_app(store: Store, topologies: Path, secure: bool, start_pools: bool = True) -> Guard:
    pools = Pools(store, topologies)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_pools:
            pools.start()
        yield
        pools.stop.set()
        await app.state.service.hub.close_all()

    # /docs is the service's own page (no script from a CDN: the pages' CSP allows none, and a lab
    # host may have no internet); the OpenAPI document is /openapi.json
    app = FastAPI(title="storlab serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Labs on demand: warm pools of storage labs, student seats with browser terminals "
                              "and checks, a live instructor view. Tokens: admin (this host), instructor (one "
                              "class), seat (one lab); send `Authorization: Bearer TOKEN`.")
    app.state.service = Service(store=store, pools=pools, hub=Hub(), auth=Auth(store), secure=secure,
                                topologies=topologies)
    app.include_router(seat.router)
    app.include_router(klass.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _links(app)

    @app.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    return Guard(app)


def _enter(request: Request, scope: str, secret: str, to: str) -> Response:
    """A link's token traded for cookies (HttpOnly, SameSite=Strict) and a URL without it."""
    svc = service(request)
    try:
        g = svc.auth.from_link(secret, client(request))
    except TooMany:
        raise HTTPException(429, "too many tries") from None
    if g is None or g.scope != scope:
        audit(request, None, f"link {scope}", request.url.path[:3], "refused")
        return HTMLResponse(pages.render("message.html", title="link not valid",
                                         text="This link is not valid, or it has expired. Ask your instructor "
                                              "for a new one."), status_code=401)
    audit(request, g, f"link {scope}", g.klass or "", "entered")
    r = RedirectResponse(to, status_code=303)
    r.set_cookie(COOKIES[scope], secret, httponly=True, samesite="strict", secure=svc.secure, path="/")
    r.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), httponly=False, samesite="strict", secure=svc.secure,
                 path="/")
    return r


def _links(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(pages.render("message.html", title="storlab",
                                         text="Open the link your instructor gave you."))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(pages.render("docs.html", title="API", api=pages.api_reference(app.openapi())))

    @app.get("/api/health", tags=["service"], summary="The service answers")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/s/{token}", include_in_schema=False)
    def seat_link(request: Request, token: str) -> Response:
        return _enter(request, "seat", token, "/seat")

    @app.get("/i/{token}", include_in_schema=False)
    def class_link(request: Request, token: str) -> Response:
        return _enter(request, "instructor", token, "/class")

    @app.get("/j/{token}", response_class=HTMLResponse, include_in_schema=False)
    def join_page(request: Request, token: str) -> HTMLResponse:
        g = service(request).auth.from_link(token, client(request))
        if g is None or g.scope != "join":
            return HTMLResponse(pages.render("message.html", title="link not valid",
                                             text="This join link is not valid any more."), status_code=401)
        return HTMLResponse(pages.render("join.html", title=f"join class {g.klass}", klass=g.klass))

    @app.post("/j/{token}", include_in_schema=False)
    async def join(request: Request, token: str, student: str = Form(..., max_length=40)) -> Response:
        svc = service(request)
        g = svc.auth.from_link(token, client(request))
        if g is None or g.scope != "join" or g.klass is None:
            raise HTTPException(401, "this join link is not valid any more")
        try:
            seat_name, seat_token = await run_in_threadpool(svc.pools.claim, g.klass, student.strip())
        except HarnessError as exc:
            return HTMLResponse(pages.render("join.html", title=f"join class {g.klass}", klass=g.klass,
                                             error=str(exc)), status_code=409)
        audit(request, g, "join", f"{g.klass}/{seat_name}", "claimed")
        return RedirectResponse(f"/s/{seat_token}", status_code=303)
