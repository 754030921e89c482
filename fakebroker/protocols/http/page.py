"""The HTML pages, each one self-contained document (no CDN, works offline).

The live page at ``/`` of the management listener polls ``/api/fakebroker/snapshot`` four times a second and shows
queues, exchanges, bindings, connections with their subscriptions, the latest messages and the broker's clock.
statelessd's dashboard at ``/`` of the statelessd listener shows its counters from ``/stats``."""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fakebroker</title>
<style>
  :root { --fg: #1d2430; --muted: #6b7280; --line: #e5e7eb; --accent: #f97316; --bg: #f8fafc; --ok: #15803d; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 24px; padding: 12px 20px; background: #fff;
           border-bottom: 3px solid var(--accent); }
  header h1 { margin: 0; font-size: 20px; }
  header .stat { color: var(--muted); }
  header .stat b { color: var(--fg); }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; padding: 16px 20px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; overflow: auto; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 15px; margin: 4px 0 8px; }
  h2 small { color: var(--muted); font-weight: normal; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
  .tag { display: inline-block; padding: 0 6px; margin: 1px 2px 1px 0; border-radius: 4px; background: #eef2ff;
         font-size: 12px; }
  .none { color: var(--muted); font-style: italic; }
  .new { animation: flash 1.5s ease-out; }
  @keyframes flash { from { background: #fed7aa; } to { background: transparent; } }
  #login { display: none; padding: 20px; }
  #status.ok { color: var(--ok); }
</style>
</head>
<body>
<header>
  <h1>fakebroker</h1>
  <span class="stat">clock <b id="clock">-</b></span>
  <span class="stat">connections <b id="n-connections">-</b></span>
  <span class="stat">queues <b id="n-queues">-</b></span>
  <span class="stat">messages <b id="n-messages">-</b></span>
  <span class="stat" id="status">connecting...</span>
</header>
<form id="login">
  <p>The broker refused the stored credentials. Log in as a broker user:</p>
  <input id="user" placeholder="user" value="guest"> <input id="pass" type="password" placeholder="password">
  <button>Log in</button>
</form>
<main>
  <section class="wide"><h2>Latest messages <small>(newest first)</small></h2><div id="messages"></div></section>
  <section><h2>Connections</h2><div id="connections"></div></section>
  <section><h2>Queues</h2><div id="queues"></div></section>
  <section><h2>Exchanges</h2><div id="exchanges"></div></section>
  <section><h2>Bindings</h2><div id="bindings"></div></section>
</main>
<script>
"use strict";
let auth = localStorage.getItem("fakebroker-auth") || "Basic " + btoa("guest:guest");
let last = "";
let seen = new Set();
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
function table(rows, columns, empty) {
  if (!rows.length) return `<p class="none">${empty}</p>`;
  const head = columns.map(([title]) => `<th>${title}</th>`).join("");
  const body = rows.map((r) => `<tr${r.__new ? ' class="new"' : ""}>` +
    columns.map(([, f, cls]) => `<td${cls ? ` class="${cls}"` : ""}>${f(r)}</td>`).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
const vname = (v) => v === "/" ? "/" : esc(v);
// MQTT: filter -> QoS; STOMP: subscription id -> destination; AMQP: consumer tag -> queue.
const subs = (s) => Object.entries(s || {}).map(([t, q]) => `<span class="tag"><code>${esc(t)}</code> ${typeof q === "number" ? "q" + q : "&rarr; <code>" + esc(q) + "</code>"}</span>`).join("") || '<span class="none">none</span>';
function payload(m) {
  const text = m.payload_encoding === "string" ? m.payload : "base64:" + m.payload;
  return `<code>${esc(text.length > 120 ? text.slice(0, 117) + "..." : text)}</code>`;
}
function render(s) {
  $("clock").textContent = `t=${s.clock.now.toFixed(3)} s (${s.clock.virtual ? "virtual" : "wall"})`;
  $("n-connections").textContent = s.connections.length;
  $("n-queues").textContent = s.queues.length;
  $("n-messages").textContent = s.total_messages;
  for (const m of s.messages) { if (!seen.has(m.seq)) { m.__new = seen.size > 0; seen.add(m.seq); } }
  $("messages").innerHTML = table([...s.messages].reverse(), [
    ["#", (m) => m.seq, "num"], ["t", (m) => m.time.toFixed(3), "num"],
    ["from", (m) => esc(m.protocol) + (m.client_id ? ` <code>${esc(m.client_id)}</code>` : "")],
    ["exchange", (m) => `<code>${esc(m.exchange || "(default)")}</code>`],
    ["routing key / topic", (m) => `<code>${esc(m.routing_key)}</code>`],
    ["payload", payload],
    ["routed to", (m) => m.fault ? `<span class="tag">${esc(m.fault)}</span>` :
      (m.queues.length ? m.queues.map((q) => `<code>${esc(q)}</code>`).join(", ") : '<span class="none">unroutable</span>')],
  ], "No messages yet.");
  $("connections").innerHTML = table(s.connections, [
    ["protocol", (c) => esc(c.protocol) + (c.stalled ? ' <span class="tag">stalled</span>' : "")],
    ["client id", (c) => `<code>${esc(c.client_id ?? "")}</code>`], ["user", (c) => esc(c.user ?? "")],
    ["vhost", (c) => vname(c.vhost ?? "")], ["subscriptions", (c) => subs(c.subscriptions)],
  ], "No client connections.");
  $("queues").innerHTML = table(s.queues, [
    ["vhost", (q) => vname(q.vhost)], ["name", (q) => `<code>${esc(q.name)}</code>`],
    ["ready", (q) => q.messages_ready, "num"], ["unacked", (q) => q.messages_unacknowledged, "num"],
    ["consumers", (q) => q.consumers, "num"],
    ["flags", (q) => ["durable", "auto_delete", "exclusive"].filter((f) => q[f]).map((f) => `<span class="tag">${f}</span>`).join("")],
  ], "No queues.");
  $("exchanges").innerHTML = table(s.exchanges, [
    ["vhost", (e) => vname(e.vhost)], ["name", (e) => `<code>${esc(e.name || "(default)")}</code>`],
    ["type", (e) => esc(e.type)], ["bindings", (e) => e.bindings, "num"],
  ], "No exchanges.");
  $("bindings").innerHTML = table(s.bindings, [
    ["vhost", (b) => vname(b.vhost)], ["exchange", (b) => `<code>${esc(b.source)}</code>`],
    ["queue", (b) => `<code>${esc(b.destination)}</code>`], ["routing key", (b) => `<code>${esc(b.routing_key)}</code>`],
  ], "No bindings.");
}
async function poll() {
  try {
    const r = await fetch("/api/fakebroker/snapshot", {headers: {Authorization: auth}, cache: "no-store"});
    if (r.status === 401) { $("login").style.display = "block"; $("status").textContent = "not logged in"; return; }
    const text = await r.text();
    $("status").textContent = "live"; $("status").className = "stat ok";
    if (text !== last) { last = text; render(JSON.parse(text)); }
  } catch (e) {
    $("status").textContent = "broker unreachable"; $("status").className = "stat";
  }
  setTimeout(poll, 250);
}
$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  auth = "Basic " + btoa($("user").value + ":" + $("pass").value);
  localStorage.setItem("fakebroker-auth", auth);
  $("login").style.display = "none";
  poll();
});
poll();
</script>
</body>
</html>
"""


#: statelessd's dashboard at ``/`` of the statelessd listener: its counters, refreshed from ``/stats``.
DASHBOARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>statelessd</title>
<style>body{font:14px system-ui,sans-serif;margin:20px}table{border-collapse:collapse}
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right}</style></head>
<body><h1>statelessd <small>(fakebroker)</small></h1>
<h2>Requests</h2><table id="requests"></table>
<h2>Connections</h2><table id="connections"></table>
<script>
"use strict";
const cell = (v, n) => `<td${n ? ' class="n"' : ""}>${String(v).replace(/[&<>]/g, (c) => "&#" + c.charCodeAt(0) + ";")}</td>`;
async function refresh() {
  try {
    const s = await (await fetch("/stats", {cache: "no-store"})).json();
    document.getElementById("requests").innerHTML = "<tr><th>counter</th><th>value</th></tr>" +
      Object.entries(s.requests).sort().map(([k, v]) => `<tr>${cell(k)}${cell(v, true)}</tr>`).join("");
    document.getElementById("connections").innerHTML =
      "<tr><th>vhost:user</th><th>connected</th><th>publishes</th><th>queued</th><th>opened/closed</th></tr>" +
      Object.entries(s.connections).map(([k, c]) => `<tr>${cell(k)}${cell(c.connected ? "yes" : "no")}` +
        `${cell(c.publishes, true)}${cell(c.queue_size, true)}` +
        `${cell(c.connections.opened + "/" + c.connections.closed, true)}</tr>`).join("");
  } finally { setTimeout(refresh, 1000); }
}
refresh();
</script></body></html>
"""
