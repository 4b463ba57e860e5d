import assert from "node:assert/strict";
import type { FoundCost } from "../lib/cost_settler.ts";
import { setup } from "./scripted_history.ts";

Deno.test("CostTracker looks at once when an answer ends: one fetch, no delay, no timer left after", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const startedAt = clock.now();
  await clock.advance(500);
  history.add("GPT-4o", 339);
  const found: FoundCost[] = [];
  const result = tracker.attribute({
    model: "gpt-4o",
    startedAt,
    waitMs: 1500,
    onFound: (c) => found.push(c),
  });
  await clock.advance(0);
  const cost = await result;
  assert.equal(cost?.points, 339);
  assert.equal(cost?.afterMs, 0);
  assert.equal(found.length, 1);
  assert.equal(history.calls, 1);
  assert.equal(tracker.pending, 0);
  // The shared wait timer fires once, for nothing; no fetch follows and no timer is left.
  await clock.advance(1500);
  assert.equal(history.calls, 1);
  assert.equal(clock.timers, 0);
});

Deno.test("CostTracker: an entry not there at the first look is found by the next poll", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const startedAt = clock.now();
  await clock.advance(500);
  history.add("GPT-4o", 339, { delayMs: 100 });
  const result = tracker.attribute({ model: "gpt-4o", startedAt, waitMs: 1500 });
  await clock.advance(0);
  assert.equal(history.calls, 1);
  await clock.advance(400);
  const cost = await result;
  assert.equal(cost?.points, 339);
  assert.equal(cost?.afterMs, 400);
  assert.equal(history.calls, 2);
  await clock.advance(1500);
  assert.equal(history.calls, 2);
  assert.equal(clock.timers, 0);
});

Deno.test("CostTracker: one history fetch serves every answer waiting at that moment", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  const results: Promise<FoundCost | null>[] = [];
  await clock.advance(10);
  // Forty answers end in the same turn of the event loop.
  for (let i = 0; i < 40; i++) {
    const model = i % 2 ? "GPT-4o" : "Gemini-2.5-Pro";
    history.add(model, 100 + i, { tokens: [i, 1] });
    results.push(
      tracker.attribute({
        model,
        startedAt: start,
        tokens: { prompt: i, completion: 1 },
        waitMs: 1500,
      }),
    );
  }
  await clock.advance(0);
  const costs = await Promise.all(results);
  assert.deepEqual(costs.map((c) => c?.points), results.map((_, i) => 100 + i));
  assert.equal(history.calls, 1);
});

Deno.test("CostTracker: answers ending while a fetch is in flight share the next one (trailing edge)", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.latencyMs = 30;
  const start = clock.now();
  const results: Promise<FoundCost | null>[] = [];
  for (let i = 0; i < 10; i++) {
    history.add("GPT-4o", 100 + i, { tokens: [i, 1] });
    results.push(
      tracker.attribute({
        model: "GPT-4o",
        startedAt: start,
        tokens: { prompt: i, completion: 1 },
        waitMs: 1500,
      }),
    );
    await clock.advance(2);
  }
  await clock.advance(100);
  const costs = await Promise.all(results);
  assert.deepEqual(costs.map((c) => c?.points), results.map((_, i) => 100 + i));
  // The first answer's fetch at once; the nine that ended during it share the second.
  assert.equal(history.calls, 2);
  // The first waits one round trip; the last ended at 18 ms, its fetch ran from 30 to 60 ms.
  assert.equal(costs[0]?.afterMs, 30);
  assert.equal(costs[9]?.afterMs, 60 - 18);
});

Deno.test("CostTracker under load spaces its fetches, and stops doing so once load ends", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.latencyMs = 1;
  // Answers end every 2 ms, each after a 60 ms request: about 30 requests at once.
  const results: Promise<FoundCost | null>[] = [];
  for (let i = 0; i < 100; i++) {
    history.add("GPT-4o", 100 + i, { tokens: [i, 1] });
    results.push(
      tracker.attribute({
        model: "GPT-4o",
        startedAt: clock.now() - 60,
        tokens: { prompt: i, completion: 1 },
        waitMs: 1500,
      }),
    );
    await clock.advance(2);
  }
  assert.ok(tracker.batchMs > 0);
  await clock.advance(100);
  const costs = await Promise.all(results);
  assert.deepEqual(costs.map((c) => c?.points), results.map((_, i) => 100 + i));
  // At most 20 ms apart (maxBatchMs): about ten answers a fetch.
  assert.ok(history.calls <= 100 / 8, `${history.calls} fetches for 100 answers`);
  assert.ok(costs.every((c) => c!.afterMs <= 20 + 1), "no answer held past the batch window");
  // Load is over: a lone answer a second later is looked for at once.
  await clock.advance(1000);
  assert.equal(tracker.batchMs, 0);
  const before = history.calls;
  history.add("GPT-4o", 7);
  const lone = tracker.attribute({ model: "GPT-4o", startedAt: clock.now() - 60, waitMs: 1500 });
  await clock.advance(1);
  assert.equal((await lone)?.afterMs, 1);
  assert.equal(history.calls, before + 1);
});

Deno.test("CostTracker: an answer watched in the background reads deeper only now and then", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // An answer whose entry never comes (looked for first after its 50 ms), then 150 newer entries
  // of another model.
  tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 0 });
  await clock.advance(50);
  for (let i = 0; i < 150; i++) history.add("Claude-Haiku-4.5", 1);
  await clock.advance(10);
  history.add("Claude-Haiku-4.5", 9, { tokens: [5, 5] });
  const calls = history.calls;
  const cost = tracker.attribute({
    model: "Claude-Haiku-4.5",
    startedAt: clock.now(),
    tokens: { prompt: 5, completion: 5 },
    waitMs: 1500,
  });
  await clock.advance(0);
  assert.equal((await cost)?.points, 9);
  assert.equal(history.calls, calls + 1, "one page: the watched answer did not page deeper");
  // Its background poll, 2 s later, reads every page.
  await clock.advance(2_000);
  assert.equal(history.calls, calls + 1 + 3);
});

Deno.test("CostTracker: a failing history never holds answers, and goes quiet after 3 failures", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.fail = true;
  let result: FoundCost | null | undefined;
  tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 1500 })
    .then((r) => result = r);
  await clock.advance(200);
  assert.equal(result, null, "released at the failed fetch, not at the 1.5 s deadline");
  await clock.advance(10_000);
  assert.ok(history.calls >= 3);
  // Now quiet: new answers resolve at once and do not each trigger a fetch.
  const calls = history.calls;
  const quick = await Promise.all(
    Array.from(
      { length: 10 },
      () => tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 1500 }),
    ),
  );
  assert.deepEqual(quick, Array(10).fill(null));
  await clock.advance(1_000);
  assert.equal(history.calls, calls);
  // Recovery: the retry after the pause finds the watched answers' costs.
  history.fail = false;
  history.add("GPT-4o", 9);
  await clock.advance(60_000);
  assert.ok(history.calls > calls);
  assert.ok(tracker.pending < 11);
});
