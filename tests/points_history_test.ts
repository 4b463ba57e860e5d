import assert from "node:assert/strict";
import { dailyTotals, readHistory, summarizeByModel } from "../lib/points_history.ts";
import { UsageApi } from "../lib/usage_api.ts";
import type { PointsEntry } from "../lib/usage_api.ts";
import { FakePoe } from "./fake_poe.ts";

const DAY = 86_400_000;
const NOW = Date.now();

function entry(bot: string, points: number, ageMs: number, type = "API"): PointsEntry {
  return {
    query_id: crypto.randomUUID(),
    bot_name: bot,
    creation_time: (NOW - ageMs) * 1000,
    usage_type: type,
    cost_points: points,
  };
}

Deno.test("readHistory pages with starting_after and stops at the cutoff time", async () => {
  await using fake = await FakePoe.start();
  for (let i = 0; i < 250; i++) {
    fake.addHistory({
      bot_name: "GPT-4o",
      cost_points: 1,
      creation_time: (NOW - i * 60_000) * 1000,
    });
  }
  fake.addHistory({ bot_name: "Old", cost_points: 1, creation_time: (NOW - 2 * DAY) * 1000 });
  const api = new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey });
  const all = await readHistory(api, { since: NOW - DAY });
  assert.equal(all.entries.length, 250);
  assert.equal(all.truncated, false);
  assert.equal(all.pages, 3);
  const searches = fake.requests.map((r) => r.search);
  assert.equal(searches[0], "?limit=100");
  assert.match(searches[1], /^\?limit=100&starting_after=/);
  // A cutoff inside the first page costs one call.
  fake.reset();
  const recent = await readHistory(api, { since: NOW - 30 * 60_000 - 1 });
  assert.equal(recent.entries.length, 31);
  assert.equal(fake.usageCalls(), 1);
  const capped = await readHistory(api, { since: 0, maxPages: 2 });
  assert.equal(capped.truncated, true);
  assert.equal(capped.entries.length, 200);
});

Deno.test("summarizeByModel sums 1, 7 and 30 days per model, case-insensitively", () => {
  const entries = [
    entry("GPT-4o", 100, 1000),
    entry("gpt-4o", 50, 3 * DAY),
    entry("GPT-4o", 10, 20 * DAY),
    entry("GPT-4o", 999, 31 * DAY),
    entry("Claude-Sonnet-4.6", 300, 10 * DAY, "Chat"),
    entry("Claude-Sonnet-4.6", -20, 2000),
  ];
  const s = summarizeByModel(entries, { now: NOW });
  assert.deepEqual(s.models.map((m) => [m.model, m.day, m.week, m.month, m.count]), [
    ["Claude-Sonnet-4.6", -20, -20, 280, 2],
    ["GPT-4o", 100, 150, 160, 3],
  ]);
  assert.deepEqual(s.total, { day: 80, week: 130, month: 440, count: 5 });
  const api = summarizeByModel(entries, { now: NOW, usageTypes: ["api"] });
  assert.equal(api.total.month, 140);
});

Deno.test("dailyTotals gives 30 UTC days oldest first, empty days included", () => {
  const now = Date.UTC(2026, 0, 31, 12);
  const at = (iso: string, points: number): PointsEntry => ({
    ...entry("X", points, 0),
    creation_time: Date.parse(iso) * 1000,
  });
  const days = dailyTotals([
    at("2026-01-31T01:00:00Z", 5),
    at("2026-01-31T23:00:00Z", 6),
    at("2026-01-02T00:00:00Z", 7),
    at("2026-01-01T23:59:59Z", 100),
  ], { now });
  assert.equal(days.length, 30);
  assert.deepEqual(days[0], { date: "2026-01-02", points: 7, count: 1 });
  assert.deepEqual(days[29], { date: "2026-01-31", points: 11, count: 2 });
  assert.equal(days.reduce((n, d) => n + d.points, 0), 18);
  assert.equal(dailyTotals([], { now, days: 7 }).length, 7);
});
