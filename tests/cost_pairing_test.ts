import assert from "node:assert/strict";
import {
  ClaimedEntries,
  KeyNameLearner,
  type PairableAnswer,
  pairEntries,
} from "../lib/cost_pairing.ts";
import type { PointsEntry } from "../lib/usage_api.ts";

interface Answer extends PairableAnswer {
  name: string;
  waiting?: boolean;
  covered?: boolean;
}

function answer(name: string, o: Partial<Answer> = {}): Answer {
  return { name, model: "gpt-4o", startedAtUs: 0, tokens: null, ...o };
}

/** An entry created at `at` µs; `tokens` fills its cost breakdown as Poe writes it. */
function entry(
  id: string,
  at: number,
  o: { bot?: string; points?: number; type?: string; tokens?: [number, number] } = {},
): PointsEntry {
  return {
    query_id: id,
    bot_name: o.bot ?? "GPT-4o",
    creation_time: at,
    usage_type: o.type ?? "API",
    cost_points: o.points ?? 10,
    cost_breakdown_in_points: o.tokens
      ? {
        Input: `3 points (${o.tokens[0]} tokens)`,
        Output: `7 points (${o.tokens[1]} tokens)`,
      }
      : {},
  };
}

/** Pairs with every answer covered unless it says otherwise; returns answer name to query_id. */
function pair(
  answers: Answer[],
  entries: PointsEntry[],
  claimed?: ClaimedEntries,
): Record<string, string> {
  const found = pairEntries(answers, entries, {
    covered: (a) => a.covered ?? true,
    waiting: (a) => a.waiting ?? false,
    claimed,
  });
  return Object.fromEntries([...found].map(([a, e]) => [a.name, e.query_id]));
}

Deno.test("FIFO per model: answers in order of completion take the oldest entries, whatever the page order", () => {
  const answers = [answer("a"), answer("b"), answer("c", { model: "claude" })];
  const page = [
    entry("new", 300),
    entry("claude1", 250, { bot: "Claude" }),
    entry("old", 100),
  ];
  assert.deepEqual(pair(answers, page), { a: "old", b: "new", c: "claude1" });
});

Deno.test("an entry created before an answer started is not its own", () => {
  const answers = [answer("late", { startedAtUs: 200 }), answer("early")];
  assert.deepEqual(pair(answers, [entry("e100", 100), entry("e300", 300)]), {
    late: "e300",
    early: "e100",
  });
});

Deno.test("a token match wins over FIFO order", () => {
  const answers = [answer("a", { tokens: { prompt: 5, completion: 9 } }), answer("b")];
  const page = [entry("match", 200, { tokens: [5, 9] }), entry("older", 100, { tokens: [1, 1] })];
  assert.deepEqual(pair(answers, page), { a: "match", b: "older" });
});

Deno.test("token matches go to waiting answers before answers watched in the background", () => {
  const tokens = { prompt: 5, completion: 9 };
  const answers = [
    answer("watched", { tokens, covered: false }),
    answer("waiting", { tokens, waiting: true, covered: false }),
  ];
  assert.deepEqual(pair(answers, [entry("only", 100, { tokens: [5, 9] })]), { waiting: "only" });
});

Deno.test("only covered answers are paired by FIFO; token matches need no cover", () => {
  const answers = [
    answer("uncovered", { covered: false }),
    answer("matched", { covered: false, tokens: { prompt: 2, completion: 3 } }),
    answer("covered"),
  ];
  const page = [entry("plain", 100), entry("tok", 150, { tokens: [2, 3] })];
  assert.deepEqual(pair(answers, page), { matched: "tok", covered: "plain" });
});

Deno.test("entries of other usage types, refunds and claimed entries are skipped", () => {
  const claimed = new ClaimedEntries();
  claimed.add("taken");
  const answers = [answer("a"), answer("b")];
  const page = [
    entry("chat", 100, { type: "Chat" }),
    entry("refund", 110, { points: -5 }),
    entry("taken", 120),
    entry("api", 130, { type: "api" }),
  ];
  assert.deepEqual(pair(answers, page, claimed), { a: "api" });
});

Deno.test("an entry not yet settled (0 points) is paired by FIFO but never by its tokens", () => {
  const answers = [answer("a", { tokens: { prompt: 5, completion: 9 } }), answer("b")];
  const page = [entry("settled", 200), entry("unsettled", 100, { points: 0, tokens: [5, 9] })];
  const found = pair(answers, page);
  assert.deepEqual(found, { a: "unsettled", b: "settled" });
});

Deno.test("nothing to pair gives an empty map", () => {
  assert.equal(pairEntries([], [entry("e", 1)], { covered: () => true }).size, 0);
  assert.equal(pairEntries([answer("a")], [], { covered: () => true }).size, 0);
  assert.equal(pair([answer("a", { model: "other" })], [entry("e", 1)]).a, undefined);
});

Deno.test("ClaimedEntries forgets the oldest claim past its bound", () => {
  const claimed = new ClaimedEntries(2);
  claimed.add("q1");
  claimed.add("q2");
  claimed.add("q3");
  assert.equal(claimed.size, 2);
  assert.equal(claimed.has("q1"), false);
  assert.equal(claimed.has("q2"), true);
  assert.equal(claimed.has("q3"), true);
  // A claim made twice takes one place; the bound holds over many rounds.
  claimed.add("q3");
  claimed.add("q4");
  assert.deepEqual(["q2", "q3", "q4"].map((q) => claimed.has(q)), [false, true, true]);
  for (let i = 5; i < 1000; i++) claimed.add(`q${i}`);
  assert.equal(claimed.size, 2);
  assert.deepEqual(["q997", "q998", "q999"].map((q) => claimed.has(q)), [false, true, true]);
});

Deno.test("pairEntries: entries older than every answer are passed over, even unclaimed", () => {
  const a = answer("a", { startedAtUs: 1_000_000 });
  const entries = [entry("old", 999_999, { points: 5 }), entry("own", 1_000_500, { points: 7 })];
  const paired = pairEntries([a], entries, { covered: () => true });
  assert.equal(paired.get(a)?.query_id, "own");
});

Deno.test("entries of another api_key_name are skipped once this proxy's key name is known", () => {
  const answers = [answer("a", { startedAtUs: 100 })];
  const other = { ...entry("theirs", 200, { points: 5000 }), api_key_name: "other-app" };
  const own = { ...entry("ours", 300), api_key_name: "proxy-key" };
  const unnamed = entry("unnamed", 250);
  const byFifo = pairEntries(answers, [own, other], { covered: () => true });
  assert.equal(
    byFifo.get(answers[0])?.query_id,
    "theirs",
    "without the name, FIFO takes the oldest",
  );
  const known = pairEntries(answers, [own, other], { covered: () => true, keyName: "proxy-key" });
  assert.equal(known.get(answers[0])?.query_id, "ours");
  // Entries without a name are never skipped.
  const withUnnamed = pairEntries(answers, [own, unnamed, other], {
    covered: () => true,
    keyName: "proxy-key",
  });
  assert.equal(withUnnamed.get(answers[0])?.query_id, "unnamed");
});

Deno.test("another key's entry is still paired by its token counts, so a renamed key is seen", () => {
  const answers = [answer("a", { startedAtUs: 100, tokens: { prompt: 7, completion: 5 } })];
  const renamed = { ...entry("renamed", 200, { tokens: [7, 5] }), api_key_name: "new-name" };
  const found = pairEntries(answers, [renamed], { covered: () => true, keyName: "old-name" });
  assert.equal(found.get(answers[0])?.query_id, "renamed");
});

Deno.test("KeyNameLearner trusts a name after three token matches in a row, forgets it on another", () => {
  const learner = new KeyNameLearner();
  learner.confirm("proxy-key");
  learner.confirm("proxy-key");
  assert.equal(learner.name, null);
  learner.confirm(null);
  learner.confirm("");
  learner.confirm("proxy-key");
  assert.equal(learner.name, "proxy-key");
  learner.confirm("renamed");
  assert.equal(learner.name, null);
  for (let i = 0; i < 2; i++) learner.confirm("renamed");
  assert.equal(learner.name, "renamed");
});
