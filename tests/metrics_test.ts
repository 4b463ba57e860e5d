import assert from "node:assert/strict";
import {
  Counter,
  escapeLabelValue,
  formatValue,
  Gauge,
  Histogram,
  MetricsRegistry,
  OVERFLOW_LABEL,
} from "../lib/metrics.ts";
import { memoryLogger } from "../lib/log.ts";
import { createUsageService } from "../lib/usage_service.ts";
import { FakePoe } from "./fake_poe.ts";
import { startFakeAndProxy, startProxy, testConfig } from "./harness.ts";
import { startDashboardSetup } from "./dashboard_fixture.ts";
import { parseMetrics, sample } from "./prometheus_text.ts";

Deno.test("Counter, Gauge and Histogram render text the npm parser reads back", () => {
  const registry = new MetricsRegistry();
  const c = registry.register(
    new Counter({ name: "t_total", help: "A counter.", labels: ["kind"] }),
  );
  const g = registry.register(new Gauge({ name: "t_gauge", help: "A gauge." }));
  const h = registry.register(
    new Histogram({ name: "t_seconds", help: "A histogram.", buckets: [0.1, 1] }),
  );
  const labelled = registry.register(
    new Histogram({ name: "l_seconds", help: "Labelled.", labels: ["x"], buckets: [1] }),
  );
  labelled.observe({ x: "a" }, 2);
  c.inc({ kind: "a" });
  c.inc({ kind: "a" }, 2);
  c.inc({ kind: "b" }, -5); // ignored: counters never go down
  g.set({}, 42);
  g.dec();
  h.observe({}, 0.05);
  h.observe({}, 0.5);
  h.observe({}, 7);
  const text = registry.render();
  assert.match(text, /^# HELP t_total A counter\.\n# TYPE t_total counter\n/);
  const parsed = parseMetrics(text);
  assert.equal(parsed.get("t_total")?.type, "COUNTER");
  assert.equal(sample(parsed, "t_total", { kind: "a" }), 3);
  assert.equal(sample(parsed, "t_total", { kind: "b" }), undefined);
  assert.equal(sample(parsed, "t_gauge"), 41);
  const hist = parsed.get("t_seconds")!;
  assert.equal(hist.type, "HISTOGRAM");
  assert.deepEqual(hist.metrics[0].buckets, { "0.1": "1", "1": "2", "+Inf": "3" });
  assert.equal(hist.metrics[0].count, "3");
  assert.equal(Number(hist.metrics[0].sum), 7.55);
  // The npm parser flattens labelled histograms, so their lines are checked as text.
  assert.match(
    text,
    /\nl_seconds_bucket\{x="a",le="1"\} 0\nl_seconds_bucket\{x="a",le="\+Inf"\} 1\n/,
  );
  assert.match(text, /\nl_seconds_sum\{x="a"\} 2\nl_seconds_count\{x="a"\} 1\n/);
});

Deno.test("label values are escaped and parse back unchanged", () => {
  const registry = new MetricsRegistry();
  const c = registry.register(new Counter({ name: "e_total", help: "x", labels: ["v"] }));
  const nasty = 'a "quoted" \\ back\nslash} {x="y"}';
  c.inc({ v: nasty });
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const parsed = parseMetrics(registry.render());
  assert.equal(parsed.get("e_total")!.metrics[0].labels!.v, nasty);
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(NaN), "NaN");
});

Deno.test("a metric keeps at most maxSeries label sets, then folds new ones into other", () => {
  const c = new Counter({ name: "b_total", help: "x", labels: ["k"], maxSeries: 3 });
  for (let i = 0; i < 100; i++) c.inc({ k: `v${i}` });
  assert.equal(c.size, 4); // three kept, plus the overflow series
  assert.equal(c.value({ k: OVERFLOW_LABEL }), 97);
  // Kept sets still count as their own; folded ones keep folding.
  c.inc({ k: "v1" }, 5);
  c.inc({ k: "v50" });
  assert.equal(c.value({ k: "v1" }), 6);
  assert.equal(c.value({ k: OVERFLOW_LABEL }), 98);
  assert.equal(c.size, 4);
});

Deno.test("series of several labels are told apart by every value, and reset forgets them", () => {
  const c = new Counter({ name: "m_total", help: "x", labels: ["a", "b"] });
  c.inc({ a: "x", b: "" });
  c.inc({ a: "", b: "x" }, 2);
  c.inc({ a: "x", b: "" }, 3);
  c.inc({ a: "x" }, 4); // a missing label is ""
  assert.equal(c.value({ a: "x", b: "" }), 8);
  assert.equal(c.value({ a: "", b: "x" }), 2);
  assert.equal(c.size, 2);
  const h = new Histogram({ name: "h_seconds", help: "x", buckets: [1] });
  h.observe({}, 0.5);
  h.observe({}, 2);
  assert.equal(h.count(), 2);
  c.reset();
  h.reset();
  assert.equal(c.size, 0);
  assert.equal(c.value({ a: "x", b: "" }), 0);
  c.inc({ a: "x", b: "" });
  h.observe({}, 1);
  assert.equal(c.value({ a: "x", b: "" }), 1);
  assert.equal(h.count(), 1);
});

Deno.test("metric and label names are validated; le is reserved on histograms", () => {
  assert.throws(() => new Counter({ name: "bad-name", help: "x" }), /Bad metric name/);
  assert.throws(() => new Counter({ name: "ok", help: "x", labels: ["__x"] }), /Bad label/);
  assert.throws(
    () => new Histogram({ name: "h", help: "x", labels: ["le"], buckets: [1] }),
    /reserved/,
  );
  assert.throws(() => new Histogram({ name: "h", help: "x", buckets: [2, 1] }), /increase/);
  const r = new MetricsRegistry();
  r.register(new Gauge({ name: "g", help: "x" }));
  assert.throws(() => r.register(new Gauge({ name: "g", help: "y" })), /twice/);
});

// --- over real HTTP: the proxy and the fake Poe on port 0 ----------------------------------------

/** Posts a chat request; `marker` becomes the fake's `[[fake: ...]]` directive. */
async function post(
  url: string,
  marker: string,
  extra: Record<string, unknown> = {},
  init: RequestInit = {},
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    ...init,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: `Hi${marker ? ` [[fake: ${marker}]]` : ""}` }],
      ...extra,
    }),
  });
  return { status: res.status, text: await res.text() };
}

async function scrape(url: string) {
  const res = await fetch(`${url}/metrics`);
  return parseMetrics(await res.text());
}

async function until(check: () => boolean | Promise<boolean>, ms = 6000): Promise<void> {
  const end = Date.now() + ms;
  while (!await check()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("/metrics and the dashboard's rows tell streams that failed after their 200 apart", async () => {
  await using s = await startDashboardSetup();
  const stream = { stream: true };
  assert.equal((await post(s.proxy.url, "", stream)).status, 200);
  assert.equal((await post(s.proxy.url, "midstream-error", stream)).status, 200);
  assert.equal((await post(s.proxy.url, "drop", stream)).status, 200);
  assert.equal((await post(s.proxy.url, "")).status, 200, "not a stream: no stream end");
  const m = await scrape(s.proxy.url);
  const route = "/v1/chat/completions";
  assert.equal(sample(m, "poe_proxy_requests_total", { route, status: "200" }), 4);
  assert.equal(sample(m, "poe_proxy_stream_ends_total", { end: "done" }), 1);
  assert.equal(sample(m, "poe_proxy_stream_ends_total", { end: "upstream-error" }), 2);
  assert.equal(m.get("poe_proxy_stream_ends_total")!.metrics.length, 2);
  const d = await (await fetch(`${s.proxy.url}/api/usage`)).json();
  assert.deepEqual(
    d.recent.map((r: { status: number; end: string | null }) => [r.status, r.end]),
    [[200, null], [200, "upstream-error"], [200, "upstream-error"], [200, null]],
  );
});

Deno.test("poe_proxy_upstream_attempts_total counts the calls of requests that end in an error", async () => {
  await using t = await startFakeAndProxy();
  // Three calls, all failing: the first and two retries.
  assert.equal((await post(t.proxy.url, "status=500")).status, 500);
  assert.equal((await post(t.proxy.url, "status=401")).status, 401);
  // A Retry-After too long to wait out is passed on: one call, and not this proxy's 429.
  assert.equal((await post(t.proxy.url, "status=429,retry-after=120")).status, 429);
  // The client leaves before Poe's headers.
  const ac = new AbortController();
  const pending = post(t.proxy.url, "slow-first=5000", {}, { signal: ac.signal }).catch((e) => e);
  await until(() => t.fake.chatRequests().length === 6);
  ac.abort();
  assert.ok((await pending) instanceof Error);
  await until(async () =>
    sample(await scrape(t.proxy.url), "poe_proxy_requests_total", { status: "499" }) === 1
  );
  const m = await scrape(t.proxy.url);
  const calls = (reason: string, status: string) =>
    sample(m, "poe_proxy_upstream_attempts_total", { reason, status });
  assert.equal(calls("first", "500"), 1);
  assert.equal(calls("retry-500", "500"), 2);
  assert.equal(calls("first", "401"), 1);
  assert.equal(calls("first", "429"), 1);
  assert.equal(calls("first", "499"), 1);
  const total = m.get("poe_proxy_upstream_attempts_total")!.metrics
    .reduce((n, s) => n + Number(s.value), 0);
  assert.equal(total, t.fake.chatRequests().length, "every call to Poe is counted once");
  assert.equal(sample(m, "poe_proxy_rate_limited_total"), undefined, "Poe's 429, not ours");
  const line = t.proxy.logs.find((l) => l.includes(" path=") && l.includes("status=500"));
  assert.match(line ?? "", /attempts=first:500,retry-500:500,retry-500:500/);
});

Deno.test("a late real cost replaces its estimate: real + estimated - replaced sums each answer once", async () => {
  await using fake = await FakePoe.start({ historyDelayMs: 700 });
  const env = { POE_BASE_URL: fake.url, FOOTER_WAIT_MS: "200" };
  const usage = createUsageService(testConfig(env), { logger: memoryLogger() });
  usage.poller.start();
  await usage.poller.refresh();
  await using proxy = await startProxy({ poeUrl: fake.url, env, deps: { usage } });
  try {
    const res = await post(proxy.url, "", { model: "GPT-4o" });
    const u = JSON.parse(res.text).usage;
    assert.equal(u.points_estimated, true);
    const estimate = u.cost_points;
    const real = 10 + u.prompt_tokens + u.completion_tokens; // the fake's billing
    assert.notEqual(real, estimate);
    const spent = (m: Map<string, unknown>, kind: string) =>
      sample(m as ReturnType<typeof parseMetrics>, "poe_proxy_points_spent_total", {
        model: "GPT-4o",
        kind,
      }) ?? 0;
    let m = await scrape(proxy.url);
    assert.equal(spent(m, "estimated"), estimate);
    assert.equal(spent(m, "real"), 0);
    await until(async () => spent(m = await scrape(proxy.url), "real") > 0);
    const replaced = sample(m, "poe_proxy_points_estimate_replaced_total", { model: "GPT-4o" });
    assert.equal(replaced, estimate);
    assert.equal(spent(m, "real") + spent(m, "estimated") - replaced!, real);
    const late = proxy.logs.find((l) => l.includes("late cost"))!;
    assert.match(late, new RegExp(`points=${real}\\b.*estimated_points=${estimate}\\b`));
  } finally {
    await usage.close();
  }
});

Deno.test("a retry left unsent for lack of a POE_RATE_LIMIT token is no 429 of this proxy", async () => {
  await using t = await startFakeAndProxy({ POE_RATE_LIMIT_PER_MINUTE: "2" });
  // One token for the first call, one for the first retry; the second retry finds none.
  assert.equal((await post(t.proxy.url, "status=503")).status, 503);
  assert.equal(t.fake.chatRequests().length, 2);
  let m = await scrape(t.proxy.url);
  assert.equal(sample(m, "poe_proxy_rate_limited_total"), undefined);
  assert.equal(sample(m, "poe_proxy_upstream_retries_skipped_total"), 1);
  // The bucket is empty now: the next request is refused with a 429 of this proxy's.
  assert.equal((await post(t.proxy.url, "")).status, 429);
  m = await scrape(t.proxy.url);
  assert.equal(sample(m, "poe_proxy_rate_limited_total", { scope: "poe" }), 1);
  assert.equal(m.get("poe_proxy_rate_limited_total")!.metrics.length, 1);
  assert.equal(sample(m, "poe_proxy_upstream_retries_skipped_total"), 1);
});

Deno.test("a base URL without /v1 or with doubled slashes is counted and listed as chat completions", async () => {
  await using t = await startFakeAndProxy();
  for (const path of ["/chat/completions", "/v1/chat/completions/", "//v1//chat/completions"]) {
    const res = await fetch(`${t.proxy.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] }),
    });
    assert.equal(res.status, 200, path);
    await res.body?.cancel();
  }
  const metrics = await (await fetch(`${t.proxy.url}/metrics`)).text();
  assert.match(metrics, /poe_proxy_requests_total\{[^}]*route="\/v1\/chat\/completions"[^}]*\} 3/);
  assert.match(metrics, /poe_proxy_request_duration_seconds_count 3/);
  const usage = await (await fetch(`${t.proxy.url}/api/usage`)).json();
  assert.equal(usage.recent.length, 3);
});

Deno.test("tokens counted here for an answer Poe sent without usage are marked, and not Poe's tokens in /metrics", async () => {
  await using s = await startDashboardSetup();
  const plain = await post(s.proxy.url, "usage=none");
  assert.equal(plain.status, 200);
  assert.equal(JSON.parse(plain.text).usage.tokens_estimated, true);
  const streamed = await post(s.proxy.url, "usage=none", {
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.match(streamed.text, /"usage":\{[^}]*"tokens_estimated":true/);
  const m = await scrape(s.proxy.url);
  assert.deepEqual(m.get("poe_proxy_tokens_total")!.metrics, [], "no token Poe reported");
  const d = await (await fetch(`${s.proxy.url}/api/usage`)).json();
  assert.deepEqual(d.recent.map((r: { tokens_estimated: boolean }) => r.tokens_estimated), [
    true,
    true,
  ]);
});
