/** @module Tests of AnswerPoints with models without a price: their stand-ins counted after the answer. */
import assert from "node:assert/strict";
import { AnswerPoints } from "../lib/answer_points.ts";
import type { BalanceReport, PointsPage, UsageSource } from "../lib/usage_api.ts";
import { createUsageService } from "../lib/usage_service.ts";
import { RequestContext } from "../lib/request_context.ts";
import { memoryLogger } from "../lib/log.ts";
import { ModelRegistry } from "../lib/models.ts";
import { ManualClock } from "./manual_clock.ts";
import { testConfig } from "./harness.ts";

class Api implements UsageSource {
  currentBalance(): Promise<BalanceReport> {
    return Promise.resolve({ balance: 10_000, nextGrant: null });
  }
  pointsHistory(): Promise<PointsPage> {
    return Promise.resolve({ data: [], hasMore: false });
  }
}
const YAML = `models:
  text:
    - poe_name: Dear
      base: 200
      per_1k_tokens: 42
      per_1k_output_tokens: 210
    - Bare
  audio:
    - poe_name: ElevenLabs-v3
      base: 100
      per_1k_tokens: 1500
    - Talker
`;
async function setup() {
  const clock = new ManualClock(Date.now());
  const config = testConfig({ FOOTER: "on", FOOTER_WAIT_MS: "0", POINTS_CUTOFF: "100" });
  const usage = createUsageService(config, {
    api: new Api(),
    now: clock.now,
    timers: clock,
    logger: memoryLogger(),
  });
  await usage.poller.refresh();
  const registry = ModelRegistry.parse(YAML, "t.yaml");
  const mk = (id: string, reserve: number, standIn: boolean) => {
    const ctx = new RequestContext({
      id: crypto.randomUUID(),
      client: "127.0.0.1",
      method: "POST",
      path: "/v1/chat/completions",
      logger: memoryLogger(),
    });
    const reservation = usage.running.reserve(reserve, 60_000, { standIn });
    return new AnswerPoints({
      usage,
      config,
      registry,
      entry: registry.lookup(id)!,
      ctx,
      annotate: true,
      footer: true,
      reservation,
      now: clock.now,
    });
  };
  return { clock, usage, registry, mk };
}

Deno.test("AnswerPoints: the balance a priced answer shows does not take an earlier answer's stand-in off", async () => {
  const s = await setup();
  const usage = { prompt_tokens: 2000, completion_tokens: 500, total_tokens: 2500 };
  const a = await s.mk("Bare", 284, true).settle(usage, false);
  assert.equal(a.points, null, "no price, no cost found yet");
  assert.equal(a.balance, 10_000, "its stand-in is not taken off the balance shown");
  assert.ok(s.usage.poller.spentSinceSnapshot > 0, "the guards count it");
  const b = await s.mk("Dear", 284, false).settle(usage, false);
  // 10000 less the only cost known so far (the priced answer's own ~284)
  assert.equal(
    b.balance,
    Math.round(10_000 - b.points!.points),
    "stand-in of the earlier answer taken off the balance shown",
  );
  await s.usage.close();
});

Deno.test("AnswerPoints: a media model without a price counts its stand-in as held, not priced at Poe's whole-chat prompt", async () => {
  const s = await setup();
  // hold: newest user message of 20 tokens at ElevenLabs-v3 = 100 + 30 = 130
  const held = s.registry.standIn(s.registry.lookup("Talker")!, 20)!.estimate.points;
  const usage = { prompt_tokens: 6000, completion_tokens: 0, total_tokens: 6000 };
  await s.mk("Talker", held, true).settle(usage, true);
  assert.equal(
    s.usage.poller.spentSinceSnapshot,
    held,
    "what the request held, not the chat's prompt priced",
  );
  assert.equal(s.usage.poller.shownSpentSinceSnapshot, 0, "not taken off the balance shown");
  await s.usage.close();
});
