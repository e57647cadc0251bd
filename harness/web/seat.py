"""The student's side: the seat page and its API (status, Check, Reset, the ssh handout), and
the terminals, one per node of the seat's own lab."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse

from harness.errors import HarnessError
from harness.lab import lease
from harness.training import exercise as training
from harness.training import handout
from harness.training.klass import Klass, lab_name
from harness.web import pages
from harness.web.context import audit, need, need_ws, service
from harness.web.store import Grant, Pool

router = APIRouter()
MAX_INPUT = 16 * 1024
#: how often an open terminal asks whether its token still opens its seat (s)
WATCHDOG_S = 2.0


@functools.lru_cache(maxsize=64)
def exercise_text(exercise: str | None) -> tuple[str, str]:
    """An exercise's text and its HTML, read and rendered once per exercise (every seat page asks
    every 2 s; loading an exercise runs its module)."""
    text = training.load(exercise).text if exercise else "No exercise yet: your instructor will set one."
    return text, str(pages.markdown(text))


def seat_view(pool: Pool, seat: str, health: str | None) -> dict[str, Any]:
    st = pool.seats[seat]
    k = Klass.load(pool.name)
    nodes: list[str] = []
    exercise = k.exercise
    if st.state in ("ready", "claimed", "resetting") and seat in k.students:
        with contextlib.suppress(HarnessError):
            nodes = [n.name for n in k.lab(seat).plan.nodes]
    text, text_html = exercise_text(exercise)
    return {"class": pool.name, "seat": seat, "lab": lab_name(pool.name, seat), "state": st.state,
            "student": st.student, "nodes": nodes, "exercise": exercise, "text": text, "text_html": text_html,
            "expires": st.expires, "time_left": lease.remaining(st.expires) if st.expires else "no limit",
            "grade": st.grade, "health": health, "error": st.error}


def _seat(request: Request) -> tuple[Grant, Pool, str]:
    g = need(request, "seat")
    assert g.klass is not None and g.seat is not None
    try:
        pool = service(request).store.pool(g.klass)
    except HarnessError:
        raise HTTPException(410, "this class has ended") from None
    if g.seat not in pool.seats:
        raise HTTPException(410, "this seat is gone")
    return g, pool, g.seat


@router.get("/seat", response_class=HTMLResponse, include_in_schema=False)
def seat_page(request: Request) -> HTMLResponse:
    _g, pool, seat = _seat(request)
    return HTMLResponse(pages.render("seat.html", title=f"{pool.name} / {seat}", seat=seat, klass=pool.name))


@router.get("/api/seat", tags=["seat"], summary="This seat: its lab, nodes, exercise text, time left, last check")
def seat_status(request: Request) -> dict[str, Any]:
    _g, pool, seat = _seat(request)
    return seat_view(pool, seat, service(request).pools.health.get((pool.name, seat)))


@router.post("/api/seat/check", tags=["seat"], summary="Grade this seat's lab (only) against the class's exercise")
async def seat_check(request: Request) -> dict[str, Any]:
    g, pool, seat = _seat(request)
    if pool.seats[seat].state != "claimed":
        raise HTTPException(409, f"your lab is {pool.seats[seat].state}: wait until it is ready")
    try:
        result: dict[str, Any] = await run_in_threadpool(service(request).pools.check, pool.name, seat)
    except HarnessError as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, g, "check", f"{pool.name}/{seat}", "passed" if result["passed"] else "failed")
    return result


@router.post("/api/seat/reset", tags=["seat"], summary="Put this seat's lab back to the start of the exercise")
async def seat_reset(request: Request) -> dict[str, str]:
    g, pool, seat = _seat(request)
    svc = service(request)
    try:
        await run_in_threadpool(svc.pools.reset, pool.name, seat)
    except HarnessError as exc:
        raise HTTPException(409, str(exc)) from None
    await svc.hub.close_lab(lab_name(pool.name, seat))
    audit(request, g, "reset", f"{pool.name}/{seat}", "queued")
    return {"state": "resetting"}


@router.get("/api/seat/handout", tags=["seat"], summary="The ssh handout (key and config) for your own terminal")
def seat_handout(request: Request) -> FileResponse:
    g, pool, seat = _seat(request)
    tarball = handout.handouts_dir(Klass.load(pool.name).dir) / f"{seat}.tar.gz"
    if pool.seats[seat].state != "claimed" or not tarball.is_file():
        raise HTTPException(409, "no handout for this seat now")
    audit(request, g, "handout", f"{pool.name}/{seat}", "sent")
    return FileResponse(tarball, filename=f"{pool.name}-{seat}.tar.gz", media_type="application/gzip")


@router.websocket("/ws/term/{node}")
async def terminal(ws: WebSocket, node: str) -> None:
    g = need_ws(ws, "seat")
    if g is None or g.klass is None or g.seat is None:
        await ws.close(code=1008)
        return
    svc = service(ws)
    try:
        pool = svc.store.pool(g.klass)
        lab = Klass.load(g.klass).lab(g.seat)
    except HarnessError:
        await ws.close(code=1008)
        return
    if pool.seats.get(g.seat) is None or pool.seats[g.seat].state != "claimed" \
            or node not in {n.name for n in lab.plan.nodes}:
        await ws.close(code=1008)
        return
    await ws.accept()
    audit(ws, g, "terminal", f"{g.klass}/{g.seat}/{node}", "opened")
    session = await svc.hub.open(lab.name, node, lab.access.ssh_config)
    await pump(ws, session, writable=True, still=lambda: same(need_ws(ws, "seat"), g))
    await svc.hub.leave(session)


def same(now: Grant | None, first: Grant) -> bool:
    """The token a websocket opened with still opens what it opened (an extended lease changes its expiry only)."""
    return now is not None and (now.id, now.scope, now.klass, now.seat) == (first.id, first.scope, first.klass, first.seat)


async def pump(ws: WebSocket, session: Any, writable: bool, still: Callable[[], bool]) -> None:
    """The session's output to the page, the page's keys (and size) to the session, for as long as
    ``still`` says the page's token is good: a seat released, reset or expired, a class ended or a
    token revoked closes the terminal within WATCHDOG_S, whether the page types or not."""
    q = session.subscribe()

    async def out() -> None:
        while (data := await q.get()) is not None:
            await ws.send_bytes(data)
        await ws.close(code=1000)

    async def watchdog() -> None:
        while still():
            await asyncio.sleep(WATCHDOG_S)
        await ws.close(code=1008, reason="this seat's token no longer opens it")

    async def inp() -> None:
        while True:
            msg = await ws.receive_text()
            if not writable or len(msg) > MAX_INPUT:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                m = json.loads(msg)
                if "i" in m and isinstance(m["i"], str):
                    session.write(m["i"].encode())
                elif "r" in m:
                    cols, rows = int(m["r"][0]), int(m["r"][1])
                    if 1 <= cols <= 500 and 1 <= rows <= 200:
                        session.resize(cols, rows)
    tasks = [asyncio.create_task(out()), asyncio.create_task(inp()), asyncio.create_task(watchdog())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        session.subscribers.discard(q)
