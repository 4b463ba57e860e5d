/** @module When the cost tracker's history reads start: one at a time, at once or on a timer. */
import type { Waiter } from "./cost_waiter.ts";
import type { Timers } from "./deadlines.ts";
import type { FetchPacing } from "./fetch_pacing.ts";

/** Options of a {@linkcode FetchSchedule}. */
export interface FetchScheduleOptions {
  /** Interval of reads while an answer waits in the foreground. */
  pollMs: number;
  /**
   * First interval of background-only reads; doubles up to 30 s. Also how often answers watched
   * in the background may make a read go deeper.
   */
  backgroundPollMs: number;
  /** The pause kept between read starts under load. */
  pacing: FetchPacing;
  /** Milliseconds since the epoch. */
  now: () => number;
  timers: Timers;
}

/** How long the time of a page read counts for the next answers (`FetchSchedule.pageMs`). */
export const PAGE_TIME_KEPT_MS = 30_000;

/**
 * Starts the cost tracker's history reads, one at a time. When an answer ends and no read is in
 * flight, the read starts at once (leading edge), or when its entry is due; answers that end
 * while a read is in flight share the next one, which starts as soon as that read returns
 * (trailing edge). Under load (many requests at once, estimated from the arrival rate and request
 * duration), the starts of two reads are kept up to `maxBatchMs` apart so that one read serves
 * many answers. From the third failed read in a row, reads pause (15 s, doubling up to 5 min).
 * How long pages take to read is measured ({@linkcode FetchSchedule.pageMs}). No read runs while
 * none waits or is watched.
 */
export class FetchSchedule {
  readonly #run: () => void;
  readonly #pollMs: number;
  readonly #backgroundPollMs: number;
  readonly #pacing: FetchPacing;
  readonly #now: () => number;
  readonly #timers: Timers;
  #timer: unknown = null;
  #timerAt = Infinity;
  #microtask = false;
  #running = false;
  /** Start of the last read. */
  #lastStartAt = -Infinity;
  /** How long the last page read took, and when it ended. */
  #lastPageMs = 0;
  #lastPageEndedAt = -Infinity;
  /** Start of the page read in flight, or null. */
  #pageStartedAt: number | null = null;
  /** Start of the last read that could read deeper for answers watched in the background. */
  #lastDeepAt = -Infinity;
  #backgroundDelay: number;
  /** Consecutive failed reads; from the third, reads pause. */
  #failures = 0;
  #quietUntil = 0;
  #closed = false;

  /** `run` starts a read; it calls {@linkcode FetchSchedule.begin} and, once done, `end`. */
  constructor(run: () => void, options: FetchScheduleOptions) {
    this.#run = run;
    this.#pollMs = options.pollMs;
    this.#backgroundPollMs = options.backgroundPollMs;
    this.#backgroundDelay = this.#backgroundPollMs;
    this.#pacing = options.pacing;
    this.#now = options.now;
    this.#timers = options.timers;
  }

  /** Whether a read is in flight. */
  get running(): boolean {
    return this.#running;
  }

  /**
   * An answer ended at `now`. Returns until when reads pause because the history keeps failing
   * (no later than `now` when they do not); when they do not, background-only reads start over
   * from their first interval.
   */
  answered(now: number): number {
    if (now >= this.#quietUntil) this.#backgroundDelay = this.#backgroundPollMs;
    return this.#quietUntil;
  }

  /**
   * A read starts at `now`. Returns whether it may read deeper for the answers watched in the
   * background too: at most once every `backgroundPollMs`.
   */
  begin(now: number): boolean {
    this.#running = true;
    this.#lastStartAt = now;
    const deep = now - this.#lastDeepAt >= this.#backgroundPollMs;
    if (deep) this.#lastDeepAt = now;
    return deep;
  }

  /** The read in flight is done. */
  end(): void {
    this.#running = false;
    this.#pageStartedAt = null;
  }

  /** A page of the read in flight is asked for (one Usage API call). */
  pageStarted(): void {
    this.#pageStartedAt = this.#now();
  }

  /** That page came, or its call failed (a timeout counts its whole length). */
  pageEnded(): void {
    if (this.#pageStartedAt === null) return;
    const now = this.#now();
    this.#lastPageMs = now - this.#pageStartedAt;
    this.#lastPageEndedAt = now;
    this.#pageStartedAt = null;
  }

  /**
   * How long a page of the history takes at `now`, in milliseconds: the last one took that long,
   * or the one in flight has taken longer so far (a Usage API that hangs until the call's timeout).
   * An answer that just ended finds its entry on the first page of a read after that, so no sooner
   * than this. Pages, not reads: a read of several pages (a long answer's, or one reaching back for
   * answers watched in the background) says nothing of a short answer's. A page read more than
   * {@linkcode PAGE_TIME_KEPT_MS} ago no longer counts: the history may be fast again.
   */
  pageMs(now: number): number {
    const last = now - this.#lastPageEndedAt <= PAGE_TIME_KEPT_MS ? this.#lastPageMs : 0;
    return this.#pageStartedAt === null ? last : Math.max(last, now - this.#pageStartedAt);
  }

  /** The read failed: returns how many failed in a row. */
  failed(): number {
    return ++this.#failures;
  }

  /**
   * After a read: from the third failure in a row, reads pause for 15 s, doubling up to 5 min;
   * a read that did not fail ends the pause.
   */
  afterRead(failed: boolean): void {
    if (failed) {
      if (this.#failures >= 3) {
        this.#quietUntil = this.#now() + Math.min(300_000, 15_000 * 2 ** (this.#failures - 3));
      }
    } else {
      this.#failures = 0;
      this.#quietUntil = 0;
    }
  }

  /** Ensures a read starts at `at` or earlier, but not sooner than the batching pause allows. */
  request(at: number): void {
    if (this.#closed || this.#running) return;
    const now = this.#now();
    at = Math.max(at, this.#lastStartAt + this.#pacing.batchMs());
    if (at <= now) {
      // Leading edge: read now (after this turn, so answers ending together share it).
      if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
      this.#timer = null;
      this.#timerAt = Infinity;
      if (!this.#microtask) {
        this.#microtask = true;
        queueMicrotask(() => {
          this.#microtask = false;
          this.#run();
        });
      }
      return;
    }
    if (this.#microtask || (this.#timer !== null && this.#timerAt <= at)) return;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.#run();
    }, at - now);
  }

  /** Schedules the next read for the answers still waiting or watched, if any. */
  plan(waiters: readonly Waiter[]): void {
    const now = this.#now();
    let next = Infinity;
    let foreground = false;
    let watched = false;
    for (const w of waiters) {
      if (w.tied) continue;
      watched = true;
      // Not looked for since its entry was due (answers that ended during the last read): next.
      if (w.checkedAt < w.dueAt) next = Math.min(next, w.dueAt);
      else if (w.foreground !== null) foreground = true;
    }
    if (!watched) return;
    if (foreground) {
      next = Math.min(next, this.#lastStartAt + this.#pollMs);
    } else if (next === Infinity) {
      next = now + this.#backgroundDelay;
      this.#backgroundDelay = Math.min(30_000, this.#backgroundDelay * 2);
    }
    this.request(Math.max(next, this.#quietUntil));
  }

  /** Starts no more reads and clears the timer. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
