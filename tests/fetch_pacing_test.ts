import assert from "node:assert/strict";
import { FetchPacing } from "../lib/fetch_pacing.ts";

/** A clock that moves only when told. */
class Clock {
  t = 1_000_000;
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function pacing(options: { firstFetchMs?: number; maxBatchMs?: number } = {}) {
  const clock = new Clock();
  const p = new FetchPacing({
    firstFetchMs: options.firstFetchMs ?? 0,
    maxBatchMs: options.maxBatchMs ?? 20,
    now: clock.now,
  });
  return { clock, p };
}

/** `count` answers ending `gapMs` apart, each after a request of `spanMs`. */
function load(clock: Clock, p: FetchPacing, count: number, gapMs: number, spanMs: number) {
  for (let i = 0; i < count; i++) {
    p.observe(clock.now(), clock.now() - spanMs);
    clock.advance(gapMs);
  }
}

Deno.test("FetchPacing.expectedMs is firstFetchMs until lateness is learned, then 80% of its average", () => {
  const { p } = pacing({ firstFetchMs: 10 });
  assert.equal(p.expectedMs, 10);
  p.learnLateness(1000);
  assert.equal(p.expectedMs, 800);
  // A moving average: 0.7 * 1000 + 0.3 * 0.
  p.learnLateness(0);
  assert.equal(p.expectedMs, 560);
  // Never below firstFetchMs.
  for (let i = 0; i < 30; i++) p.learnLateness(0);
  assert.equal(p.expectedMs, 10);
});

Deno.test("FetchPacing.batchMs is 0 before two answers and with few requests at once", () => {
  const { clock, p } = pacing();
  assert.equal(p.batchMs(), 0);
  p.observe(clock.now(), clock.now() - 60);
  assert.equal(p.batchMs(), 0, "one answer gives no time between answers");
  // 60 ms requests ending every 20 ms: about 3 at once, below the batching threshold.
  load(clock, p, 20, 20, 60);
  assert.equal(p.batchMs(), 0);
});

Deno.test("FetchPacing.batchMs under load: half a request's duration, less past 16 answers, at most maxBatchMs", () => {
  // 20 ms requests ending every 2 ms: about 10 at once, so half their duration.
  const a = pacing({ maxBatchMs: 100 });
  load(a.clock, a.p, 50, 2, 20);
  assert.ok(Math.abs(a.p.batchMs() - 10) < 0.5, `${a.p.batchMs()}`);
  // 200 ms requests ending every 2 ms: about 100 at once; a fetch aims at 16 answers of them.
  const b = pacing({ maxBatchMs: 100 });
  load(b.clock, b.p, 50, 2, 200);
  assert.ok(Math.abs(b.p.batchMs() - 32) < 1, `${b.p.batchMs()}`);
  // Capped by maxBatchMs.
  const c = pacing({ maxBatchMs: 5 });
  load(c.clock, c.p, 50, 2, 200);
  assert.equal(c.p.batchMs(), 5);
});

Deno.test("FetchPacing.batchMs drops to 0 once load stops, and is off with maxBatchMs 0 or less", () => {
  const { clock, p } = pacing();
  load(clock, p, 50, 2, 60);
  assert.ok(p.batchMs() > 0);
  clock.advance(1000);
  assert.equal(p.batchMs(), 0, "the time since the last answer counts as a gap");
  const off = pacing({ maxBatchMs: 0 });
  load(off.clock, off.p, 50, 2, 60);
  assert.equal(off.p.batchMs(), 0);
  // A negative maximum turns it off too, rather than bringing fetches forward.
  const negative = pacing({ maxBatchMs: -5 });
  load(negative.clock, negative.p, 50, 2, 60);
  assert.equal(negative.p.batchMs(), 0);
});
