/** @module Reading the end of bodies in the background, within bounds of time and size. */
import assert from "node:assert/strict";
import { BodyDrains } from "../lib/body_drain.ts";
import { ManualClock } from "./manual_clock.ts";

/** A body of `chunks` reads of `size` bytes (endless without `chunks`), and what became of it. */
function body(size: number, chunks = Infinity) {
  const seen = { read: 0, ended: false, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (seen.read >= chunks) {
        seen.ended = true;
        return c.close();
      }
      seen.read++;
      c.enqueue(new Uint8Array(size));
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  return { stream, seen };
}

/** A body that sends nothing until it is cancelled. */
function silent() {
  const seen = { cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull: () => new Promise<void>(() => {}),
    cancel() {
      seen.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, seen };
}

Deno.test("BodyDrains reads a body to its end, in the background, and lets it go", async () => {
  const clock = new ManualClock();
  using drains = new BodyDrains({ timers: clock, now: clock.now });
  const { stream, seen } = body(1024, 8);
  drains.drain(stream);
  assert.equal(drains.size, 1);
  await clock.settle();
  assert.deepEqual(seen, { read: 8, ended: true, cancelled: false });
  assert.equal(drains.size, 0);
});

Deno.test("BodyDrains cancels a body with more than maxBytes left", async () => {
  const clock = new ManualClock();
  using drains = new BodyDrains({ maxBytes: 4096, timers: clock, now: clock.now });
  const { stream, seen } = body(1024);
  drains.drain(stream);
  await clock.settle();
  assert.equal(seen.cancelled, true);
  assert.ok(seen.read <= 6, `${seen.read} reads`);
  assert.equal(drains.size, 0);
});

Deno.test("BodyDrains cancels a body not over within ms, and only then", async () => {
  const clock = new ManualClock();
  using drains = new BodyDrains({ ms: 2000, timers: clock, now: clock.now });
  const { stream, seen } = silent();
  drains.drain(stream);
  await clock.advance(1999);
  assert.equal(seen.cancelled, false);
  await clock.advance(1);
  assert.equal(seen.cancelled, true);
  assert.equal(drains.size, 0);
});

Deno.test("BodyDrains.close cancels the bodies being read, and any given later at once", async () => {
  const clock = new ManualClock();
  const drains = new BodyDrains({ timers: clock, now: clock.now });
  const first = silent();
  drains.drain(first.stream);
  await clock.settle();
  drains.close();
  assert.equal(first.seen.cancelled, true);
  assert.equal(drains.size, 0);
  assert.equal(clock.timers, 0);
  const later = silent();
  drains.drain(later.stream);
  await clock.settle();
  assert.equal(later.seen.cancelled, true);
  assert.equal(drains.size, 0);
});
