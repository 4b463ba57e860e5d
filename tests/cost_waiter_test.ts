import assert from "node:assert/strict";
import type { FoundCost } from "../lib/cost_settler.ts";
import { letGo, oldestToCover, type Waiter } from "../lib/cost_waiter.ts";
import { CostTracker } from "../lib/cost_tracker.ts";
import { ManualClock } from "./manual_clock.ts";
import { ScriptedHistory } from "./scripted_history.ts";

/** A waiter checked by the fetch started at 100, looked for the first time, not due before it. */
function waiter(realStartUs: number, fields: Partial<Waiter> = {}): Waiter {
  return {
    model: "m",
    startedAtUs: realStartUs - 2_000_000,
    realStartUs,
    tokens: null,
    promptTokens: null,
    arrivedAt: 0,
    finishedAt: 50,
    endedAt: 50,
    dueAt: 50,
    checkedAt: 100,
    missedAt: -Infinity,
    plannedMs: 0,
    foreground: null,
    deadline: null,
    tied: false,
    done: false,
    ...fields,
  };
}

const waiting = () => {};

Deno.test("oldestToCover is the oldest start among the answers that fetch looks for, Infinity without one", () => {
  assert.equal(oldestToCover([], 100, false), Infinity);
  assert.equal(oldestToCover([waiter(30), waiter(10), waiter(20)], 100, false), 10);
  // Only answers that fetch checked count.
  assert.equal(oldestToCover([waiter(10, { checkedAt: 90 }), waiter(20)], 100, false), 20);
  assert.equal(oldestToCover([waiter(10, { checkedAt: 90 })], 100, true), Infinity);
});

Deno.test("oldestToCover: answers watched in the background count only for a deep read", () => {
  const watched = waiter(10, { missedAt: 90 });
  const lookedFor = waiter(20);
  assert.equal(oldestToCover([watched, lookedFor], 100, false), 20);
  assert.equal(oldestToCover([watched, lookedFor], 100, true), 10);
  // Still waiting in the foreground: it counts though missed before.
  assert.equal(oldestToCover([waiter(10, { missedAt: 90, foreground: waiting })], 100, false), 10);
});

Deno.test("oldestToCover: an answer nobody waits for is not read back to before it is due", () => {
  const notDue = waiter(10, { dueAt: 150 });
  assert.equal(oldestToCover([notDue, waiter(20)], 100, false), 20);
  assert.equal(oldestToCover([notDue, waiter(20)], 100, true), 10);
  // One waiting in the foreground counts whatever its due time.
  assert.equal(oldestToCover([waiter(10, { dueAt: 150, foreground: waiting })], 100, false), 10);
});

Deno.test("letGo resolves a foreground wait with null once, cancels its deadline, and leaves it watched", () => {
  const got: (FoundCost | null)[] = [];
  let cancelled = 0;
  const w = waiter(10, {
    foreground: (cost) => got.push(cost),
    deadline: { cancel: () => cancelled++ },
  });
  letGo(w);
  assert.deepEqual(got, [null]);
  assert.equal(cancelled, 1);
  assert.equal(w.foreground, null);
  assert.equal(w.deadline, null);
  assert.equal(w.done, false);
  letGo(w);
  assert.deepEqual(got, [null], "resolved once");
  assert.equal(cancelled, 1);
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
