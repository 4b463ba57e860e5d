/** @module fetchUsageReport and formatUsageReport: `poe-proxy usage`, as a table and as JSON. */
import assert from "node:assert/strict";
import { fetchUsageReport, formatUsageReport, type UsageReport } from "../lib/usage_report.ts";
import {
  type BalanceReport,
  type PointsEntry,
  type PointsPage,
  type PointsPageOptions,
  UsageApi,
  type UsageSource,
} from "../lib/usage_api.ts";
import { FakePoe } from "./fake_poe.ts";

const DAY = 86_400_000;
const NOW = Date.now();

/** A report at a fixed time with the given balance, grant and rows. */
function report(options: {
  balance?: number;
  grant?: BalanceReport["nextGrant"];
  models?: [string, number, number, number, number][];
  truncated?: boolean;
}): UsageReport {
  const now = Date.UTC(2026, 0, 15, 12);
  const models = (options.models ?? []).map(([model, day, week, month, count]) => ({
    model,
    day,
    week,
    month,
    count,
  }));
  const sum = (k: "day" | "week" | "month" | "count") => models.reduce((n, m) => n + m[k], 0);
  return {
    now,
    balance: { balance: options.balance ?? 1000, nextGrant: options.grant ?? null },
    summary: {
      models,
      total: { day: sum("day"), week: sum("week"), month: sum("month"), count: sum("count") },
    },
    truncated: options.truncated ?? false,
  };
}

Deno.test("formatUsageReport prints balance, next grant and a per-model table", async () => {
  await using fake = await FakePoe.start({ balance: 1_234_567 });
  fake.addHistory({ bot_name: "GPT-4o", cost_points: 339, creation_time: (NOW - 1000) * 1000 });
  fake.addHistory({
    bot_name: "Gemini-2.5-Pro",
    cost_points: 1200,
    creation_time: (NOW - 5 * DAY) * 1000,
  });
  const api = new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey });
  const report = await fetchUsageReport(api, { now: NOW });
  const text = formatUsageReport(report);
  const lines = text.split("\n");
  assert.equal(lines[0], "Balance: 1,234,567 points");
  assert.match(lines[1], /^Next (daily|monthly) grant: \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in /);
  assert.match(text, /Model\s+1 day\s+7 days\s+30 days/);
  assert.match(text, /Gemini-2\.5-Pro\s+0\s+1,200\s+1,200/);
  assert.match(text, /GPT-4o\s+339\s+339\s+339/);
  assert.match(text, /Total\s+339\s+1,539\s+1,539/);
  // deno-lint-ignore no-explicit-any
  const json: any = JSON.parse(formatUsageReport(report, true));
  assert.equal(json.balance, 1_234_567);
  assert.equal(json.models[0].model, "Gemini-2.5-Pro");
  assert.equal(json.total.points_30d, 1539);
  fake.clearHistory();
  const empty = formatUsageReport(await fetchUsageReport(api));
  assert.match(empty, /No points spent in the last 30 days\./);
});

Deno.test("fetchUsageReport reads the balance and the history at once, 30 days back from now", async () => {
  const now = Date.UTC(2026, 0, 31);
  const entry = (bot: string, points: number, ageDays: number): PointsEntry => ({
    query_id: `${bot}-${ageDays}`,
    bot_name: bot,
    creation_time: (now - ageDays * DAY) * 1000,
    usage_type: "API",
    cost_points: points,
  });
  const calls: string[] = [];
  const balance = Promise.withResolvers<BalanceReport>();
  const api: UsageSource = {
    currentBalance() {
      calls.push("balance");
      return balance.promise;
    },
    pointsHistory(_options?: PointsPageOptions): Promise<PointsPage> {
      calls.push("history");
      return Promise.resolve({
        data: [entry("A", 10, 0.5), entry("B", 20, 3), entry("A", 30, 29), entry("A", 99, 31)],
        hasMore: false,
      });
    },
  };
  const reading = fetchUsageReport(api, { now });
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(calls, ["balance", "history"], "the history is read while the balance is");
  balance.resolve({ balance: 5, nextGrant: null });
  const r = await reading;
  assert.equal(r.now, now);
  assert.equal(r.truncated, false);
  assert.deepEqual(r.balance, { balance: 5, nextGrant: null });
  assert.deepEqual(r.summary.models.map((m) => [m.model, m.day, m.week, m.month, m.count]), [
    ["A", 10, 10, 40, 2],
    ["B", 0, 20, 20, 1],
  ]);
});

Deno.test("fetchUsageReport reads no further back than 30 days", async () => {
  const now = Date.UTC(2026, 0, 31);
  const ages = [29, 30.5, 32, 40];
  const asked: (string | undefined)[] = [];
  const api: UsageSource = {
    currentBalance: () => Promise.resolve({ balance: 1, nextGrant: null }),
    pointsHistory: (options?: PointsPageOptions) => {
      asked.push(options?.startingAfter);
      const i = asked.length - 1;
      return Promise.resolve({
        data: [{
          query_id: `q${i}`,
          bot_name: "A",
          creation_time: (now - ages[i] * DAY) * 1000,
          usage_type: "API",
          cost_points: 1,
        }],
        hasMore: i < ages.length - 1,
      });
    },
  };
  const r = await fetchUsageReport(api, { now });
  // The entry of 30.5 days ago ends the reading: one page past it would be wasted.
  assert.deepEqual(asked, [undefined, "q0"]);
  assert.equal(r.summary.total.count, 1);
  assert.equal(r.truncated, false);
});

Deno.test("fetchUsageReport: maxPages cuts a long history short and says so", async () => {
  let pages = 0;
  const api: UsageSource = {
    currentBalance: () => Promise.resolve({ balance: 1, nextGrant: null }),
    pointsHistory: () => {
      pages++;
      return Promise.resolve({
        data: [{
          query_id: `q${pages}`,
          bot_name: "A",
          creation_time: (NOW - pages * 60_000) * 1000,
          usage_type: "API",
          cost_points: 1,
        }],
        hasMore: true,
      });
    },
  };
  const r = await fetchUsageReport(api, { now: NOW, maxPages: 3 });
  assert.equal(pages, 3);
  assert.equal(r.truncated, true);
  assert.equal(r.summary.total.count, 3);
  assert.match(formatUsageReport(r), /\n\(history truncated: older entries were not read\)$/);
});

Deno.test("formatUsageReport: a grant within a day is in hours, never below 0; later in days", () => {
  const now = Date.UTC(2026, 0, 15, 12);
  const line = (time: number, amount: number | null, kind: "daily" | "monthly" = "daily") =>
    formatUsageReport(report({ grant: { time, amount, kind } })).split("\n")[1];
  assert.equal(
    line(now + 5.4 * 3_600_000, null),
    "Next daily grant: 2026-01-15 17:24 UTC (in 5 h)",
  );
  // A grant already past (the balance is old): 0 h, not a negative count.
  assert.equal(line(now - 2 * 3_600_000, null), "Next daily grant: 2026-01-15 10:00 UTC (in 0 h)");
  // From a whole day on, days: one of them is a day.
  assert.match(line(now + DAY, null), /\(in 1 day\)$/);
  assert.match(line(now + 1.4 * DAY, null), /\(in 1 day\)$/);
  assert.equal(
    line(now + 12.6 * DAY, 1_000_000, "monthly"),
    "Next monthly grant: 2026-01-28 02:24 UTC (in 13 days), 1,000,000 points",
  );
  assert.equal(
    formatUsageReport(report({})).split("\n")[1],
    "Next grant: not announced by Poe",
  );
});

Deno.test("formatUsageReport: the table aligns names left and figures right, rounded and grouped", () => {
  const text = formatUsageReport(report({
    balance: 1_234_567.6,
    models: [["Claude-Sonnet-4.6", 1234.6, 12_000, 150_000, 40], ["GPT-4o", -20, 0, 5, 2]],
  }));
  assert.deepEqual(text.split("\n"), [
    "Balance: 1,234,568 points",
    "Next grant: not announced by Poe",
    "",
    "Model              1 day  7 days  30 days",
    "Claude-Sonnet-4.6  1,235  12,000  150,000",
    "GPT-4o               -20       0        5",
    "Total              1,215  12,000  150,005",
  ]);
});

Deno.test("formatUsageReport as JSON: an ISO grant time, null without one, the truncation flag", () => {
  const json = JSON.parse(formatUsageReport(
    report({
      grant: { time: Date.UTC(2026, 1, 1), amount: null, kind: "monthly" },
      models: [["A", 1, 2, 3, 4]],
      truncated: true,
    }),
    true,
  ));
  assert.deepEqual(json, {
    balance: 1000,
    next_grant: { time: "2026-02-01T00:00:00.000Z", amount: null, kind: "monthly" },
    models: [{ model: "A", points_1d: 1, points_7d: 2, points_30d: 3, entries_30d: 4 }],
    total: { points_1d: 1, points_7d: 2, points_30d: 3, entries_30d: 4 },
    truncated: true,
  });
  assert.equal(JSON.parse(formatUsageReport(report({}), true)).next_grant, null);
});
