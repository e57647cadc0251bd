// The student's page: the exercise, one terminal per node of their lab, Check and Reset.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const csrf = () => (document.cookie.split("; ").find((c) => c.startsWith("sl_csrf=")) || "=").split("=")[1];
  const terms = {};
  let shown = null;
  let nodes = [];

  async function post(url) {
    const r = await fetch(url, {method: "POST", headers: {"X-Storlab-CSRF": csrf()}, credentials: "same-origin"});
    const body = await r.json().catch(() => ({detail: r.statusText}));
    if (!r.ok) throw new Error(body.detail || r.statusText);
    return body;
  }

  function showResult(res) {
    const box = $("result");
    box.textContent = "";
    const head = document.createElement("h2");
    head.id = "verdict";
    head.className = res.passed ? "passed" : "failed";
    head.textContent = (res.passed ? "PASSED" : "FAILED") + " · " + res.exercise;
    box.appendChild(head);
    const list = document.createElement("ul");
    for (const [check, outcome] of Object.entries(res.checks)) {
      const li = document.createElement("li");
      li.className = "check " + outcome;
      li.textContent = outcome + ": " + check + (res.messages && res.messages[check] ? " — " + res.messages[check] : "");
      list.appendChild(li);
    }
    box.appendChild(list);
  }

  function openTerm(node) {
    if (terms[node]) return terms[node];
    const el = document.createElement("div");
    el.className = "term";
    el.id = "term-" + node;
    $("terms").appendChild(el);
    const term = new Terminal({cursorBlink: true, fontSize: 14, scrollback: 5000});
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(el);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws/term/" + encodeURIComponent(node));
    ws.binaryType = "arraybuffer";
    const t = {term, fit, ws, el, buffer: ""};
    ws.onopen = () => { fit.fit(); ws.send(JSON.stringify({r: [term.cols, term.rows]})); };
    ws.onmessage = (ev) => {
      const data = new Uint8Array(ev.data);
      term.write(data);
      t.buffer += new TextDecoder().decode(data);  // read by the browser tests
      if (t.buffer.length > 100000) t.buffer = t.buffer.slice(-50000);
      el.dataset.bytes = String(t.buffer.length);
    };
    ws.onclose = () => { term.write("\r\n[connection closed: reload the page to reconnect]\r\n"); el.dataset.closed = "1"; };
    term.onData((d) => ws.readyState === 1 && ws.send(JSON.stringify({i: d})));
    term.onResize(({cols, rows}) => ws.readyState === 1 && ws.send(JSON.stringify({r: [cols, rows]})));
    window.addEventListener("resize", () => fit.fit());
    terms[node] = t;
    return t;
  }

  function show(node) {
    shown = node;
    for (const [n, t] of Object.entries(terms)) t.el.hidden = n !== node;
    for (const b of $("tabs").children) b.classList.toggle("active", b.dataset.node === node);
    const t = openTerm(node);
    t.el.hidden = false;
    t.fit.fit();
    t.term.focus();
  }
  window.storlabTerms = terms;

  async function refresh() {
    const r = await fetch("/api/seat", {credentials: "same-origin"});
    if (!r.ok) { $("state").textContent = r.status === 401 ? "link expired" : "gone"; return; }
    const s = await r.json();
    $("lab").textContent = s.lab;
    $("state").textContent = s.state + (s.error ? " (" + s.error + ")" : "");
    $("time-left").textContent = s.time_left;
    $("health").textContent = s.health || "-";
    if ($("exercise").dataset.name !== String(s.exercise)) {
      $("exercise").innerHTML = s.text_html;  // rendered and escaped by the service
      $("exercise").dataset.name = String(s.exercise);
    }
    if (s.state === "claimed" && s.nodes.join() !== nodes.join()) {
      nodes = s.nodes;
      $("tabs").textContent = "";
      for (const n of nodes) {
        const b = document.createElement("button");
        b.textContent = n;
        b.dataset.node = n;
        b.className = "tab";
        b.onclick = () => show(n);
        $("tabs").appendChild(b);
      }
      show(shown && nodes.includes(shown) ? shown : nodes[0]);
    }
    if (s.state !== "claimed" && nodes.length) {  // a reset closed the shells: reopen when it is back
      for (const t of Object.values(terms)) { t.ws.close(); t.el.remove(); }
      for (const k of Object.keys(terms)) delete terms[k];
      nodes = [];
    }
    document.body.dataset.state = s.state;
  }

  $("check").onclick = async () => {
    $("result").textContent = "checking ...";
    $("check").disabled = true;
    try { showResult(await post("/api/seat/check")); }
    catch (e) { $("result").textContent = "check: " + e.message; }
    finally { $("check").disabled = false; }
  };
  $("reset").onclick = async () => {
    if (!confirm("Put your lab back to the start of the exercise?")) return;
    try { await post("/api/seat/reset"); $("result").textContent = "resetting ..."; }
    catch (e) { $("result").textContent = "reset: " + e.message; }
  };
  refresh();
  setInterval(refresh, 2000);
})();
