/** @module RecentRequests and recentRequestOf: the dashboard's ring of the last requests. */
import assert from "node:assert/strict";
import { type RecentRequest, recentRequestOf, RecentRequests } from "../lib/recent_requests.ts";
import { RequestContext } from "../lib/request_context.ts";
import { memoryLogger } from "../lib/log.ts";

function context(id: string, path = "/v1/chat/completions", method = "POST"): RequestContext {
  return new RequestContext({ id, client: "127.0.0.1", method, path, logger: memoryLogger() });
}

function row(id: string, points: number | null = null): RecentRequest {
  return {
    time: 0,
    id,
    client: "c",
    model: "GPT-4o",
    stream: false,
    status: 200,
    ms: 1,
    ttfb_ms: null,
    tokens_in: null,
    tokens_out: null,
    tokens_estimated: false,
    points,
    points_estimated: points !== null,
    guard: null,
    end: null,
  };
}

Deno.test("RecentRequests keeps the newest 50, newest first, and takes late costs", () => {
  const recent = new RecentRequests();
  for (let i = 0; i < 60; i++) {
    const ctx = new RequestContext({
      id: `r${i}`,
      client: "127.0.0.1",
      method: "POST",
      path: "/v1/chat/completions",
      logger: memoryLogger(),
    });
    ctx.fields.model = "GPT-4o";
    ctx.fields.points = 10;
    ctx.fields.points_estimated = true;
    ctx.end(200);
    recent.record(ctx);
  }
  const skipped = new RequestContext({
    id: "health",
    client: "x",
    method: "GET",
    path: "/healthz",
    logger: memoryLogger(),
  });
  skipped.end(200);
  recent.record(skipped);
  const rows = recent.list();
  assert.equal(rows.length, 50);
  assert.equal(rows[0].id, "r59");
  assert.equal(rows[49].id, "r10");
  assert.ok(recent.updateCost("r55", 12));
  assert.equal(recent.list()[4].points, 12);
  assert.equal(recent.list()[4].points_estimated, false);
  assert.equal(recent.updateCost("r1", 1), false);
  // The oldest row kept, and the newest dropped.
  assert.ok(recent.updateCost("r10", 3));
  assert.equal(recent.list()[49].points, 3);
  assert.equal(recent.updateCost("r9", 1), false);
});

Deno.test("RecentRequests wraps its ring many times and always lists the newest, newest first", () => {
  const recent = new RecentRequests({ size: 3 });
  assert.deepEqual(recent.list(), []);
  recent.add(row("a"));
  assert.deepEqual(recent.list().map((r) => r.id), ["a"]);
  recent.add(row("b"));
  assert.deepEqual(recent.list().map((r) => r.id), ["b", "a"]);
  for (let i = 0; i < 10; i++) {
    recent.add(row(`x${i}`));
    const want = [i, i - 1, i - 2].map((n) => n >= 0 ? `x${n}` : n === -1 ? "b" : "a");
    assert.deepEqual(recent.list().map((r) => r.id), want, `after x${i}`);
  }
});

Deno.test("RecentRequests.updateCost: false once a row was dropped, and the row stays gone", () => {
  const recent = new RecentRequests({ size: 2 });
  recent.add(row("old", 10));
  assert.equal(recent.updateCost("old", 11), true);
  recent.add(row("mid", 20));
  recent.add(row("new", 30));
  assert.equal(recent.updateCost("old", 12), false);
  assert.deepEqual(recent.list().map((r) => [r.id, r.points]), [["new", 30], ["mid", 20]]);
  assert.equal(recent.updateCost("never", 1), false);
});

Deno.test("RecentRequests.updateCost: a reused id updates the kept row, after the older one is dropped", () => {
  // Clients choose request ids (x-request-id): two rows may share one.
  const recent = new RecentRequests({ size: 2 });
  recent.add(row("same", 1));
  recent.add(row("same", 2));
  recent.add(row("other", 3));
  assert.equal(recent.updateCost("same", 5), true);
  assert.deepEqual(recent.list().map((r) => [r.id, r.points, r.points_estimated]), [
    ["other", 3, true],
    ["same", 5, false],
  ]);
});

Deno.test("RecentRequests.list gives copies: changing them changes nothing kept", () => {
  const recent = new RecentRequests({ size: 2 });
  recent.add(row("a", 1));
  const [copy] = recent.list();
  copy.points = 999;
  copy.id = "changed";
  assert.deepEqual(recent.list().map((r) => [r.id, r.points]), [["a", 1]]);
  assert.equal(recent.updateCost("a", 2), true);
  assert.equal(copy.points, 999, "a listed copy does not see later costs");
});

Deno.test("RecentRequests: a size below 1 keeps one row; the filter chooses what is recorded", () => {
  const one = new RecentRequests({ size: 0 });
  assert.equal(one.size, 1);
  one.add(row("a"));
  one.add(row("b"));
  assert.deepEqual(one.list().map((r) => r.id), ["b"]);
  const models = new RecentRequests({ filter: (ctx) => ctx.path.startsWith("/v1/models") });
  for (
    const [id, path, method] of [["m", "/v1/models", "GET"], ["c", "/v1/chat/completions", "POST"]]
  ) {
    const ctx = context(id, path, method);
    ctx.end(200);
    models.record(ctx);
  }
  assert.deepEqual(models.list().map((r) => r.id), ["m"]);
  // The default keeps POST /v1/chat/completions alone.
  const chats = new RecentRequests();
  for (const [id, method] of [["get", "GET"], ["post", "POST"]]) {
    const ctx = context(id, "/v1/chat/completions", method);
    ctx.end(405);
    chats.record(ctx);
  }
  assert.deepEqual(chats.list().map((r) => r.id), ["post"]);
});

Deno.test("recentRequestOf copies a context's fields, typed and bounded, never raw values", () => {
  const ctx = context("r1");
  Object.assign(ctx.fields, {
    model: "m".repeat(500),
    stream: true,
    tokens_in: 12,
    tokens_out: 34,
    tokens_estimated: true,
    points: 56.5,
    points_estimated: true,
    guard: "cost-cap",
    end: "client-gone",
  });
  ctx.ttfbMs = 12.345;
  ctx.end(200);
  const r = recentRequestOf(ctx);
  assert.equal(r.id, "r1");
  assert.equal(r.client, "127.0.0.1");
  assert.equal(r.time, ctx.startedAt);
  assert.equal(r.model, "m".repeat(200));
  assert.equal(r.stream, true);
  assert.equal(r.status, 200);
  assert.equal(r.ttfb_ms, 12.3);
  assert.equal(r.ms, Math.round(r.ms * 10) / 10, "ms to a tenth");
  assert.ok(r.ms >= 0);
  assert.deepEqual(
    [r.tokens_in, r.tokens_out, r.tokens_estimated, r.points, r.points_estimated, r.guard, r.end],
    [12, 34, true, 56.5, true, "cost-cap", "client-gone"],
  );
  // Missing or wrongly typed fields become null or false; a stream flag never set (a request
  // refused before its body was read) is not known.
  const unread = context("r3");
  unread.end(429);
  assert.equal(recentRequestOf(unread).stream, null);
  // Missing or wrongly typed fields become null or false.
  const odd = context("r2");
  Object.assign(odd.fields, {
    model: 42,
    stream: "yes",
    tokens_in: NaN,
    tokens_out: "34",
    tokens_estimated: "true",
    points: Infinity,
    points_estimated: 1,
    guard: { x: 1 },
    end: 5,
  });
  odd.end(400);
  const o = recentRequestOf(odd);
  assert.deepEqual(
    [o.model, o.stream, o.ttfb_ms, o.tokens_in, o.tokens_out, o.tokens_estimated, o.points],
    [null, null, null, null, null, false, null],
  );
  assert.deepEqual([o.points_estimated, o.guard, o.end, o.status], [false, null, null, 400]);
});
