/** @module Attribution of each answer's real cost from Poe's points history, shared fetches. */
import { ClaimedEntries, overlap, pairEntries } from "./cost_pairing.ts";
import { KeyNameLearner } from "./key_name.ts";
import type { Logger } from "./log.ts";
import { breakdownTokens, type PointsEntry, type UsageSource } from "./usage_api.ts";
import { letGo, oldestToCover, type Waiter } from "./cost_waiter.ts";
import { Deadlines, REAL_TIMERS, type Timers } from "./deadlines.ts";
import { FetchPacing } from "./fetch_pacing.ts";

/** The real cost of one answer, found in the points history. */
export interface FoundCost {
  points: number;
  queryId: string;
  /** The entry's `creation_time`, in milliseconds since the epoch. */
  createdAt: number;
  /** Milliseconds from the end of the answer to the discovery. */
  afterMs: number;
}

/** What {@linkcode CostTracker.attribute} needs to know about an answer. */
export interface AttributeOptions {
  /** The model name sent to Poe; compared with `bot_name` case-insensitively. */
  model: string;
  /** When the request arrived, in milliseconds since the epoch. Older entries are not its own. */
  startedAt: number;
  /** The answer's token counts, when Poe reported them; used to prefer the matching entry. */
  tokens?: { prompt: number; completion: number } | null;
  /**
   * Its client left before the answer was complete: when Poe was done with it is unknown (it may
   * bill it when it notices, finish it first, or not bill it at all), so it may own the entry of
   * any answer of its model that arrived after it. Default: false.
   */
  abandoned?: boolean;
  /** How long the returned promise may wait. 0 returns null at once and only watches. */
  waitMs: number;
  /** Called once with the real cost whenever it is found, in time or later. */
  onFound?: (cost: FoundCost) => void;
}

/** Options of a {@linkcode CostTracker}. */
export interface CostTrackerOptions {
  api: UsageSource;
  /** Least delay before the first look for an answer's entry, whatever was learned. Default: 0. */
  firstFetchMs?: number;
  /**
   * Least delay before the first look for an answer nobody waits for (a footer-less answer): its
   * read then starts after the response went out, and serves the answers that end meanwhile.
   * Default: 50 ms.
   */
  backgroundFirstMs?: number;
  /** Interval of fetches while an answer waits in the foreground. Default: 400 ms. */
  pollMs?: number;
  /** How long an answer is watched in the background after its wait. Default: 120,000 ms. */
  watchMs?: number;
  /** First interval of background-only fetches; doubles up to 30 s. Default: 2,000 ms. */
  backgroundPollMs?: number;
  /**
   * Pages read by one fetch at most (plus one per 100 answers waiting or watched): a first page of
   * 5 entries when one answer waits, else pages of 100. Default: 3.
   */
  maxPages?: number;
  /**
   * Entries up to this long before a request's start still count as its own: Poe's clock and
   * ours differ, and `creation_time` may be when Poe received the request. Default: 2,000 ms.
   */
  clockSkewMs?: number;
  /**
   * Answers waiting or watched at most; past it the oldest give up and keep their estimate
   * (counted in {@linkcode CostTracker.dropped}). Default: 1,000.
   */
  maxWatched?: number;
  /**
   * Longest pause between the starts of two fetches under load, so that one fetch serves many
   * answers; only used while many requests run at once. 0 turns it off. Default: 20 ms.
   */
  maxBatchMs?: number;
  /**
   * This proxy's key's name (`POE_API_KEY_NAME`): entries of the account's other keys are never
   * taken, from the first answer on. Default: none, learnt from token matches.
   */
  keyName?: string | null;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  /** Default: the platform's timers. */
  timers?: Timers;
  logger?: Logger;
}

/**
 * Entries of the first page when one answer waits: its entry is among the newest. Each entry is
 * about 300 bytes to send and parse; a lone answer's wait is that read, so it is kept short.
 */
const SHORT_PAGE = 5;
/** A clock offset read from `Date` headers smaller than this is noise. */
const CLOCK_NOISE_MS = 1_500;

/**
 * Finds what each answer cost. A waiting answer is paired with an unclaimed `points_history` entry
 * of usage type `API`, of its model, created after its request started: first an entry whose token
 * breakdown equals the answer's usage, else by order, only where the order leaves no doubt (see
 * {@linkcode pairEntries}): answers without token counts that overlapped in time are never paired
 * by order, and go on with their estimate at once. An entry with `cost_points` 0 is not final: it
 * is held but not reported.
 *
 * Scheduling: no fixed delay. When an answer ends and no fetch is in flight, the history is read
 * at once (leading edge), unless costs have lately been landing later (a moving average of how long
 * after its answer an entry was first found, probed 20% early), in which case the fetch waits until
 * then; when that is past the answer's wait, the answer does not wait at all. Answers that end
 * while a fetch is in flight share the next one, which starts as soon as that fetch returns
 * (trailing edge). Under load (many requests at once, estimated from the arrival rate and request
 * duration), the starts of two fetches are kept up to `maxBatchMs` apart so that one fetch serves
 * many answers. A fetch reads pages (a short one for a lone answer, else 100 entries) until
 * every entry since the start of each answer it looks for is read (answers watched in the
 * background count for that only every `backgroundPollMs`). No fetch runs while none waits.
 */
export class CostTracker implements AsyncDisposable {
  readonly #api: UsageSource;
  readonly #backgroundFirstMs: number;
  readonly #pollMs: number;
  readonly #watchMs: number;
  readonly #backgroundPollMs: number;
  readonly #maxPages: number;
  readonly #skewMs: number;
  readonly #maxWatched: number;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #logger: Logger | undefined;
  /** Live answers, in order of completion. */
  #waiters: Waiter[] = [];
  /** Entries already attributed. */
  #claimed = new ClaimedEntries();
  /** This proxy's own `api_key_name`, configured or learnt from token matches. */
  readonly #keyName: KeyNameLearner;
  /** Whether the warning that the configured key name seems wrong was logged. */
  #keyNameWarned = false;
  #timer: unknown = null;
  #timerAt = Infinity;
  #microtask = false;
  #fetching = false;
  /** Start of the last fetch. */
  #lastFetchAt = -Infinity;
  /** Start of the last fetch that could read deeper for answers watched in the background. */
  #lastDeepAt = -Infinity;
  #backgroundDelay: number;
  #abort = new AbortController();
  #calls = 0;
  #fetches = 0;
  #dropped = 0;
  /** Consecutive failed fetches; while they fail, answers are not held for the history. */
  #failures = 0;
  #quietUntil = 0;
  /** How late entries land, and the load estimate. */
  readonly #pacing: FetchPacing;
  #closed = false;
  /** The foreground waits, by length (`FOOTER_WAIT_MS`): one timer for all answers waiting. */
  #waits = new Map<number, Deadlines>();

  constructor(options: CostTrackerOptions) {
    this.#api = options.api;
    this.#backgroundFirstMs = options.backgroundFirstMs ?? 50;
    this.#pollMs = options.pollMs ?? 400;
    this.#watchMs = options.watchMs ?? 120_000;
    this.#backgroundPollMs = options.backgroundPollMs ?? 2_000;
    this.#backgroundDelay = this.#backgroundPollMs;
    this.#maxPages = options.maxPages ?? 3;
    this.#skewMs = options.clockSkewMs ?? 2_000;
    this.#maxWatched = Math.max(1, options.maxWatched ?? 1_000);
    this.#now = options.now ?? Date.now;
    this.#pacing = new FetchPacing({
      firstFetchMs: options.firstFetchMs ?? 0,
      maxBatchMs: options.maxBatchMs ?? 20,
      now: this.#now,
    });
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#logger = options.logger;
    this.#keyName = new KeyNameLearner(undefined, options.keyName ?? null);
  }

  /** Usage API calls made so far (one per page read). */
  get calls(): number {
    return this.#calls;
  }

  /** History fetches started so far (each reads one page or more). */
  get fetches(): number {
    return this.#fetches;
  }

  /** Answers still waiting or watched. */
  get pending(): number {
    return this.#waiters.length;
  }

  /** Answers that gave up because more than `maxWatched` were waiting or watched. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The current pause between fetch starts, in milliseconds: 0 unless under load. */
  get batchMs(): number {
    return this.#pacing.batchMs();
  }

  /**
   * Registers an answer that just ended and resolves with its real cost, or null when it is not
   * known within `waitMs` (the answer is then watched in the background for `watchMs`, and
   * `onFound` reports the cost if it lands). Call it in order of completion; never rejects.
   */
  attribute(options: AttributeOptions): Promise<FoundCost | null> {
    if (this.#closed) return Promise.resolve(null);
    const now = this.#now();
    this.#pacing.observe(now, options.startedAt);
    const quiet = now < this.#quietUntil;
    const expected = this.#pacing.expectedMs;
    // History times are Poe's: the start in Poe's clock, when it is clearly off from this one.
    const start = options.startedAt + this.#poeClockAhead();
    const model = options.model.toLowerCase();
    const tokens = options.tokens ?? null;
    const arrivedAt = Math.min(options.startedAt, now);
    const finishedAt = options.abandoned ? Infinity : now;
    const tied = tokens === null && this.#tie(model, arrivedAt, finishedAt);
    // Not expected in time, or never told apart from another: the answer ends now with an
    // estimate; the cost is watched for.
    const background = quiet || options.waitMs <= 0 || expected >= options.waitMs || tied;
    const waiter: Waiter = {
      model,
      startedAtUs: (start - this.#skewMs) * 1000,
      realStartUs: start * 1000,
      tokens,
      arrivedAt,
      finishedAt,
      endedAt: now,
      // The history keeps failing: no answer waits for it; one fetch retries after the pause.
      dueAt: quiet
        ? this.#quietUntil
        : now + (background ? Math.max(expected, this.#backgroundFirstMs) : expected),
      checkedAt: -Infinity,
      missedAt: -Infinity,
      // An answer's own first delay is not how late entries land: only answers held for their
      // cost teach it.
      plannedMs: background ? null : expected,
      foreground: null,
      deadline: null,
      onFound: options.onFound,
      tied,
      done: false,
    };
    if (this.#waiters.length >= this.#maxWatched) this.#drop();
    this.#waiters.push(waiter);
    if (!quiet) this.#backgroundDelay = this.#backgroundPollMs;
    let result: Promise<FoundCost | null>;
    if (background) {
      result = Promise.resolve(null);
    } else {
      const { promise, resolve } = Promise.withResolvers<FoundCost | null>();
      waiter.foreground = resolve;
      waiter.deadline = this.#waitDeadlines(options.waitMs).add(() => {
        waiter.deadline = null;
        waiter.foreground = null;
        resolve(null);
      });
      result = promise;
    }
    if (!tied) this.#schedule(waiter.dueAt);
    return result;
  }

  /**
   * Whether an answer without token counts overlapped in time one of its model without them that
   * is still watched. Their entries could come in either order and nothing else tells them apart,
   * so neither is paired by order while both are watched ({@linkcode pairEntries}): those waiting
   * for their cost go on with the estimate now, rather than wait for what cannot come in time.
   */
  #tie(model: string, arrivedAt: number, finishedAt: number): boolean {
    let tied = false;
    for (const w of this.#waiters) {
      if (w.done || w.tokens !== null || w.model !== model) continue;
      if (!overlap(w, { arrivedAt, finishedAt })) continue;
      tied = true;
      w.tied = true;
      letGo(w);
    }
    return tied;
  }

  /**
   * How far Poe's clock is ahead of this one, when the Usage API's `Date` headers say so clearly:
   * past {@linkcode CLOCK_NOISE_MS}. Smaller offsets are within reading error and the skew
   * allowance; trusting them could call an answer's history read complete too early.
   */
  #poeClockAhead(): number {
    const offset = this.#api.clockOffsetMs ?? 0;
    return Math.abs(offset) >= CLOCK_NOISE_MS ? offset : 0;
  }

  #waitDeadlines(ms: number): Deadlines {
    let deadlines = this.#waits.get(ms);
    if (!deadlines) {
      deadlines = new Deadlines(ms, { timers: this.#timers, now: this.#now });
      this.#waits.set(ms, deadlines);
    }
    return deadlines;
  }

  /** Ensures a fetch starts at `at` or earlier, but not sooner than the batching pause allows. */
  #schedule(at: number): void {
    if (this.#closed || this.#fetching) return;
    const now = this.#now();
    at = Math.max(at, this.#lastFetchAt + this.#pacing.batchMs());
    if (at <= now) {
      // Leading edge: fetch now (after this turn, so answers ending together share it).
      if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
      this.#timer = null;
      this.#timerAt = Infinity;
      if (!this.#microtask) {
        this.#microtask = true;
        queueMicrotask(() => {
          this.#microtask = false;
          void this.#fetch();
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
      void this.#fetch();
    }, at - now);
  }

  async #fetch(): Promise<void> {
    if (this.#closed || this.#fetching || this.#waiters.length === 0) return;
    this.#fetching = true;
    this.#fetches++;
    const startedAt = this.#now();
    this.#lastFetchAt = startedAt;
    for (const w of this.#waiters) w.checkedAt = startedAt;
    // Now and then, answers watched in the background may make a fetch read deeper too.
    const deep = startedAt - this.#lastDeepAt >= this.#backgroundPollMs;
    if (deep) this.#lastDeepAt = startedAt;
    const entries: PointsEntry[] = [];
    // The entries read reach back to `reach` (µs), or to the start of the history.
    let reach = Infinity;
    let complete = false;
    let failed = false;
    try {
      let after: string | undefined;
      const pages = this.#maxPages + Math.floor(this.#waiters.length / 100);
      for (let page = 0; page < pages; page++) {
        this.#calls++;
        const got = await this.#api.pointsHistory({
          // One answer alone: a short page (its entry is among the newest; a page of 100 costs
          // both sides about 0.1 ms more). Further pages, and pages under load, are full.
          limit: page === 0 && this.#waiters.length <= 1 ? SHORT_PAGE : 100,
          startingAfter: after,
          signal: this.#abort.signal,
        });
        for (const e of got.data) entries.push(e);
        const last = got.data.at(-1);
        if (!got.hasMore || !last) {
          complete = true;
          break;
        }
        reach = last.creation_time;
        // Read on until every entry since the start of each answer looked for is read.
        if (reach < oldestToCover(this.#waiters, startedAt, deep)) break;
        after = last.query_id;
      }
    } catch (err) {
      failed = true;
      if (!this.#closed) {
        this.#failures++;
        this.#logger?.[this.#failures === 1 ? "warn" : "debug"]("points history failed", {
          error: err,
          failures: this.#failures,
        });
      }
    } finally {
      this.#fetching = false;
    }
    if (this.#closed) return;
    if (failed) {
      this.#release();
      if (this.#failures >= 3) {
        this.#quietUntil = this.#now() + Math.min(300_000, 15_000 * 2 ** (this.#failures - 3));
      }
    } else {
      this.#failures = 0;
      this.#quietUntil = 0;
    }
    const covered = (w: Waiter) => complete || reach < w.realStartUs;
    // Answers past their watch are no one's rivals any more (tied ones plan no read to drop them).
    this.#compact();
    // Pairing by order counts the entries: only when every one since their start was read.
    const assigned = pairEntries(this.#waiters, entries, {
      covered,
      waiting: (w) => w.foreground !== null,
      claimed: this.#claimed,
      keyName: this.#keyName.name,
      keyNameConfigured: this.#keyName.configured !== null,
      onOtherKey: (_, e) => this.#otherKey(e),
    });
    for (const [w, e] of assigned) {
      if (e.cost_points !== 0) this.#resolve(w, e, startedAt);
    }
    if (!failed) {
      for (const w of this.#waiters) {
        if (!w.done && w.checkedAt === startedAt && covered(w)) w.missedAt = startedAt;
      }
    }
    this.#compact();
    this.#plan();
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

  /** Schedules the next fetch for the answers still waiting or watched, if any. */
  #plan(): void {
    const now = this.#now();
    let next = Infinity;
    let foreground = false;
    let watched = false;
    for (const w of this.#waiters) {
      if (w.tied) continue;
      watched = true;
      // Not looked for since its entry was due (answers that ended during the last fetch): next.
      if (w.checkedAt < w.dueAt) next = Math.min(next, w.dueAt);
      else if (w.foreground !== null) foreground = true;
    }
    if (!watched) return;
    if (foreground) {
      next = Math.min(next, this.#lastFetchAt + this.#pollMs);
    } else if (next === Infinity) {
      next = now + this.#backgroundDelay;
      this.#backgroundDelay = Math.min(30_000, this.#backgroundDelay * 2);
    }
    this.#schedule(Math.max(next, this.#quietUntil));
  }

  /** The oldest answer gives up: it keeps its estimate and is no longer watched. */
  #drop(): void {
    const w = this.#waiters.shift()!;
    this.#dropped++;
    w.deadline?.cancel();
    w.deadline = null;
    w.foreground?.(null);
    w.foreground = null;
    w.done = true;
  }

  /** Lets every answer waiting in the foreground go on with an estimate; they stay watched. */
  #release(): void {
    for (const w of this.#waiters) letGo(w);
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
      createdAt: Math.round(e.creation_time / 1000) - this.#poeClockAhead(),
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

  /** Drops resolved answers and those watched for longer than `watchMs`, in one pass. */
  #compact(): void {
    const limit = this.#now() - this.#watchMs;
    let kept = 0;
    let expired = 0;
    for (const w of this.#waiters) {
      if (w.done) continue;
      if (w.foreground === null && w.endedAt < limit) {
        w.done = true;
        expired++;
        continue;
      }
      this.#waiters[kept++] = w;
    }
    this.#waiters.length = kept;
    if (expired > 0) {
      this.#logger?.debug("cost not found", { answers: expired, watched_ms: this.#watchMs });
    }
  }

  /** Stops fetching; waiting answers resolve with null. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort.abort(new Error("cost tracker closed"));
    for (const deadlines of this.#waits.values()) deadlines.clear();
    for (const w of this.#waiters) {
      w.deadline?.cancel();
      w.foreground?.(null);
    }
    this.#waiters = [];
    return Promise.resolve();
  }

  /** Same as {@linkcode CostTracker.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
