import assert from "node:assert/strict";
import type { FoundCost } from "../lib/cost_settler.ts";
import { setup } from "./scripted_history.ts";

Deno.test("CostTracker reads further pages when more than 100 entries are newer than a waiter", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(1);
  history.add("GPT-4o", 7);
  await clock.advance(1);
  for (let i = 0; i < 150; i++) history.add("Claude-Haiku-4.5", 1);
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(0);
  assert.equal((await cost)?.points, 7);
  // One fetch: a first page of 12 (one answer waits), then pages of 100.
  assert.equal(history.calls, 3);
});

Deno.test("CostTracker: an older answer whose entry is past the first page does not take a newer one's", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(1);
  history.add("GPT-4o", 7);
  // Answers of others, logged later, that the proxy has not seen end yet.
  for (let i = 0; i < 25; i++) {
    await clock.advance(1);
    history.add("GPT-4o", 1000 + i, { tokens: [i, 2] });
  }
  const result: { cost?: FoundCost | null } = {};
  tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 })
    .then((c) => result.cost = c);
  await clock.advance(0);
  assert.equal(history.calls, 2, "a short first page, then one more to reach its start");
  assert.equal("cost" in result, false, "26 entries for one answer: none is surely its own");
  // They end: each takes its own by its token counts, which leaves the first answer its own.
  for (let i = 0; i < 25; i++) {
    tracker.attribute({
      model: "GPT-4o",
      startedAt: start + 1,
      tokens: { prompt: i, completion: 2 },
      waitMs: 1500,
    });
  }
  await clock.advance(50);
  assert.equal(result.cost?.points, 7);
});

Deno.test("CostTracker: a burst of 400 answers with the same tokens is served by one fetch", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(1);
  const results: Promise<FoundCost | null>[] = [];
  for (let i = 0; i < 400; i++) {
    history.add("GPT-4o", 22, { tokens: [7, 5] });
    results.push(
      tracker.attribute({
        model: "GPT-4o",
        startedAt: start,
        tokens: { prompt: 7, completion: 5 },
        waitMs: 1500,
      }),
    );
  }
  await clock.advance(0);
  const costs = await Promise.all(results);
  assert.ok(costs.every((c) => c?.points === 22 && c.afterMs === 0));
  assert.equal(new Set(costs.map((c) => c!.queryId)).size, 400);
  assert.ok(history.calls <= 5, `${history.calls} calls`);
});

Deno.test("CostTracker: an answer held for its cost is looked for at once, and not deeper for those in their delay", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // Answers nobody waits for, found at their first look: they teach no lateness.
  for (let i = 0; i < 3; i++) {
    history.add("GPT-4o", 1);
    tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 0 });
    await clock.advance(60);
  }
  // One more in its delay, then 150 entries of another model, then an answer held for its cost.
  tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 0 });
  for (let i = 0; i < 150; i++) history.add("Claude-Haiku-4.5", 1);
  await clock.advance(5);
  history.add("Claude-Haiku-4.5", 9, { tokens: [5, 5] });
  const calls = history.calls;
  const cost = tracker.attribute({
    model: "Claude-Haiku-4.5",
    startedAt: clock.now(),
    tokens: { prompt: 5, completion: 5 },
    waitMs: 1500,
  });
  await clock.advance(0);
  assert.equal((await cost)?.points, 9, "found at once");
  assert.equal(history.calls, calls + 1, "one page: the answer in its delay is not due yet");
});
