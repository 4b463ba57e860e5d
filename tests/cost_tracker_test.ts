import assert from "node:assert/strict";
import type { FoundCost } from "../lib/cost_settler.ts";
import { setup } from "./scripted_history.ts";

Deno.test("CostTracker gives up after waitMs, then reports the late cost through onFound", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const startedAt = clock.now();
  history.add("GPT-4o", 500, { delayMs: 3000 });
  const found: FoundCost[] = [];
  let result: FoundCost | null | undefined;
  tracker.attribute({ model: "GPT-4o", startedAt, waitMs: 1500, onFound: (c) => found.push(c) })
    .then((r) => result = r);
  await clock.advance(1499);
  assert.equal(result, undefined);
  await clock.advance(1);
  assert.equal(result, null);
  assert.equal(found.length, 0);
  const callsAtDeadline = history.calls;
  await clock.advance(10_000);
  assert.equal(found.length, 1);
  assert.equal(found[0].points, 500);
  assert.ok(found[0].afterMs >= 3000);
  // Background fetches are sparse, and end once nothing is watched.
  assert.ok(history.calls - callsAtDeadline <= 3, `${history.calls - callsAtDeadline} calls`);
  assert.equal(clock.timers, 0);
});

Deno.test("CostTracker pairs answers of one model in order of completion, each alone with its entry", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(10);
  history.add("GPT-4o", 111);
  const one = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(10);
  history.add("GPT-4o", 222);
  const two = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(300);
  assert.deepEqual([(await one)?.points, (await two)?.points], [111, 222]);
});

Deno.test("CostTracker: an answer with token counts still waits for its cost when one without them overlaps it", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(10);
  // One with token counts ends and waits; its entry lands 500 ms later.
  history.add("GPT-4o", 339, { delayMs: 500, tokens: [100, 50] });
  const counted = tracker.attribute({
    model: "GPT-4o",
    startedAt: start,
    tokens: { prompt: 100, completion: 50 },
    waitMs: 1500,
  });
  // One without, that ran at the same time, ends now: its tie is with answers like it only.
  await clock.advance(10);
  history.add("GPT-4o", 77, { delayMs: 500 });
  void tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(1000);
  assert.equal((await counted)?.points, 339);
});

Deno.test("CostTracker: answers without token counts that ran one after another are paired in order once both entries show", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // Poe shows the second answer's entry first.
  const first = clock.now();
  await clock.advance(10);
  history.add("GPT-4o", 111, { delayMs: 700 });
  const one = tracker.attribute({ model: "GPT-4o", startedAt: first, waitMs: 1500 });
  await clock.advance(10);
  const second = clock.now();
  await clock.advance(10);
  history.add("GPT-4o", 222, { delayMs: 300 });
  const two = tracker.attribute({ model: "GPT-4o", startedAt: second, waitMs: 1500 });
  await clock.advance(1400);
  assert.deepEqual([(await one)?.points, (await two)?.points], [111, 222]);
});

Deno.test("CostTracker: answers without token counts that overlapped get their estimates at once, and never each other's cost", async () => {
  const { clock, history, tracker } = setup({ watchMs: 20_000 });
  await using _ = tracker;
  const start = clock.now();
  await clock.advance(10);
  history.add("GPT-4o", 111);
  history.add("GPT-4o", 222);
  const found: number[] = [];
  const onFound = (c: FoundCost) => found.push(c.points);
  const one = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500, onFound });
  const two = tracker.attribute({ model: "GPT-4o", startedAt: start + 5, waitMs: 1500, onFound });
  // Not held for a cost that cannot be told apart, nor looked for: only the read the first one
  // started, before the second ended.
  assert.deepEqual([await one, await two], [null, null]);
  await clock.advance(60_000);
  assert.deepEqual(found, []);
  assert.equal(history.calls, 1);
  // Past their watch, they no longer stand in the way of a later answer's order pairing.
  const later = clock.now();
  history.add("GPT-4o", 333);
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: later, waitMs: 1500, onFound });
  await clock.advance(0);
  assert.equal((await cost)?.points, 333);
  assert.equal(tracker.pending, 0);
});

Deno.test("CostTracker: an answer whose client left takes no later answer's entry, and that answer keeps its estimate", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const left: number[] = [];
  tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    abandoned: true,
    waitMs: 0,
    onFound: (c) => left.push(c.points),
  });
  // Poe did not bill it. The next answer starts after the client left, without token counts.
  await clock.advance(300);
  const next = clock.now();
  await clock.advance(100);
  history.add("GPT-4o", 121);
  const found: number[] = [];
  const cost = tracker.attribute({
    model: "GPT-4o",
    startedAt: next,
    waitMs: 1500,
    onFound: (c) => found.push(c.points),
  });
  assert.equal(await cost, null, "an estimate at once: the entry may be the left answer's");
  await clock.advance(30_000);
  assert.deepEqual([left, found], [[], []]);
  // An answer with token counts is told apart by them, whatever other entry shows.
  history.add("GPT-4o", 33, { createdAt: next - 100 });
  const counted = clock.now();
  await clock.advance(100);
  history.add("GPT-4o", 44, { tokens: [30, 4] });
  const withTokens = tracker.attribute({
    model: "GPT-4o",
    startedAt: counted,
    tokens: { prompt: 30, completion: 4 },
    waitMs: 1500,
  });
  await clock.advance(0);
  assert.equal((await withTokens)?.points, 44);
});

Deno.test("CostTracker ignores older, other-model, non-API, refund and claimed entries", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.add("GPT-4o", 1);
  // Older than the 2 s allowed for clock skew: another request's.
  await clock.advance(2_100);
  const start = clock.now();
  await clock.advance(100);
  history.add("GPT-4o", 2, { type: "Chat" });
  history.add("Claude-Sonnet-4.6", 3);
  history.add("GPT-4o", -50);
  history.add("gpt-4O", 4);
  const first = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(200);
  assert.equal((await first)?.points, 4);
  const second = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1000 });
  await clock.advance(1000);
  assert.equal(await second, null);
});

Deno.test("CostTracker.close resolves waiting answers with null and clears its timers", async () => {
  const { clock, history, tracker } = setup();
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 1500 });
  assert.ok(clock.timers > 0);
  await tracker.close();
  assert.equal(await cost, null);
  assert.equal(clock.timers, 0);
  assert.equal(await tracker.attribute({ model: "x", startedAt: 0, waitMs: 100 }), null);
  assert.equal(history.calls, 0);
});

Deno.test("CostTracker allows for clock skew: an entry stamped just before the start is its own", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const start = clock.now();
  history.add("GPT-4o", 77, { createdAt: start - 800 });
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: start, waitMs: 1500 });
  await clock.advance(200);
  assert.equal((await cost)?.points, 77);
});

Deno.test("CostTracker: answers nobody waits for are first looked for 50 ms on, by one read", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  const found: number[] = [];
  for (let i = 0; i < 10; i++) {
    const start = clock.now();
    history.add("GPT-4o", 100 + i);
    const cost = tracker.attribute({
      model: "GPT-4o",
      startedAt: start,
      waitMs: 0,
      onFound: (c) => found.push(c.points),
    });
    assert.equal(await cost, null, "nobody waits: an estimate at once");
    await clock.advance(1);
  }
  assert.equal(history.calls, 0, "no read on the request's path");
  // 50 ms after the first answer: one read for the ten.
  await clock.advance(39);
  assert.equal(history.calls, 0);
  await clock.advance(1);
  assert.equal(history.calls, 1);
  assert.deepEqual(found, [100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
});

Deno.test("CostTracker: an answer in its first delay and a later one that overlapped it take neither entry by order", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // A first answer: its read is the deep one, so the next ones within 2 s are not.
  history.add("GPT-4o", 5);
  const first = tracker.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 1500 });
  await clock.advance(0);
  assert.equal((await first)?.points, 5);
  await clock.advance(100);
  // A: nobody waits for its cost. Another app's entries land while it runs, then B starts.
  const aStart = clock.now();
  await clock.advance(10);
  for (let i = 0; i < 120; i++) history.add("Claude-Haiku-4.5", 1);
  await clock.advance(10);
  const bStart = clock.now();
  await clock.advance(500);
  history.add("GPT-4o", 561);
  const costs: number[] = [];
  tracker.attribute({
    model: "GPT-4o",
    startedAt: aStart,
    waitMs: 0,
    onFound: (c) => costs.push(c.points),
  });
  // B, held for its footer, ends inside A's first delay; neither has token counts.
  await clock.advance(18);
  history.add("GPT-4o", 27);
  const b = tracker.attribute({
    model: "GPT-4o",
    startedAt: bStart,
    waitMs: 1500,
    onFound: (c) => costs.push(c.points),
  });
  const fetches = tracker.fetches;
  assert.equal(await b, null, "B's estimate at once: its entry and A's could be in either order");
  await clock.advance(30_000);
  assert.deepEqual(costs, []);
  assert.ok(tracker.fetches - fetches <= 1, "no reads for them, past the first look A planned");
});

Deno.test("CostTracker: an answer after two that overlapped (a chat and its title) is paired by its rank, their entries read", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // A chat's answer and its title, asked at once, end together; neither has token counts.
  const a = clock.now();
  await clock.advance(100);
  history.add("GPT-4o", 31);
  const one = tracker.attribute({ model: "GPT-4o", startedAt: a, waitMs: 1500 });
  history.add("GPT-4o", 32);
  const two = tracker.attribute({ model: "GPT-4o", startedAt: a, waitMs: 1500 });
  assert.deepEqual([await one, await two], [null, null]);
  // The next message, 30 s on: every entry since the first of them is read, one each.
  await clock.advance(30_000);
  const next = clock.now();
  await clock.advance(500);
  history.add("GPT-4o", 444);
  const cost = tracker.attribute({ model: "GPT-4o", startedAt: next, waitMs: 1500 });
  await clock.advance(0);
  assert.equal((await cost)?.points, 444);
});

Deno.test("CostTracker: while a history read hangs past the wait, answers that end get their estimate at once and their cost late", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // The Usage API takes the call and answers only at its timeout.
  history.latencyMs = 10_000;
  const found: number[] = [];
  const onFound = (c: FoundCost) => found.push(c.points);
  history.add("GPT-4o", 11, { tokens: [1, 1] });
  const first = tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    tokens: { prompt: 1, completion: 1 },
    waitMs: 1500,
    onFound,
  });
  // The answer whose read hangs is held its wait: nothing told it the read would hang.
  await clock.advance(1500);
  assert.equal(await first, null);
  await clock.advance(100);
  history.add("GPT-4o", 22, { tokens: [2, 2] });
  let result: FoundCost | null | undefined;
  tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    tokens: { prompt: 2, completion: 2 },
    waitMs: 1500,
    onFound,
  }).then((r) => result = r);
  await clock.advance(0);
  assert.equal(result, null, "the read in flight for longer than the wait: no wait");
  assert.equal(history.calls, 1, "no read of its own while one hangs");
  // The hung read answers at last; the next one, fast again, finds the second cost.
  history.latencyMs = 0;
  await clock.advance(10_000);
  assert.deepEqual(found, [11, 22]);
  assert.equal(history.calls, 2);
  // Reads are fast again: the next answer waits for its cost, as before.
  history.add("GPT-4o", 33, { tokens: [3, 3] });
  const third = tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    tokens: { prompt: 3, completion: 3 },
    waitMs: 1500,
  });
  await clock.advance(0);
  assert.equal((await third)?.points, 33);
  assert.equal(history.calls, 3);
});

Deno.test("CostTracker: while history reads take longer than the wait, answers get their estimate at once; a fast read makes them wait again", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.latencyMs = 3_000;
  const found: number[] = [];
  const onFound = (c: FoundCost) => found.push(c.points);
  const answer = (points: number) => {
    history.add("GPT-4o", points, { tokens: [points, 1] });
    let result: FoundCost | null | undefined;
    tracker.attribute({
      model: "GPT-4o",
      startedAt: clock.now(),
      tokens: { prompt: points, completion: 1 },
      waitMs: 1500,
      onFound,
    }).then((r) => result = r);
    return () => result;
  };
  // The first read is slow, which nothing told: held its wait, its cost comes late.
  const first = answer(1);
  await clock.advance(1499);
  assert.equal(first(), undefined);
  await clock.advance(1600);
  assert.equal(first(), null);
  assert.deepEqual(found, [1]);
  // The last read took 3 s, longer than the wait: no wait, each cost late.
  for (const points of [2, 3]) {
    const next = answer(points);
    await clock.advance(0);
    assert.equal(next(), null, `answer ${points}: not held for a cost that cannot come in time`);
    await clock.advance(4_000);
  }
  assert.deepEqual(found, [1, 2, 3]);
  // The history is fast again: the first answer after it still goes by the last read (3 s) and
  // gets its estimate; its read, fast, lets the next answer wait for its cost again.
  history.latencyMs = 0;
  const fourth = answer(4);
  await clock.advance(0);
  assert.equal(fourth(), null);
  await clock.advance(100);
  assert.deepEqual(found, [1, 2, 3, 4]);
  const fifth = answer(5);
  await clock.advance(0);
  assert.equal(fifth()?.points, 5);
  // One read per answer: no call more than before.
  assert.equal(history.calls, 5);
});

Deno.test("CostTracker: a read of several quick pages (a long answer's) does not stop the next answer from waiting", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  // Each page takes 600 ms, well within the wait; a long answer's read needs three of them.
  history.latencyMs = 600;
  const longStart = clock.now();
  await clock.advance(60_000);
  // Another app on the account billed 110 calls while the long answer ran.
  for (let i = 0; i < 110; i++) history.add("Claude-Haiku-4.5", 1, { tokens: [1, 1] });
  history.add("GPT-4o", 70, { tokens: [70, 1] });
  const long = tracker.attribute({
    model: "GPT-4o",
    startedAt: longStart,
    tokens: { prompt: 70, completion: 1 },
    waitMs: 1500,
  });
  await clock.advance(1500);
  assert.equal(await long, null, "its three pages (1.8 s) outlast its wait");
  await clock.advance(400);
  assert.equal(history.calls, 3);
  // A short answer after it: its entry is on the first page, which takes 600 ms.
  history.add("GPT-4o", 18, { tokens: [18, 1] });
  const short = tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    tokens: { prompt: 18, completion: 1 },
    waitMs: 1500,
  });
  await clock.advance(700);
  assert.equal((await short)?.points, 18, "waited for its real cost");
});

Deno.test("CostTracker: a slow page long ago does not keep answers from waiting", async () => {
  const { clock, history, tracker } = setup();
  await using _ = tracker;
  history.latencyMs = 3_000;
  history.add("GPT-4o", 5, { tokens: [5, 1] });
  const slow = tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    tokens: { prompt: 5, completion: 1 },
    waitMs: 1500,
  });
  await clock.advance(3_100);
  assert.equal(await slow, null);
  // Half a minute of quiet; the history is fast again.
  history.latencyMs = 0;
  await clock.advance(31_000);
  history.add("GPT-4o", 6, { tokens: [6, 1] });
  const later = tracker.attribute({
    model: "GPT-4o",
    startedAt: clock.now(),
    tokens: { prompt: 6, completion: 1 },
    waitMs: 1500,
  });
  await clock.advance(0);
  assert.equal((await later)?.points, 6);
});
