/** @module BodyBudget: shares of the large bodies' memory, first come first served, on a manual clock. */
import assert from "node:assert/strict";
import {
  BodyBudget,
  type BodyLease,
  KEPT_PER_BODY_BYTE,
  MEMORY_PER_BODY_BYTE,
} from "../lib/body_budget.ts";
import { Deadlines } from "../lib/deadlines.ts";
import { ProxyError } from "../lib/errors.ts";
import { ManualClock } from "./manual_clock.ts";

const MB = 2 ** 20;

/** A budget for `bodies` bodies of 1 MB at once, whose waits last 30 s on a manual clock. */
function setup(bodies: number) {
  const clock = new ManualClock();
  const deadlines = new Deadlines(30_000, { timers: clock, now: clock.now });
  const budget = new BodyBudget(bodies * MB * MEMORY_PER_BODY_BYTE, deadlines);
  return { clock, budget };
}

/** Where a promise stands, after the microtasks before it ran. */
async function state<T>(p: Promise<T>): Promise<"pending" | "resolved" | "rejected"> {
  let s: "pending" | "resolved" | "rejected" = "pending";
  p.then(() => s = "resolved", () => s = "rejected");
  await new Promise((r) => setTimeout(r, 0));
  return s;
}

Deno.test("BodyBudget: a share that fits is taken at once, counted, and given back once", async () => {
  const { budget } = setup(2);
  const a = await budget.take(MB);
  assert.equal(budget.held, MB * MEMORY_PER_BODY_BYTE);
  assert.equal(a.waitedMs, 0);
  const b = await budget.take(MB);
  assert.equal(budget.held, 2 * MB * MEMORY_PER_BODY_BYTE);
  a.release();
  a.release();
  assert.equal(budget.held, MB * MEMORY_PER_BODY_BYTE);
  b.release();
  assert.deepEqual([budget.held, budget.waiting], [0, 0]);
});

Deno.test("BodyBudget: bodies beyond it wait in order of arrival; a small one does not pass a large one", async () => {
  const { budget } = setup(2);
  const first = await budget.take(MB);
  const large = budget.take(2 * MB);
  // It would fit now, but the large body came first.
  const small = budget.take(MB);
  assert.equal(budget.waiting, 2);
  assert.equal(await state(large), "pending");
  assert.equal(await state(small), "pending");
  first.release();
  const l = await large;
  assert.equal(await state(small), "pending");
  l.release();
  (await small).release();
  assert.deepEqual([budget.held, budget.waiting], [0, 0]);
});

Deno.test("BodyBudget: a body larger than the whole budget is counted as all of it and runs alone", async () => {
  const { budget } = setup(2);
  const huge = await budget.take(100 * MB);
  assert.equal(budget.held, budget.bytes);
  const next = budget.take(MB);
  assert.equal(await state(next), "pending");
  huge.release();
  (await next).release();
  assert.equal(budget.held, 0);
});

Deno.test("BodyBudget: a wait past the deadline is a 503 server_busy with Retry-After; those behind move up", async () => {
  const { clock, budget } = setup(2);
  const first = await budget.take(MB);
  const large = budget.take(2 * MB);
  const small = budget.take(MB);
  await clock.advance(29_999);
  assert.equal(await state(large), "pending");
  await clock.advance(1);
  const err = await large.then(() => null, (e) => e);
  assert.ok(err instanceof ProxyError);
  assert.equal(err.status, 503);
  assert.equal(err.type, "server_error");
  assert.equal(err.code, "server_busy");
  assert.equal(err.headers["retry-after"], "30");
  assert.match(err.message, /MAX_BODY_MEMORY_MB/);
  // The large one gone, the small one behind it fits.
  const s = await small;
  assert.equal(budget.waiting, 0);
  first.release();
  s.release();
  assert.equal(budget.held, 0);
  assert.equal(clock.timers, 0, "no deadline left armed");
});

Deno.test("BodyBudget: a waiter whose signal aborts leaves at once, and those behind move up", async () => {
  const { clock, budget } = setup(2);
  const first = await budget.take(MB);
  const gone = new AbortController();
  const large = budget.take(2 * MB, gone.signal);
  const small = budget.take(MB);
  const why = new Error("client gone");
  gone.abort(why);
  assert.equal(await large.then(() => null, (e) => e), why);
  const s = await small;
  assert.equal(budget.waiting, 0);
  first.release();
  s.release();
  assert.equal(budget.held, 0);
  await clock.advance(30_000);
  assert.equal(budget.held, 0);
  // Aborted before it asks, a body that would wait is refused at once.
  const blocker = await budget.take(2 * MB);
  await assert.rejects(budget.take(MB, AbortSignal.abort(why)), (e) => e === why);
  assert.equal(budget.waiting, 0);
  blocker.release();
});

Deno.test("BodyBudget: resize counts a body at its real size, shrink at what its request keeps", async () => {
  const { budget } = setup(4);
  // A chunked body counted at the largest it could be, then at its size once read.
  const lease: BodyLease = await budget.take(4 * MB);
  const waiter = budget.take(2 * MB);
  assert.equal(await state(waiter), "pending");
  lease.resize(MB);
  assert.equal(budget.held, MB * MEMORY_PER_BODY_BYTE + 2 * MB * MEMORY_PER_BODY_BYTE);
  const w = await waiter;
  // Poe has it: only what the request keeps counts, and a later resize does not grow it again.
  lease.shrink();
  lease.resize(4 * MB);
  assert.equal(budget.held, MB * KEPT_PER_BODY_BYTE + 2 * MB * MEMORY_PER_BODY_BYTE);
  lease.release();
  lease.shrink();
  w.release();
  assert.equal(budget.held, 0);
});
