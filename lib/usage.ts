/** @module The background poller that keeps a snapshot of the Poe point balance. */
import type { Logger } from "./log.ts";
import type { BalanceReport, UsageSource } from "./usage_api.ts";
import { REAL_TIMERS, type Timers } from "./deadlines.ts";

/** While the Usage API keeps failing, a warning this often (the others are debug lines). */
const WARN_EVERY_MS = 10 * 60_000;
/**
 * An estimate whose real cost was never read (its history entry could not be told apart) is
 * taken to be in Poe's balance from a reading sent this long after it was counted.
 */
const ESTIMATE_SHOWN_AFTER_MS = 60_000;
/**
 * Counts kept one by one; past this (the Usage API down for long under load), the older half is
 * merged into one, which a late real cost no longer corrects.
 */
const MAX_SPENDINGS = 10_000;

/** Points counted against the snapshot until a reading is known to show them. */
export interface Spending {
  points: number;
  /** When it was counted, in ms since the epoch. */
  countedAt: number;
  /** When its final cost was read from Poe's history, or null while it is an estimate. */
  confirmedAt: number | null;
  /**
   * Points of it counted for caution only (a stand-in for a model without a price): the guards
   * count them, the balance shown does not. 0 once confirmed.
   */
  caution?: number;
  /**
   * A reading's fall in the balance already covers it: the balance shown no longer takes it off
   * (it would count twice), while the guards do until the usual rules drop it.
   */
  inReading?: boolean;
}

/** The balance as Poe last reported it. */
export interface BalanceSnapshot extends BalanceReport {
  /** When the answer arrived, in milliseconds since the epoch (from the poller's clock). */
  takenAt: number;
}

/** Options of a {@linkcode UsagePoller}. */
export interface UsagePollerOptions {
  /** Where the balance comes from. */
  api: UsageSource;
  /** Interval of regular refreshes (`USAGE_POLL_SECONDS` x 1000). */
  intervalMs: number;
  /** A refresh follows a completed answer after this long, so Poe has debited it. Default: 1,500. */
  afterAnswerMs?: number;
  /** First retry delay after a failure; doubled on each further failure. Default: 5,000 ms. */
  backoffMs?: number;
  /**
   * Longest retry delay. Default: a minute, or `intervalMs` when that is longer: a proxy paused
   * below the cutoff notices the balance's recovery within a poll's time after an outage.
   */
  maxBackoffMs?: number;
  /** A snapshot older than this is stale. Default: 3 x `intervalMs`. */
  staleAfterMs?: number;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  /** Default: {@linkcode REAL_TIMERS}. */
  timers?: Timers;
  logger?: Logger;
}

/**
 * Keeps a {@linkcode BalanceSnapshot} fresh without ever making a request wait for it: readers
 * get the last good snapshot at once. Refreshes run every `intervalMs` and shortly after answers
 * ({@linkcode UsagePoller.answered}), one at a time; failures back off exponentially and keep the
 * last good snapshot. Nothing runs before {@linkcode UsagePoller.start}.
 */
export class UsagePoller implements AsyncDisposable {
  readonly #api: UsageSource;
  readonly #intervalMs: number;
  readonly #afterAnswerMs: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #staleAfterMs: number;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #logger: Logger | undefined;
  #snapshot: BalanceSnapshot | null = null;
  #inFlight: Promise<BalanceSnapshot | null> | null = null;
  #abort = new AbortController();
  #timer: unknown = null;
  #timerAt = Infinity;
  #failures = 0;
  #spentSince = 0;
  /** The part of `#spentSince` counted for caution only (`Spending.caution`). */
  #cautionSince = 0;
  /** Points of {@linkcode #spending} a reading's fall already covers (`Spending.inReading`). */
  #inReadingSince = 0;
  /** What makes up `#spentSince`: few, as each reading drops what it shows. */
  #spending: Spending[] = [];
  #warnedAt = -Infinity;
  #lastError: string | null = null;
  #calls = 0;
  #started = false;
  #disposed = false;

  constructor(options: UsagePollerOptions) {
    this.#api = options.api;
    this.#intervalMs = options.intervalMs;
    this.#afterAnswerMs = options.afterAnswerMs ?? 1_500;
    this.#backoffMs = options.backoffMs ?? 5_000;
    this.#maxBackoffMs = options.maxBackoffMs ?? Math.max(60_000, options.intervalMs);
    this.#staleAfterMs = options.staleAfterMs ?? 3 * options.intervalMs;
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#logger = options.logger;
  }

  /** The last good snapshot, or null when Poe never answered. Never waits. */
  get snapshot(): BalanceSnapshot | null {
    return this.#snapshot;
  }

  /** Whether the snapshot is missing or older than `staleAfterMs`. */
  get stale(): boolean {
    return this.#snapshot === null || this.#now() - this.#snapshot.takenAt > this.#staleAfterMs;
  }

  /** Consecutive failed refreshes, the last error, and Usage API calls made, for logs and tests. */
  get status(): { failures: number; lastError: string | null; calls: number } {
    return { failures: this.#failures, lastError: this.#lastError, calls: this.#calls };
  }

  /** Starts polling: a refresh now, then every `intervalMs`. Idempotent. */
  start(): void {
    if (this.#started || this.#disposed) return;
    this.#started = true;
    void this.refresh();
  }

  /**
   * Refreshes now unless a refresh is already running, whose result is shared. Resolves with the
   * snapshot afterwards (the last good one when this refresh failed); never rejects.
   */
  refresh(): Promise<BalanceSnapshot | null> {
    if (this.#disposed) return Promise.resolve(this.#snapshot);
    if (this.#inFlight) return this.#inFlight;
    this.#clearTimer();
    this.#inFlight = this.#run().finally(() => {
      this.#inFlight = null;
    });
    return this.#inFlight;
  }

  /**
   * Tells the poller an answer was completed: a refresh follows within `afterAnswerMs`. Calls are
   * coalesced; while refreshes fail, the back-off schedule wins.
   */
  answered(): void {
    if (!this.#started || this.#disposed || this.#failures > 0) return;
    this.#schedule(this.#afterAnswerMs);
  }

  /**
   * Points this proxy spent that Poe's balance may not show yet, as far as it knows (real costs
   * and estimates): while Poe's Usage API fails, the balance the guards see still goes down.
   */
  get spentSinceSnapshot(): number {
    return this.#spentSince;
  }

  /**
   * {@linkcode UsagePoller.spentSinceSnapshot} without what is counted for caution only: what the
   * balance shown to clients takes off.
   */
  get shownSpentSinceSnapshot(): number {
    return Math.max(0, this.#spentSince - this.#cautionSince - this.#inReadingSince);
  }

  /**
   * Counts an answer's points against the balance until a reading is known to show them: one sent
   * after its final cost was read from Poe's history (`real`: it was, just now), or, for an
   * estimate never confirmed, one sent a minute after. Not any reading taken after the answer's
   * history entry was made: Poe may debit the final cost later than that. Returns the count, for
   * {@linkcode UsagePoller.confirm}, or null for no points.
   */
  spent(points: number, real = false, caution = false): Spending | null {
    if (!(points > 0 && Number.isFinite(points))) return null;
    const now = this.#now();
    const spending: Spending = { points, countedAt: now, confirmedAt: real ? now : null };
    if (caution) {
      spending.caution = points;
      this.#cautionSince += points;
    }
    this.#spending.push(spending);
    this.#spentSince += points;
    if (this.#spending.length > MAX_SPENDINGS) this.#mergeOldest();
    return spending;
  }

  /**
   * A count made at an estimate turned out to cost `real`, read from Poe's history now: it is
   * corrected, unless a reading was already taken to show it.
   */
  confirm(spending: Spending, real: number): void {
    // Gone when a reading was taken to show it, or merged into an older count.
    if (!this.#spending.includes(spending) || !Number.isFinite(real)) return;
    const points = Math.max(0, real);
    this.#spentSince = Math.max(0, this.#spentSince + points - spending.points);
    this.#cautionSince = Math.max(0, this.#cautionSince - (spending.caution ?? 0));
    if (spending.inReading) {
      this.#inReadingSince = Math.max(0, this.#inReadingSince - spending.points + points);
    }
    spending.caution = 0;
    spending.points = points;
    spending.confirmedAt = this.#now();
  }

  async #run(): Promise<BalanceSnapshot | null> {
    this.#calls++;
    const sentAt = this.#now();
    try {
      const report = await this.#api.currentBalance(this.#abort.signal);
      if (this.#disposed) return this.#snapshot;
      const before = this.#snapshot?.balance ?? null;
      this.#snapshot = { ...report, takenAt: this.#now() };
      const dropped = this.#dropShown(sentAt);
      if (before !== null) this.#markInReading(before - report.balance - dropped, sentAt);
      if (this.#failures > 0) {
        this.#logger?.info("usage api recovered", { after_failures: this.#failures });
      }
      this.#failures = 0;
      this.#lastError = null;
      this.#schedule(this.#intervalMs);
    } catch (err) {
      if (this.#disposed) return this.#snapshot;
      this.#failures++;
      this.#lastError = err instanceof Error ? err.message : String(err);
      const delay = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (this.#failures - 1));
      // A warning at the first failure and every ten minutes while it lasts: the balance the
      // guards use is then Poe's last reading less this proxy's own spending.
      const now = this.#now();
      const warn = this.#failures === 1 || now - this.#warnedAt >= WARN_EVERY_MS;
      if (warn) this.#warnedAt = now;
      this.#logger?.[warn ? "warn" : "debug"]("usage api failed", {
        error: this.#lastError,
        failures: this.#failures,
        retry_ms: delay,
        snapshot_age_ms: this.#snapshot ? this.#now() - this.#snapshot.takenAt : undefined,
      });
      this.#clearTimer();
      this.#schedule(delay);
    }
    return this.#snapshot;
  }

  /**
   * Forgets the spending a reading sent at `sentAt` shows. Returns the points forgotten that the
   * balance shown still took off (not those of a former reading's fall, nor cautions).
   */
  #dropShown(sentAt: number): number {
    let dropped = 0;
    this.#spending = this.#spending.filter((s) => {
      const kept = s.confirmedAt === null
        ? s.countedAt > sentAt - ESTIMATE_SHOWN_AFTER_MS
        : s.confirmedAt > sentAt;
      if (!kept && !s.inReading) dropped += s.points - (s.caution ?? 0);
      return kept;
    });
    this.#recount();
    return dropped;
  }

  /**
   * Spending counted before a reading was sent, as far as the reading's fall in the balance
   * (`fall`, less what was forgotten already) covers it, oldest first: Poe's balance shows it, so
   * the balance shown does not take it off again. Another app's spending in the same while may
   * hide some of this proxy's from the balance shown until the next reading; the guards still
   * count it.
   */
  #markInReading(fall: number, sentAt: number): void {
    let room = fall;
    for (const s of this.#spending) {
      if (room <= 0 || s.countedAt >= sentAt) break;
      if (s.inReading || (s.caution ?? 0) > 0) continue;
      if (s.points > room) break;
      s.inReading = true;
      room -= s.points;
    }
    this.#recount();
  }

  #recount(): void {
    let spent = 0;
    let caution = 0;
    let inReading = 0;
    for (const s of this.#spending) {
      spent += s.points;
      caution += s.caution ?? 0;
      if (s.inReading) inReading += s.points;
    }
    this.#spentSince = spent;
    this.#cautionSince = caution;
    this.#inReadingSince = inReading;
  }

  #mergeOldest(): void {
    const old = this.#spending.splice(0, this.#spending.length >> 1);
    const merged: Spending = {
      points: 0,
      countedAt: -Infinity,
      confirmedAt: -Infinity,
      caution: 0,
    };
    for (const s of old) {
      merged.points += s.points;
      merged.caution! += s.caution ?? 0;
      merged.countedAt = Math.max(merged.countedAt, s.countedAt);
      // Shown only once every part is.
      merged.confirmedAt = merged.confirmedAt === null || s.confirmedAt === null
        ? null
        : Math.max(merged.confirmedAt, s.confirmedAt);
    }
    // Left out of the balance shown only when every part was.
    if (old.every((s) => s.inReading)) merged.inReading = true;
    this.#spending.unshift(merged);
    this.#recount();
  }

  /** Ensures a refresh runs within `ms` (an earlier pending one is kept). */
  #schedule(ms: number): void {
    if (!this.#started || this.#disposed) return;
    const at = this.#now() + ms;
    if (this.#timer !== null && this.#timerAt <= at) return;
    this.#clearTimer();
    this.#timerAt = at;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      void this.refresh();
    }, ms);
  }

  #clearTimer(): void {
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }

  /** Stops polling and abandons a refresh in flight. Idempotent. */
  async close(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#clearTimer();
    this.#abort.abort(new Error("usage poller closed"));
    await this.#inFlight?.catch(() => {});
  }

  /** Same as {@linkcode UsagePoller.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
