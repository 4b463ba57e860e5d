/** @module When the points history is read: how late entries land, and how far apart fetches start. */

/** Below this many requests at once (estimated), fetches are never delayed to batch answers. */
const BATCH_FROM_CONCURRENCY = 4;
/** Answers one fetch should serve under heavy load; the batching window aims at it. */
const BATCH_TARGET = 16;

/** Options of a {@linkcode FetchPacing}. */
export interface FetchPacingOptions {
  /** Least delay before the first look for an answer's entry, whatever was learned. */
  firstFetchMs: number;
  /** Longest pause between the starts of two fetches under load; 0 turns batching off. */
  maxBatchMs: number;
  /** Milliseconds since the epoch. */
  now: () => number;
}

/**
 * The timing the cost tracker learns from the answers it sees: a moving average of how
 * long after its answer an entry was first found (the delay before the first look), and a load
 * estimate from the time between answers' ends and their duration (the pause between fetch starts).
 */
export class FetchPacing {
  readonly #firstFetchMs: number;
  readonly #maxBatchMs: number;
  readonly #now: () => number;
  /** Moving average of how long after an answer ended its entry could first be found. */
  #typicalMs: number | null = null;
  /** Moving averages for the load estimate: time between answers, and a request's duration. */
  #lastEndedAt: number | null = null;
  #gapAvgMs: number | null = null;
  #spanAvgMs: number | null = null;

  constructor(options: FetchPacingOptions) {
    this.#firstFetchMs = options.firstFetchMs;
    this.#maxBatchMs = options.maxBatchMs;
    this.#now = options.now;
  }

  /** The delay before the first look for an answer that just ended, in milliseconds. */
  get expectedMs(): number {
    // Fetch about when entries have been appearing; probing a little earlier lets it adapt down.
    return this.#typicalMs === null
      ? this.#firstFetchMs
      : Math.max(this.#firstFetchMs, Math.round(0.8 * this.#typicalMs));
  }

  /** Learns that an answer's entry could be found `lateMs` after the answer ended. */
  learnLateness(lateMs: number): void {
    this.#typicalMs = this.#typicalMs === null ? lateMs : 0.7 * this.#typicalMs + 0.3 * lateMs;
  }

  /** Updates the load estimate with an answer that ended at `now`. */
  observe(now: number, startedAt: number): void {
    const span = Math.max(0, now - startedAt);
    this.#spanAvgMs = this.#spanAvgMs === null ? span : 0.8 * this.#spanAvgMs + 0.2 * span;
    if (this.#lastEndedAt !== null) {
      const gap = Math.max(0, now - this.#lastEndedAt);
      this.#gapAvgMs = this.#gapAvgMs === null ? gap : 0.8 * this.#gapAvgMs + 0.2 * gap;
    }
    this.#lastEndedAt = now;
  }

  /**
   * The pause kept between fetch starts. Requests at once ≈ duration / time between answers
   * (Little's law); with few, none. With many, half a request's duration (a fetch then serves
   * about half of them), less once that exceeds {@linkcode BATCH_TARGET} answers, at most
   * `maxBatchMs`. A request held by the pause lasts longer, which only lowers the estimate.
   */
  batchMs(): number {
    if (this.#maxBatchMs <= 0 || this.#spanAvgMs === null || this.#gapAvgMs === null) return 0;
    // Load that stopped: the time since the last answer counts as a gap too.
    const sinceLast = this.#lastEndedAt === null ? 0 : this.#now() - this.#lastEndedAt;
    const gap = Math.max(this.#gapAvgMs, sinceLast, 0.001);
    const concurrency = this.#spanAvgMs / gap;
    if (concurrency < BATCH_FROM_CONCURRENCY) return 0;
    const share = Math.min(0.5, BATCH_TARGET / concurrency);
    return Math.min(this.#maxBatchMs, this.#spanAvgMs * share);
  }
}
