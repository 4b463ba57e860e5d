/** @module A points history on a manual clock, and a CostTracker reading it, for the cost tests. */
import { CostTracker } from "../lib/cost_tracker.ts";
import type { PointsEntry, PointsPage, PointsPageOptions, UsageSource } from "../lib/usage_api.ts";
import { ManualClock } from "./manual_clock.ts";
import { memoryLogger } from "../lib/log.ts";

interface Stored {
  entry: PointsEntry;
  visibleAt: number;
  finalAt: number;
}

/** A points history on a manual clock: entries appear and settle at given times. */
export class ScriptedHistory implements UsageSource {
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

/** A CostTracker on a manual clock, reading a {@linkcode ScriptedHistory}, logging to memory. */
export function setup(options: { watchMs?: number; keyName?: string } = {}) {
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
