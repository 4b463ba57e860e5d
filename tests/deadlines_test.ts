import assert from "node:assert/strict";
import { Deadlines } from "../lib/deadlines.ts";
import { ManualClock } from "./manual_clock.ts";

function setup(ms: number) {
  const clock = new ManualClock();
  const deadlines = new Deadlines(ms, { timers: clock, now: clock.now });
  const fired: string[] = [];
  const at = (name: string) => () => fired.push(`${name}@${clock.now() - start}`);
  const start = clock.now();
  return { clock, deadlines, fired, at };
}

Deno.test("each deadline fires exactly its length after it was set, in order, on one timer", async () => {
  const { clock, deadlines, fired, at } = setup(100);
  deadlines.add(at("a"));
  await clock.advance(30);
  deadlines.add(at("b"));
  deadlines.add(at("c"));
  assert.deepEqual(clock.timers, 1);
  assert.deepEqual(deadlines.pending, 3);
  await clock.advance(69);
  assert.deepEqual(fired, []);
  await clock.advance(1);
  assert.deepEqual(fired, ["a@100"]);
  await clock.advance(30);
  assert.deepEqual(fired, ["a@100", "b@130", "c@130"]);
  assert.deepEqual(deadlines.pending, 0);
  assert.deepEqual(clock.timers, 0);
});

Deno.test("cancelled deadlines never fire; the timer is re-armed for the next live one", async () => {
  const { clock, deadlines, fired, at } = setup(100);
  const a = deadlines.add(at("a"));
  await clock.advance(10);
  deadlines.add(at("b"));
  a.cancel();
  a.cancel();
  assert.deepEqual(deadlines.pending, 1);
  await clock.advance(200);
  assert.deepEqual(fired, ["b@110"]);
});

Deno.test("after the last deadline is cancelled the timer fires once for nothing, then stops", async () => {
  const { clock, deadlines, fired, at } = setup(5_000);
  const a = deadlines.add(at("a"));
  const b = deadlines.add(at("b"));
  a.cancel();
  b.cancel();
  assert.deepEqual(deadlines.pending, 0);
  assert.deepEqual(clock.timers, 1);
  // A new deadline in the meantime needs no timer of its own.
  await clock.advance(1_000);
  deadlines.add(at("c"));
  assert.deepEqual(clock.timers, 1);
  await clock.advance(4_000);
  assert.deepEqual(clock.timers, 1);
  await clock.advance(1_000);
  assert.deepEqual(fired, ["c@6000"]);
  assert.deepEqual(clock.timers, 0);
  deadlines.add(at("d")).cancel();
  deadlines.clear();
  assert.deepEqual(clock.timers, 0);
});

Deno.test("a long deadline under many short requests keeps its queue small", async () => {
  const { clock, deadlines, fired, at } = setup(300_000);
  const keep = deadlines.add(at("kept"));
  let largest = 0;
  for (let i = 0; i < 100_000; i++) {
    deadlines.add(at(`x${i}`)).cancel();
    largest = Math.max(largest, deadlines.size);
    if (i % 10_000 === 0) await clock.advance(1);
  }
  assert.ok(largest <= 2048, `the queue held ${largest} entries`);
  assert.deepEqual(deadlines.pending, 1);
  await clock.advance(300_000);
  assert.deepEqual(fired, ["kept@300000"]);
  keep.cancel();
  deadlines.clear();
});

Deno.test("cancelled deadlines at the end of the queue are let go at once", async () => {
  const { clock, deadlines, fired, at } = setup(60_000);
  const kept = deadlines.add(at("kept"));
  for (let i = 0; i < 1_000; i++) deadlines.add(at(`x${i}`)).cancel();
  assert.deepEqual(deadlines.size, 1);
  const a = deadlines.add(at("a"));
  const b = deadlines.add(at("b"));
  a.cancel();
  // `a` is not last: it waits for `b`, then both go.
  assert.deepEqual(deadlines.size, 3);
  b.cancel();
  assert.deepEqual(deadlines.size, 1);
  assert.deepEqual(deadlines.pending, 1);
  await clock.advance(60_000);
  assert.deepEqual(fired, ["kept@60000"]);
  kept.cancel();
  deadlines.add(at("c")).cancel();
  assert.deepEqual(deadlines.size, 0);
  deadlines.clear();
});

Deno.test("a deadline may set or cancel others while firing", async () => {
  const { clock, deadlines, fired, at } = setup(50);
  let later: { cancel(): void } | null = null;
  deadlines.add(() => {
    fired.push("first");
    deadlines.add(at("again"));
    later?.cancel();
  });
  later = deadlines.add(at("never"));
  await clock.advance(50);
  await clock.advance(50);
  assert.deepEqual(fired, ["first", "again@100"]);
  deadlines.clear();
  assert.deepEqual(clock.timers, 0);
});

Deno.test("real timers: a deadline fires, and clear() leaves nothing for the sanitizer", async () => {
  const deadlines = new Deadlines(10);
  const { promise, resolve } = Promise.withResolvers<number>();
  const started = performance.now();
  deadlines.add(() => resolve(performance.now() - started));
  const late = deadlines.add(() => {
    throw new Error("cancelled deadline fired");
  });
  late.cancel();
  assert.deepEqual((await promise) >= 9, true);
  deadlines.add(() => {}).cancel();
  deadlines.clear();
  deadlines.add(() => {});
  deadlines.clear();
});

/** Timers that run synchronously when told: enough for one Deadlines, fast for 10^5 steps. */
function syncClock() {
  let now = 0;
  let timers: { id: number; at: number; fn: () => void }[] = [];
  let next = 1;
  return {
    now: () => now,
    setTimeout(fn: () => void, ms: number): unknown {
      timers.push({ id: next, at: now + ms, fn });
      return next++;
    },
    clearTimeout(id: unknown): void {
      timers = timers.filter((t) => t.id !== id);
    },
    advance(ms: number): void {
      const end = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const due = timers[0];
        if (!due || due.at > end) break;
        timers.shift();
        now = due.at;
        due.fn();
      }
      now = end;
    },
  };
}

Deno.test("deadlines that all fire, under a load that never lets the queue empty, do not pile up", () => {
  const clock = syncClock();
  const deadlines = new Deadlines(100, { timers: clock, now: clock.now });
  let fired = 0;
  let largest = 0;
  for (let i = 0; i < 100_000; i++) {
    deadlines.add(() => fired++);
    if (i % 10 === 9) clock.advance(1);
    largest = Math.max(largest, deadlines.size);
  }
  assert.ok(fired > 98_000, `${fired} fired`);
  // About 1,000 are pending at any time (100 ms of them); fired ones are let go.
  assert.ok(largest <= 3_000, `the queue held ${largest} entries`);
  deadlines.clear();
});
