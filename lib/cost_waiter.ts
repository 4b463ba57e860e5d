/** @module Answers waiting or watched for their cost, and what a history read must cover. */
import type { TokenCounts } from "./cost_pairing.ts";
import type { FoundCost } from "./cost_settler.ts";
import type { Deadline } from "./deadlines.ts";

/** An answer the cost tracker looks for the entry of, while it waits or is watched. */
export interface Waiter {
  model: string;
  /** The request's start in µs, less the allowed clock skew. */
  startedAtUs: number;
  /** The request's start in µs, as given. */
  realStartUs: number;
  tokens: TokenCounts | null;
  /** The prompt count of an answer without answer tokens (see `PairableAnswer.promptTokens`). */
  promptTokens: number | null;
  /** When the request arrived, in ms on this machine's clock. */
  arrivedAt: number;
  /** When Poe was done with it at the latest (ms, this machine's clock); Infinity if unknown. */
  finishedAt: number;
  endedAt: number;
  /** When its entry is probably there: the first fetch for it should start no earlier. */
  dueAt: number;
  /** When the last fetch that looked for it started, or -Infinity. */
  checkedAt: number;
  /** When the last fetch that read the history without finding it started, or -Infinity. */
  missedAt: number;
  /** The delay planned before its first look, from what was learned; null while quiet. */
  plannedMs: number | null;
  foreground: ((cost: FoundCost | null) => void) | null;
  deadline: Deadline | null;
  onFound?: (cost: FoundCost) => void;
  /**
   * Without token counts, it overlapped another such answer of its model: not paired by order
   * while that one is watched. Not looked for on its own account (no read is planned for it),
   * but still a possible owner of entries, and read back to now and then with the others.
   */
  tied: boolean;
  done: boolean;
}

/**
 * The lowest `realStartUs` of the waiters the fetch started at `fetchAt` must read back to, or
 * Infinity. Unless `all`, only answers looked for the first time or still waiting in the
 * foreground count: answers watched in the background do not make every fetch read deeper.
 */
export function oldestToCover(waiters: readonly Waiter[], fetchAt: number, all: boolean): number {
  let oldest = Infinity;
  for (const w of waiters) {
    if (w.checkedAt !== fetchAt || w.realStartUs >= oldest) continue;
    // Not due yet (an answer nobody waits for, in its first delay): the fetch at its due time
    // reads back to it.
    if (!all && w.foreground === null && w.dueAt > fetchAt) continue;
    if (all || w.foreground !== null || w.missedAt === -Infinity) oldest = w.realStartUs;
  }
  return oldest;
}

/** Lets an answer waiting in the foreground go on with an estimate; it stays watched. */
export function letGo(w: Waiter): void {
  w.deadline?.cancel();
  w.deadline = null;
  const resolve = w.foreground;
  w.foreground = null;
  resolve?.(null);
}

/** The oldest answer gives up: it keeps its estimate and is no longer watched. */
export function dropOldest(waiters: Waiter[]): void {
  const w = waiters.shift()!;
  w.deadline?.cancel();
  w.deadline = null;
  w.foreground?.(null);
  w.foreground = null;
  w.done = true;
}

/**
 * Removes resolved answers, and those nobody waits for that ended before `limit` (they are no
 * longer watched), in one pass, keeping the order. Returns how many stopped being watched.
 */
export function compactWaiters(waiters: Waiter[], limit: number): number {
  let kept = 0;
  let expired = 0;
  for (const w of waiters) {
    if (w.done) continue;
    if (w.foreground === null && w.endedAt < limit) {
      w.done = true;
      expired++;
      continue;
    }
    waiters[kept++] = w;
  }
  waiters.length = kept;
  return expired;
}
