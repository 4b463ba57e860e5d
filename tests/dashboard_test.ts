// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { UsageDashboard } from "../lib/dashboard.ts";
import { Guards } from "../lib/guards.ts";
import { DASHBOARD_CSP, DASHBOARD_HTML } from "../lib/dashboard_page.ts";
import { RecentRequests } from "../lib/recent_requests.ts";
import { createApp } from "../lib/app.ts";
import { createLogger, memoryLogger } from "../lib/log.ts";
import { UsageApi } from "../lib/usage_api.ts";
import type { BalanceSnapshot } from "../lib/usage.ts";
import { FakePoe } from "./fake_poe.ts";
import { testConfig, testRegistry } from "./harness.ts";
import { seedHistory, startDashboardSetup } from "./dashboard_fixture.ts";
import { parseMetrics, sample } from "./prometheus_text.ts";

const GUARDS = { pointsCutoff: 1000, pointsPerMessageWarn: 5000, maxPointsPerMessage: 0 };

function poller(snapshot: BalanceSnapshot | null) {
  return { snapshot, stale: false, status: { failures: 0, lastError: null } };
}

async function chat(url: string, body: Record<string, unknown>, headers = {}): Promise<any> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return text;
}

Deno.test("UsageDashboard.build sums 30 days per day and per model from the paged history", async () => {
  await using fake = await FakePoe.start();
  const now = Date.now();
  seedHistory(fake, now);
  const api = new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey });
  const snap = { balance: 5000, nextGrant: null, takenAt: now - 5000 };
  const dash = new UsageDashboard({
    api,
    poller: poller(snap),
    guards: GUARDS,
    recent: new RecentRequests(),
    version: "t",
    now: () => now,
  });
  const d = await dash.build();
  assert.equal(d.daily.length, 30);
  assert.equal(d.daily.at(-1)!.date, new Date(now).toISOString().slice(0, 10));
  // 61 entries over 100 per page: one call.
  assert.equal(fake.usageCalls(), 1);
  const total = d.daily.reduce((sum, x) => sum + x.points, 0);
  assert.equal(total, d.spent!.total.month);
  assert.equal(d.spent!.total.count, 61);
  const gpt = d.spent!.models.find((m) => m.model === "GPT-4o")!;
  assert.equal(gpt.day, 100);
  assert.equal(gpt.week, 100 + 101 + 102 + 103 + 104 + 105 + 106);
  assert.equal(d.spent!.models[0].model, "Claude-Sonnet-4.6");
  assert.ok(d.spent!.models.some((m) => m.model === "Web-Search"));
  assert.deepEqual(d.balance, {
    points: 5000,
    taken_at: now - 5000,
    age_seconds: 5,
    stale: false,
    next_grant: null,
  });
  assert.equal(d.guards.state, "ok");
  assert.equal(d.history.ok, true);
  assert.deepEqual(d.balance_samples, [{ time: now - 5000, points: 5000 }]);
  await dash.close();
});

Deno.test("UsageDashboard caches the history and re-reads only the newest page", async () => {
  await using fake = await FakePoe.start();
  let now = Date.now();
  for (let i = 0; i < 250; i++) {
    fake.addHistory({ creation_time: (now - 3_600_000 - i * 60_000) * 1000, cost_points: 1 });
  }
  const dash = new UsageDashboard({
    api: new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey }),
    poller: null,
    guards: GUARDS,
    recent: new RecentRequests(),
    version: "t",
    now: () => now,
  });
  assert.equal((await dash.build()).spent!.total.count, 250);
  assert.equal(fake.usageCalls(), 3);
  await dash.build();
  assert.equal(fake.usageCalls(), 3, "a fresh cache makes no calls");
  fake.addHistory({ creation_time: now * 1000, cost_points: 40 });
  now += 31_000;
  const d = await dash.build();
  assert.equal(fake.usageCalls(), 4, "one page covers the new entries and the overlap");
  assert.equal(d.spent!.total.count, 251);
  assert.equal(d.spent!.total.day, 250 + 40);
  assert.equal(d.balance, null);
  assert.equal(d.guards.state, "unknown");
  await dash.close();
});

Deno.test("UsageDashboard reports the pause guard; its samples log the guard's turns with its figures", async () => {
  const logger = memoryLogger();
  const view = poller({ balance: 500, nextGrant: null, takenAt: 1 });
  let spent = 0;
  const guards = new Guards({
    pointsCutoff: GUARDS.pointsCutoff,
    maxPointsPerMessage: 0,
    snapshot: () => view.snapshot,
    spentSince: () => spent,
    logger,
  });
  const dash = new UsageDashboard({
    api: null,
    poller: view,
    paused: () => guards.paused(),
    guards: GUARDS,
    recent: new RecentRequests(),
    version: "t",
    logger,
  });
  const turns = () => logger.lines.filter((l) => / guard o(n|ff)/.test(l)).map((l) => l.slice(25));
  const d = await dash.build();
  assert.equal(d.guards.state, "paused");
  assert.match(d.guards.message!, /POINTS_CUTOFF/);
  assert.equal(d.history.ok, false);
  assert.match(d.history.error!, /POE_API_KEY/);
  view.snapshot = { balance: 2000, nextGrant: null, takenAt: 2 };
  dash.sample();
  view.snapshot = { balance: 1034, nextGrant: null, takenAt: 3 };
  dash.sample();
  assert.equal((await dash.build()).guards.state, "ok");
  // Answers counted since Poe's reading turn the guard on with no new reading: the line says the
  // balance the guard compared, then the one it compares once an estimate gives way to a real cost.
  spent = 140;
  dash.sample();
  spent = 16;
  dash.sample();
  dash.sample();
  assert.deepEqual(turns(), [
    "WARN  guard on: paused balance=500 points_cutoff=1000",
    "INFO  guard off: spending allowed again balance=2000 points_cutoff=1000",
    "WARN  guard on: paused balance=894 points_cutoff=1000 poe_balance=1034 spent_since=140",
    "INFO  guard off: spending allowed again balance=1018 points_cutoff=1000 poe_balance=1034 spent_since=16",
  ]);
});

Deno.test("the dashboard page is self-contained and never inserts text as HTML", () => {
  assert.doesNotMatch(DASHBOARD_HTML, /<script[^>]+src|@import|url\(/i);
  for (const link of DASHBOARD_HTML.match(/<link[^>]*>/g) ?? []) {
    assert.match(link, /href="data:/, link);
  }
  const urls = DASHBOARD_HTML.match(/https?:\/\/[^\s"'<>]+/g) ?? [];
  assert.deepEqual([...new Set(urls)], ["http://www.w3.org/2000/svg"]);
  assert.doesNotMatch(DASHBOARD_HTML, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  assert.match(DASHBOARD_CSP, /default-src 'none'/);
  assert.match(DASHBOARD_CSP, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
  assert.match(DASHBOARD_HTML, /name="viewport"/);
});

Deno.test("GET /api/usage shows the fake's balance, 30 days and the requests just made", async () => {
  await using s = await startDashboardSetup();
  await chat(s.proxy.url, { model: "gpt-4o" });
  await chat(s.proxy.url, { model: "Claude-Sonnet-4.6", stream: true });
  const res = await fetch(`${s.proxy.url}/api/usage`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("cache-control"), "no-store");
  const d = await res.json();
  assert.equal(d.balance.points, s.usage.poller.snapshot!.balance);
  assert.ok([1_234_567, s.fake.balance].includes(d.balance.points), String(d.balance.points));
  assert.equal(typeof d.balance.next_grant.time, "number");
  assert.equal(d.daily.length, 30);
  assert.ok(d.daily.every((x: any) => x.points > 0));
  assert.equal(d.recent.length, 2);
  assert.equal(d.recent[0].model, "Claude-Sonnet-4.6");
  assert.equal(d.recent[0].stream, true);
  assert.equal(d.recent[1].model, "gpt-4o");
  assert.equal(d.recent[1].status, 200);
  assert.equal(typeof d.recent[1].tokens_in, "number");
  assert.equal(d.guards.points_cutoff, s.proxy.config.pointsCutoff);
});

Deno.test("GET /metrics counts the chat requests and parses as Prometheus text", async () => {
  await using s = await startDashboardSetup();
  await chat(s.proxy.url, { model: "gpt-4o" });
  await chat(s.proxy.url, { model: "gpt-4o", stream: true });
  const res = await fetch(`${s.proxy.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const m = parseMetrics(await res.text());
  const labels = { route: "/v1/chat/completions", model: "GPT-4o", status: "200" };
  assert.equal(sample(m, "poe_proxy_requests_total", labels), 2);
  assert.equal(sample(m, "poe_proxy_request_duration_seconds"), 2);
  assert.equal(sample(m, "poe_proxy_time_to_first_byte_seconds"), 2);
  assert.equal(sample(m, "poe_proxy_upstream_attempts_total", { reason: "first" }), 2);
  assert.ok(sample(m, "poe_proxy_tokens_total", { model: "GPT-4o", kind: "prompt" })! > 0);
  assert.equal(sample(m, "poe_proxy_requests_in_flight"), 1, "the scrape itself");
  assert.equal(sample(m, "poe_proxy_balance_points"), s.usage.poller.snapshot!.balance);
  assert.ok(sample(m, "poe_proxy_usage_poll_last_success_timestamp_seconds")! > 1.7e9);
});

Deno.test("with inbound keys, /metrics and /api/usage need a key but the page does not", async () => {
  await using s = await startDashboardSetup({ env: { PROXY_API_KEYS: "k-one,k-two" } });
  for (const path of ["/metrics", "/api/usage"]) {
    const anon = await fetch(`${s.proxy.url}${path}`);
    await anon.body?.cancel();
    assert.equal(anon.status, 401, path);
    const ok = await fetch(`${s.proxy.url}${path}`, { headers: { authorization: "Bearer k-two" } });
    await ok.body?.cancel();
    assert.equal(ok.status, 200, path);
  }
  const page = await fetch(`${s.proxy.url}/`);
  const html = await page.text();
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type")!, /^text\/html/);
  assert.equal(page.headers.get("content-security-policy"), DASHBOARD_CSP);
  assert.ok(!html.includes("k-one"));
});

Deno.test("DASHBOARD=off removes / and /api/usage but keeps /metrics", async () => {
  await using s = await startDashboardSetup({ env: { DASHBOARD: "off" } });
  for (const [path, status] of [["/", 404], ["/api/usage", 404], ["/metrics", 200]] as const) {
    const res = await fetch(`${s.proxy.url}${path}`);
    await res.body?.cancel();
    assert.equal(res.status, status, path);
  }
});

async function loggedChat(env: Record<string, string>): Promise<string[]> {
  await using fake = await FakePoe.start();
  const lines: string[] = [];
  const config = testConfig({ POE_BASE_URL: fake.url, LOG_FORMAT: "json", FOOTER: "off", ...env });
  const app = createApp({
    config,
    version: "t",
    registry: await testRegistry().then((r) => () => r),
    logger: createLogger({ format: "json", level: "debug", write: (l) => lines.push(l) }),
  });
  try {
    const res = await app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "log-1" },
        body: JSON.stringify({
          model: "gpt-4o",
          messages: [{ role: "user", content: "secret words" }],
        }),
      }),
      { remoteAddr: { hostname: "10.0.0.7" } },
    );
    await res.text();
  } finally {
    await app.close();
  }
  return lines;
}

Deno.test("the request log line carries every field, as JSON, and no message content", async () => {
  const lines = await loggedChat({});
  const entries = lines.map((l) => JSON.parse(l));
  const line = entries.find((e) => e.event === "request" && e.request_id === "log-1");
  assert.ok(line, lines.join("\n"));
  for (const k of ["time", "client", "method", "path", "model", "stream", "status", "attempts"]) {
    assert.ok(k in line, `missing ${k}`);
  }
  assert.equal(line.client, "10.0.0.7");
  assert.equal(line.method, "POST");
  assert.equal(line.path, "/v1/chat/completions");
  assert.equal(line.model, "gpt-4o");
  assert.equal(line.stream, false);
  assert.equal(line.status, 200);
  assert.equal(line.attempts, "first:200");
  assert.equal(typeof line.ms, "number");
  assert.equal(typeof line.ttfb_ms, "number");
  assert.equal(typeof line.tokens_in, "number");
  assert.equal(typeof line.tokens_out, "number");
  assert.equal(typeof line.points, "number");
  assert.equal(typeof line.points_estimated, "boolean");
  assert.ok(!lines.some((l) => l.includes("secret words")), "no content without LOG_BODIES");
});

Deno.test("LOG_BODIES=on logs the request and answer bodies at debug level", async () => {
  const lines = await loggedChat({ LOG_BODIES: "on" });
  const bodies = lines.map((l) => JSON.parse(l)).filter((e) => e.event.endsWith(" body"));
  assert.deepEqual(bodies.map((e) => [e.event, e.level]), [
    ["request body", "debug"],
    ["response body", "debug"],
  ]);
  assert.equal(bodies[0].request_id, "log-1");
  assert.equal(bodies[0].body.messages[0].content, "secret words");
  assert.match(bodies[1].body, /chat\.completion/);
});

Deno.test("guarded and rate-limited requests show in /metrics, /api/usage and the log", async () => {
  await using s = await startDashboardSetup({
    env: { POINTS_CUTOFF: "2000000", RATE_LIMIT_PER_MINUTE: "1", RATE_LIMIT_BURST: "1" },
  });
  await chat(s.proxy.url, { model: "gpt-4o" });
  const limited = await fetch(`${s.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
  });
  await limited.body?.cancel();
  assert.equal(limited.status, 429);
  const m = parseMetrics(await (await fetch(`${s.proxy.url}/metrics`)).text());
  assert.equal(sample(m, "poe_proxy_guarded_total", { guard: "paused" }), 1);
  assert.equal(sample(m, "poe_proxy_rate_limited_total", { scope: "client" }), 1);
  assert.equal(sample(m, "poe_proxy_upstream_attempts_total"), undefined, "Poe was never called");
  const d = await (await fetch(`${s.proxy.url}/api/usage`)).json();
  assert.equal(d.guards.state, "paused");
  assert.match(d.guards.message, /POINTS_CUTOFF/);
  assert.deepEqual(d.recent.map((r: any) => [r.status, r.guard]), [[429, null], [200, "paused"]]);
  assert.ok(s.proxy.logs.some((l) => l.includes("guard=paused")), "the log line names the guard");
});

Deno.test("UsageDashboard keeps re-reading only new pages after a truncated first read", async () => {
  await using fake = await FakePoe.start();
  let now = Date.now();
  for (let i = 0; i < 250; i++) {
    fake.addHistory({ creation_time: (now - 3_600_000 - i * 60_000) * 1000, cost_points: 1 });
  }
  const dash = new UsageDashboard({
    api: new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey }),
    poller: null,
    guards: GUARDS,
    recent: new RecentRequests(),
    version: "t",
    maxPages: 2,
    now: () => now,
  });
  const first = await dash.build();
  assert.equal(first.history.truncated, true);
  assert.equal(first.spent!.total.count, 200);
  assert.equal(fake.usageCalls(), 2);
  now += 31_000;
  const second = await dash.build();
  assert.equal(fake.usageCalls(), 3);
  assert.equal(second.history.truncated, true);
  assert.equal(second.spent!.total.count, 200);
  await dash.close();
});

Deno.test("UsageDashboard holds no more history than a full read, however many refreshes add", async () => {
  await using fake = await FakePoe.start();
  let now = Date.now();
  const add = (n: number) => {
    for (let i = 0; i < n; i++) {
      fake.addHistory({ creation_time: (now - 1_000 - i * 10) * 1000, cost_points: 1 });
    }
  };
  add(150);
  const dash = new UsageDashboard({
    api: new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey }),
    poller: null,
    guards: GUARDS,
    recent: new RecentRequests(),
    version: "t",
    maxPages: 2,
    overlapMs: 0,
    now: () => now,
  });
  const first = await dash.build();
  assert.equal(first.history.truncated, false);
  assert.equal(first.spent!.total.count, 150);
  // Three refreshes of 120 new entries each: 510 in all, a full read's 200 kept.
  for (let i = 0; i < 3; i++) {
    now += 31_000;
    add(120);
    const calls = fake.usageCalls();
    const d = await dash.build();
    assert.ok(fake.usageCalls() - calls <= 2, "only the new pages are read");
    assert.equal(d.spent!.total.count, Math.min(200, 150 + 120 * (i + 1)));
  }
  assert.equal((await dash.build()).history.truncated, true);
  await dash.close();
});

Deno.test("UsageDashboard keeps its cache and says why when the history fails", async () => {
  const logger = memoryLogger();
  let fail = false;
  let calls = 0;
  const api = {
    currentBalance: () => Promise.reject(new Error("unused")),
    pointsHistory: () => {
      calls++;
      if (fail) return Promise.reject(new Error("Poe's /usage/points_history answered 500"));
      return Promise.resolve({
        data: [{
          query_id: "q1",
          bot_name: "GPT-4o",
          creation_time: Date.now() * 1000,
          usage_type: "API",
          cost_points: 9,
        }],
        hasMore: false,
      });
    },
  };
  let now = Date.now();
  const dash = new UsageDashboard({
    api,
    poller: null,
    guards: GUARDS,
    recent: new RecentRequests(),
    version: "t",
    now: () => now,
    logger,
  });
  assert.equal((await dash.build()).spent!.total.month, 9);
  fail = true;
  for (let i = 0; i < 3; i++) {
    now += 31_000;
    const d = await dash.build();
    assert.equal(d.spent!.total.month, 9, "the last good history stays");
    assert.equal(d.history.ok, false);
    assert.match(d.history.error!, /answered 500/);
  }
  assert.equal(calls, 4);
  assert.equal(logger.lines.filter((l) => l.includes("points history failed")).length, 1);
  fail = false;
  now += 1;
  assert.equal((await dash.build()).history.ok, true, "an error retries at once");
  await dash.close();
});
