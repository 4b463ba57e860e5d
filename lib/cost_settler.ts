/** @module Settling answers with the points-history entries paired to them: claims, costs found. */
import { ClaimedEntries, pairEntries } from "./cost_pairing.ts";
import type { Waiter } from "./cost_waiter.ts";
import type { FetchPacing } from "./fetch_pacing.ts";
import { KeyNameLearner } from "./key_name.ts";
import type { Logger } from "./log.ts";
import { breakdownTokens, type PointsEntry, type UsageSource } from "./usage_api.ts";

/** The real cost of one answer, found in the points history. */
export interface FoundCost {
  points: number;
  queryId: string;
  /** The entry's `creation_time`, in milliseconds since the epoch. */
  createdAt: number;
  /** Milliseconds from the end of the answer to the discovery. */
  afterMs: number;
}

/** A clock offset read from `Date` headers smaller than this is noise. */
const CLOCK_NOISE_MS = 1_500;

/**
 * How far Poe's clock is ahead of this one, when the Usage API's `Date` headers say so clearly:
 * past {@linkcode CLOCK_NOISE_MS}. Smaller offsets are within reading error and the skew
 * allowance; trusting them could call an answer's history read complete too early.
 */
export function poeClockAhead(api: UsageSource): number {
  const offset = api.clockOffsetMs ?? 0;
  return Math.abs(offset) >= CLOCK_NOISE_MS ? offset : 0;
}

/** Options of a {@linkcode CostSettler}. */
export interface CostSettlerOptions {
  /** Read for its clock offset. */
  api: UsageSource;
  /** This proxy's key's name (`POE_API_KEY_NAME`), or null: learnt from token matches. */
  keyName: string | null;
  /** Learns how late entries land from the answers held for their cost. */
  pacing: FetchPacing;
  /** Milliseconds since the epoch. */
  now: () => number;
  logger?: Logger;
}

/**
 * Pairs the entries of each history read with the answers looking for theirs (see
 * {@linkcode pairEntries}), and settles those found: the entry is claimed, the answer's wait ends
 * with its cost and `onFound` reports it. An entry with `cost_points` 0 is not final: it is held
 * but not reported. Entries of the account's other keys are set apart once this proxy's key name
 * is known, configured or learnt from token matches.
 */
export class CostSettler {
  readonly #api: UsageSource;
  readonly #pacing: FetchPacing;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  /** Entries already attributed. */
  #claimed = new ClaimedEntries();
  /** This proxy's own `api_key_name`, configured or learnt from token matches. */
  readonly #keyName: KeyNameLearner;
  /** Whether the warning that the configured key name seems wrong was logged. */
  #keyNameWarned = false;

  constructor(options: CostSettlerOptions) {
    this.#api = options.api;
    this.#pacing = options.pacing;
    this.#now = options.now;
    this.#logger = options.logger;
    this.#keyName = new KeyNameLearner(undefined, options.keyName);
  }

  /**
   * Pairs `entries`, read by the read started at `fetchStartedAt`, with `waiters`, and settles
   * the answers found. `covered` tells whether every entry since an answer's start was read;
   * `busy`, whether a request of a model sent before the read still runs (see `pairEntries`).
   */
  settle(
    waiters: readonly Waiter[],
    entries: readonly PointsEntry[],
    covered: (w: Waiter) => boolean,
    fetchStartedAt: number,
    busy?: (model: string) => boolean,
  ): void {
    const assigned = pairEntries(waiters, entries, {
      covered,
      busy,
      waiting: (w) => w.foreground !== null,
      claimed: this.#claimed,
      keyName: this.#keyName.name,
      keyNameConfigured: this.#keyName.configured !== null,
      onOtherKey: (_, e) => this.#otherKey(e),
    });
    for (const [w, e] of assigned) {
      if (e.cost_points !== 0) this.#resolve(w, e, fetchStartedAt);
    }
  }

  /**
   * An answer found no entry but another key's with its token counts: after a few in a row, the
   * configured key name is likely wrong (answers then keep their estimates), worth one warning.
   */
  #otherKey(e: PointsEntry): void {
    if (this.#keyNameWarned || !this.#keyName.mismatch(e.api_key_name, e.query_id)) return;
    this.#keyNameWarned = true;
    this.#logger?.warn("POE_API_KEY_NAME does not match Poe's points history", {
      configured: this.#keyName.configured,
      seen: e.api_key_name as string,
    });
  }

  #resolve(w: Waiter, e: PointsEntry, fetchStartedAt: number): void {
    this.#claimed.add(e.query_id);
    if (w.tokens !== null) {
      const t = breakdownTokens(e);
      if (t && t.prompt === w.tokens.prompt && t.completion === w.tokens.completion) {
        this.#keyName.confirm(e.api_key_name);
      }
    }
    w.done = true;
    const cost: FoundCost = {
      points: e.cost_points,
      queryId: e.query_id,
      createdAt: Math.round(e.creation_time / 1000) - poeClockAhead(this.#api),
      afterMs: this.#now() - w.endedAt,
    };
    // How late entries land: found at the first look, the delay planned for it (time spent
    // waiting for another fetch or for a batch is not lateness); else when the fetch that found
    // it started. Not learned from answers that ended while the history was failing.
    if (w.plannedMs !== null) {
      const late = w.missedAt === -Infinity ? w.plannedMs : Math.max(0, fetchStartedAt - w.endedAt);
      this.#pacing.learnLateness(late);
    }
    w.deadline?.cancel();
    w.deadline = null;
    w.foreground?.(cost);
    w.foreground = null;
    try {
      w.onFound?.(cost);
    } catch (err) {
      this.#logger?.error("cost callback failed", { error: err });
    }
  }
}
