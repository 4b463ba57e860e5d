import assert from "node:assert/strict";
import { CostTracker, type FoundCost } from "../lib/cost_tracker.ts";
import type { PointsEntry, PointsPage, PointsPageOptions, UsageSource } from "../lib/usage_api.ts";
import { ManualClock } from "./manual_clock.ts";
import { memoryLogger } from "../lib/log.ts";

interface Stored {
  entry: PointsEntry;
  visibleAt: number;
  finalAt: number;
}

/** A points history on a manual clock: entries appear and settle at given times. */
class ScriptedHistory implements UsageSource {
  calls = 0;
  fail = false;
  /** Each answer arrives this long after the call (on the manual clock); read at the call. */
  latencyMs = 0;
  /** How far Poe's clock is ahead, as the `Date` headers tell (`UsageApi.clockOffsetMs`). */
  clockOffsetMs: number | null = null;
  #seq = 0;
  #stored: Stored[] = [];
  constructor(readonly clock: ManualClock) {}

  /** Adds an entry created now (or at `createdAt`), visible after `delayMs`, final after `zeroMs` more. */
  add(
    bot: string,
    points: number,
    o: {
      delayMs?: number;
      zeroMs?: number;
      createdAt?: number;
      type?: string;
      tokens?: [number, number];
      /** `api_key_name`: which of the account's keys made the call. */
      key?: string;
    } = {},
  ): string {
    const id = `q${++this.#seq}`;
    const created = o.createdAt ?? this.clock.now();
    const visibleAt = this.clock.now() + (o.delayMs ?? 0);
    this.#stored.push({
      entry: {
        query_id: id,
        bot_name: bot,
        creation_time: created * 1000 + this.#seq,
        usage_type: o.type ?? "API",
        cost_points: points,
        cost_breakdown_in_points: o.tokens
          ? {
            Input: `${o.tokens[0] + 10} points (${o.tokens[0]} tokens)`,
            Output: `${o.tokens[1]} points (${o.tokens[1]} tokens)`,
            Total: `${points} points`,
          }
          : {},
        ...(o.key === undefined ? {} : { api_key_name: o.key }),
      },
      visibleAt,
      finalAt: visibleAt + (o.zeroMs ?? 0),
    });
    return id;
  }

  currentBalance(): never {
    throw new Error("not used");
  }

  pointsHistory(options: PointsPageOptions = {}): Promise<PointsPage> {
    this.calls++;
    if (this.fail) return Promise.reject(new Error("history down"));
    const now = this.clock.now();
    const visible = this.#stored
      .filter((s) => s.visibleAt <= now)
      .sort((a, b) => b.entry.creation_time - a.entry.creation_time)
      .map((s) =>
        now >= s.finalAt ? s.entry : { ...s.entry, cost_points: 0, cost_breakdown_in_points: {} }
      );
    let start = 0;
    if (options.startingAfter) {
      start = visible.findIndex((e) => e.query_id === options.startingAfter) + 1;
    }
    const limit = options.limit ?? 20;
    const data = visible.slice(start, start + limit);
    const page = { data, hasMore: start + limit < visible.length };
    if (this.latencyMs <= 0) return Promise.resolve(page);
    return new Promise((resolve) => this.clock.setTimeout(() => resolve(page), this.latencyMs));
  }
}

function setup(options: { watchMs?: number; keyName?: string } = {}) {
  const clock = new ManualClock();
  const history = new ScriptedHistory(clock);
  const logger = memoryLogger();
  const tracker = new CostTracker({
    api: history,
    now: clock.now,
    timers: clock,
    watchMs: options.watchMs ?? 60_000,
    keyName: options.keyName,
    logger,
  });
  return { clock, history, tracker, logs: logger.lines };
}

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

Deno.test("CostTracker keeps at most maxWatched answers: the oldest give up, counted", async () => {
  const clock = new ManualClock();
  const history = new ScriptedHistory(clock);
  await using tracker = new CostTracker({
    api: history,
    now: clock.now,
    timers: clock,
    maxWatched: 5,
  });
  const results: Promise<FoundCost | null>[] = [];
  for (let i = 0; i < 8; i++) {
    results.push(
      tracker.attribute({
        model: "GPT-4o",
        startedAt: clock.now(),
        tokens: { prompt: i, completion: 1 },
        waitMs: 1500,
      }),
    );
  }
  assert.equal(tracker.pending, 5);
  assert.equal(tracker.dropped, 3);
  // The three oldest gave up at once, with no cost; the rest still wait.
  let settled = 0;
  for (const r of results) r.then(() => settled++);
  await clock.advance(0);
  assert.equal(settled, 3);
  history.add("GPT-4o", 5, { tokens: [3, 1] });
  await clock.advance(400);
  assert.equal((await results[3])?.points, 5);
  await clock.advance(1500);
  assert.equal(settled, 8);
});

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
