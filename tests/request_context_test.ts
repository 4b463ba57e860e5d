/** @module RequestContext: the late cost and the estimate it replaces. */
import assert from "node:assert/strict";
import { RequestContext, requestIdFrom } from "../lib/request_context.ts";
import { memoryLogger } from "../lib/log.ts";

function context(late: [number, number | null][]) {
  const logger = memoryLogger();
  const ctx = new RequestContext({
    id: "r1",
    client: "127.0.0.1",
    method: "POST",
    path: "/v1/chat/completions",
    logger,
    onLateCost: (_ctx, points, replaced) => late.push([points, replaced]),
  });
  return { ctx, logger };
}

Deno.test("RequestContext.lateCost replaces the estimate its log line reported, once", () => {
  const late: [number, number | null][] = [];
  const { ctx, logger } = context(late);
  ctx.fields.points = 140;
  ctx.fields.points_estimated = true;
  ctx.end(200);
  ctx.lateCost(26);
  ctx.lateCost(26);
  assert.deepEqual(late, [[26, 140], [26, null]]);
  assert.match(logger.lines.find((l) => l.includes("late cost"))!, /estimated_points=140/);
});

Deno.test("RequestContext.lateCost replaces nothing the log line did not report", () => {
  const late: [number, number | null][] = [];
  // The client left while the cost was settled: the estimate came after the line was written.
  const { ctx } = context(late);
  ctx.end(499);
  ctx.fields.points = 140;
  ctx.fields.points_estimated = true;
  ctx.lateCost(26);
  // A real cost known at the end is no estimate either.
  const { ctx: real } = context(late);
  real.fields.points = 26;
  real.fields.points_estimated = false;
  real.end(200);
  real.lateCost(26);
  assert.deepEqual(late, [[26, null], [26, null]]);
});

Deno.test("RequestContext.atEnd runs once at the end, before the log line; at once after it", () => {
  const calls: string[] = [];
  const logger = memoryLogger();
  const ctx = new RequestContext({
    id: "r2",
    client: "127.0.0.1",
    method: "POST",
    path: "/v1/chat/completions",
    logger,
    onEnd: () => calls.push("onEnd"),
  });
  ctx.atEnd(() => calls.push(`first ${logger.lines.length}`));
  ctx.atEnd(() => calls.push("second"));
  assert.equal(calls.length, 0);
  ctx.end(200);
  ctx.end(500);
  assert.deepEqual([...calls], ["first 0", "second", "onEnd"]);
  ctx.atEnd(() => calls.push("late"));
  assert.deepEqual(calls, ["first 0", "second", "onEnd", "late"]);
});

Deno.test("requestIdFrom echoes a sane client id, else makes one: a key sent as the id is not kept", () => {
  const same = (text: string) => text;
  const headers = (id: string) => new Headers({ "x-request-id": id });
  assert.equal(requestIdFrom(headers("run-42.a:b@c"), same), "run-42.a:b@c");
  const hideKey = (text: string) => text.replaceAll("sk-secret-123", "(hidden)");
  assert.match(requestIdFrom(headers("sk-secret-123"), hideKey), /^[0-9a-f-]{36}$/);
  assert.match(requestIdFrom(headers("has space"), same), /^[0-9a-f-]{36}$/);
  assert.match(requestIdFrom(new Headers(), same), /^[0-9a-f-]{36}$/);
});
