/** @module Reading Poe's points history for the cost tracker: page sizes, and how deep to read. */
import { oldestToCover, type Waiter } from "./cost_waiter.ts";
import type { PointsEntry, UsageSource } from "./usage_api.ts";

/**
 * Entries of the first page when one answer waits: its entry is among the newest. Each entry is
 * about 300 bytes to send and parse; a lone answer's wait is that read, so it is kept short.
 */
const SHORT_PAGE = 5;

/** Options of a {@linkcode HistoryReader}. */
export interface HistoryReaderOptions {
  api: UsageSource;
  /**
   * Pages read by one read at most (plus one per 100 answers waiting or watched): a first page of
   * 5 entries when one answer waits, else pages of 100.
   */
  maxPages: number;
  /** Told when each page's call starts and ends, to learn how long a page takes. Default: none. */
  pages?: PageTiming;
}

/** What learns how long a page of the history takes (`FetchSchedule`). */
export interface PageTiming {
  pageStarted(): void;
  pageEnded(): void;
}

/**
 * Reads the newest entries of the points history, page after page (a short one for a lone
 * answer, else 100 entries), until every entry since the start of each answer it looks for is
 * read, or the history's start, or `maxPages`. How far a read reached stays known even when it
 * failed partway ({@linkcode HistoryReader.reach}).
 */
export class HistoryReader {
  readonly #api: UsageSource;
  readonly #maxPages: number;
  readonly #pages: PageTiming | null;
  readonly #abort = new AbortController();
  #calls = 0;
  #reach = Infinity;
  #complete = false;

  constructor(options: HistoryReaderOptions) {
    this.#api = options.api;
    this.#maxPages = options.maxPages;
    this.#pages = options.pages ?? null;
  }

  /** Usage API calls made so far (one per page read). */
  get calls(): number {
    return this.#calls;
  }

  /**
   * The last read's entries reach back to this `creation_time` (µs): its last entry's, or
   * Infinity before its first page. Meaningless when {@linkcode HistoryReader.complete}.
   */
  get reach(): number {
    return this.#reach;
  }

  /** Whether the last read reached the start of the history: every entry was read. */
  get complete(): boolean {
    return this.#complete;
  }

  /**
   * Reads pages into `into` for the read started at `fetchAt`, looking for `waiters`: those whose
   * `checkedAt` is `fetchAt` (see {@linkcode oldestToCover}; `deep` makes the answers watched in
   * the background count too). Rejects when a page cannot be read; what was read stays in `into`.
   */
  async read(
    into: PointsEntry[],
    waiters: readonly Waiter[],
    fetchAt: number,
    deep: boolean,
  ): Promise<void> {
    this.#reach = Infinity;
    this.#complete = false;
    let after: string | undefined;
    const pages = this.#maxPages + Math.floor(waiters.length / 100);
    for (let page = 0; page < pages; page++) {
      this.#calls++;
      this.#pages?.pageStarted();
      const got = await this.#api.pointsHistory({
        // One answer alone: a short page (its entry is among the newest; a page of 100 costs
        // both sides about 0.1 ms more). Further pages, and pages under load, are full.
        limit: page === 0 && waiters.length <= 1 ? SHORT_PAGE : 100,
        startingAfter: after,
        signal: this.#abort.signal,
      }).finally(() => this.#pages?.pageEnded());
      for (const e of got.data) into.push(e);
      const last = got.data.at(-1);
      if (!got.hasMore || !last) {
        this.#complete = true;
        break;
      }
      this.#reach = last.creation_time;
      // Read on until every entry since the start of each answer looked for is read.
      if (this.#reach < oldestToCover(waiters, fetchAt, deep)) break;
      after = last.query_id;
    }
  }

  /** Aborts the read in flight, with `reason`. */
  abort(reason: Error): void {
    this.#abort.abort(reason);
  }
}
