/** @module createUsageService: the Usage API client, poller, cost tracker and guards, wired once. */
import assert from "node:assert/strict";
import { createUsageService } from "../lib/usage_service.ts";
import type { BalanceReport, PointsEntry, PointsPage, UsageSource } from "../lib/usage_api.ts";
import { memoryLogger } from "../lib/log.ts";
import { loadTokenizer, TokenCounter } from "../lib/tokens.ts";
import { ManualClock } from "./manual_clock.ts";
import { testConfig, testRegistry } from "./harness.ts";

/** A Usage API in memory: a balance (or an error) and a history, counting the calls. */
class MemoryUsage implements UsageSource {
  balanceCalls = 0;
  historyCalls = 0;
  balance: number | Error = 1500;
  entries: PointsEntry[] = [];
  currentBalance(): Promise<BalanceReport> {
    this.balanceCalls++;
    const b = this.balance;
    return b instanceof Error
      ? Promise.reject(b)
      : Promise.resolve({ balance: b, nextGrant: null });
  }
  pointsHistory(): Promise<PointsPage> {
    this.historyCalls++;
    return Promise.resolve({ data: [...this.entries], hasMore: false });
  }
}

Deno.test("createUsageService: the default client asks POE_BASE_URL with the key and User-Agent, only once started", async () => {
  const asked: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    asked.push(
      `${new URL(req.url).pathname} ${req.headers.get("authorization")} ${
        req.headers.get("user-agent")
      }`,
    );
    return Response.json({ current_point_balance: 4321 });
  });
  const config = testConfig({
    POE_BASE_URL: `http://127.0.0.1:${server.addr.port}`,
    POE_API_KEY: "key-for-usage",
  });
  try {
    await using usage = createUsageService(config, {
      userAgent: "poe-proxy/test",
      logger: memoryLogger(),
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(asked, [], "nothing before start");
    usage.poller.start();
    const snap = await usage.poller.refresh();
    assert.equal(snap?.balance, 4321);
    assert.deepEqual(asked, ["/usage/current_balance Bearer key-for-usage poe-proxy/test"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("createUsageService polls every USAGE_POLL_SECONDS on the given clock; close stops poller and tracker", async () => {
  const clock = new ManualClock();
  const api = new MemoryUsage();
  const usage = createUsageService(testConfig({ USAGE_POLL_SECONDS: "30" }), {
    api,
    now: clock.now,
    timers: clock,
    logger: memoryLogger(),
  });
  assert.equal(usage.api, api);
  usage.poller.start();
  await clock.settle();
  assert.equal(api.balanceCalls, 1);
  assert.equal(usage.poller.snapshot?.takenAt, clock.now(), "stamped by the given clock");
  await clock.advance(29_999);
  assert.equal(api.balanceCalls, 1);
  await clock.advance(1);
  assert.equal(api.balanceCalls, 2);
  // An answer waiting for its cost is let go by close.
  const waiting = usage.costs.attribute({ model: "GPT-4o", startedAt: clock.now(), waitMs: 5_000 });
  await usage.close();
  assert.equal(await waiting, null);
  assert.equal(clock.timers, 0);
  await usage.close();
  await usage[Symbol.asyncDispose]();
  await clock.advance(120_000);
  assert.equal(api.balanceCalls, 2);
});

Deno.test("createUsageService: the guards compare POINTS_CUTOFF with the poller's balance less this proxy's spending", async () => {
  const clock = new ManualClock();
  const api = new MemoryUsage();
  await using usage = createUsageService(testConfig({ POINTS_CUTOFF: "1000" }), {
    api,
    now: clock.now,
    timers: clock,
    logger: memoryLogger(),
  });
  assert.equal(usage.guards.paused(), null, "no balance yet: not paused");
  await usage.poller.refresh();
  assert.equal(usage.guards.paused(), null);
  usage.poller.spent(600);
  const refusal = usage.guards.paused();
  assert.equal(refusal?.guard, "paused");
  assert.equal(refusal?.balance, 900);
  assert.match(refusal!.message, /below the POINTS_CUTOFF of 1,000 points/);
});

Deno.test("createUsageService: the guards cap an answer's estimate at MAX_POINTS_PER_MESSAGE", async () => {
  await loadTokenizer();
  const registry = await testRegistry();
  const entry = registry.lookup("GPT-4o")!;
  const body = { model: "gpt-4o", messages: [{ role: "user" as const, content: "Hi" }] };
  const clock = new ManualClock();
  for (const [cap, refused] of [["100", true], ["0", false], ["100000", false]] as const) {
    await using usage = createUsageService(testConfig({ MAX_POINTS_PER_MESSAGE: cap }), {
      api: new MemoryUsage(),
      now: clock.now,
      timers: clock,
    });
    const refusal = usage.guards.overCap(body, entry, registry);
    assert.equal(refusal?.guard ?? null, refused ? "cost-cap" : null, `cap ${cap}`);
  }
  // A counter shared with clipping counts the messages the guards price.
  const counter = new TokenCounter();
  await using shared = createUsageService(testConfig({ MAX_POINTS_PER_MESSAGE: "100" }), {
    api: new MemoryUsage(),
    now: clock.now,
    timers: clock,
    counter,
  });
  shared.guards.overCap(body, entry, registry);
  assert.equal(counter.stats().misses, 1);
});

Deno.test("createUsageService: the cost tracker finds an answer's entry through the same API", async () => {
  const clock = new ManualClock();
  const api = new MemoryUsage();
  await using usage = createUsageService(testConfig(), {
    api,
    now: clock.now,
    timers: clock,
    logger: memoryLogger(),
  });
  const startedAt = clock.now();
  await clock.advance(1_000);
  api.entries = [{
    query_id: "q1",
    bot_name: "GPT-4o",
    creation_time: (startedAt + 200) * 1000,
    usage_type: "API",
    cost_points: 339,
  }];
  const found = usage.costs.attribute({ model: "GPT-4o", startedAt, waitMs: 2_000 });
  await clock.advance(2_000);
  const cost = await found;
  assert.equal(cost?.points, 339);
  assert.equal(cost?.queryId, "q1");
  assert.ok(api.historyCalls >= 1);
});

Deno.test("createUsageService: the poller reports a failing Usage API through the given logger", async () => {
  const clock = new ManualClock();
  const api = new MemoryUsage();
  api.balance = new Error("Poe's /usage/current_balance answered 503");
  const logger = memoryLogger();
  await using usage = createUsageService(testConfig(), {
    api,
    now: clock.now,
    timers: clock,
    logger,
  });
  usage.poller.start();
  await clock.settle();
  assert.equal(usage.poller.snapshot, null);
  assert.ok(
    logger.lines.some((l) => l.includes("WARN") && l.includes("usage api") && l.includes("503")),
    logger.lines.join("\n"),
  );
});
