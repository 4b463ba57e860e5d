import assert from "node:assert/strict";
import { ClaimedEntries, overlap, type PairableAnswer, pairEntries } from "../lib/cost_pairing.ts";
import type { PointsEntry } from "../lib/usage_api.ts";

interface Answer extends PairableAnswer {
  name: string;
  waiting?: boolean;
  covered?: boolean;
}

/** An answer; by default its request ran from 0 to 1 ms, as if alone. */
function answer(name: string, o: Partial<Answer> = {}): Answer {
  return {
    name,
    model: "gpt-4o",
    startedAtUs: 0,
    tokens: null,
    arrivedAt: 0,
    finishedAt: 1,
    ...o,
  };
}

/** Its request ran from `from` to `to` ms (this machine's clock). */
const ran = (from: number, to: number) => ({ arrivedAt: from, finishedAt: to });

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

Deno.test("by order: answers that ran one after another take the entries in that order, whatever the page order", () => {
  const answers = [
    answer("a", ran(0, 10)),
    answer("c", { model: "claude", ...ran(5, 25) }),
    answer("b", ran(20, 30)),
  ];
  const page = [
    entry("new", 300),
    entry("claude1", 250, { bot: "Claude" }),
    entry("old", 100),
  ];
  assert.deepEqual(pair(answers, page), { a: "old", b: "new", c: "claude1" });
});

Deno.test("by order: answers without token counts that overlapped in time take no entry", () => {
  // Poe may stamp an entry when it receives the request or when it is done: either order.
  const answers = [answer("a", ran(0, 10)), answer("b", ran(5, 12)), answer("c", ran(10, 20))];
  assert.deepEqual(pair(answers, [entry("e1", 100), entry("e2", 200), entry("e3", 300)]), {});
  // One over before the other arrived: paired (a millisecond apart is enough).
  const apart = [answer("a", ran(0, 10)), answer("b", ran(11, 12))];
  assert.deepEqual(pair(apart, [entry("e1", 100), entry("e2", 200)]), { a: "e1", b: "e2" });
});

Deno.test("by order: an answer that overlapped none takes the entry of its rank, the others none", () => {
  const answers = [
    answer("x", ran(0, 10)),
    answer("y", ran(5, 15)),
    answer("z", ran(20, 30)),
    answer("first", ran(-10, -5)),
  ];
  const page = [entry("e4", 400), entry("e3", 300), entry("e2", 200), entry("e1", 100)];
  assert.deepEqual(pair(answers, page), { first: "e1", z: "e4" });
});

Deno.test("by order: more entries than answers (someone else's) or fewer (one not shown yet) pair none", () => {
  const answers = [answer("a", ran(0, 10)), answer("b", ran(20, 30))];
  assert.deepEqual(pair(answers, [entry("e1", 100), entry("e2", 200), entry("e3", 300)]), {});
  assert.deepEqual(pair(answers, [entry("e2", 200)]), {});
  assert.deepEqual(pair([answer("alone")], [entry("e1", 100), entry("e2", 200)]), {});
  assert.deepEqual(pair([answer("alone")], [entry("e1", 100)]), { alone: "e1" });
});

Deno.test("by order: an answer whose client left overlaps every later one", () => {
  const left = answer("left", { ...ran(10, Infinity), startedAtUs: 10 });
  const next = answer("next", { ...ran(20, 30), startedAtUs: 20 });
  // One entry: the left answer's, billed, or the next one's. Two: in either order.
  assert.deepEqual(pair([left, next], [entry("e", 300)]), {});
  assert.deepEqual(pair([left, next], [entry("e1", 300), entry("e2", 400)]), {});
  // Alone, or after answers over before it arrived, it is paired.
  assert.deepEqual(pair([left], [entry("e", 300)]), { left: "e" });
  const before = answer("before", ran(0, 5));
  assert.deepEqual(pair([left, before], [entry("e1", 3), entry("e2", 300)]), {
    before: "e1",
    left: "e2",
  });
  assert.equal(overlap(left, next), true);
  assert.equal(overlap(before, left), false);
  assert.equal(overlap(next, answer("later", ran(31, 40))), false);
  assert.equal(overlap(next, answer("touching", ran(30, 40))), true);
});

Deno.test("by order: an answer matched by its tokens no longer stands in the way of one without", () => {
  const answers = [
    answer("plain", ran(0, 10)),
    answer("counted", { ...ran(5, 15), tokens: { prompt: 3, completion: 4 } }),
  ];
  const page = [entry("c", 120, { tokens: [3, 4] }), entry("p", 80, { tokens: [9, 9] })];
  assert.deepEqual(pair(answers, page), { counted: "c", plain: "p" });
  // Its entry not shown yet: the other has two possible owners.
  assert.deepEqual(pair(answers, [entry("p", 80, { tokens: [9, 9] })]), {});
});

Deno.test("by order: an entry older than the start of the answer of its rank pairs none of them", () => {
  const answers = [
    answer("early", ran(0, 10)),
    answer("late", { ...ran(20, 30), startedAtUs: 200 }),
  ];
  assert.deepEqual(pair(answers, [entry("e50", 50), entry("e100", 100)]), {});
});

Deno.test("by order: an answer with token counts is never given an entry that records others", () => {
  // Another answer's entry landed before the proxy saw that answer end: the count fits, the
  // tokens do not.
  const counted = answer("counted", { tokens: { prompt: 7, completion: 5 } });
  assert.deepEqual(pair([counted], [entry("other", 100, { tokens: [512, 5] })]), {});
  // An entry without a readable breakdown, or not settled yet, is still paired by order.
  assert.deepEqual(pair([counted], [entry("plain", 100)]), { counted: "plain" });
  assert.deepEqual(pair([counted], [entry("zero", 100, { points: 0 })]), { counted: "zero" });
  // One wrong rank means a wrong count: none of the group is paired.
  const group = [answer("plain", ran(0, 10)), { ...counted, ...ran(20, 30) }];
  assert.deepEqual(pair(group, [entry("e1", 100), entry("e2", 200, { tokens: [1, 1] })]), {});
});

Deno.test("by order: none of a model while a request of it, sent before the read, still runs", () => {
  const answers = [answer("a", ran(0, 10)), answer("c", { model: "claude", ...ran(0, 10) })];
  const page = [entry("e1", 100), entry("c1", 100, { bot: "Claude" })];
  const found = pairEntries(answers, page, { covered: () => true, busy: (m) => m === "gpt-4o" });
  assert.deepEqual(Object.fromEntries([...found].map(([a, e]) => [a.name, e.query_id])), {
    c: "c1",
  });
  // Token matches need no order: a running request does not stop them.
  const counted = [answer("t", { tokens: { prompt: 2, completion: 3 } })];
  const byTokens = pairEntries(counted, [entry("t1", 100, { tokens: [2, 3] })], {
    covered: () => true,
    busy: () => true,
  });
  assert.equal(byTokens.get(counted[0])?.query_id, "t1");
});

Deno.test("an entry created before an answer started is not its own", () => {
  const answers = [
    answer("early", ran(0, 10)),
    answer("late", { startedAtUs: 200, ...ran(20, 30) }),
  ];
  assert.deepEqual(pair(answers, [entry("e100", 100), entry("e300", 300)]), {
    late: "e300",
    early: "e100",
  });
  assert.deepEqual(pair([answer("late", { startedAtUs: 200 })], [entry("e100", 100)]), {});
});

Deno.test("a token match wins over order", () => {
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

Deno.test("an answer not covered keeps those of its model from pairing by order; token matches need no cover", () => {
  const answers = [
    answer("uncovered", { covered: false, ...ran(0, 10) }),
    answer("matched", { covered: false, tokens: { prompt: 2, completion: 3 } }),
    answer("covered", ran(20, 30)),
  ];
  const page = [entry("plain", 100), entry("tok", 150, { tokens: [2, 3] })];
  // The entries since the uncovered answer's start are not all known: they cannot be counted.
  assert.deepEqual(pair(answers, page), { matched: "tok" });
  assert.deepEqual(pair(answers.slice(1), page), { matched: "tok", covered: "plain" });
});

Deno.test("entries of other usage types, refunds and claimed entries are skipped", () => {
  const claimed = new ClaimedEntries();
  claimed.add("taken");
  const answers = [answer("a")];
  const page = [
    entry("chat", 100, { type: "Chat" }),
    entry("refund", 110, { points: -5 }),
    entry("taken", 120),
    entry("api", 130, { type: "api" }),
  ];
  assert.deepEqual(pair(answers, page, claimed), { a: "api" });
});

Deno.test("an entry not yet settled (0 points) is paired by order but never by its tokens", () => {
  const answers = [
    answer("b", ran(0, 10)),
    answer("a", { tokens: { prompt: 5, completion: 9 }, ...ran(20, 30) }),
  ];
  const page = [entry("settled", 200), entry("unsettled", 100, { points: 0, tokens: [5, 9] })];
  const found = pair(answers, page);
  assert.deepEqual(found, { b: "unsettled", a: "settled" });
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
  const byOrder = pairEntries(answers, [own, other], { covered: () => true });
  assert.equal(byOrder.size, 0, "without the name, two entries for one answer: neither is sure");
  const known = pairEntries(answers, [own, other], { covered: () => true, keyName: "proxy-key" });
  assert.equal(known.get(answers[0])?.query_id, "ours");
  // Entries without a name are never skipped.
  const withUnnamed = pairEntries(answers, [unnamed, other], {
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

Deno.test("a configured key name: another app's entry is not taken by order for an answer without token counts, its own is", () => {
  const a = answer("a", { startedAtUs: 100 });
  const theirs = { ...entry("theirs", 200, { points: 5000 }), api_key_name: "other-app" };
  const ours = { ...entry("ours", 300), api_key_name: "proxy-key" };
  // Poe sent no usage, so no name was ever learnt: the other app's entry, alone so far, is taken.
  const learnt = pairEntries([a], [theirs], { covered: () => true, keyName: null });
  assert.equal(learnt.get(a)?.query_id, "theirs");
  const configured = { covered: () => true, keyName: "proxy-key", keyNameConfigured: true };
  assert.equal(pairEntries([a], [theirs], configured).size, 0);
  assert.equal(pairEntries([a], [ours, theirs], configured).get(a)?.query_id, "ours");
});

Deno.test("a configured key name: another key's entry is not taken by its token counts either, only reported", () => {
  const a = answer("a", { startedAtUs: 100, tokens: { prompt: 7, completion: 5 } });
  const b = answer("b", { startedAtUs: 100, tokens: { prompt: 9, completion: 9 } });
  const renamed = { ...entry("renamed", 200, { tokens: [7, 5] }), api_key_name: "new-name" };
  const mine = { ...entry("mine", 210, { tokens: [9, 9] }), api_key_name: "old-name" };
  const reported: [string, string][] = [];
  const found = pairEntries([a, b], [renamed, mine], {
    covered: () => true,
    keyName: "old-name",
    keyNameConfigured: true,
    onOtherKey: (x, e) => reported.push([x.name, e.query_id]),
  });
  assert.deepEqual([...found].map(([x, e]) => [x.name, e.query_id]), [["b", "mine"]]);
  assert.deepEqual(reported, [["a", "renamed"]]);
  // Without the callback the same: nothing taken.
  const quiet = pairEntries([a], [renamed], {
    covered: () => true,
    keyName: "old-name",
    keyNameConfigured: true,
  });
  assert.equal(quiet.size, 0);
});

Deno.test("pairEntries: tool calls at once, known by their prompt counts alone, each get their own entry", () => {
  // Two agents' calls overlapped: by order neither is sure; Poe billed the calls' tokens.
  const a = answer("a", { ...ran(0, 10), promptTokens: 100 });
  const b = answer("b", { ...ran(2, 12), promptTokens: 120 });
  const entries = [
    entry("eb", 11, { points: 27, tokens: [120, 9] }),
    entry("ea", 10, { points: 22, tokens: [100, 8] }),
  ];
  assert.deepEqual(pair([a, b], entries), { a: "ea", b: "eb" });
  // No answer of that count, or two entries of it: in doubt, none.
  assert.deepEqual(pair([a, b], [entries[0], entry("x", 10, { tokens: [300, 8] })]), { b: "eb" });
  assert.deepEqual(
    pair([a, b], [...entries, entry("ea2", 11, { points: 99, tokens: [100, 5] })]),
    { b: "eb" },
  );
  // Two answers of the same count: either entry could be either's.
  const c = answer("c", { ...ran(1, 11), promptTokens: 100 });
  assert.deepEqual(pair([a, c], [entries[1], entry("ec", 12, { tokens: [100, 9] })]), {});
  // An entry older than the answer's start is not its own.
  const late = answer("late", { ...ran(0, 10), startedAtUs: 50, promptTokens: 100 });
  assert.deepEqual(pair([late, b], entries), { b: "eb" });
});
