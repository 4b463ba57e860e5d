/** @module One fetch of the points history for the cost tracker, and what follows from it. */
import { CostSettler } from "./cost_settler.ts";
import { compactWaiters, letGo, type Waiter } from "./cost_waiter.ts";
import type { FetchPacing } from "./fetch_pacing.ts";
import type { FetchSchedule } from "./fetch_schedule.ts";
import { HistoryReader } from "./history_reader.ts";
import type { Logger } from "./log.ts";
import type { PointsEntry, UsageSource } from "./usage_api.ts";

/** Options of a {@linkcode HistoryFetcher}. */
export interface HistoryFetcherOptions {
  api: UsageSource;
  /** Pages read by one fetch at most (plus one per 100 answers waiting or watched). */
  maxPages: number;
  /** This proxy's key's name (`POE_API_KEY_NAME`), or null: learnt from token matches. */
  keyName: string | null;
  /** Learns how late entries land from the answers held for their cost. */
  pacing: FetchPacing;
  /** Starts the fetches; told when one begins and ends, and plans the next. */
  schedule: FetchSchedule;
  /** How long an answer is watched in the background after its wait. */
  watchMs: number;
  /**
   * Whether a request of `model` (lower-case) sent at or before `at` (ms since the epoch) still
   * runs at Poe; its answers are then not paired by order. Default: none runs.
   */
  running?: (model: string, at: number) => boolean;
  /** Milliseconds since the epoch. */
  now: () => number;
  logger?: Logger;
}

/**
 * Runs the cost tracker's fetches, for the answers in `waiters` (the tracker's list, changed in
 * place only): each reads the history ({@linkcode HistoryReader}), settles the answers whose
 * entries it found ({@linkcode CostSettler}), notes those it read back to in vain, stops watching
 * those past `watchMs`, and plans the next fetch. While the history fails, answers waiting go on
 * with their estimates.
 */
export class HistoryFetcher {
  readonly #waiters: Waiter[];
  readonly #reader: HistoryReader;
  readonly #settler: CostSettler;
  readonly #schedule: FetchSchedule;
  readonly #watchMs: number;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #running: ((model: string, at: number) => boolean) | undefined;
  #fetches = 0;
  #closed = false;

  constructor(waiters: Waiter[], options: HistoryFetcherOptions) {
    this.#waiters = waiters;
    this.#reader = new HistoryReader({
      api: options.api,
      maxPages: options.maxPages,
      pages: options.schedule,
    });
    this.#settler = new CostSettler({
      api: options.api,
      keyName: options.keyName,
      pacing: options.pacing,
      now: options.now,
      logger: options.logger,
    });
    this.#schedule = options.schedule;
    this.#watchMs = options.watchMs;
    this.#now = options.now;
    this.#logger = options.logger;
    this.#running = options.running;
  }

  /** Usage API calls made so far (one per page read). */
  get calls(): number {
    return this.#reader.calls;
  }

  /** History fetches started so far (each reads one page or more). */
  get fetches(): number {
    return this.#fetches;
  }

  /** Runs one fetch, unless one is in flight, none is watched, or it was closed; never rejects. */
  async run(): Promise<void> {
    if (this.#closed || this.#schedule.running || this.#waiters.length === 0) return;
    this.#fetches++;
    const startedAt = this.#now();
    // Now and then, answers watched in the background may make a fetch read deeper too.
    const deep = this.#schedule.begin(startedAt);
    for (const w of this.#waiters) w.checkedAt = startedAt;
    const entries: PointsEntry[] = [];
    let failed = false;
    try {
      await this.#reader.read(entries, this.#waiters, startedAt, deep);
    } catch (err) {
      failed = true;
      if (!this.#closed) {
        const failures = this.#schedule.failed();
        this.#logger?.[failures === 1 ? "warn" : "debug"]("points history failed", {
          error: err,
          failures,
        });
      }
    } finally {
      this.#schedule.end();
    }
    if (this.#closed) return;
    // While the history keeps failing, answers are not held for it.
    if (failed) this.#release();
    this.#schedule.afterRead(failed);
    // The entries read reach back to `reach` (µs), or to the start of the history.
    const reach = this.#reader.reach;
    const complete = this.#reader.complete;
    // Not an answer that ended after the read began: its entry may not be in it yet, and another
    // app's entry could fill its place in a count by order.
    const covered = (w: Waiter) => w.checkedAt === startedAt && (complete || reach < w.realStartUs);
    // Answers past their watch are no one's rivals any more (tied ones plan no read to drop them).
    this.#compact();
    // Pairing by order counts the entries: only when every one since their start was read.
    const running = this.#running;
    this.#settler.settle(
      this.#waiters,
      entries,
      covered,
      startedAt,
      running && ((model) => running(model, startedAt)),
    );
    if (!failed) {
      for (const w of this.#waiters) {
        if (!w.done && w.checkedAt === startedAt && covered(w)) w.missedAt = startedAt;
      }
    }
    this.#compact();
    this.#schedule.plan(this.#waiters);
  }

  /** Lets every answer waiting in the foreground go on with an estimate; they stay watched. */
  #release(): void {
    for (const w of this.#waiters) letGo(w);
  }

  /** Drops resolved answers and those watched for longer than `watchMs`, in one pass. */
  #compact(): void {
    const expired = compactWaiters(this.#waiters, this.#now() - this.#watchMs);
    if (expired > 0) {
      this.#logger?.debug("cost not found", { answers: expired, watched_ms: this.#watchMs });
    }
  }

  /** Starts no more fetches and aborts the one in flight. */
  close(): void {
    this.#closed = true;
    this.#reader.abort(new Error("cost tracker closed"));
  }
}
