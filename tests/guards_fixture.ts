/**
 * @module Shared by the guards' tests: a fixed clock, Guards with a memory logger, balance
 * snapshots, chat bodies.
 */
import { Guards, type GuardsOptions } from "../lib/guards.ts";
import { memoryLogger } from "../lib/log.ts";
import type { ChatRequest } from "../lib/openai_types.ts";
import type { BalanceSnapshot } from "../lib/usage.ts";

export const NOW = Date.UTC(2026, 0, 15, 12);

export function guards(snapshot: BalanceSnapshot | null, over: Partial<GuardsOptions> = {}) {
  const logger = memoryLogger();
  const g = new Guards({
    pointsCutoff: 100_000,
    maxPointsPerMessage: 0,
    snapshot: () => snapshot,
    now: () => NOW,
    logger,
    ...over,
  });
  return { g, logger };
}

export const snap = (balance: number, over: Partial<BalanceSnapshot> = {}): BalanceSnapshot => ({
  balance,
  nextGrant: null,
  takenAt: NOW,
  ...over,
});

export const body = (over: Partial<ChatRequest> = {}): ChatRequest => ({
  model: "gpt-4o",
  messages: [{ role: "user", content: "Hello there, how are you today?" }],
  ...over,
});
