/** @module Paged reading of Poe's points history, and points spent per model and per day. */
import type { PointsEntry, UsageSource } from "./usage_api.ts";

const DAY_MS = 86_400_000;

/** Options of {@linkcode readHistory}. */
export interface ReadHistoryOptions {
  /** Entries created before this (milliseconds since the epoch) are not read. */
  since: number;
  /** Pages of 100 read at most; Poe allows 500 calls a minute. Default: 200. */
  maxPages?: number;
  signal?: AbortSignal;
}

/** The entries read by {@linkcode readHistory}, newest first. */
export interface HistoryRead {
  entries: PointsEntry[];
  /** True when `maxPages` ran out before `since` was reached. */
  truncated: boolean;
  /** Usage API calls made. */
  pages: number;
}

/**
 * Reads `points_history` page by page (`limit=100`, `starting_after` the last `query_id`), newest
 * first, until an entry older than `since`, the end of the history, or `maxPages`.
 */
export async function readHistory(
  api: UsageSource,
  options: ReadHistoryOptions,
): Promise<HistoryRead> {
  const sinceUs = options.since * 1000;
  const maxPages = options.maxPages ?? 200;
  const entries: PointsEntry[] = [];
  const seen = new Set<string>();
  let after: string | undefined;
  let pages = 0;
  while (pages < maxPages) {
    const page = await api.pointsHistory({
      limit: 100,
      startingAfter: after,
      signal: options.signal,
    });
    pages++;
    for (const e of page.data) {
      if (e.creation_time < sinceUs) return { entries, truncated: false, pages };
      // A page boundary that moved under new entries may repeat one.
      if (seen.has(e.query_id)) continue;
      seen.add(e.query_id);
      entries.push(e);
    }
    const last = page.data.at(-1);
    if (!page.hasMore || !last) return { entries, truncated: false, pages };
    after = last.query_id;
  }
  return { entries, truncated: true, pages };
}

/** Points spent on one model (`bot_name`, case-insensitively) over the last 1, 7 and 30 days. */
export interface ModelPoints {
  /** The `bot_name` as Poe last wrote it. */
  model: string;
  day: number;
  week: number;
  month: number;
  /** Entries over 30 days. */
  count: number;
}

/** Points per model over rolling windows, plus the totals. */
export interface PointsSummary {
  /** Costliest over 30 days first. */
  models: ModelPoints[];
  total: { day: number; week: number; month: number; count: number };
}

/** Options of {@linkcode summarizeByModel} and {@linkcode dailyTotals}. */
export interface SummaryOptions {
  /** Milliseconds since the epoch. */
  now: number;
  /** Only these usage types (such as `["API"]`). Default: all (API, Chat, Canvas App). */
  usageTypes?: readonly string[];
}

function included(e: PointsEntry, types: readonly string[] | undefined): boolean {
  return !types || types.some((t) => t.toLowerCase() === e.usage_type.toLowerCase());
}

/** Points spent per model over the last 1, 7 and 30 days (refunds count as negative). */
export function summarizeByModel(
  entries: readonly PointsEntry[],
  options: SummaryOptions,
): PointsSummary {
  const byModel = new Map<string, ModelPoints>();
  const total = { day: 0, week: 0, month: 0, count: 0 };
  for (const e of entries) {
    if (!included(e, options.usageTypes)) continue;
    const age = options.now - e.creation_time / 1000;
    if (age > 30 * DAY_MS) continue;
    const key = e.bot_name.toLowerCase();
    let row = byModel.get(key);
    if (!row) {
      row = { model: e.bot_name, day: 0, week: 0, month: 0, count: 0 };
      byModel.set(key, row);
    }
    for (const r of [row, total]) {
      r.month += e.cost_points;
      r.count++;
      if (age <= 7 * DAY_MS) r.week += e.cost_points;
      if (age <= DAY_MS) r.day += e.cost_points;
    }
  }
  const models = [...byModel.values()].sort((a, b) =>
    b.month - a.month || a.model.localeCompare(b.model)
  );
  return { models, total };
}

/** Points spent on one UTC day. */
export interface DayPoints {
  /** `YYYY-MM-DD`, UTC. */
  date: string;
  points: number;
  count: number;
}

/** Points spent per UTC day over the last `days` days, oldest first, days without use included. */
export function dailyTotals(
  entries: readonly PointsEntry[],
  options: SummaryOptions & { days?: number },
): DayPoints[] {
  const days = options.days ?? 30;
  const today = Math.floor(options.now / DAY_MS);
  const out: DayPoints[] = [];
  for (let d = today - days + 1; d <= today; d++) {
    out.push({ date: new Date(d * DAY_MS).toISOString().slice(0, 10), points: 0, count: 0 });
  }
  for (const e of entries) {
    if (!included(e, options.usageTypes)) continue;
    const index = Math.floor(e.creation_time / 1000 / DAY_MS) - (today - days + 1);
    if (index < 0 || index >= days) continue;
    out[index].points += e.cost_points;
    out[index].count++;
  }
  return out;
}
