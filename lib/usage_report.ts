/** @module `poe-proxy usage`: balance, next grant and points per model over 1, 7 and 30 days. */
import { type PointsSummary, readHistory, summarizeByModel } from "./points_history.ts";
import type { BalanceReport, UsageSource } from "./usage_api.ts";

const DAY_MS = 86_400_000;

/** What `poe-proxy usage` shows. */
export interface UsageReport {
  /** Milliseconds since the epoch when it was read. */
  now: number;
  balance: BalanceReport;
  summary: PointsSummary;
  /** The history had more pages than were read. */
  truncated: boolean;
}

/** Reads the balance and 30 days of points history (in parallel). */
export async function fetchUsageReport(
  api: UsageSource,
  options: { now?: number; maxPages?: number } = {},
): Promise<UsageReport> {
  const now = options.now ?? Date.now();
  const [balance, history] = await Promise.all([
    api.currentBalance(),
    readHistory(api, { since: now - 30 * DAY_MS, maxPages: options.maxPages }),
  ]);
  return {
    now,
    balance,
    summary: summarizeByModel(history.entries, { now }),
    truncated: history.truncated,
  };
}

const grouped = (n: number) => Math.round(n).toLocaleString("en-US");

/** The report as text (a table) or as JSON. */
export function formatUsageReport(report: UsageReport, json = false): string {
  const { balance, summary } = report;
  if (json) {
    return JSON.stringify(
      {
        balance: balance.balance,
        next_grant: balance.nextGrant && {
          time: new Date(balance.nextGrant.time).toISOString(),
          amount: balance.nextGrant.amount,
          kind: balance.nextGrant.kind,
        },
        models: summary.models.map((m) => ({
          model: m.model,
          points_1d: m.day,
          points_7d: m.week,
          points_30d: m.month,
          entries_30d: m.count,
        })),
        total: {
          points_1d: summary.total.day,
          points_7d: summary.total.week,
          points_30d: summary.total.month,
          entries_30d: summary.total.count,
        },
        truncated: report.truncated,
      },
      null,
      2,
    );
  }
  const lines = [`Balance: ${grouped(balance.balance)} points`];
  const grant = balance.nextGrant;
  if (grant) {
    const when = new Date(grant.time).toISOString().slice(0, 16).replace("T", " ");
    const days = (grant.time - report.now) / DAY_MS;
    const rel = days < 1
      ? `in ${Math.max(0, Math.round(days * 24))} h`
      : Math.round(days) === 1
      ? "in 1 day"
      : `in ${Math.round(days)} days`;
    lines.push(
      `Next ${grant.kind} grant: ${when} UTC (${rel})` +
        (grant.amount === null ? "" : `, ${grouped(grant.amount)} points`),
    );
  } else {
    lines.push("Next grant: not announced by Poe");
  }
  lines.push("");
  const rows = [
    ["Model", "1 day", "7 days", "30 days"],
    ...summary.models.map((m) => [m.model, grouped(m.day), grouped(m.week), grouped(m.month)]),
    [
      "Total",
      grouped(summary.total.day),
      grouped(summary.total.week),
      grouped(summary.total.month),
    ],
  ];
  if (summary.models.length === 0) lines.push("No points spent in the last 30 days.");
  else {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    const line = (r: string[]) =>
      r.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ");
    lines.push(line(rows[0]), ...rows.slice(1, -1).map(line), line(rows.at(-1)!));
  }
  if (report.truncated) lines.push("(history truncated: older entries were not read)");
  return lines.join("\n");
}
