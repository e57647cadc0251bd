"""`storlab serve` in a real browser (Debian's headless Chromium, driven by Selenium): a warm pool
of gluster-3 labs on LXC; a student joins from the class's link and has a terminal on their own
node; the instructor applies an exercise from the class page; Check fails, the student repairs the
volume in the terminal, Check passes; the instructor's table follows live (server-sent events);
a wrong or expired link is refused; the student's cookies reach nothing but their seat; ssh's
escape sequences reach the node's shell, not the service's ssh client; release puts the seat back
to its baseline with a new key; ending the class leaves nothing. Screenshots of both pages go to
``$STORLAB_ARTIFACTS/web`` (default ``artifacts/web``)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from harness.lab.lab import list_labs
from harness.run import wait_until
from harness.testing.browser import CHROMIUM, DRIVER, chromium, term_text
from harness.web.store import Store

from .test_class import class_leftovers

pytestmark = [pytest.mark.browser]

ARTIFACTS = Path(os.environ.get("STORLAB_ARTIFACTS", "artifacts")) / "web"
EXERCISE = "gluster-brick-down"
VOLUME = "kvmgluster"


@dataclass
class Served:
    name: str
    base: str
    admin: str
    instructor: str
    join: str
    state: Path
    proc: subprocess.Popen[str]

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=300, **kw)

    def table(self) -> dict[str, Any]:
        r = self.api("GET", f"/api/classes/{self.name}")
        r.raise_for_status()
        return dict(r.json())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        msg = "Debian's chromium and chromium-driver are not installed (bash ci/setup-host.sh --web)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    state = tmp_path_factory.mktemp("serve")
    name = "wb" + secrets.token_hex(3)
    port = free_port()
    proc, text = start(state, name, port)
    served = None
    try:
        served = Served(name=name, base=f"http://127.0.0.1:{port}", state=state / "records", proc=proc,
                        admin=re.search(r"admin token .*: (\S+)", text).group(1),  # type: ignore[union-attr]
                        instructor=re.search(r"instructor: (\S+)", text).group(1),  # type: ignore[union-attr]
                        join=re.search(r"join: +(\S+)", text).group(1))  # type: ignore[union-attr]
        wait_until(lambda: served.table()["counts"]["ready"] == 1, timeout=300, interval=1,
                   what="the warm lab of the pool ready")
        yield served
    finally:
        if served is not None and served.proc.poll() is None:
            r = served.api("DELETE", f"/api/classes/{name}")
            assert r.status_code == 200 and not r.json()["problems"], r.text
        proc = served.proc if served is not None else proc
        proc.terminate()
        proc.wait(timeout=30)
        left = class_leftovers(name) + [lab for lab in list_labs() if lab.startswith(f"{name}-")]
        assert not left, f"left behind by the class: {left}"


def start(state: Path, name: str, port: int) -> tuple[subprocess.Popen[str], str]:
    """`storlab serve` serving class ``name`` (made at its first start); its output so far."""
    log = state / "serve.log"
    mark = log.stat().st_size if log.exists() else 0
    with log.open("a") as out:
        proc = subprocess.Popen(["storlab", "serve", "--state", str(state / "records"), "--port", str(port),
                                 "--class", name, "--topology", "gluster-3", "--warm", "1", "--seats", "2",
                                 "--lease", "1h", "--trusted-students"], stdout=out, stderr=subprocess.STDOUT, text=True)
    text = ""

    def started() -> bool:
        nonlocal text
        text = log.read_text()[mark:]
        assert proc.poll() is None, f"storlab serve exited:\n{text}"
        try:
            return "storlab serve:" in text and httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
        except httpx.HTTPError:
            return False
    wait_until(started, timeout=60, what="storlab serve answering")
    return proc, text


@pytest.fixture(scope="module")
def instructor(served: Served) -> Iterator[Any]:
    d = chromium()
    try:
        d.get(served.instructor)
        wait_until(lambda: d.find_elements("id", "row-s01"), timeout=30, what="the class table drawn")
        yield d
    finally:
        shoot(d, "class")
        d.quit()


@pytest.fixture(scope="module")
def student(served: Served) -> Iterator[Any]:
    d = chromium()
    try:
        yield d
    finally:
        shoot(d, "seat")
        d.quit()


def shoot(d: Any, what: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / f"{what}.png"))


def row(d: Any, seat: str) -> str:
    els = d.find_elements("id", f"row-{seat}")
    return str(els[0].text) if els else ""


def type_in(d: Any, text: str) -> None:
    d.find_element("css selector", "#terms .term:not([hidden]) .xterm-helper-textarea").send_keys(text)


def test_wrong_and_expired_links_are_refused(served: Served, student: Any) -> None:
    student.get(served.base + "/s/" + secrets.token_urlsafe(32))
    assert "not valid" in student.find_element("id", "message").text
    expired = Store(served.state).mint("seat", klass=served.name, seat="s01", expires=time.time() - 1)
    student.get(served.base + "/s/" + expired)
    assert "not valid" in student.find_element("id", "message").text
    assert served.api("GET", "/api/seat", token=expired).status_code == 401
    assert served.api("GET", f"/api/classes/{served.name}", token=secrets.token_urlsafe(32)).status_code == 401


def test_join_gives_a_terminal_on_the_students_own_lab(served: Served, instructor: Any, student: Any) -> None:
    from selenium.webdriver.support.ui import Select
    Select(instructor.find_element("id", "exercise-choice")).select_by_value(EXERCISE)
    instructor.find_element("id", "apply").click()
    wait_until(lambda: EXERCISE in row(instructor, "s01"), timeout=120, what="the exercise on the instructor's table")
    student.get(served.join)
    student.find_element("id", "student").send_keys("Alice B")
    t0 = time.monotonic()
    student.find_element("id", "join").click()
    wait_until(lambda: re.search(r"root@gluster1:~# $", term_text(student)), timeout=30, interval=0.05,
               what="a shell prompt on gluster1 in the student's page")
    took = time.monotonic() - t0
    print(f"claim to prompt: {took:.2f}s")
    type_in(student, "hostname; echo SUM$((40+2))\n")
    wait_until(lambda: "gluster1\r\nSUM42" in term_text(student), timeout=20, what="the node's answer")
    # the instructor's table changed without a reload (server-sent events)
    wait_until(lambda: "Alice B" in row(instructor, "s01") and "claimed" in row(instructor, "s01"), timeout=20,
               what="the claimed seat on the instructor's table")
    # the pool refills: another lab is made ready for the next student
    wait_until(lambda: "ready" in row(instructor, "s02"), timeout=300, interval=1, what="the pool refilled (s02 ready)")


def test_escapes_reach_the_node_not_the_services_ssh(served: Served, student: Any) -> None:
    """``~C`` after a newline opens ssh's command line (where -L forwards a port of this host) and
    ``~.`` drops the connection, unless the client has no escape character: both must reach the
    node's shell as text."""
    type_in(student, "\n~C\n")
    wait_until(lambda: "~C: command not found" in term_text(student), timeout=20,
               what="bash on the node saying '~C: command not found'")
    assert "ssh>" not in term_text(student)
    type_in(student, "\n~.\necho STILL$((1+1))\n")
    wait_until(lambda: "STILL2" in term_text(student), timeout=20, what="the shell still there after ~.")


def test_the_instructor_watches_read_only(served: Served, instructor: Any, student: Any) -> None:
    instructor.find_element("css selector", "#row-s01 .act-watch").click()
    alert = instructor.switch_to.alert
    alert.send_keys("gluster1")
    alert.accept()
    type_in(student, "echo WATCH''ME\n")

    def watched() -> str:
        return str(instructor.execute_script(
            "const r = document.querySelector('#watch-term .xterm-rows'); return r ? r.textContent : ''"))
    wait_until(lambda: "WATCHME" in watched().replace("WATCH''ME", ""), timeout=20,
               what="the student's output on the instructor's watch")
    # what a watcher sends never reaches the student's shell (the page has no input; the service drops it)
    cookies = {c["name"]: c["value"] for c in instructor.get_cookies()}

    async def send() -> None:
        url = served.base.replace("http", "ws") + f"/ws/watch/{served.name}/s01/gluster1"
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Origin": served.base}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send('{"i": "echo HACK\'\'ED\\r"}')
            await asyncio.sleep(2)
    asyncio.run(send())
    type_in(student, "echo AFTER''WATCH\n")
    wait_until(lambda: "AFTERWATCH\r\n" in term_text(student), timeout=20, what="the student's own echo")
    assert "HACKED" not in term_text(student), "a watcher's keys reached the student's shell"


def test_check_fails_then_passes_after_the_fix(served: Served, instructor: Any, student: Any) -> None:
    student.find_element("id", "check").click()
    wait_until(lambda: student.find_elements("id", "verdict"), timeout=120, what="the Check's verdict")
    assert student.find_element("id", "verdict").text.startswith("FAILED")
    assert "failed: test_every_brick_is_online" in student.find_element("id", "result").text
    wait_until(lambda: "failed: test_every_brick_is_online" in row(instructor, "s01"), timeout=20,
               what="the failed check on the instructor's table")
    # (FIX''ED: the terminal echoes what is typed; only the shell's output has FIXED)
    type_in(student, f"gluster --mode=script volume start {VOLUME} force; sleep 3; gluster volume heal {VOLUME};"
                     " echo FIX''ED\n")
    wait_until(lambda: "FIXED\r\n" in term_text(student), timeout=120, what="the repair typed in the terminal")

    def passed() -> bool:
        student.find_element("id", "check").click()
        wait_until(lambda: not student.find_element("id", "check").get_attribute("disabled")
                   and student.find_elements("id", "verdict"), timeout=120, what="the Check's verdict")
        return str(student.find_element("id", "verdict").text).startswith("PASSED")
    wait_until(passed, timeout=180, interval=3, what="Check PASSED after the repair")
    shoot(student, "seat-passed")
    wait_until(lambda: "passed" in row(instructor, "s01"), timeout=20, what="the pass on the instructor's table")
    shoot(instructor, "class-live")


def test_a_restart_of_the_service_loses_nothing(served: Served, student: Any) -> None:
    served.proc.terminate()
    served.proc.wait(timeout=30)
    served.proc, text = start(served.state.parent, served.name, int(served.base.rsplit(":", 1)[1]))
    assert "served" in text  # the class is read back, not made again
    student.refresh()  # the same cookie, the same seat, the same lab
    wait_until(lambda: re.search(r"root@gluster1:~# $", term_text(student)), timeout=30, interval=0.1,
               what="a shell prompt again after the service's restart")
    seat = served.table()["rows"][0]
    assert (seat["student"], seat["state"], seat["grade"]["passed"]) == ("Alice B", "claimed", True)


def test_the_students_cookies_reach_their_seat_only(served: Served, student: Any) -> None:
    cookies = {c["name"]: c["value"] for c in student.get_cookies()}
    jar = httpx.Cookies(cookies)
    csrf = {"X-Storlab-CSRF": cookies["sl_csrf"]}
    with httpx.Client(base_url=served.base, cookies=jar) as c:
        assert c.get("/api/seat").json()["seat"] == "s01"
        assert c.get(f"/api/classes/{served.name}").status_code == 403
        assert c.post("/api/classes", json={"name": "evil", "topology": "gluster-3"}, headers=csrf).status_code == 403
        assert c.post(f"/api/classes/{served.name}/seats/s02/release", headers=csrf).status_code == 403
        assert c.post("/api/seat/reset").status_code == 403  # no CSRF header: a page of another site
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    ws = served.base.replace("http", "ws")

    async def refused(path: str, origin: str) -> bool:
        try:
            async with websockets.connect(ws + path, additional_headers={"Cookie": header, "Origin": origin}) as s:
                await s.recv()
        except (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed):
            return True
        return False
    assert asyncio.run(refused("/ws/term/gluster1", "http://evil.example"))  # another site's page
    assert asyncio.run(refused(f"/ws/watch/{served.name}/s02/gluster1", served.base))  # the instructor's only
    assert asyncio.run(refused("/ws/term/..%2f..%2fhost", served.base))  # not a node of the seat's lab


def test_a_revoked_token_closes_the_open_terminal(served: Served, student: Any) -> None:
    """Revoked in the service's records only (as a lease running out does, from the pool's thread):
    the page's open terminal is closed within seconds, whether it types or not."""
    token = student.get_cookie("sl_seat")["value"]
    assert not student.execute_script("return document.getElementById('term-gluster1').dataset.closed")
    Store(served.state).revoke(klass=served.name, seat="s01")
    wait_until(lambda: student.execute_script("return document.getElementById('term-gluster1').dataset.closed"),
               timeout=15, what="the student's terminal closed after the token was revoked")
    assert served.api("GET", "/api/seat", token=token).status_code == 401


def test_release_resets_the_seat_with_a_new_key(served: Served, instructor: Any, student: Any) -> None:
    from harness.training.klass import Klass
    k = Klass.load(served.name)
    old_pub = (k.dir / "handouts" / "s01" / "id_ed25519.pub").read_text()
    old_token = student.get_cookie("sl_seat")["value"]
    r = served.api("POST", f"/api/classes/{served.name}/seats/s01/release")
    assert r.status_code == 200, r.text
    assert served.api("GET", "/api/seat", token=old_token).status_code == 401
    wait_until(lambda: served.table()["rows"][0]["state"] == "ready", timeout=300, interval=1,
               what="the released seat reset and ready again")
    assert (k.dir / "handouts" / "s01" / "id_ed25519.pub").read_text() != old_pub
    lab = k.lab("s01")
    keys = lab.node("gluster1").succeed(["cat", "/root/.ssh/authorized_keys"])
    assert old_pub.split()[1] not in keys, "the last student's key still opens the node"
    assert lab.state().exercise == EXERCISE  # back to the baseline, the class's exercise applied again
    wait_until(lambda: "ready" in row(instructor, "s01") and "Alice" not in row(instructor, "s01"), timeout=20,
               what="the instructor's table showing s01 ready and free")
