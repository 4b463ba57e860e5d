/** @module ProxyMetrics and its labels: what each finished request adds, bounded label values. */
import assert from "node:assert/strict";
import {
  modelLabel,
  NO_MODEL,
  OTHER_MODEL,
  parseAttempts,
  ProxyMetrics,
  routeLabel,
} from "../lib/proxy_metrics.ts";
import { ModelRegistry } from "../lib/models.ts";
import { RequestContext } from "../lib/request_context.ts";
import { memoryLogger } from "../lib/log.ts";
import { testRegistry } from "./harness.ts";
import { parseMetrics, sample } from "./prometheus_text.ts";

Deno.test("routeLabel and modelLabel never pass raw client input through", async () => {
  const registry = await testRegistry();
  assert.equal(routeLabel("/v1/chat/completions"), "/v1/chat/completions");
  assert.equal(routeLabel("/v1/models/GPT-4o"), "/v1/models/{id}");
  assert.equal(routeLabel("/wp-admin/evil"), "other");
  assert.equal(modelLabel("gpt-4o", registry), "GPT-4o");
  assert.equal(modelLabel("claude-sonnet", registry), "Claude-Sonnet-4.6");
  assert.equal(modelLabel('evil"}\nmodel', registry), "other");
  assert.equal(modelLabel(42, registry), "other");
  assert.equal(modelLabel(undefined, registry), "none");
});

Deno.test("parseAttempts reads reason:status pairs and bounds odd values", () => {
  assert.deepEqual(parseAttempts("first:429,retry-429:200"), [
    { reason: "first", status: "429" },
    { reason: "retry-429", status: "200" },
  ]);
  assert.deepEqual(parseAttempts("WEIRD REASON:abc"), [{ reason: "other", status: "0" }]);
  assert.deepEqual(parseAttempts(undefined), []);
});

function finished(
  fields: Record<string, unknown>,
  status: number,
  options: { path?: string; ttfbMs?: number; deferred?: boolean } = {},
): RequestContext {
  const ctx = new RequestContext({
    id: crypto.randomUUID(),
    client: "127.0.0.1",
    method: "POST",
    path: options.path ?? "/v1/chat/completions",
    logger: memoryLogger(),
  });
  Object.assign(ctx.fields, fields);
  if (options.ttfbMs !== undefined) ctx.ttfbMs = options.ttfbMs;
  ctx.deferred = options.deferred === true;
  ctx.end(status);
  return ctx;
}

Deno.test("ProxyMetrics counts requests, tokens, points, attempts, limits and guards", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({
    models: () => registry,
    balance: () => ({ balance: 12345, takenAt: 1_700_000_000_500 }),
    version: "9.9.9",
  });
  for (let i = 0; i < 3; i++) metrics.arrived();
  metrics.ended(
    finished(
      {
        model: "gpt-4o",
        stream: true,
        attempts: "first:200",
        tokens_in: 10,
        tokens_out: 5,
        points: 155,
        points_estimated: true,
      },
      200,
      { ttfbMs: 120 },
    ),
  );
  metrics.ended(finished({ model: "not-a-model", limited: "client" }, 429));
  metrics.ended(
    finished({ model: "GPT-4o", guard: "paused", clipped: true, points: 40 }, 200),
  );
  // The first answer's real cost, found after it ended with its estimate of 155.
  metrics.lateCost("gpt-4o", 150, 155);
  const parsed = parseMetrics(metrics.render());
  const route = "/v1/chat/completions";
  assert.equal(sample(parsed, "poe_proxy_requests_total", { route, model: "GPT-4o" }), 2);
  assert.equal(
    sample(parsed, "poe_proxy_requests_total", { route, model: "other", status: "429" }),
    1,
  );
  assert.equal(sample(parsed, "poe_proxy_tokens_total", { model: "GPT-4o", kind: "prompt" }), 10);
  assert.equal(
    sample(parsed, "poe_proxy_tokens_total", { model: "GPT-4o", kind: "completion" }),
    5,
  );
  assert.equal(
    sample(parsed, "poe_proxy_points_spent_total", { model: "GPT-4o", kind: "estimated" }),
    155,
  );
  assert.equal(
    sample(parsed, "poe_proxy_points_spent_total", { model: "GPT-4o", kind: "real" }),
    190,
  );
  assert.equal(
    sample(parsed, "poe_proxy_points_estimate_replaced_total", { model: "GPT-4o" }),
    155,
  );
  assert.equal(
    sample(parsed, "poe_proxy_upstream_attempts_total", { reason: "first", status: "200" }),
    1,
  );
  assert.equal(sample(parsed, "poe_proxy_rate_limited_total", { scope: "client" }), 1);
  assert.equal(sample(parsed, "poe_proxy_guarded_total", { guard: "paused" }), 1);
  assert.equal(sample(parsed, "poe_proxy_clipped_total"), 1);
  assert.equal(sample(parsed, "poe_proxy_requests_in_flight"), 0);
  assert.equal(sample(parsed, "poe_proxy_balance_points"), 12345);
  assert.equal(
    sample(parsed, "poe_proxy_usage_poll_last_success_timestamp_seconds"),
    1_700_000_000,
  );
  assert.equal(sample(parsed, "poe_proxy_build_info", { version: "9.9.9" }), 1);
  assert.equal(sample(parsed, "poe_proxy_request_duration_seconds"), 3);
  const ttfb = parsed.get("poe_proxy_time_to_first_byte_seconds")!;
  assert.equal(ttfb.metrics.length, 1);
  assert.equal(ttfb.metrics[0].count, "1");
  assert.equal(ttfb.metrics[0].buckets?.["0.25"], "1");
  assert.equal(ttfb.metrics[0].buckets?.["0.1"], "0");
});

Deno.test("ProxyMetrics model labels stay bounded under many made-up model names", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  for (let i = 0; i < 500; i++) {
    metrics.arrived();
    metrics.ended(finished({ model: `random-${i}`, tokens_in: 1 }, 404));
  }
  assert.equal(metrics.requests.size, 1);
  assert.equal(metrics.tokens.size, 1);
  const parsed = parseMetrics(metrics.render());
  assert.equal(parsed.get("poe_proxy_balance_points")?.metrics.length ?? 0, 0);
});

/** A finished relayed stream: it ended itself (`deferred`), with `end` when not `done`. */
function finishedStream(end?: string): RequestContext {
  return finished({ model: "gpt-4o", stream: true, ...(end ? { end } : {}) }, 200, {
    deferred: true,
  });
}

Deno.test("routeLabel: each known route is its own label; look-alikes are other", () => {
  for (
    const path of ["/v1/chat/completions", "/v1/models", "/healthz", "/", "/metrics", "/api/usage"]
  ) {
    assert.equal(routeLabel(path), path);
  }
  assert.equal(routeLabel("/v1/models/x/y"), "/v1/models/{id}");
  for (
    const path of ["/v1/modelsx", "/healthz/", "/metrics.txt", "", "/V1/MODELS", "/v1/models/"]
  ) {
    assert.equal(routeLabel(path), path === "/v1/models/" ? "/v1/models/{id}" : "other", path);
  }
});

Deno.test("modelLabel: none for no model, the canonical id for any alias or casing, else other", async () => {
  const registry = await testRegistry();
  assert.equal(NO_MODEL, "none");
  assert.equal(OTHER_MODEL, "other");
  assert.equal(modelLabel(null, registry), "none");
  assert.equal(modelLabel("GPT-4O-LATEST", registry), "GPT-4o");
  assert.equal(modelLabel("", registry), "other");
  assert.equal(modelLabel({ model: "gpt-4o" }, registry), "other");
});

Deno.test("parseAttempts: a reason without status, colons in reasons and long values are bounded", () => {
  assert.deepEqual(parseAttempts(""), []);
  assert.deepEqual(parseAttempts(42), []);
  assert.deepEqual(parseAttempts("first"), [{ reason: "first", status: "0" }]);
  assert.deepEqual(parseAttempts("first:"), [{ reason: "first", status: "0" }]);
  assert.deepEqual(parseAttempts("a:b:503"), [{ reason: "other", status: "503" }]);
  assert.deepEqual(parseAttempts("first:2000"), [{ reason: "first", status: "0" }]);
  assert.deepEqual(parseAttempts(`${"r".repeat(40)}:200`), [{
    reason: "r".repeat(40),
    status: "200",
  }]);
  assert.deepEqual(parseAttempts(`${"r".repeat(41)}:200`), [{ reason: "other", status: "200" }]);
  assert.deepEqual(parseAttempts("first:500,,retry-500:200"), [
    { reason: "first", status: "500" },
    { reason: "other", status: "0" },
    { reason: "retry-500", status: "200" },
  ]);
});

Deno.test("ProxyMetrics.ended: streams count how they ended, other for an unknown end; answers not streamed none", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  for (const end of [undefined, "client-gone", "timeout", "shutdown", "upstream-error", "weird"]) {
    metrics.arrived();
    metrics.ended(finishedStream(end));
  }
  metrics.arrived();
  metrics.ended(finished({ model: "gpt-4o", end: "timeout" }, 504));
  const m = parseMetrics(metrics.render());
  for (const end of ["done", "client-gone", "timeout", "shutdown", "upstream-error", "other"]) {
    assert.equal(sample(m, "poe_proxy_stream_ends_total", { end }), 1, end);
  }
  assert.equal(m.get("poe_proxy_stream_ends_total")!.metrics.length, 6);
});

Deno.test("ProxyMetrics.ended: only chat completions are timed; others are counted by route", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  metrics.ended(finished({}, 200, { path: "/healthz", ttfbMs: 5 }));
  metrics.ended(finished({}, 404, { path: "/wp-login.php" }));
  metrics.ended(finished({}, 200, { path: "/v1/models/GPT-4o" }));
  const m = parseMetrics(metrics.render());
  assert.equal(sample(m, "poe_proxy_requests_total", { route: "/healthz", model: "none" }), 1);
  assert.equal(sample(m, "poe_proxy_requests_total", { route: "other", status: "404" }), 1);
  assert.equal(sample(m, "poe_proxy_requests_total", { route: "/v1/models/{id}" }), 1);
  assert.equal(sample(m, "poe_proxy_request_duration_seconds") ?? 0, 0);
  assert.equal(sample(m, "poe_proxy_time_to_first_byte_seconds") ?? 0, 0);
});

Deno.test("ProxyMetrics.ended: tokens counted here are not Poe's; odd limits, guards and clips are bounded", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  metrics.ended(
    finished({ model: "gpt-4o", tokens_in: 100, tokens_out: 50, tokens_estimated: true }, 200),
  );
  metrics.ended(finished({ model: "gpt-4o", tokens_in: "7", tokens_out: NaN }, 200));
  metrics.ended(finished({ model: "gpt-4o", limited: "poe-retry" }, 503));
  metrics.ended(finished({ model: "gpt-4o", limited: "poe" }, 429));
  metrics.ended(finished({ model: "gpt-4o", limited: "auth" }, 429));
  metrics.ended(finished({ model: "gpt-4o", limited: "made-up" }, 429));
  metrics.ended(finished({ model: "gpt-4o", guard: "cost-cap" }, 200));
  metrics.ended(finished({ model: "gpt-4o", guard: "made-up" }, 200));
  for (const clipped of [false, 0, 3, "yes"]) {
    metrics.ended(finished({ model: "gpt-4o", clipped }, 200));
  }
  metrics.ended(finished({ model: "gpt-4o", points: 12, points_estimated: false }, 200));
  metrics.ended(finished({ model: "gpt-4o", points: "12" }, 200));
  const m = parseMetrics(metrics.render());
  assert.deepEqual(m.get("poe_proxy_tokens_total")!.metrics, []);
  assert.equal(sample(m, "poe_proxy_upstream_retries_skipped_total"), 1);
  assert.equal(sample(m, "poe_proxy_rate_limited_total", { scope: "poe" }), 1);
  assert.equal(sample(m, "poe_proxy_rate_limited_total", { scope: "auth" }), 1);
  assert.equal(m.get("poe_proxy_rate_limited_total")!.metrics.length, 2);
  assert.equal(sample(m, "poe_proxy_guarded_total", { guard: "cost-cap" }), 1);
  assert.equal(sample(m, "poe_proxy_guarded_total", { guard: "other" }), 1);
  assert.equal(sample(m, "poe_proxy_clipped_total"), 2);
  assert.equal(sample(m, "poe_proxy_points_spent_total", { model: "GPT-4o", kind: "real" }), 12);
  assert.equal(m.get("poe_proxy_points_spent_total")!.metrics.length, 1);
});

Deno.test("ProxyMetrics: in flight goes up on arrival and down at the end", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  metrics.arrived();
  metrics.arrived();
  assert.equal(sample(parseMetrics(metrics.render()), "poe_proxy_requests_in_flight"), 2);
  metrics.ended(finished({}, 200, { path: "/healthz" }));
  assert.equal(sample(parseMetrics(metrics.render()), "poe_proxy_requests_in_flight"), 1);
});

Deno.test("ProxyMetrics.lateCost: real points always, a replaced estimate only when there was one", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  metrics.lateCost("claude-sonnet", 40, null);
  metrics.lateCost("made-up-model", 5, 4);
  const m = parseMetrics(metrics.render());
  assert.equal(
    sample(m, "poe_proxy_points_spent_total", { model: "Claude-Sonnet-4.6", kind: "real" }),
    40,
  );
  assert.equal(sample(m, "poe_proxy_points_spent_total", { model: "other", kind: "real" }), 5);
  assert.deepEqual(
    m.get("poe_proxy_points_estimate_replaced_total")!.metrics.map((s) => [
      s.labels?.model,
      s.value,
    ]),
    [["other", "4"]],
  );
});

Deno.test("ProxyMetrics: model labels follow the registry of the moment (a reload)", () => {
  let registry = ModelRegistry.parse("models:\n  text:\n    - Old-Model\n", "a.yaml");
  const metrics = new ProxyMetrics({ models: () => registry });
  metrics.ended(finished({ model: "new-model" }, 200));
  registry = ModelRegistry.parse("models:\n  text:\n    - New-Model\n", "b.yaml");
  metrics.ended(finished({ model: "new-model" }, 200));
  const m = parseMetrics(metrics.render());
  const route = "/v1/chat/completions";
  assert.equal(sample(m, "poe_proxy_requests_total", { route, model: "other" }), 1);
  assert.equal(sample(m, "poe_proxy_requests_total", { route, model: "New-Model" }), 1);
});

Deno.test("ProxyMetrics: version dev by default; balance gauges are absent while no reading exists", () => {
  let reading: { balance: number; takenAt: number } | null = null;
  const metrics = new ProxyMetrics({
    models: () => ModelRegistry.parse("models:\n  text:\n    - A\n", "a.yaml"),
    balance: () => reading,
  });
  let m = parseMetrics(metrics.render());
  assert.equal(sample(m, "poe_proxy_build_info", { version: "dev" }), 1);
  assert.equal(m.get("poe_proxy_balance_points")?.metrics.length ?? 0, 0);
  // Read at each scrape.
  reading = { balance: 77, takenAt: 1_700_000_123_999 };
  m = parseMetrics(metrics.render());
  assert.equal(sample(m, "poe_proxy_balance_points"), 77);
  assert.equal(sample(m, "poe_proxy_usage_poll_last_success_timestamp_seconds"), 1_700_000_123);
});

Deno.test("ProxyMetrics: the guard gauges read what the pause check takes off, at each scrape", () => {
  let reading = { running: 0, unshown: 0 };
  const models = () => ModelRegistry.parse("models:\n  text:\n    - A\n", "a.yaml");
  const absent = parseMetrics(new ProxyMetrics({ models }).render());
  assert.equal(absent.get("poe_proxy_points_running")?.metrics.length ?? 0, 0);
  const metrics = new ProxyMetrics({ models, guard: () => reading });
  let m = parseMetrics(metrics.render());
  assert.equal(sample(m, "poe_proxy_points_running"), 0);
  assert.equal(sample(m, "poe_proxy_points_unshown"), 0);
  reading = { running: 420.5, unshown: 37 };
  m = parseMetrics(metrics.render());
  assert.equal(sample(m, "poe_proxy_points_running"), 420.5);
  assert.equal(sample(m, "poe_proxy_points_unshown"), 37);
});

Deno.test("ProxyMetrics: many distinct attempts values are each counted right", async () => {
  const registry = await testRegistry();
  const metrics = new ProxyMetrics({ models: () => registry });
  // More forms than are remembered, twice over.
  for (let round = 0; round < 2; round++) {
    for (let s = 0; s < 100; s++) {
      metrics.ended(finished({ attempts: `first:${500 + s},retry-${500 + s}:200` }, 200));
    }
  }
  const m = parseMetrics(metrics.render());
  for (const s of [0, 63, 64, 99]) {
    assert.equal(
      sample(m, "poe_proxy_upstream_attempts_total", { reason: "first", status: `${500 + s}` }),
      2,
    );
    assert.equal(
      sample(m, "poe_proxy_upstream_attempts_total", { reason: `retry-${500 + s}`, status: "200" }),
      2,
    );
  }
});
