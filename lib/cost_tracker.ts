/** @module Attribution of each answer's real cost from Poe's points history, shared fetches. */
import { overlap } from "./cost_pairing.ts";
import { type FoundCost, poeClockAhead } from "./cost_settler.ts";
import type { Logger } from "./log.ts";
import type { UsageSource } from "./usage_api.ts";
import { dropOldest, letGo, type Waiter } from "./cost_waiter.ts";
import { Deadlines, REAL_TIMERS, type Timers } from "./deadlines.ts";
import { FetchPacing } from "./fetch_pacing.ts";
import { FetchSchedule } from "./fetch_schedule.ts";
import { HistoryFetcher } from "./history_fetcher.ts";
import { type InFlight, InFlightRequests } from "./in_flight.ts";

/** What {@linkcode CostTracker.attribute} needs to know about an answer. */
export interface AttributeOptions {
  /** The model name sent to Poe; compared with `bot_name` case-insensitively. */
  model: string;
  /** When the request arrived, in milliseconds since the epoch. Older entries are not its own. */
  startedAt: number;
  /** The answer's token counts, when Poe reported them; used to prefer the matching entry. */
  tokens?: { prompt: number; completion: number } | null;
  /**
   * The prompt count of an answer Poe reported no answer tokens for (a tool call): an entry of
   * that prompt count, the only one, is its own. Default: none.
   */
  promptTokens?: number | null;
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
  /** The request's note of {@linkcode CostTracker.sent}, ended now: it is a waiter from here. */
  inFlight?: InFlight;
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
 * Finds what each answer cost. A waiting answer is paired with an unclaimed `points_history` entry
 * of usage type `API`, of its model, created after its request started: first an entry whose token
 * breakdown equals the answer's usage, else by order, only where the order leaves no doubt (see
 * `pairEntries`): answers without token counts that overlapped in time are never paired by order,
 * and go on with their estimate at once. An entry with `cost_points` 0 is not final: it is held
 * but not reported ({@linkcode HistoryFetcher} reads and settles).
 *
 * Scheduling: no fixed delay. When an answer ends and no fetch is in flight, the history is read
 * at once (leading edge), unless costs have lately been landing later (a moving average of how long
 * after its answer an entry was first found, probed 20% early), in which case the fetch waits until
 * then; when that is past the answer's wait, or a page of the history takes longer than it (the
 * last one did, within 30 s, or the one in flight has so far), the answer does not wait at all.
 * Answers that end while a fetch is in flight share the next one (trailing edge); under load,
 * fetches are spaced so that one serves many answers ({@linkcode FetchSchedule}). A fetch reads pages until every entry
 * since the start of each answer it looks for is read (answers watched in the background count for
 * that only every `backgroundPollMs`). No fetch runs while none waits.
 */
export class CostTracker implements AsyncDisposable {
  readonly #api: UsageSource;
  readonly #backgroundFirstMs: number;
  readonly #skewMs: number;
  readonly #maxWatched: number;
  readonly #now: () => number;
  readonly #timers: Timers;
  /** Live answers, in order of completion. Changed in place only: the fetcher holds it too. */
  readonly #waiters: Waiter[] = [];
  readonly #schedule: FetchSchedule;
  readonly #fetcher: HistoryFetcher;
  #dropped = 0;
  /** How late entries land, and the load estimate. */
  readonly #pacing: FetchPacing;
  #closed = false;
  /** The foreground waits, by length (`FOOTER_WAIT_MS`): one timer for all answers waiting. */
  #waits = new Map<number, Deadlines>();
  readonly #inFlight = new InFlightRequests();

  constructor(options: CostTrackerOptions) {
    this.#api = options.api;
    this.#backgroundFirstMs = options.backgroundFirstMs ?? 50;
    this.#skewMs = options.clockSkewMs ?? 2_000;
    this.#maxWatched = Math.max(1, options.maxWatched ?? 1_000);
    this.#now = options.now ?? Date.now;
    this.#pacing = new FetchPacing({
      firstFetchMs: options.firstFetchMs ?? 0,
      maxBatchMs: options.maxBatchMs ?? 20,
      now: this.#now,
    });
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#schedule = new FetchSchedule(() => void this.#fetcher.run(), {
      pollMs: options.pollMs ?? 400,
      backgroundPollMs: options.backgroundPollMs ?? 2_000,
      pacing: this.#pacing,
      now: this.#now,
      timers: this.#timers,
    });
    this.#fetcher = new HistoryFetcher(this.#waiters, {
      api: this.#api,
      maxPages: options.maxPages ?? 3,
      keyName: options.keyName ?? null,
      pacing: this.#pacing,
      schedule: this.#schedule,
      watchMs: options.watchMs ?? 120_000,
      running: (model, at) => this.#inFlight.running(model, at),
      now: this.#now,
      logger: options.logger,
    });
  }

  /**
   * Notes an answer Poe may have billed before the proxy saw it end, until it is attributed
   * (`inFlight` of {@linkcode CostTracker.attribute}) or its request ends: meanwhile no answer of
   * its model is paired by order ({@linkcode InFlightRequests}).
   */
  sent(model: string, startedAt: number): InFlight {
    return this.#inFlight.sent(model, startedAt);
  }

  /** Usage API calls made so far (one per page read). */
  get calls(): number {
    return this.#fetcher.calls;
  }

  /** History fetches started so far (each reads one page or more). */
  get fetches(): number {
    return this.#fetcher.fetches;
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
    options.inFlight?.end();
    if (this.#closed) return Promise.resolve(null);
    const now = this.#now();
    this.#pacing.observe(now, options.startedAt);
    const quietUntil = this.#schedule.answered(now);
    const quiet = now < quietUntil;
    // The history answers slower than this answer may wait (it hangs, or is slow): its cost could
    // not come in time, and is reported late. Once a page is fast again, answers wait again.
    const slow = this.#schedule.pageMs(now) >= options.waitMs;
    const expected = this.#pacing.expectedMs;
    // History times are Poe's: the start in Poe's clock, when it is clearly off from this one.
    const start = options.startedAt + poeClockAhead(this.#api);
    const model = options.model.toLowerCase();
    const tokens = options.tokens ?? null;
    const arrivedAt = Math.min(options.startedAt, now);
    const finishedAt = options.abandoned ? Infinity : now;
    const tied = tokens === null && this.#tie(model, arrivedAt, finishedAt);
    // Not expected in time, or never told apart from another (one still running included): the
    // answer ends now with an estimate; the cost is watched for.
    const background = quiet || options.waitMs <= 0 || slow || expected >= options.waitMs || tied ||
      (tokens === null && this.#inFlight.running(model, now));
    const waiter: Waiter = {
      model,
      startedAtUs: (start - this.#skewMs) * 1000,
      realStartUs: start * 1000,
      tokens,
      promptTokens: tokens === null ? options.promptTokens ?? null : null,
      arrivedAt,
      finishedAt,
      endedAt: now,
      // The history keeps failing: no answer waits for it; one fetch retries after the pause.
      dueAt: quiet
        ? quietUntil
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
    if (this.#waiters.length >= this.#maxWatched) {
      this.#dropped++;
      dropOldest(this.#waiters);
    }
    this.#waiters.push(waiter);
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
    if (!tied) this.#schedule.request(waiter.dueAt);
    return result;
  }

  /**
   * Whether an answer without token counts overlapped in time one of its model without them that
   * is still watched. Their entries could come in either order and nothing else tells them apart,
   * so neither is paired by order while both are watched (`pairEntries`): those waiting
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

  #waitDeadlines(ms: number): Deadlines {
    let deadlines = this.#waits.get(ms);
    if (!deadlines) {
      // The real clock's waits are timed by the monotonic one: a step of the wall clock (NTP)
      // would hold every waiting answer as long as the step. A test's manual clock is both.
      deadlines = new Deadlines(ms, {
        timers: this.#timers,
        now: this.#timers === REAL_TIMERS ? undefined : this.#now,
      });
      this.#waits.set(ms, deadlines);
    }
    return deadlines;
  }

  /** Stops fetching; waiting answers resolve with null. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#schedule.close();
    this.#fetcher.close();
    for (const deadlines of this.#waits.values()) deadlines.clear();
    for (const w of this.#waiters) {
      w.deadline?.cancel();
      w.foreground?.(null);
    }
    this.#waiters.length = 0;
    return Promise.resolve();
  }

  /** Same as {@linkcode CostTracker.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
