"""The instructor's side (one class, the instructor token) and the admin's (classes on this
host, the admin token): the class as a live table, the actions per seat and for all, watching a
student's terminal read-only, and making and ending classes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from harness.errors import HarnessError
from harness.lab import lease
from harness.training import exercise as training
from harness.training.klass import CLASS_RE, Klass, lab_name, list_classes
from harness.web import pages
from harness.web.context import audit, need, need_ws, service
from harness.web.seat import pump, same
from harness.web.store import SEAT_RE

router = APIRouter()
ACTIONS = ("reset", "release", "extend", "grade", "solve")


class NewClass(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,11}$")
    topology: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$", description="a file of topologies/, without .yaml")
    warm: int = Field(1, ge=0, le=99, description="labs kept up and unclaimed")
    seats: int = Field(10, ge=1, le=99, description="seats at most")
    lease: str | None = Field(None, pattern=r"^[0-9.smhdw ]{1,20}$", description="how long a student keeps a seat")
    provider: str | None = Field(None, pattern=r"^[a-z]{1,20}$")
    trusted: bool = Field(False, description="students may be root on this host (else an isolating provider)")
    remote: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(@[A-Za-z0-9_-]{1,63})?$",
                               description="an Incus remote (REMOTE[@GROUP]): the labs go on its members")
    budget: str | None = Field(None, pattern=r"^[A-Za-z0-9.=,:_-]{1,120}$", description="each lab's limits (Incus)")


class Claim(BaseModel):
    student: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$")


class ExerciseChoice(BaseModel):
    exercise: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")


class Extend(BaseModel):
    duration: str = Field("30m", pattern=r"^[0-9.smhdw ]{1,20}$")


def _class(request: Request, name: str) -> str:
    if not CLASS_RE.fullmatch(name) or name not in service(request).store.pools():
        raise HTTPException(404, f"no class {name!r}")
    return name


def rows(request: Request | WebSocket, name: str) -> dict[str, Any]:
    svc = service(request)
    pool = svc.store.pool(name)
    k = Klass.load(name) if name in list_classes() else None
    out = []
    for seat, st in sorted(pool.seats.items()):
        out.append({"seat": seat, "student": st.student, "state": st.state, "error": st.error,
                    "health": svc.pools.health.get((name, seat), "-"),
                    "exercise": k.exercise if k else None,
                    "grade": None if not st.grade else {"passed": st.grade["passed"], "when": st.grade["when"],
                                                        "failed": [c for c, o in st.grade["checks"].items()
                                                                   if o != "passed"]},
                    "time_left": lease.remaining(st.expires) if st.expires else "-"})
    return {"class": name, "topology": pool.topology.rsplit("/", 1)[-1], "warm": pool.warm, "seats": pool.max_seats,
            "counts": pool.counts(), "exercise": k.exercise if k else None, "rows": out,
            "exercises": training.available()}


@router.get("/class", response_class=HTMLResponse, include_in_schema=False)
def class_page(request: Request) -> HTMLResponse:
    g = need(request, "instructor")
    return HTMLResponse(pages.render("class.html", title=f"class {g.klass}", klass=g.klass))


@router.get("/api/classes", tags=["admin"], summary="The served classes")
def served_classes(request: Request) -> list[dict[str, Any]]:
    need(request, "admin")
    return [rows(request, n) for n in service(request).store.pools()]


@router.post("/api/classes", tags=["admin"], status_code=201,
             summary="Make a served class; its instructor and join links (shown once)")
async def create_class(request: Request, body: NewClass) -> dict[str, Any]:
    g = need(request, "admin")
    seconds = lease.parse_duration(body.lease) if body.lease else None
    try:
        tokens = await run_in_threadpool(service(request).pools.create, body.name, body.topology, body.warm,
                                         body.seats, seconds, body.provider, body.trusted, body.remote, body.budget)
    except HarnessError as exc:
        audit(request, g, "create", body.name, f"refused: {exc}")
        raise HTTPException(409, str(exc)) from None
    audit(request, g, "create", body.name, "made")
    base = str(request.base_url).rstrip("/")
    return {"class": body.name, "instructor_link": f"{base}/i/{tokens['instructor']}",
            "join_link": f"{base}/j/{tokens['join']}", "instructor_token": tokens["instructor"]}


@router.delete("/api/classes/{name}", tags=["admin"], summary="End a class: every lab removed, every token revoked")
async def end_class(request: Request, name: str) -> dict[str, Any]:
    g = need(request, "admin")
    _class(request, name)
    for seat in list(service(request).store.pool(name).seats):
        await service(request).hub.close_lab(lab_name(name, seat))
    problems = await run_in_threadpool(service(request).pools.end, name)
    audit(request, g, "end", name, "removed" if not problems else f"problems: {problems}")
    return {"class": name, "problems": problems}


@router.get("/api/classes/{name}", tags=["class"], summary="The class as a table: seats, states, health, grades")
def class_status(request: Request, name: str) -> dict[str, Any]:
    need(request, "instructor", "admin", klass=_class(request, name))
    return rows(request, name)


@router.get("/api/classes/{name}/events", tags=["class"], summary="The class table, sent again on every change (SSE)")
async def class_events(request: Request, name: str) -> StreamingResponse:
    need(request, "instructor", "admin", klass=_class(request, name))
    store = service(request).store

    async def stream() -> AsyncIterator[str]:
        seen, quiet = -1, 0.0
        while not await request.is_disconnected():
            if store.version != seen:
                seen = store.version
                yield f"event: class\ndata: {json.dumps(rows(request, name))}\n\n"
                quiet = 0.0
            elif quiet >= 15:
                yield ": keep-alive\n\n"
                quiet = 0.0
            await asyncio.sleep(0.3)
            quiet += 0.3
    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.post("/api/classes/{name}/claim", tags=["class"], summary="Hand a seat to a student: their link")
async def claim(request: Request, name: str, body: Claim) -> dict[str, str]:
    g = need(request, "instructor", "admin", klass=_class(request, name))
    try:
        seat, token = await run_in_threadpool(service(request).pools.claim, name, body.student)
    except HarnessError as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, g, "claim", f"{name}/{seat}", "claimed")
    return {"seat": seat, "link": f"{str(request.base_url).rstrip('/')}/s/{token}"}


@router.post("/api/classes/{name}/join-link", tags=["class"], summary="A new join link (the old one stops working)")
def join_link(request: Request, name: str) -> dict[str, str]:
    g = need(request, "instructor", "admin", klass=_class(request, name))
    store = service(request).store
    store.revoke(scope="join", klass=name)
    audit(request, g, "join-link", name, "renewed")
    return {"join_link": f"{str(request.base_url).rstrip('/')}/j/{store.mint('join', klass=name)}"}


@router.post("/api/classes/{name}/exercise", tags=["class"], summary="Apply an exercise to every lab of the class")
async def apply_exercise(request: Request, name: str, body: ExerciseChoice) -> dict[str, str]:
    g = need(request, "instructor", "admin", klass=_class(request, name))
    try:
        out: dict[str, str] = await run_in_threadpool(service(request).pools.apply_exercise, name, body.exercise)
    except HarnessError as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, g, "exercise", f"{name}:{body.exercise}", json.dumps(out))
    return out


@router.post("/api/classes/{name}/grade", tags=["class"], summary="Grade every claimed seat (the class's exercise)")
async def grade_all(request: Request, name: str) -> dict[str, Any]:
    g = need(request, "instructor", "admin", klass=_class(request, name))
    pools = service(request).pools
    seats = [s for s, st in service(request).store.pool(name).seats.items() if st.state == "claimed"]
    out: dict[str, Any] = {}
    for seat in seats:  # one after another: a Check runs the exercise's suite (pools.check bounds them too)
        try:
            out[seat] = await run_in_threadpool(pools.check, name, seat)
        except HarnessError as exc:
            out[seat] = {"error": str(exc)}
    audit(request, g, "grade", name, f"{sum(1 for r in out.values() if r.get('passed'))} of {len(out)} passed")
    return out


@router.post("/api/classes/{name}/seats/{seat}/{action}", tags=["class"],
             summary="reset | release | extend | grade | solve (the exercise's model solution) one seat")
async def seat_action(request: Request, name: str, seat: str, action: str, body: Extend | None = None) -> dict[str, Any]:
    g = need(request, "instructor", "admin", klass=_class(request, name))
    if not SEAT_RE.fullmatch(seat) or action not in ACTIONS:
        raise HTTPException(404, "no such seat or action")
    pools = service(request).pools
    try:
        if action == "extend":
            seconds = lease.parse_duration((body or Extend(duration="30m")).duration)
            if not seconds:
                raise HTTPException(422, "extend by a duration: 30m, 1h, ...")
            expires = await run_in_threadpool(pools.extend, name, seat, seconds)
            out: dict[str, Any] = {"expires": expires}
        elif action == "grade":
            out = await run_in_threadpool(pools.check, name, seat)
        elif action == "solve":
            out = {"solved": await run_in_threadpool(pools.solve, name, seat)}
        else:
            await run_in_threadpool(pools.reset if action == "reset" else pools.release, name, seat)
            await service(request).hub.close_lab(lab_name(name, seat))
            out = {"state": "resetting"}
    except HarnessError as exc:
        raise HTTPException(409, str(exc)) from None
    audit(request, g, action, f"{name}/{seat}", "done")
    return out


@router.websocket("/ws/watch/{name}/{seat}/{node}")
async def watch(ws: WebSocket, name: str, seat: str, node: str) -> None:
    """A student's terminal, read-only: what their shell prints, nothing typed reaches it."""
    g = need_ws(ws, "instructor")
    if g is None or g.klass != name or not SEAT_RE.fullmatch(seat):
        await ws.close(code=1008)
        return
    session = service(ws).hub.watch(lab_name(name, seat), node)
    if session is None:
        await ws.close(code=1011, reason="no terminal open on that node")
        return
    await ws.accept()
    audit(ws, g, "watch", f"{name}/{seat}/{node}", "opened")
    await pump(ws, session, writable=False, still=lambda: same(need_ws(ws, "instructor"), g))
