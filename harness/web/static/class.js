// The instructor's page: the class as a live table (server-sent events), actions, a read-only watch.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const name = $("klass").dataset.class;
  const csrf = () => (document.cookie.split("; ").find((c) => c.startsWith("sl_csrf=")) || "=").split("=")[1];
  let watching = null;

  async function post(url, body) {
    const r = await fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"X-Storlab-CSRF": csrf(), "Content-Type": "application/json"}, body: JSON.stringify(body || {})});
    const out = await r.json().catch(() => ({detail: r.statusText}));
    if (!r.ok) throw new Error(out.detail || r.statusText);
    return out;
  }
  const api = (path) => "/api/classes/" + encodeURIComponent(name) + path;

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "-" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function draw(c) {
    $("summary").textContent = "class " + c.class + " · " + c.topology + " · warm " + c.warm + " · seats " +
      c.seats + " · " + Object.entries(c.counts).filter(([, n]) => n).map(([s, n]) => n + " " + s).join(", ");
    const sel = $("exercise-choice");
    if (sel.options.length !== c.exercises.length) {
      sel.textContent = "";
      for (const e of c.exercises) { const o = document.createElement("option"); o.value = o.textContent = e; sel.appendChild(o); }
    }
    if (c.exercise) sel.value = c.exercise;
    const body = $("seats").tBodies[0];
    body.textContent = "";
    for (const r of c.rows) {
      const tr = document.createElement("tr");
      tr.id = "row-" + r.seat;
      tr.dataset.state = r.state;
      cell(tr, r.seat);
      cell(tr, r.student, "student");
      cell(tr, r.state + (r.error ? ": " + r.error : ""), "state " + r.state);
      cell(tr, r.health, "health " + (r.health === "ok" ? "ok" : "waiting"));
      cell(tr, r.exercise);
      const g = r.grade;
      cell(tr, g ? (g.passed ? "passed" : "failed: " + g.failed.join(", ")) : "-", "grade " + (g ? (g.passed ? "passed" : "failed") : ""));
      cell(tr, r.time_left);
      const acts = cell(tr, "");
      for (const a of ["grade", "reset", "extend", "release", "watch"]) {
        const b = document.createElement("button");
        b.textContent = a;
        b.className = "act-" + a;
        b.disabled = r.state !== "claimed" && a !== "release";
        b.onclick = async () => {
          if (a === "watch") return watch(r.seat);
          try { await post(api("/seats/" + r.seat + "/" + a), a === "extend" ? {duration: "30m"} : {}); }
          catch (e) { alert(a + ": " + e.message); }
        };
        acts.appendChild(b);
      }
      body.appendChild(tr);
    }
    document.body.dataset.version = String((+document.body.dataset.version || 0) + 1);
  }

  function watch(seat) {
    if (watching) { watching.ws.close(); watching.term.dispose(); }
    const node = prompt("Watch which node of " + seat + "?", "") || "";
    if (!node) return;
    $("watch-title").textContent = "watching " + seat + " / " + node + " (read-only)";
    const term = new Terminal({fontSize: 13, disableStdin: true});
    term.open($("watch-term"));
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/watch/" + name + "/" + seat + "/" + encodeURIComponent(node));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => term.write(new Uint8Array(ev.data));
    ws.onclose = (ev) => term.write("\r\n[closed" + (ev.reason ? ": " + ev.reason : "") + "]\r\n");
    watching = {ws, term};
  }

  $("apply").onclick = async () => {
    try { await post(api("/exercise"), {exercise: $("exercise-choice").value}); }
    catch (e) { alert("exercise: " + e.message); }
  };
  $("claim").onclick = async () => {
    try { const r = await post(api("/claim"), {student: $("claim-name").value}); $("link-out").textContent = r.seat + ": " + r.link; }
    catch (e) { $("link-out").textContent = "claim: " + e.message; }
  };
  $("join-link").onclick = async () => {
    try { $("link-out").textContent = (await post(api("/join-link"))).join_link; }
    catch (e) { $("link-out").textContent = "join link: " + e.message; }
  };
  const events = new EventSource(api("/events"));
  events.addEventListener("class", (ev) => draw(JSON.parse(ev.data)));
})();
