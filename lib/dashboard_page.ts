/** @module The dashboard page: one self-contained HTML file (inline CSS, JS and SVG; nothing external). */
import { createHash } from "node:crypto";

const STYLE = `
:root{--bg:#f6f7f9;--card:#fff;--fg:#1b1f24;--muted:#5f6b7a;--line:#dde2e8;--accent:#5b4fe9;
--accent2:#13a10e;--warn:#b35c00;--bad:#c62828;--ok:#1a7f37;font-family:system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--card:#1a1f25;--fg:#e6e9ee;--muted:#98a3b1;
--line:#2c333c;--accent:#8f86ff;--accent2:#4cc24a;--warn:#f0a040;--bad:#ff6b6b;--ok:#4cc24a}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font-size:15px;line-height:1.4}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.5rem 1rem;padding:.9rem 1rem;
border-bottom:1px solid var(--line);background:var(--card)}
header h1{font-size:1.15rem;margin:0}
header .meta{color:var(--muted);font-size:.85rem;margin-left:auto}
main{max-width:1100px;margin:0 auto;padding:1rem;display:grid;gap:1rem}
.cards{display:grid;gap:1rem;grid-template-columns:repeat(auto-fit,minmax(220px,1fr))}
section,.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.9rem 1rem;
min-width:0}
h2{font-size:.8rem;font-weight:600;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
margin:0 0 .5rem}
.big{font-size:1.9rem;font-weight:650;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.sub{color:var(--muted);font-size:.85rem}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.78rem;font-weight:600;
border:1px solid currentColor}
.ok{color:var(--ok)}.paused,.bad{color:var(--bad)}.unknown,.stale{color:var(--warn)}
dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .8rem;margin:.4rem 0 0;font-size:.9rem}
dt{color:var(--muted)}dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
svg{display:block;max-width:100%;height:auto}
svg text{fill:var(--muted);font-size:11px}
svg .bar{fill:var(--accent)}svg .bar:hover{opacity:.75}
svg .grid{stroke:var(--line);stroke-width:1}
svg .line{fill:none;stroke:var(--accent2);stroke-width:2}
svg .dot{fill:var(--accent2)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.88rem;font-variant-numeric:tabular-nums}
th,td{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.text,th.text{text-align:left}
th{color:var(--muted);font-weight:600;font-size:.78rem}
td.model{max-width:16rem;overflow:hidden;text-overflow:ellipsis}
.empty{color:var(--muted);padding:.6rem 0}
.error{color:var(--bad);font-size:.9rem}
#login{max-width:420px;margin:10vh auto;background:var(--card);border:1px solid var(--line);
border-radius:10px;padding:1.2rem}
#login h2{font-size:1.1rem;text-transform:none;letter-spacing:0;color:var(--fg)}
#login input{width:100%;font:inherit;padding:.6rem;border:1px solid var(--line);border-radius:8px;
background:var(--bg);color:var(--fg);margin:.5rem 0}
button{font:inherit;padding:.5rem 1rem;border-radius:8px;border:1px solid var(--accent);
background:var(--accent);color:#fff;cursor:pointer}
button.link{background:none;color:var(--muted);border:none;padding:0;text-decoration:underline;
font-size:.85rem}
[hidden]{display:none!important}
@media (max-width:560px){main{padding:.6rem;gap:.6rem}.big{font-size:1.6rem}
th,td{padding:.3rem .35rem}}
`;

const SCRIPT = `
"use strict";
const KEY = "poe-proxy-key";
const REFRESH_MS = 30000;
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const fmt = (n) => (typeof n === "number" && isFinite(n) ? nf.format(n) : "–");
let timer = null;

/** Builds an element; strings become text nodes, so nothing is ever parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return el;
}
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}
function setText(id, text) { $(id).textContent = text; }
function ago(ms) {
  const sec = Math.max(0, Math.round(ms / 1000));
  if (sec < 60) return sec + " s ago";
  if (sec < 3600) return Math.round(sec / 60) + " min ago";
  if (sec < 172800) return Math.round(sec / 3600) + " h ago";
  return Math.round(sec / 86400) + " days ago";
}
function until(ms) {
  const min = Math.round(ms / 60000);
  if (min < 1) return "any moment";
  if (min < 120) return "in " + min + " min";
  if (min < 2880) return "in " + Math.round(min / 60) + " h";
  return "in " + Math.round(min / 1440) + " days";
}
const time = (t) => new Date(t).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
const clock = (t) => new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  setText("login-error", message || "");
  $("key").value = "";
  $("key").focus();
}

async function load() {
  clearTimeout(timer);
  const key = localStorage.getItem(KEY);
  const headers = { accept: "application/json" };
  if (key) headers.authorization = "Bearer " + key;
  let res;
  try {
    res = await fetch("api/usage", { headers, cache: "no-store" });
  } catch (err) {
    setText("status", "Cannot reach the proxy (" + err.message + "); retrying in 30 s");
    timer = setTimeout(load, REFRESH_MS);
    return;
  }
  if (res.status === 401) {
    await res.body?.cancel();
    localStorage.removeItem(KEY);
    showLogin(key ? "That key was not accepted." : "");
    return;
  }
  if (!res.ok) {
    setText("status", "The proxy answered " + res.status + "; retrying in 30 s");
    await res.body?.cancel();
    timer = setTimeout(load, REFRESH_MS);
    return;
  }
  const data = await res.json();
  $("login").hidden = true;
  $("app").hidden = false;
  $("forget").hidden = !key;
  render(data);
  setText("status", "Updated " + clock(data.now) + " · refreshes every 30 s");
  timer = setTimeout(load, REFRESH_MS);
}

function render(d) {
  setText("version", "v" + d.version);
  const b = d.balance;
  setText("balance", b ? fmt(b.points) : "unknown");
  const fresh = $("balance-age");
  fresh.replaceChildren();
  if (b) {
    fresh.append("as of " + ago(d.now - b.taken_at) + " ");
    if (b.stale) fresh.append(h("span", { class: "badge stale" }, "stale"));
  } else {
    fresh.append("Poe's Usage API has not answered yet");
  }
  if (d.poller.last_error) fresh.append(h("div", { class: "error" }, "Last poll failed: " + d.poller.last_error));
  const g = b && b.next_grant;
  setText("grant", g ? until(g.time - d.now) : "not announced");
  setText("grant-detail", g ? (g.kind + " grant, " + time(g.time) + (g.amount !== null ? " · " + fmt(g.amount) + " points" : "")) : "Poe did not say when points come next");

  const gs = d.guards;
  const state = $("guard-state");
  state.className = "badge " + gs.state;
  state.textContent = gs.state === "paused"
    ? "paused"
    : gs.state === "ok"
    ? "spending allowed"
    : gs.state === "stale"
    ? "allowed on an old balance"
    : "no balance yet";
  setText("cutoff", fmt(gs.points_cutoff));
  setText("warn", fmt(gs.points_per_message_warn));
  setText("cap", gs.max_points_per_message > 0 ? fmt(gs.max_points_per_message) : "off");
  setText("guard-message", gs.message || "");

  const t = d.spent ? d.spent.total : null;
  setText("spent-day", t ? fmt(t.day) : "–");
  setText("spent-week", t ? fmt(t.week) : "–");
  setText("spent-month", t ? fmt(t.month) : "–");
  setText("history-note", d.history.ok ? (d.history.truncated ? "history truncated: only the newest entries were read" : "") : (d.history.error ? "History unavailable: " + d.history.error : "reading the history…"));

  dailyChart(d.daily);
  balanceChart(d.balance_samples, d.now, b);
  modelsTable(d.spent);
  recentTable(d.recent, d.now);
  last = d;
}
let last = null;
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (last) { dailyChart(last.daily); balanceChart(last.balance_samples, last.now, last.balance); }
  }, 150);
});

/** Charts are drawn in CSS pixels at the width they get, so labels stay readable on a phone. */
function frame(svg, H) {
  svg.replaceChildren();
  const W = Math.max(260, Math.round(svg.parentNode.clientWidth - 32 || 600));
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  return W;
}
const dur = (ms) => ms === null || ms === undefined ? "–" : ms < 1000 ? Math.round(ms) + " ms" : fmt(ms / 1000) + " s";

function dailyChart(days) {
  const svg = $("daily-chart");
  const H = 180, L = 44, B = 22, T = 8;
  const W = frame(svg, H);
  const max = Math.max(1, ...days.map((x) => x.points));
  const bw = (W - L) / Math.max(1, days.length);
  for (const f of [0, 0.5, 1]) {
    const y = T + (H - T - B) * (1 - f);
    svg.append(s("line", { class: "grid", x1: L, x2: W, y1: y, y2: y }));
    svg.append(s("text", { x: L - 4, y: y + 4, "text-anchor": "end" }, fmt(max * f)));
  }
  days.forEach((x, i) => {
    const hgt = (H - T - B) * Math.max(0, x.points) / max;
    const rect = s("rect", {
      class: "bar", x: L + i * bw + 1, y: H - B - hgt, width: Math.max(1, bw - 2), height: hgt,
      "data-date": x.date, "data-points": x.points,
    });
    rect.append(s("title", {}, x.date + ": " + fmt(x.points) + " points, " + x.count + " entries"));
    svg.append(rect);
  });
  if (days.length) {
    svg.append(s("text", { x: L, y: H - 6 }, days[0].date.slice(5)));
    svg.append(s("text", { x: W, y: H - 6, "text-anchor": "end" }, days[days.length - 1].date.slice(5)));
  }
}

function balanceChart(samples, now, b) {
  const svg = $("balance-chart");
  const H = 150, L = 70, B = 22, T = 10;
  const W = frame(svg, H);
  const pts = samples.slice();
  if (b && (!pts.length || pts[pts.length - 1].time < now)) pts.push({ time: now, points: b.points });
  if (!pts.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no balance yet"));
    return;
  }
  const t0 = Math.min(pts[0].time, now - 600000), t1 = now;
  let lo = Math.min(...pts.map((p) => p.points)), hi = Math.max(...pts.map((p) => p.points));
  if (hi - lo < 1) { hi += 1; lo = Math.max(0, lo - 1); }
  const x = (t) => L + (W - L - 6) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  for (const v of [lo, hi]) {
    svg.append(s("line", { class: "grid", x1: L, x2: W, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  let dPath = "";
  pts.forEach((p, i) => {
    dPath += (i ? " H " + x(p.time).toFixed(1) + " V " : "M " + x(p.time).toFixed(1) + " ") + y(p.points).toFixed(1);
  });
  svg.append(s("path", { class: "line", d: dPath }));
  const last = pts[pts.length - 1];
  svg.append(s("circle", { class: "dot", cx: x(last.time), cy: y(last.points), r: 3.5 }));
  svg.append(s("text", { x: L, y: H - 6 }, time(t0)));
  svg.append(s("text", { x: W, y: H - 6, "text-anchor": "end" }, "now"));
}

function modelsTable(spent) {
  const body = $("models").tBodies[0];
  body.replaceChildren();
  const rows = spent ? spent.models : [];
  $("models-empty").hidden = rows.length > 0;
  for (const m of rows) {
    body.append(h("tr", {}, h("td", { class: "model", title: m.model }, m.model), h("td", {}, fmt(m.day)),
      h("td", {}, fmt(m.week)), h("td", {}, fmt(m.month)), h("td", {}, fmt(m.count))));
  }
}

function recentTable(rows, now) {
  const body = $("recent").tBodies[0];
  body.replaceChildren();
  $("recent-empty").hidden = rows.length > 0;
  for (const r of rows) {
    const tokens = r.tokens_in === null && r.tokens_out === null ? "–" : fmt(r.tokens_in) + " / " + fmt(r.tokens_out) + (r.tokens_estimated ? " est." : "");
    const points = r.points === null ? (r.guard ? r.guard : "–") : fmt(r.points) + (r.points_estimated ? " est." : "");
    // A stream that failed after its 200 was sent: the status alone would call it a success.
    const status = r.end ? r.status + " · " + r.end : r.status;
    const cls = r.status >= 400 || r.end ? "bad" : "";
    body.append(h("tr", { "data-id": r.id },
      h("td", { title: new Date(r.time).toISOString() }, now - r.time < 86400000 ? clock(r.time) : time(r.time)),
      h("td", { class: "model text", title: r.model || "" }, r.model || "–"),
      h("td", {}, points), h("td", { class: cls }, status), h("td", {}, tokens),
      h("td", {}, dur(r.ms)),
      h("td", {}, dur(r.ttfb_ms)),
      h("td", { class: "text" }, r.stream ? "stream" : "json"),
      h("td", { class: "text" }, r.client)));
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("key").value.trim();
  if (!value) return;
  localStorage.setItem(KEY, value);
  load();
});
$("forget").addEventListener("click", () => {
  localStorage.removeItem(KEY);
  location.reload();
});
document.addEventListener("visibilitychange", () => { if (!document.hidden && !$("app").hidden) load(); });
load();
`;

const BODY = `
<div id="login" hidden>
  <h2>This proxy needs a key</h2>
  <p class="sub">Enter one of the proxy's keys (PROXY_API_KEYS). It is kept in this browser only.</p>
  <form id="login-form" autocomplete="off">
    <label for="key" class="sub">API key</label>
    <input id="key" name="key" type="password" autocomplete="current-password" required>
    <button type="submit">Show the dashboard</button>
  </form>
  <p id="login-error" class="error" role="alert"></p>
</div>
<div id="app" hidden>
<header>
  <h1>poe-proxy</h1><span class="sub" id="version"></span>
  <span class="meta"><span id="status" role="status"></span>
  <button type="button" class="link" id="forget" hidden>forget key</button></span>
</header>
<main>
  <div class="cards">
    <div class="card"><h2>Balance</h2><div class="big" id="balance">–</div>
      <div class="sub" id="balance-age"></div></div>
    <div class="card"><h2>Next grant</h2><div class="big" id="grant">–</div>
      <div class="sub" id="grant-detail"></div></div>
    <div class="card"><h2>Points spent</h2>
      <dl><dt>last 24 h</dt><dd id="spent-day">–</dd><dt>last 7 days</dt><dd id="spent-week">–</dd>
      <dt>last 30 days</dt><dd id="spent-month">–</dd></dl>
      <div class="sub" id="history-note"></div></div>
    <div class="card"><h2>Guards</h2><span id="guard-state" class="badge unknown">…</span>
      <dl><dt>pause below</dt><dd id="cutoff">–</dd><dt>warn above</dt><dd id="warn">–</dd>
      <dt>cost cap</dt><dd id="cap">–</dd></dl>
      <div class="sub error" id="guard-message"></div></div>
  </div>
  <section><h2>Points per day · last 30 days (UTC)</h2>
    <svg id="daily-chart" viewBox="0 0 600 180" width="600" height="180" role="img" aria-label="Points spent per day"></svg></section>
  <section><h2>Balance seen by this proxy</h2>
    <svg id="balance-chart" viewBox="0 0 600 150" width="600" height="150" role="img" aria-label="Balance over time"></svg></section>
  <section><h2>Points per model</h2><div class="scroll">
    <table id="models"><thead><tr><th class="text">Model</th><th>24 h</th><th>7 days</th><th>30 days</th>
    <th>entries</th></tr></thead><tbody></tbody></table></div>
    <div class="empty" id="models-empty">No points spent in the last 30 days.</div></section>
  <section><h2>Last 50 requests</h2><div class="scroll">
    <table id="recent"><thead><tr><th class="text">Time</th><th class="text">Model</th><th>Points</th>
    <th>Status</th><th>Tokens in / out</th><th>Latency</th><th>First byte</th><th class="text">Mode</th>
    <th class="text">Client</th></tr></thead><tbody></tbody></table></div>
    <div class="empty" id="recent-empty">No requests since the proxy started.</div></section>
</main>
</div>
`;

/** The dashboard page, complete: no external scripts, styles, fonts or images. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>poe-proxy dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`;

const hash = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

/**
 * The page's Content-Security-Policy: only its own inline script and style (by hash), API calls to
 * this origin, nothing else (no frames, no forms posted anywhere, no external anything).
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The `GET /` response. */
export function dashboardResponse(): Response {
  return new Response(DASHBOARD_HTML, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": DASHBOARD_CSP,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    },
  });
}
