/** @module Attribution of each answer's real cost from Poe's points history, shared fetches. */
import type { Logger } from "./log.ts";
import { breakdownTokens, type PointsEntry, type UsageSource } from "./usage_api.ts";
import { REAL_TIMERS, type Timers } from "./usage.ts";

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
  /** How long the returned promise may wait. 0 returns null at once and only watches. */
  waitMs: number;
  /** Called once with the real cost whenever it is found, in time or later. */
  onFound?: (cost: FoundCost) => void;
}

/** Options of a {@linkcode CostTracker}. */
export interface CostTrackerOptions {
  api: UsageSource;
  /** Delay before the first fetch after an answer ends; answers ending meanwhile share it. Default: 200 ms. */
  firstFetchMs?: number;
  /** Interval of fetches while an answer waits in the foreground. Default: 400 ms. */
  pollMs?: number;
  /** How long an answer is watched in the background after its wait. Default: 120,000 ms. */
  watchMs?: number;
  /** First interval of background-only fetches; doubles up to 30 s. Default: 2,000 ms. */
  backgroundPollMs?: number;
  /** Pages read by one fetch at most (100 entries each) when many answers wait. Default: 3. */
  maxPages?: number;
  /**
   * Entries up to this long before a request's start still count as its own: Poe's clock and
   * ours differ, and `creation_time` may be when Poe received the request. Default: 2,000 ms.
   */
  clockSkewMs?: number;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  /** Default: the platform's timers. */
  timers?: Timers;
  logger?: Logger;
}

interface Waiter {
  model: string;
  startedAtUs: number;
  tokens: { prompt: number; completion: number } | null;
  endedAt: number;
  foreground: ((cost: FoundCost | null) => void) | null;
  timer: unknown;
  onFound?: (cost: FoundCost) => void;
}

const MAX_CLAIMED = 20_000;
/**
 * Finds what each answer cost. A waiting answer is paired with an unclaimed `points_history` entry
 * of usage type `API`, of its model, created after its request started: first an entry whose token
 * breakdown equals the answer's usage, else the oldest such entry in order of completion (FIFO per
 * model). An entry with `cost_points` 0 is not final: it is held but not reported. One fetch
 * (`limit=100`) serves every answer waiting at that moment, and no fetch runs while none waits.
 * The first fetch after an answer comes about when costs have been landing lately (a moving
 * average, probed 20% early); when that is past the answer's wait, it does not wait at all.
 */
export class CostTracker implements AsyncDisposable {
  readonly #api: UsageSource;
  readonly #firstFetchMs: number;
  readonly #pollMs: number;
  readonly #watchMs: number;
  readonly #backgroundPollMs: number;
  readonly #maxPages: number;
  readonly #skewMs: number;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #logger: Logger | undefined;
  #waiters: Waiter[] = [];
  /** query_id to creation time (µs) of entries already attributed. */
  #claimed = new Map<string, number>();
  #timer: unknown = null;
  #timerAt = Infinity;
  #fetching = false;
  #backgroundDelay: number;
  #abort = new AbortController();
  #calls = 0;
  /** Consecutive failed fetches; while they fail, answers are not held for the history. */
  #failures = 0;
  #quietUntil = 0;
  /** Moving average of how long after an answer its final cost was found, or null. */
  #typicalMs: number | null = null;
  #closed = false;

  constructor(options: CostTrackerOptions) {
    this.#api = options.api;
    this.#firstFetchMs = options.firstFetchMs ?? 200;
    this.#pollMs = options.pollMs ?? 400;
    this.#watchMs = options.watchMs ?? 120_000;
    this.#backgroundPollMs = options.backgroundPollMs ?? 2_000;
    this.#backgroundDelay = this.#backgroundPollMs;
    this.#maxPages = options.maxPages ?? 3;
    this.#skewMs = options.clockSkewMs ?? 2_000;
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#logger = options.logger;
  }

  /** Usage API calls made so far. */
  get calls(): number {
    return this.#calls;
  }

  /** Answers still waiting or watched. */
  get pending(): number {
    return this.#waiters.length;
  }

  /**
   * Registers an answer that just ended and resolves with its real cost, or null when it is not
   * known within `waitMs` (the answer is then watched in the background for `watchMs`, and
   * `onFound` reports the cost if it lands). Call it in order of completion; never rejects.
   */
  attribute(options: AttributeOptions): Promise<FoundCost | null> {
    if (this.#closed) return Promise.resolve(null);
    const waiter: Waiter = {
      model: options.model.toLowerCase(),
      startedAtUs: (options.startedAt - this.#skewMs) * 1000,
      tokens: options.tokens ?? null,
      endedAt: this.#now(),
      foreground: null,
      timer: null,
      onFound: options.onFound,
    };
    this.#waiters.push(waiter);
    if (this.#now() < this.#quietUntil) {
      // The history keeps failing: no answer waits for it; one fetch retries after the pause.
      this.#schedule(this.#quietUntil - this.#now());
      return Promise.resolve(null);
    }
    this.#backgroundDelay = this.#backgroundPollMs;
    // Fetch about when entries have been appearing; probing a little earlier lets it adapt down.
    const expected = this.#typicalMs === null
      ? this.#firstFetchMs
      : Math.max(this.#firstFetchMs, Math.round(0.8 * this.#typicalMs));
    if (options.waitMs <= 0 || expected >= options.waitMs) {
      // Not expected in time: the answer ends now with an estimate; the cost is watched for.
      this.#schedule(expected);
      return Promise.resolve(null);
    }
    const { promise, resolve } = Promise.withResolvers<FoundCost | null>();
    waiter.foreground = resolve;
    waiter.timer = this.#timers.setTimeout(() => {
      waiter.timer = null;
      waiter.foreground = null;
      resolve(null);
    }, options.waitMs);
    this.#schedule(expected);
    return promise;
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#fetching) return;
    const at = this.#now() + ms;
    if (this.#timer !== null && this.#timerAt <= at) return;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      void this.#fetch();
    }, ms);
  }

  async #fetch(): Promise<void> {
    if (this.#closed || this.#waiters.length === 0) return;
    this.#fetching = true;
    const oldestStart = Math.min(...this.#waiters.map((w) => w.startedAtUs));
    const entries: PointsEntry[] = [];
    let failed = false;
    try {
      let after: string | undefined;
      for (let page = 0; page < this.#maxPages; page++) {
        this.#calls++;
        const got = await this.#api.pointsHistory({
          limit: 100,
          startingAfter: after,
          signal: this.#abort.signal,
        });
        entries.push(...got.data);
        const last = got.data.at(-1);
        if (!got.hasMore || !last || last.creation_time <= oldestStart) break;
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
    this.#match(entries);
    this.#expire();
    const foreground = this.#waiters.some((w) => w.foreground !== null);
    if (foreground) {
      this.#schedule(this.#pollMs);
    } else if (this.#waiters.length > 0) {
      this.#schedule(Math.max(this.#backgroundDelay, this.#quietUntil - this.#now()));
      this.#backgroundDelay = Math.min(30_000, this.#backgroundDelay * 2);
    }
  }

  /** Lets every answer waiting in the foreground go on with an estimate; they stay watched. */
  #release(): void {
    for (const w of this.#waiters) {
      if (w.timer !== null) this.#timers.clearTimeout(w.timer);
      w.timer = null;
      w.foreground?.(null);
      w.foreground = null;
    }
  }

  /** Pairs waiters with entries: token matches first, then FIFO per model. */
  #match(page: PointsEntry[]): void {
    const candidates = page
      .filter((e) =>
        e.usage_type.toUpperCase() === "API" && e.cost_points >= 0 && !this.#claimed.has(e.query_id)
      )
      .sort((a, b) => a.creation_time - b.creation_time);
    const taken = new Set<PointsEntry>();
    const assigned = new Map<Waiter, PointsEntry>();
    const eligible = (w: Waiter, e: PointsEntry) =>
      !taken.has(e) && e.bot_name.toLowerCase() === w.model && e.creation_time >= w.startedAtUs;
    for (const w of this.#waiters) {
      if (!w.tokens) continue;
      const hit = candidates.find((e) => {
        if (e.cost_points === 0 || !eligible(w, e)) return false;
        const t = breakdownTokens(e);
        return t !== null && t.prompt === w.tokens!.prompt && t.completion === w.tokens!.completion;
      });
      if (hit) {
        taken.add(hit);
        assigned.set(w, hit);
      }
    }
    for (const w of this.#waiters) {
      if (assigned.has(w)) continue;
      const hit = candidates.find((e) => eligible(w, e));
      if (hit) {
        taken.add(hit);
        assigned.set(w, hit);
      }
    }
    for (const [w, e] of assigned) {
      if (e.cost_points !== 0) this.#resolve(w, e);
    }
  }

  #resolve(w: Waiter, e: PointsEntry): void {
    this.#claimed.set(e.query_id, e.creation_time);
    if (this.#claimed.size > MAX_CLAIMED) {
      this.#claimed.delete(this.#claimed.keys().next().value!);
    }
    this.#waiters = this.#waiters.filter((x) => x !== w);
    const cost: FoundCost = {
      points: e.cost_points,
      queryId: e.query_id,
      createdAt: Math.round(e.creation_time / 1000),
      afterMs: this.#now() - w.endedAt,
    };
    this.#typicalMs = this.#typicalMs === null
      ? cost.afterMs
      : 0.7 * this.#typicalMs + 0.3 * cost.afterMs;
    if (w.timer !== null) this.#timers.clearTimeout(w.timer);
    w.foreground?.(cost);
    w.foreground = null;
    try {
      w.onFound?.(cost);
    } catch (err) {
      this.#logger?.error("cost callback failed", { error: err });
    }
  }

  #expire(): void {
    const limit = this.#now() - this.#watchMs;
    const gone = this.#waiters.filter((w) => w.foreground === null && w.endedAt < limit);
    if (gone.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => !gone.includes(w));
    for (const w of gone) {
      this.#logger?.debug("cost not found", { model: w.model, watched_ms: this.#watchMs });
    }
  }

  /** Stops fetching; waiting answers resolve with null. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort.abort(new Error("cost tracker closed"));
    for (const w of this.#waiters) {
      if (w.timer !== null) this.#timers.clearTimeout(w.timer);
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
