/**
 * @module The dashboard page: one self-contained HTML file (inline CSS, JS and SVG; nothing
 * external), its Content-Security-Policy and its response. The script: `dashboard_script.ts`.
 */
import { createHash } from "node:crypto";
import { DASHBOARD_SCRIPT } from "./dashboard_script.ts";

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
.error{color:var(--bad);font-size:.9rem;overflow-wrap:anywhere}
#history-note{overflow-wrap:anywhere}
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
<body>${BODY}<script>${DASHBOARD_SCRIPT}</script>
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
  `script-src ${hash(DASHBOARD_SCRIPT)}`,
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
