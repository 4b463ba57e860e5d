import assert from "node:assert/strict";
import type { FoundCost } from "../lib/cost_settler.ts";
import { setup } from "./scripted_history.ts";

Deno.test("CostTracker: an answer watched in vain does not make later ones with the same tokens wait", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const tokens = { prompt: 7, completion: 5 };
  // Poe never logs this one (say, it was not billed).
  tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), tokens, waitMs: 0 });
  await clock.advance(5);
  for (let i = 0; i < 5; i++) {
    const startedAt = clock.now();
    await clock.advance(3);
    history.add("GPT-4o", 22, { tokens: [7, 5] });
    const cost = tracker.attribute({ model: "GPT-4o", startedAt, tokens, waitMs: 1500 });
    await clock.advance(0);
    assert.equal((await cost)?.afterMs, 0, `answer ${i} found at once`);
  }
  assert.equal(tracker.pending, 1);
});

Deno.test("CostTracker stops watching after watchMs and leaves no timer", async () => {
  const { clock, history, tracker } = setup({ watchMs: 20_000 });
  await using _ = tracker;
  const found: FoundCost[] = [];
  tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    waitMs: 0,
    onFound: (c) => found.push(c),
  });
  await clock.advance(60_000);
  assert.equal(tracker.pending, 0);
  assert.equal(clock.timers, 0);
  const calls = history.calls;
  assert.ok(calls >= 3 && calls <= 10, `${calls} calls`);
  history.add("GPT-4o", 5);
  await clock.advance(60_000);
  assert.equal(history.calls, calls);
  assert.equal(found.length, 0);
});

Deno.test("CostTracker survives history errors and retries while answers wait", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.fail = true;
  const start = clock.now();
  history.add("GPT-4o", 12);
  const found: FoundCost[] = [];
  const cost = tracker.attribute({
    model: "GPT-4o",
    startedAt: start - 1,
    waitMs: 1500,
    onFound: (c) => found.push(c),
  });
  await clock.advance(1500);
  assert.equal(await cost, null);
  history.fail = false;
  await clock.advance(5000);
  assert.deepEqual(found.map((c) => c.points), [12]);
});

Deno.test("CostTracker: an answer that ended after a read began is not paired by order in it", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // The read takes 300 ms; its page is what the history held when it was asked.
  history.latencyMs = 300;
  const found: Record<string, number> = {};
  const answer = (name: string, startedAt: number) =>
    tracker.attribute({
      model: "Claude-Sonnet-4.6",
      startedAt,
      waitMs: 0,
      onFound: (c) => found[name] = c.points,
    });
  // A ends at 50 with its entry there: its read is asked at 100.
  const aStart = clock.now();
  await clock.advance(40);
  history.add("Claude-Sonnet-4.6", 184);
  await clock.advance(10);
  answer("A", aStart);
  // B starts at 90; another app's entry lands at 95, in the page read at 100.
  await clock.advance(40);
  const bStart = clock.now();
  await clock.advance(5);
  history.add("Claude-Sonnet-4.6", 5000, { key: "other-app" });
  // B ends at 165, while that read is under way; its own entry is not in its page.
  await clock.advance(70);
  history.add("Claude-Sonnet-4.6", 150);
  answer("B", bStart);
  await clock.advance(10_000);
  // Two answers and two entries in the page: counted by order, B took the other app's 5,000.
  assert.notEqual(found.B, 5000, JSON.stringify(found));
});
