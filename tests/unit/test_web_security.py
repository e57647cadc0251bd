"""The service's security model without a lab: tokens stored hashed, scoped, expiring and
revocable; links traded for HttpOnly SameSite cookies; CSRF on what cookies change; websockets
from the service's own origin only; bounded bodies and rates; inputs through allow-lists; the
exercise text escaped; the warm pool's bookkeeping (claim, release, refill, expiry)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from harness.web import pages
from harness.web.app import create_app
from harness.web.context import need_ws
from harness.web.pool import Pools, topology_file
from harness.web.security import Bucket, csrf_ok, same_origin
from harness.web.store import Pool, Seat, Store


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("STORLAB_HOME", str(tmp_path / "home"))
    s = Store(tmp_path / "serve")
    for name in ("cla", "clb"):
        s.save_pool(Pool(name=name, topology="/x/gluster-3.yaml", warm=1, max_seats=3,
                         seats={"s01": Seat(state="ready"), "s02": Seat(state="claimed", student="Bo")}))
    return s


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "gluster-3.yaml").write_text("lab: x\n")
    with TestClient(create_app(store, tmp_path / "topologies", secure=False, start_pools=False),
                    base_url="http://127.0.0.1:8080") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_hashed_scoped_expiring_and_revocable(store: Store) -> None:
    t = store.mint("seat", klass="cla", seat="s02")
    assert t not in (store.root / "tokens.json").read_text()
    g = store.check(t)
    assert g is not None and (g.scope, g.klass, g.seat) == ("seat", "cla", "s02")
    assert store.check(t + "x") is None and store.check("") is None and store.check("a" * 500) is None
    old = store.mint("seat", klass="cla", seat="s02", expires=time.time() - 1)
    assert store.check(old) is None
    assert store.revoke(klass="cla", seat="s02") == 2
    assert store.check(t) is None
    with pytest.raises(Exception, match="scope"):
        store.mint("root")


def test_each_scope_reaches_only_what_it_is_for(client: TestClient, store: Store) -> None:
    admin = store.mint("admin")
    inst_a = store.mint("instructor", klass="cla")
    seat_a = store.mint("seat", klass="cla", seat="s02")
    assert client.get("/api/classes/cla", headers=bearer(inst_a)).status_code == 200
    assert client.get("/api/classes/clb", headers=bearer(inst_a)).status_code == 403  # another class
    assert client.get("/api/classes", headers=bearer(inst_a)).status_code == 403  # the admin's
    assert client.get("/api/classes", headers=bearer(admin)).status_code == 200
    assert client.get("/api/classes/cla", headers=bearer(seat_a)).status_code == 403
    assert client.post("/api/classes/cla/claim", json={"student": "x"}, headers=bearer(seat_a)).status_code == 403
    assert client.get("/api/seat", headers=bearer(inst_a)).status_code == 403
    assert client.get("/api/seat", headers=bearer("nope" * 10)).status_code == 401
    audit = [json.loads(ln) for ln in (store.root / "audit.jsonl").read_text().splitlines()]
    assert any(a["action"] == "denied" and a["who"].startswith("instructor:cla") for a in audit)
    assert all(inst_a not in json.dumps(a) and seat_a not in json.dumps(a) for a in audit)  # hashes only


def test_a_link_becomes_cookies_and_changes_need_the_csrf_header(client: TestClient, store: Store) -> None:
    inst = store.mint("instructor", klass="cla")
    r = client.get(f"/i/{inst}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/class"
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("sl_class="))
    assert "HttpOnly" in session and "SameSite=strict" in session
    csrf = next(c for c in cookies if c.startswith("sl_csrf=")).split(";")[0].split("=", 1)[1]
    client.cookies.set("sl_class", inst)
    client.cookies.set("sl_csrf", csrf)
    assert client.get("/api/classes/cla").status_code == 200  # reading needs no header
    assert client.post("/api/classes/cla/join-link").status_code == 403  # a cross-site form could send this
    assert client.post("/api/classes/cla/join-link", headers={"X-Storlab-CSRF": "wrong"}).status_code == 403
    assert client.post("/api/classes/cla/join-link", headers={"X-Storlab-CSRF": csrf}).status_code == 200
    assert client.get("/s/" + "x" * 43, follow_redirects=False).status_code == 401
    assert "frame-ancestors 'none'" in client.get("/").headers["content-security-policy"]
    docs = client.get("/docs").text  # the service's own reference page: every API route on it, no CDN script
    assert all(f"<code>{p}</code>" in docs for p in client.get("/openapi.json").json()["paths"])
    assert "<script" not in docs


def test_websockets_only_from_the_services_own_pages(client: TestClient, store: Store) -> None:
    seat = store.mint("seat", klass="cla", seat="s02")
    client.cookies.set("sl_seat", seat)
    for origin in ("http://evil.example", None):
        headers = {"origin": origin} if origin else {}
        with pytest.raises(WebSocketDisconnect) as exc, client.websocket_connect("/ws/term/gluster1", headers=headers):
            pass
        assert exc.value.code == 1008
    inst = store.mint("instructor", klass="clb")
    client.cookies.set("sl_class", inst)
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(
            "/ws/watch/cla/s02/gluster1", headers={"origin": "http://127.0.0.1:8080"}):
        pass
    # the check itself, before anything else of the route runs (above, a route could refuse for another reason)
    svc = client.app.app.state.service  # type: ignore[attr-defined]
    ws = SimpleNamespace(headers={"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8080"},
                         cookies={"sl_seat": seat}, client=None, app=SimpleNamespace(state=SimpleNamespace(service=svc)))
    assert need_ws(ws, "seat") is not None  # type: ignore[arg-type]
    ws.headers["origin"] = "http://evil.example"
    assert need_ws(ws, "seat") is None  # type: ignore[arg-type]
    del ws.headers["origin"]
    assert need_ws(ws, "seat") is None  # type: ignore[arg-type]
    assert same_origin({"origin": "https://lab.example:8443", "host": "lab.example:8443"})
    assert not same_origin({"origin": "https://lab.example.evil:8443", "host": "lab.example:8443"})


def test_bodies_rates_and_allow_lists(client: TestClient, store: Store) -> None:
    admin = store.mint("admin")
    big = client.post("/api/classes", content=b"x" * (65 * 1024), headers={**bearer(admin),
                                                                              "content-type": "application/json"})
    assert big.status_code == 413
    for bad in ({"name": "../x", "topology": "gluster-3"}, {"name": "ok", "topology": "../../etc/passwd"},
                {"name": "ok", "topology": "gluster-3", "warm": 1000}, {"name": "ok", "topology": "g; rm -rf /"},
                {"name": "ok", "topology": "gluster-3", "remote": "a b"}, {"name": "ok", "topology": "gluster-3",
                                                                          "budget": "x;reboot"}):
        assert client.post("/api/classes", json=bad, headers=bearer(admin)).status_code == 422, bad
    assert client.post("/api/classes/cla/seats/s01/shell", headers=bearer(admin)).status_code == 404
    assert client.post("/api/classes/cla/seats/..%2f/reset", headers=bearer(admin)).status_code in (404, 422)
    codes = [client.get("/api/seat", headers=bearer(f"wrong{i:040d}")).status_code for i in range(25)]
    assert codes[0] == 401 and codes[-1] == 429  # guessing tokens is slowed down
    b = Bucket(rate=1, burst=2)
    assert [b.take("c", now=0), b.take("c", now=0), b.take("c", now=0), b.take("c", now=1.0)] == [True, True, False, True]


def test_csrf_rule() -> None:
    assert csrf_ok("GET", {}, {})
    assert csrf_ok("POST", {"authorization": "Bearer t"}, {})
    assert not csrf_ok("POST", {}, {})
    assert not csrf_ok("POST", {"x-storlab-csrf": ""}, {"sl_csrf": ""})
    assert csrf_ok("POST", {"x-storlab-csrf": "abc"}, {"sl_csrf": "abc"})


def test_exercise_text_is_escaped() -> None:
    assert str(pages.markdown("a *b* **c** *<i>*")) == "<p>a <em>b</em> <strong>c</strong> <em>&lt;i&gt;</em></p>"
    html = str(pages.markdown("# Title <b>\n\nSee `<script>alert(1)</script>` and <img src=x onerror=1>\n\n"
                              "- item <i>\n\n```\n<pre>\n```\n"))
    assert "<script>" not in html and "<img" not in html and "<i>" not in html
    assert "<h2>Title &lt;b&gt;</h2>" in html and "<code>&lt;script&gt;" in html and "<li>" in html


def test_topologies_by_name_from_the_directory_only(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("")
    assert topology_file("a", tmp_path) == (tmp_path / "a.yaml").resolve()
    for bad in ("../a", "a.yaml", "/etc/passwd", "b"):
        with pytest.raises(Exception, match="one of a"):
            topology_file(bad, tmp_path)


def test_pool_claims_ready_seats_first_refills_and_releases(store: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pools = Pools(store, tmp_path)
    monkeypatch.setattr(pools, "_lease", lambda *a: None)
    queued: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(pools, "_queue_reset", lambda n, s, k: queued.append((n, s, k)))
    seat, token = pools.claim("cla", "Ann")
    assert seat == "s01" and store.pool("cla").seats["s01"].state == "claimed"
    assert store.check(token) is not None and store.check(token).seat == "s01"  # type: ignore[union-attr]
    pools.tick()  # no spare seat left: one is made to keep one warm, and queued to be built at the next tick
    pools.tick()
    assert store.pool("cla").seats["s03"].state == "building" and ("cla", "s03") in pools.queued
    seat, _ = pools.claim("cla", "Cy")  # none ready: the building one is taken (a cold claim)
    assert seat == "s03" and store.pool("cla").seats["s03"].student == "Cy"
    with pytest.raises(Exception, match="full"):
        pools.claim("cla", "Di")
    with pytest.raises(Exception, match="letters"):
        pools.claim("cla", "<script>")
    pools.release("cla", "s01")
    assert store.check(token) is None and queued == [("cla", "s01", True)]
    assert store.pool("cla").seats["s01"].state == "resetting" and store.pool("cla").seats["s01"].student is None


def test_an_expired_seat_is_released(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pools = Pools(store, tmp_path)
    released: list[str] = []
    monkeypatch.setattr(pools, "release", lambda n, s: released.append(f"{n}/{s}"))
    with store.editing("cla") as p:
        p.seats["s02"].expires = time.time() - 1
    pools.tick()
    assert "cla/s02" in released and "clb/s02" not in released


def test_a_seat_with_no_room_waits_and_is_tried_again(store: Store, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import HarnessError
    from harness.training import classroom
    from harness.web import pool as poolmod

    def no_room(*a: object, **kw: object) -> None:
        raise HarnessError("class of 1 does not fit on this host: memory")
    monkeypatch.setattr(classroom, "check_capacity", no_room)
    monkeypatch.setattr(classroom, "up", lambda *a, **kw: pytest.fail("built with no room"))
    pools = Pools(store, tmp_path)
    with store.editing("cla") as p:
        p.seats["s03"] = Seat(state="building")
    pools.tick()
    assert pools.builds.get_nowait() == ("cla", "s03")
    with pytest.raises(poolmod.NoRoom):
        pools._build("cla", "s03")
    seat = store.pool("cla").seats["s03"]
    assert seat.state == "building" and seat.error.startswith("waiting for room")
    pools.queued.discard(("cla", "s03"))
    pools.tick()  # not again before its retry time
    assert pools.builds.empty()
    pools.retry_at[("cla", "s03")] = 0
    pools.tick()
    assert pools.builds.get_nowait() == ("cla", "s03")


def test_instructor_routes_for_solve_and_grade_are_scoped(client: TestClient, store: Store) -> None:
    seat = store.mint("seat", klass="cla", seat="s02")
    other = store.mint("instructor", klass="clb")
    for path in ("/api/classes/cla/grade", "/api/classes/cla/seats/s02/solve"):
        assert client.post(path, headers=bearer(seat)).status_code == 403
        assert client.post(path, headers=bearer(other)).status_code == 403


def test_ending_a_class_another_process_serves_changes_nothing(store: Store, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`storlab serve end` while the service holds the class's labs: refused before any token is
    revoked or the pool emptied (it used to revoke every link, then fail on the first busy lab)."""
    import subprocess

    from harness.training.klass import Klass
    from harness.web import pool as poolmod
    monkeypatch.setattr(poolmod, "list_classes", lambda: ["cla"])
    monkeypatch.setattr(Klass, "load",
                        classmethod(lambda cls, name: SimpleNamespace(labs=lambda: {"s01": SimpleNamespace(name="cla-s01")})))
    token = store.mint("seat", klass="cla", seat="s02")
    lockfile = tmp_path / "home" / "locks" / "cla-s01.lock"
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    lockfile.write_text("4242 12:00:00 storlab serve\n")
    server = subprocess.Popen(["flock", "--exclusive", str(lockfile), "sleep", "60"])
    try:
        from harness.run import wait_until
        wait_until(lambda: subprocess.run(["flock", "-n", str(lockfile), "true"]).returncode != 0, timeout=10, interval=0.05,
                   what="the stand-in service holds the lab's lock")
        with pytest.raises(Exception, match="being served: pid 4242"):
            Pools(store, tmp_path).end("cla")
        assert store.check(token) is not None and store.pool("cla").warm == 1
    finally:
        server.kill()
        server.wait()
