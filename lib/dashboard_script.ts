/**
 * @module The dashboard page's script: it fetches `api/usage` every 30 s (and when the page is shown
 * again) and draws the figures (cards, SVG charts, tables), with a key prompt when the proxy needs
 * one. Plain browser JavaScript in a string; it sets text only, never HTML.
 */

/** The page's script, inlined in its `<script>` element and allowed by the CSP by its hash. */
export const DASHBOARD_SCRIPT = `
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
    fresh.append(d.poller.last_error ? "Poe's Usage API gave no balance" : "Poe's Usage API has not answered yet");
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
      h("td", { class: "text" }, r.stream === null ? "–" : r.stream ? "stream" : "json"),
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
