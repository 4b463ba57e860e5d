import assert from "node:assert/strict";
import { UsagePoller } from "../lib/usage.ts";
import { type BalanceReport, UsageApiError, type UsageSource } from "../lib/usage_api.ts";
import { memoryLogger } from "../lib/log.ts";
import { ManualClock } from "./manual_clock.ts";

/** A Usage API whose balance answers are scripted: a number, or an Error to throw. */
class ScriptedBalance implements UsageSource {
  calls = 0;
  script: (number | Error)[] = [];
  last: number | Error = 500_000;
  gate: Promise<void> | null = null;
  async currentBalance(): Promise<BalanceReport> {
    this.calls++;
    if (this.gate) await this.gate;
    const next = this.script.length ? this.script.shift()! : this.last;
    this.last = next;
    if (next instanceof Error) throw next;
    return { balance: next, nextGrant: null };
  }
  pointsHistory(): never {
    throw new Error("not used");
  }
}

function poller(api: UsageSource, clock: ManualClock, logger = memoryLogger()) {
  return new UsagePoller({
    api,
    intervalMs: 60_000,
    afterAnswerMs: 1_500,
    backoffMs: 5_000,
    maxBackoffMs: 40_000,
    now: clock.now,
    timers: clock,
    logger,
  });
}

Deno.test("UsagePoller does nothing before start, then polls at once and every interval", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  await clock.advance(120_000);
  assert.equal(api.calls, 0);
  assert.equal(p.snapshot?.balance, undefined);
  assert.equal(p.stale, true);
  const started = clock.now();
  p.start();
  p.start();
  await clock.settle();
  assert.equal(api.calls, 1);
  assert.equal(p.snapshot?.balance, 500_000);
  assert.equal(p.snapshot?.takenAt, started);
  await clock.advance(59_999);
  assert.equal(api.calls, 1);
  await clock.advance(1);
  assert.equal(api.calls, 2);
  await clock.advance(60_000);
  assert.equal(api.calls, 3);
});

Deno.test("UsagePoller.refresh is coalesced: one call in flight serves every caller", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  const { promise: gate, resolve: open } = Promise.withResolvers<void>();
  api.gate = gate;
  await using p = poller(api, clock);
  p.start();
  const results = [p.refresh(), p.refresh(), p.refresh()];
  assert.equal(api.calls, 1);
  open();
  const snaps = await Promise.all(results);
  assert.ok(snaps.every((s) => s?.balance === 500_000));
  assert.equal(api.calls, 1);
});

Deno.test("UsagePoller.answered refreshes shortly after answers, coalesced", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  assert.equal(api.calls, 1);
  for (let i = 0; i < 50; i++) p.answered();
  await clock.advance(1_499);
  assert.equal(api.calls, 1);
  await clock.advance(1);
  assert.equal(api.calls, 2);
  // The regular interval restarts from that refresh.
  await clock.advance(59_999);
  assert.equal(api.calls, 2);
  await clock.advance(1);
  assert.equal(api.calls, 3);
});

Deno.test("UsagePoller: by default an answer is followed by a refresh 1.5 s on", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  // As the app builds it: no afterAnswerMs.
  await using p = new UsagePoller({ api, intervalMs: 60_000, now: clock.now, timers: clock });
  p.start();
  await clock.settle();
  assert.equal(api.calls, 1);
  p.answered();
  await clock.advance(1_499);
  assert.equal(api.calls, 1, "Poe may not have debited the answer yet");
  await clock.advance(1);
  assert.equal(api.calls, 2);
});

Deno.test("UsagePoller backs off exponentially on errors and keeps the last good snapshot", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  const logger = memoryLogger();
  await using p = poller(api, clock, logger);
  api.script = [400_000];
  p.start();
  await clock.settle();
  assert.equal(p.snapshot?.balance, 400_000);
  const goodAt = p.snapshot!.takenAt;
  api.last = new UsageApiError("Poe's /usage/current_balance answered 503", 503);
  const times: number[] = [];
  const origin = clock.now();
  let seen = api.calls;
  for (let t = 0; t < 300_000; t += 5_000) {
    await clock.advance(5_000);
    if (api.calls !== seen) {
      seen = api.calls;
      times.push(clock.now() - origin);
    }
  }
  // Interval poll at 60 s fails, then retries after 5, 10, 20, 40, 40... seconds.
  assert.deepEqual(times.slice(0, 6), [60_000, 65_000, 75_000, 95_000, 135_000, 175_000]);
  assert.equal(p.snapshot?.balance, 400_000);
  assert.equal(p.snapshot?.takenAt, goodAt);
  assert.ok(p.status.failures >= 6);
  assert.match(p.status.lastError!, /503/);
  // One warning for the first failure, not one per retry.
  assert.equal(logger.lines.filter((l) => l.includes("WARN") && l.includes("usage api")).length, 1);
  // Answers do not hammer a failing API.
  const before = api.calls;
  for (let i = 0; i < 10; i++) p.answered();
  await clock.advance(2_000);
  assert.equal(api.calls, before);
  // While it lasts, the warning comes back every ten minutes.
  for (let t = 0; t < 600_000; t += 40_000) await clock.advance(40_000);
  assert.equal(logger.lines.filter((l) => l.includes("WARN") && l.includes("usage api")).length, 2);
});

Deno.test("UsagePoller retries a failing API at least once a poll interval, so a recovery is seen in time", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  api.script.push(
    ...Array.from({ length: 20 }, () => new Error("503 Service Unavailable")),
    750_000,
  );
  await using p = new UsagePoller({
    api,
    intervalMs: 60_000,
    now: clock.now,
    timers: clock,
    logger: memoryLogger(),
  });
  p.start();
  let seen = 0;
  let last = clock.now();
  let longest = 0;
  for (let t = 0; t < 1_800_000; t += 5_000) {
    await clock.advance(5_000);
    if (api.calls !== seen) {
      seen = api.calls;
      longest = Math.max(longest, clock.now() - last);
      last = clock.now();
    }
  }
  assert.ok(api.calls >= 25, `${api.calls} calls in 30 minutes`);
  assert.equal(longest, 60_000, "never longer than the poll interval");
  assert.equal(p.snapshot?.balance, 750_000, "recovered");
});

Deno.test("UsagePoller counts this proxy's spending until a reading sent after it shows it", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  assert.equal(p.spentSinceSnapshot, 0);
  await clock.advance(10);
  p.spent(120, true);
  const estimate = p.spent(30.5)!;
  assert.equal(p.spent(-5), null);
  assert.equal(p.spent(NaN), null);
  assert.equal(p.spentSinceSnapshot, 150.5);
  api.last = new Error("down");
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 150.5, "a failed reading keeps it");
  // A reading sent before a real cost was read from the history may not show it yet.
  api.last = 400_000;
  api.gate = Promise.resolve();
  const sentBefore = p.refresh();
  await clock.advance(10);
  const late = p.spent(200, true)!;
  await sentBefore;
  assert.equal(p.spentSinceSnapshot, 230.5, "the real cost read before it went, not the others");
  assert.ok(late.confirmedAt !== null);
  await clock.advance(10);
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 30.5, "an estimate stays until confirmed");
  // Its real cost, found late, replaces it; the next reading shows it.
  p.confirm(estimate, 50);
  assert.equal(p.spentSinceSnapshot, 50);
  await clock.advance(10);
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 0);
});

Deno.test("UsagePoller takes an estimate never confirmed to be shown by a reading a minute later", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  const estimate = p.spent(80)!;
  await clock.advance(59_000);
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 80);
  await clock.advance(1_000);
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 0);
  // A real cost found after that corrects nothing: the reading was taken to show the answer.
  p.confirm(estimate, 500);
  assert.equal(p.spentSinceSnapshot, 0);
});

Deno.test("UsagePoller: a reading whose fall covers an answer's cost shows it once, not twice", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  api.last = 1_000_000;
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  await clock.advance(10);
  // An answer ends with an estimate of 9; Poe debits its real 19 before the next reading.
  const a = p.spent(9)!;
  api.last = 999_981;
  await clock.advance(10);
  await p.refresh();
  assert.equal(p.shownSpentSinceSnapshot, 0, "the reading shows it: 999,981 is the balance");
  assert.equal(p.spentSinceSnapshot, 9, "the guards still count the estimate");
  // Its real cost is found after that reading: still nothing more to take off.
  p.confirm(a, 19);
  assert.equal(p.shownSpentSinceSnapshot, 0);
  // The next answer takes off its own estimate only.
  p.spent(9);
  assert.equal(p.shownSpentSinceSnapshot, 9);
  // A fall covers counts oldest first, whole, as far as it goes: 20 covers the 9, not the 50.
  await clock.advance(10);
  p.spent(50);
  api.last = 999_981 - 20;
  await clock.advance(10);
  await p.refresh();
  assert.equal(p.shownSpentSinceSnapshot, 50);
  // A rise (a grant) covers nothing.
  api.last = 2_000_000;
  await clock.advance(10);
  await p.refresh();
  assert.equal(p.shownSpentSinceSnapshot, 50);
});

Deno.test("UsagePoller: what is counted for caution is never shown, nor covered by a fall", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  api.last = 1_000;
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  await clock.advance(10);
  const held = p.spent(300, false, true)!;
  assert.equal(p.shownSpentSinceSnapshot, 0);
  assert.equal(p.spentSinceSnapshot, 300);
  api.last = 700;
  await clock.advance(10);
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 300, "the guards' caution stays its minute");
  // Found: its real cost now counts, and the balance read is what it is.
  p.confirm(held, 300);
  assert.equal(p.shownSpentSinceSnapshot, 300);
});

Deno.test("UsagePoller snapshot goes stale after 3 intervals without success, fresh on recovery", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  assert.equal(p.stale, false);
  api.last = new Error("down");
  await clock.advance(180_000);
  assert.equal(p.stale, false);
  await clock.advance(1_000);
  assert.equal(p.stale, true);
  assert.equal(p.snapshot?.balance, 500_000);
  api.last = 321;
  await clock.advance(40_000);
  assert.equal(p.stale, false);
  assert.equal(p.snapshot?.balance, 321);
  assert.equal(p.status.failures, 0);
});

Deno.test("UsagePoller.close leaves no timer and ignores a refresh in flight", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  const { promise: gate, resolve: open } = Promise.withResolvers<void>();
  const p = poller(api, clock);
  p.start();
  await clock.settle();
  p.answered();
  assert.ok(clock.timers > 0);
  api.gate = gate;
  const pending = p.refresh();
  const closing = p.close();
  assert.equal(clock.timers, 0);
  api.last = 1;
  open();
  await closing;
  await pending;
  assert.equal(p.snapshot?.balance, 500_000);
  p.start();
  p.answered();
  await clock.advance(120_000);
  assert.equal(clock.timers, 0);
});

Deno.test("UsagePoller keeps at most 10,000 counts while readings fail, the older merged", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  await clock.advance(10);
  const first = p.spent(1)!;
  for (let i = 1; i < 10_001; i++) p.spent(1, i % 2 === 0);
  assert.equal(p.spentSinceSnapshot, 10_001);
  // Merged into the older half's count: a late real cost no longer corrects it.
  p.confirm(first, 500);
  assert.equal(p.spentSinceSnapshot, 10_001);
  // The merged count holds estimates: shown only by a reading a minute later.
  await clock.advance(10);
  await p.refresh();
  assert.ok(p.spentSinceSnapshot > 5_000, String(p.spentSinceSnapshot));
  await clock.advance(60_000);
  await p.refresh();
  assert.equal(p.spentSinceSnapshot, 0);
});

Deno.test("UsagePoller counts a stand-in for caution: the guards see it, the balance shown does not, until its cost is found", async () => {
  const clock = new ManualClock();
  const api = new ScriptedBalance();
  await using p = poller(api, clock);
  p.start();
  await clock.settle();
  await clock.advance(10);
  const standIn = p.spent(300, false, true)!;
  p.spent(20);
  assert.equal(p.spentSinceSnapshot, 320);
  assert.equal(p.shownSpentSinceSnapshot, 20);
  // Its real cost is found: a cost, shown like any other.
  p.confirm(standIn, 12);
  assert.equal(p.spentSinceSnapshot, 32);
  assert.equal(p.shownSpentSinceSnapshot, 32);
  // Merged with others past the list's size, the caution stays apart.
  for (let i = 0; i < 300; i++) p.spent(1, false, i % 2 === 0);
  assert.equal(p.spentSinceSnapshot - p.shownSpentSinceSnapshot, 150);
});
