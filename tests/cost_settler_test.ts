import assert from "node:assert/strict";
import type { FoundCost } from "../lib/cost_settler.ts";
import { setup } from "./scripted_history.ts";

Deno.test("CostTracker treats cost_points 0 as not final and keeps the entry for its answer", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const a = clock.now();
  history.add("Claude-Sonnet-4.6", 800, { zeroMs: 2500 });
  const foundA: FoundCost[] = [];
  const first = tracker.attribute({
    model: "claude-sonnet-4.6",
    startedAt: a,
    waitMs: 1500,
    onFound: (c) => foundA.push(c),
  });
  await clock.advance(1500);
  assert.equal(await first, null);
  // A second answer of the same model ends meanwhile; its entry lands final at once.
  await clock.advance(100);
  const b = clock.now() - 50;
  history.add("Claude-Sonnet-4.6", 90);
  const second = tracker.attribute({ model: "Claude-Sonnet-4.6", startedAt: b, waitMs: 1500 });
  await clock.advance(1500);
  assert.equal((await second)?.points, 90);
  await clock.advance(5000);
  assert.deepEqual(foundA.map((c) => c.points), [800]);
});

Deno.test("CostTracker learns its key name from token matches only, never from an entry paired by order", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // Three answers without token counts, each alone, take another app's entries by order.
  for (let i = 0; i < 3; i++) {
    const start = clock.now();
    await clock.advance(10);
    history.add("GPT-4o", 100 + i, { key: "other-app" });
    const found = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
    await clock.advance(300);
    assert.equal((await found)?.points, 100 + i);
    await clock.advance(1000);
  }
  // Had "other-app" been learnt as this proxy's key, its own entry would be passed over now.
  const start = clock.now();
  await clock.advance(10);
  history.add("GPT-4o", 7, { key: "mine" });
  const mine = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(300);
  assert.equal((await mine)?.points, 7);
});

Deno.test("CostTracker prefers the entry whose token breakdown matches the answer", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(10);
  // Poe logged B's answer first, but the proxy saw A end first.
  history.add("GPT-4o", 310, { tokens: [200, 100] });
  history.add("GPT-4o", 40, { tokens: [20, 10] });
  const a = tracker.attribute({
    model: "GPT-4o",
    startedAt: start,
    tokens: { prompt: 20, completion: 10 },
    waitMs: 1500,
  });
  const b = tracker.attribute({
    model: "GPT-4o",
    startedAt: start,
    tokens: { prompt: 200, completion: 100 },
    waitMs: 1500,
  });
  await clock.advance(200);
  assert.deepEqual([(await a)?.points, (await b)?.points], [40, 310]);
});

Deno.test("CostTracker learns how late costs land: no pointless waits, no wasted early fetches", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // Poe takes 3 s to log each answer.
  const answer = async () => {
    const start = clock.now();
    history.add("GPT-4o", 42, { delayMs: 3000 });
    const t0 = clock.now();
    let at = -1;
    const found: FoundCost[] = [];
    tracker.attribute({
      model: "GPT-4o",
      startedAt: start - 1,
      waitMs: 1500,
      onFound: (c) => found.push(c),
    }).then(() => at = clock.now() - t0);
    await clock.advance(0);
    const before = history.calls;
    await clock.advance(15_000);
    return { heldMs: at, calls: history.calls - before, found: found.length };
  };
  const first = await answer();
  assert.equal(first.heldMs, 1500);
  assert.equal(first.found, 1);
  const later = [await answer(), await answer(), await answer()];
  for (const a of later) {
    assert.equal(a.heldMs, 0, "an answer is not held for a cost that never comes in time");
    assert.equal(a.found, 1);
    assert.ok(a.calls <= 2, `${a.calls} calls`);
  }
});

Deno.test("CostTracker with a configured key name never takes another app's entry for an answer without token counts", async () => {
  for (const keyName of [undefined, "mine"]) {
    const { clock, history, tracker } = setup({ keyName });
    await using _ = tracker;
    const start = clock.now();
    await clock.advance(10);
    // Another app's answer on the same model is billed as this one ends; this one's lands later.
    history.add("GPT-4o", 5000, { key: "other-app" });
    history.add("GPT-4o", 7, { key: "mine", delayMs: 500 });
    const found: number[] = [];
    void tracker.attribute({
      model: "GPT-4o",
      startedAt: start,
      waitMs: 1500,
      onFound: (c) => found.push(c.points),
    });
    await clock.advance(2000);
    // Learnt from nothing (no token counts), the other app's entry is taken by order.
    assert.deepEqual(found, keyName ? [7] : [5000], `keyName ${keyName}`);
  }
});

Deno.test("CostTracker warns once when token matches show the configured key name is not this key's", async () => {
  const { clock, history, tracker, logs } = setup({ keyName: "typo" });
  await using _ = tracker;
  const results: Promise<FoundCost | null>[] = [];
  for (let i = 0; i < 4; i++) {
    const start = clock.now();
    await clock.advance(10);
    history.add("GPT-4o", 20 + i, { key: "my-key", tokens: [i, 10] });
    results.push(tracker.attribute({
      model: "GPT-4o",
      startedAt: start,
      tokens: { prompt: i, completion: 10 },
      waitMs: 1500,
    }));
    await clock.advance(2000);
  }
  await clock.advance(10_000);
  // Their entries are another key's as far as the setting says: not taken, estimates kept.
  assert.deepEqual(await Promise.all(results), [null, null, null, null]);
  const warnings = logs.filter((l) => l.includes("POE_API_KEY_NAME does not match"));
  assert.equal(warnings.length, 1, logs.join("\n"));
  assert.match(warnings[0], /configured=typo/);
  assert.match(warnings[0], /seen=my-key/);
});

Deno.test("CostTracker: Poe's clock 5 s behind, its entry stamped before the request started is found, its time told in ours", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.clockOffsetMs = -5_000;
  const start = clock.now();
  await clock.advance(10);
  // Stamped by Poe 10 ms after the start, its clock 5 s behind: 4.99 s before it by this one.
  history.add("GPT-4o", 339, { createdAt: start + 10 - 5_000 });
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(200);
  const found = await cost;
  assert.equal(found?.points, 339);
  assert.equal(found?.createdAt, start + 10);
});

Deno.test("CostTracker: Poe's clock 5 s ahead, an entry stamped 3 s before the request started (by Poe's clock) is not its own", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.clockOffsetMs = 5_000;
  const start = clock.now();
  // An entry of an answer before this one (or another app's), and this answer's.
  history.add("GPT-4o", 5_000, { createdAt: start + 5_000 - 3_000 });
  await clock.advance(10);
  history.add("GPT-4o", 339, { createdAt: start + 10 + 5_000 });
  // Without token counts, by order: the older entry counted as its own would make two for one.
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(200);
  const found = await cost;
  assert.equal(found?.points, 339);
  assert.equal(found?.createdAt, start + 10);
});

Deno.test("CostTracker: a clock offset under 1.5 s is reading noise, not allowed for", async () => {
  for (const offset of [1_400, -1_400]) {
    const { clock, history, tracker } = setup();
    await using _ = tracker;
    history.clockOffsetMs = offset;
    const start = clock.now();
    // Stamped 800 ms before the start on a clock that is in fact the same: within the skew.
    history.add("GPT-4o", 77, { createdAt: start - 800 });
    const cost = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
    await clock.advance(200);
    const found = await cost;
    assert.equal(found?.points, 77, `offset ${offset}`);
    assert.equal(found?.createdAt, start - 800, `offset ${offset}`);
  }
});
