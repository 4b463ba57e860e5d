/** @module The `GET /api/usage` JSON: balance, points per model and per day, recent requests, guards. */
import type { Logger } from "./log.ts";
import type { GuardRefusal } from "./guards.ts";
import {
  dailyTotals,
  type DayPoints,
  type PointsSummary,
  readHistory,
  summarizeByModel,
} from "./points_history.ts";
import type { RecentRequest, RecentRequests } from "./recent_requests.ts";
import type { BalanceSnapshot } from "./usage.ts";
import type { PointsEntry, UsageSource } from "./usage_api.ts";

const DAY_MS = 86_400_000;

/** What the dashboard reads of the balance poller. */
export interface PollerView {
  readonly snapshot: BalanceSnapshot | null;
  readonly stale: boolean;
  readonly status: { failures: number; lastError: string | null };
}

/** The guard thresholds shown on the dashboard (from the config). */
export interface GuardSettings {
  pointsCutoff: number;
  pointsPerMessageWarn: number;
  maxPointsPerMessage: number;
}

/** Options of {@linkcode UsageDashboard}. */
export interface UsageDashboardOptions {
  /** The Usage API the history is read from; null when there is none (no key). */
  api: UsageSource | null;
  /** The balance poller; null when there is none. */
  poller: PollerView | null;
  /**
   * The pause check (`Guards.paused`, which logs its turns), so the dashboard says exactly what the
   * guard would. Default: balance < cutoff, not logged.
   */
  paused?: () => GuardRefusal | null;
  guards: GuardSettings;
  recent: RecentRequests;
  version: string;
  /** Cached history older than this is refreshed on the next read. Default: 30,000 ms. */
  historyMaxAgeMs?: number;
  /** A read waits this long at most for a refresh, else answers from the cache. Default: 3,000 ms. */
  waitMs?: number;
  /** Pages of 100 read at most by the first, full read. Default: 100. */
  maxPages?: number;
  /** Entries this much older than the newest cached one are re-read on a refresh (late costs). Default: 15 min. */
  overlapMs?: number;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

/** The `GET /api/usage` body. Times are milliseconds since the epoch. */
export interface UsageJson {
  now: number;
  version: string;
  balance: {
    points: number;
    taken_at: number;
    age_seconds: number;
    stale: boolean;
    next_grant: { time: number; amount: number | null; kind: string } | null;
  } | null;
  poller: { failures: number; last_error: string | null; last_success_at: number | null };
  guards: {
    /** `paused` (below the cutoff), `ok`, or `unknown` (no balance yet). */
    /** `stale`: spending allowed on Poe's last reading less this proxy's spending since. */
    state: "ok" | "paused" | "stale" | "unknown";
    points_cutoff: number;
    points_per_message_warn: number;
    max_points_per_message: number;
    message: string | null;
  };
  /** Points per model over the last 1, 7 and 30 days (all usage types), or null before a read. */
  spent: PointsSummary | null;
  /** Points per UTC day, 30 days, oldest first. */
  daily: DayPoints[];
  /** Balances the poller saw while this proxy ran, oldest first. */
  balance_samples: { time: number; points: number }[];
  history: {
    ok: boolean;
    fetched_at: number | null;
    entries: number;
    truncated: boolean;
    error: string | null;
  };
  /** The last requests through the proxy, newest first. */
  recent: RecentRequest[];
}

const SAMPLE_EVERY_MS = 10 * 60_000;
const MAX_SAMPLES = 30 * 24 * 6;

/**
 * Builds the dashboard's JSON. Keeps 30 days of points history in memory: one full read, then
 * refreshes that re-read only the newest entries (and a short overlap, where costs may still
 * change), at most one at a time and never more often than `historyMaxAgeMs`.
 */
export class UsageDashboard {
  readonly #o: UsageDashboardOptions;
  readonly #now: () => number;
  #entries: PointsEntry[] = [];
  #fetchedAt: number | null = null;
  #truncated = false;
  /** The next read re-reads all 30 days (first read, or an incremental read ran out of pages). */
  #full = true;
  #error: string | null = null;
  #refreshing: Promise<void> | null = null;
  #samples: { time: number; points: number }[] = [];
  #lastSampleTakenAt = -1;
  #abort = new AbortController();

  constructor(options: UsageDashboardOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Records the poller's snapshot as a balance sample (on a change, else every 10 minutes), and
   * runs the pause check, which logs its own turns: they are then noticed at the end of a request
   * or at a read of the figures, not only when the next request is checked.
   */
  sample(): void {
    this.#o.paused?.();
    const snap = this.#o.poller?.snapshot;
    if (!snap || snap.takenAt === this.#lastSampleTakenAt) return;
    this.#lastSampleTakenAt = snap.takenAt;
    const last = this.#samples.at(-1);
    if (last && last.points === snap.balance && snap.takenAt - last.time < SAMPLE_EVERY_MS) return;
    this.#samples.push({ time: snap.takenAt, points: snap.balance });
    const oldest = this.#now() - 30 * DAY_MS;
    while (this.#samples.length > MAX_SAMPLES || (this.#samples[0]?.time ?? Infinity) < oldest) {
      this.#samples.shift();
    }
  }

  #pausedNow(snap: BalanceSnapshot | null): GuardRefusal | null {
    if (snap === null) return null;
    if (this.#o.paused) return this.#o.paused();
    if (snap.balance >= this.#o.guards.pointsCutoff) return null;
    return {
      guard: "paused",
      balance: snap.balance,
      message: `Paused: the balance (${snap.balance}) is below POINTS_CUTOFF.`,
    };
  }

  /** Reads (or refreshes) the history when the cache is old; never rejects. */
  refresh(): Promise<void> {
    if (!this.#o.api) return Promise.resolve();
    this.#refreshing ??= this.#read().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #read(): Promise<void> {
    const api = this.#o.api!;
    const now = this.#now();
    const monthAgo = now - 30 * DAY_MS;
    const newest = this.#entries[0]?.creation_time;
    const incremental = !this.#full && newest !== undefined;
    const since = incremental
      ? Math.max(monthAgo, newest / 1000 - (this.#o.overlapMs ?? 15 * 60_000))
      : monthAgo;
    // A refresh reads what is new since the last one (and the overlap), within the full read's
    // pages: with a smaller budget a busy account (over 1,000 entries in the overlap) ran out of
    // pages every other time, and each such refresh was followed by a full read.
    const maxPages = this.#o.maxPages ?? 100;
    try {
      const read = await readHistory(api, { since, maxPages, signal: this.#abort.signal });
      const sinceUs = since * 1000;
      const kept = incremental ? this.#entries.filter((e) => e.creation_time < sinceUs) : [];
      const month = [...read.entries, ...kept].filter((e) => e.creation_time >= monthAgo * 1000);
      // No more than a full read holds: refreshes would add to it without end (12 MB by the
      // 37,000th entry). The oldest days go, and are said to be missing.
      const most = maxPages * 100;
      if (month.length > most) {
        month.length = most;
        this.#truncated = true;
      }
      this.#entries = month;
      // A full read's truncation cuts the oldest days; an incremental one leaves a gap to fill.
      if (incremental) this.#full = read.truncated;
      else {
        this.#truncated = read.truncated;
        this.#full = false;
      }
      this.#fetchedAt = now;
      this.#error = null;
    } catch (err) {
      if (this.#abort.signal.aborted) return;
      const first = this.#error === null;
      this.#error = err instanceof Error ? err.message : String(err);
      // Once per run of failures: an open dashboard retries every 30 s.
      if (first) this.#o.logger?.warn("points history failed", { error: this.#error });
    }
  }

  /** Waits for a refresh of an old cache, at most `waitMs`. */
  async #fresh(): Promise<void> {
    const maxAge = this.#o.historyMaxAgeMs ?? 30_000;
    if (this.#fetchedAt !== null && this.#now() - this.#fetchedAt < maxAge && !this.#error) return;
    const refresh = this.refresh();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#o.waitMs ?? 3_000);
    });
    try {
      await Promise.race([refresh, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The `GET /api/usage` body. */
  async build(): Promise<UsageJson> {
    this.sample();
    await this.#fresh();
    const now = this.#now();
    const o = this.#o;
    const snap = o.poller?.snapshot ?? null;
    const refusal = this.#pausedNow(snap);
    const haveHistory = this.#fetchedAt !== null;
    return {
      now,
      version: o.version,
      balance: snap && {
        points: snap.balance,
        taken_at: snap.takenAt,
        age_seconds: Math.max(0, Math.round((now - snap.takenAt) / 1000)),
        stale: o.poller?.stale ?? true,
        next_grant: snap.nextGrant && { ...snap.nextGrant },
      },
      poller: {
        failures: o.poller?.status.failures ?? 0,
        last_error: o.poller?.status.lastError ?? null,
        last_success_at: snap?.takenAt ?? null,
      },
      guards: {
        state: snap === null
          ? "unknown"
          : refusal?.guard === "paused"
          ? "paused"
          : o.poller?.stale
          ? "stale"
          : "ok",
        points_cutoff: o.guards.pointsCutoff,
        points_per_message_warn: o.guards.pointsPerMessageWarn,
        max_points_per_message: o.guards.maxPointsPerMessage,
        message: refusal?.guard === "paused" ? refusal.message : null,
      },
      spent: haveHistory ? summarizeByModel(this.#entries, { now }) : null,
      daily: dailyTotals(this.#entries, { now, days: 30 }),
      balance_samples: this.#samples.map((s) => ({ ...s })),
      history: {
        ok: haveHistory && this.#error === null,
        fetched_at: this.#fetchedAt,
        entries: this.#entries.length,
        truncated: this.#truncated,
        error: o.api ? this.#error : "no Usage API (POE_API_KEY is not set)",
      },
      recent: o.recent.list(),
    };
  }

  /** Abandons a history read in flight. */
  close(): Promise<void> {
    this.#abort.abort(new Error("dashboard closed"));
    return this.#refreshing ?? Promise.resolve();
  }
}
