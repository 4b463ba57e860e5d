import assert from "node:assert/strict";
import type { RunningTotal } from "../lib/running_costs.ts";
import { DEFAULT_COMPLETION_TOKENS, pricedInputTokens } from "../lib/guards.ts";
import { CountBudget, REQUEST_EXACT_BYTES, REQUEST_SAMPLE_BYTES } from "../lib/count_budget.ts";
import type { ChatRequest } from "../lib/openai_types.ts";
import { body, guards, NOW, snap } from "./guards_fixture.ts";
import { testRegistry } from "./harness.ts";
import { loadTokenizer, TokenCounter } from "../lib/tokens.ts";
import { ModelRegistry } from "../lib/models.ts";

// Guards.overCap counts tokens synchronously; the chat path loads the tokenizer first.
await loadTokenizer();

const registry = await testRegistry();
const gpt4o = registry.lookup("GPT-4o")!;

Deno.test("Guards.paused counts this proxy's spending since the last reading (Usage API down)", () => {
  let spent = 0;
  const { g } = guards(snap(150_000, { takenAt: NOW - 30 * 60_000 }), { spentSince: () => spent });
  assert.equal(g.paused(), null);
  spent = 49_000;
  assert.equal(g.paused(), null);
  spent = 50_001;
  const refusal = g.paused()!;
  assert.equal(refusal.guard, "paused");
  assert.equal(refusal.balance, 99_999);
  assert.match(
    refusal.message,
    /about 99,999 points \(150,000 at Poe's last reading, 30 minutes ago, less 50,001 points spent through this proxy since\)/,
  );
});

Deno.test("Guards.paused lets requests through at or above the cutoff", () => {
  const { g } = guards(snap(100_000));
  assert.equal(g.check(body(), gpt4o, registry), null);
});

Deno.test("Guards.paused refuses below the cutoff naming balance, cutoff and next grant", () => {
  const grant = { time: NOW + 3 * 86_400_000, amount: 1_000_000, kind: "monthly" as const };
  const { g } = guards(snap(80_000, { nextGrant: grant }));
  const refusal = g.check(body(), gpt4o, registry)!;
  assert.equal(refusal.guard, "paused");
  assert.equal(refusal.balance, 80_000);
  assert.match(refusal.message, /80,000 points/);
  assert.match(refusal.message, /POINTS_CUTOFF of 100,000/);
  assert.match(refusal.message, /1,000,000 points next on 2026-01-18 12:00 UTC \(in 3 days\)/);
  assert.match(refusal.message, /Nothing was sent to Poe/);
});

Deno.test("Guards.paused logs each turn once, with the balance and cutoff it compared", () => {
  let spent = 0;
  const { g, logger } = guards(snap(100_100), { spentSince: () => spent });
  const turns = () => logger.lines.filter((l) => / guard o(n|ff)/.test(l)).map((l) => l.slice(25));
  assert.equal(g.paused(), null);
  assert.deepEqual(turns(), [], "allowed at the first check: nothing to say");
  spent = 140;
  for (let i = 0; i < 3; i++) assert.equal(g.paused()?.balance, 99_960);
  spent = 16;
  assert.equal(g.paused(), null);
  assert.equal(g.paused(), null);
  assert.deepEqual(turns(), [
    "WARN  guard on: paused balance=99960 points_cutoff=100000 poe_balance=100100 spent_since=140",
    "INFO  guard off: spending allowed again balance=100084 points_cutoff=100000 poe_balance=100100 spent_since=16",
  ]);
});

Deno.test("Guards.paused counts what requests still running hold, and says so", () => {
  let running = { points: 0, count: 0 };
  const { g } = guards(snap(100_500), { running: () => running });
  assert.equal(g.paused(), null);
  running = { points: 500, count: 3 };
  assert.equal(g.paused(), null, "at the cutoff: allowed");
  running = { points: 600.4, count: 3 };
  const refusal = g.paused()!;
  assert.equal(refusal.guard, "paused");
  // The figure compared is the one shown.
  assert.equal(refusal.balance, 100_500 - 600.4);
  assert.match(
    refusal.message,
    /about 99,900 points \(100,500 at Poe's last reading, less about 600 points for 3 requests still running\), below the POINTS_CUTOFF of 100,000 points\. Ask again once those requests are done: their cost decides/,
  );
  running = { points: 600, count: 1 };
  assert.match(g.paused()!.message, /less about 600 points for 1 request still running\)/);
});

Deno.test("Guards.paused names requests still running held at a stand-in's price, and logs them", () => {
  let running: RunningTotal = { points: 600, count: 3, standIns: 1 };
  const { g, logger } = guards(snap(100_500), { running: () => running });
  assert.match(
    g.paused()!.message,
    /less about 600 points for 3 requests still running \(1 of them held at a stand-in: the dearest priced model of the same modality, for a model without a price in models\.yaml\)\)/,
  );
  running = { points: 600, count: 2, standIns: 2 };
  assert.match(
    g.paused()!.message,
    /for 2 requests still running \(held at a stand-in: .* for models without a price in models\.yaml\)\)/,
  );
  const on = logger.lines.find((l) => l.includes("guard on"));
  assert.match(on ?? "", /running_points=600 running_requests=3 running_stand_ins=1$/);
});

Deno.test("Guards.paused: spending and requests still running both counted, both named", () => {
  const { g } = guards(snap(100_500, { takenAt: NOW - 5 * 60_000 }), {
    spentSince: () => 1_000,
    running: () => ({ points: 250, count: 2 }),
  });
  const refusal = g.paused()!;
  assert.equal(refusal.balance, 99_250);
  assert.match(
    refusal.message,
    /about 99,250 points \(100,500 at Poe's last reading, 5 minutes ago, less 1,000 points spent through this proxy since, less about 250 points for 2 requests still running\)/,
  );
  // Below the cutoff without them: waiting for them would not help.
  assert.doesNotMatch(refusal.message, /Ask again/);
});

Deno.test("Guards.paused logs the turns requests still running make, with what they hold", () => {
  let running = { points: 0, count: 0 };
  const { g, logger } = guards(snap(100_100), { running: () => running });
  const turns = () => logger.lines.filter((l) => / guard o(n|ff)/.test(l)).map((l) => l.slice(25));
  assert.equal(g.paused(), null);
  running = { points: 143.5, count: 1 };
  assert.equal(g.paused()?.balance, 99_956.5);
  running = { points: 0, count: 0 };
  assert.equal(g.paused(), null);
  assert.deepEqual(turns(), [
    "WARN  guard on: paused balance=99957 points_cutoff=100000 poe_balance=100100 running_points=144 running_requests=1",
    "INFO  guard off: spending allowed again balance=100100 points_cutoff=100000",
  ]);
});

Deno.test("Guards.capCheck returns the input tokens it counted, the cap off or not over", () => {
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 1e6 });
  const counted = g.capCheck(body(), gpt4o, registry);
  assert.equal(counted.refusal, null);
  assert.ok(counted.input !== null && counted.input > 0);
  const { g: over } = guards(snap(1e6), { maxPointsPerMessage: 1 });
  const refused = over.capCheck(body(), gpt4o, registry);
  assert.equal(refused.refusal?.guard, "cost-cap");
  assert.equal(refused.input, counted.input);
  assert.deepEqual(guards(snap(1e6)).g.capCheck(body(), gpt4o, registry), {
    refusal: null,
    input: null,
    answerLimit: null,
  });
});

Deno.test("Guards.capCheck gives a request without an answer limit the most answer tokens the cap leaves", () => {
  const { g, logger } = guards(snap(1e6), { maxPointsPerMessage: 300 });
  const check = g.capCheck(body(), gpt4o, registry);
  const limit = check.answerLimit!;
  // At the limit the estimate is within the cap, a token more is over it.
  assert.ok(registry.estimatePoints(gpt4o, check.input!, limit)!.points <= 300);
  assert.ok(registry.estimatePoints(gpt4o, check.input!, limit + 1)!.points > 300);
  // A thinking budget is billed on top of the answer: the answer gets what it leaves.
  assert.equal(
    g.capCheck(body({ thinking_budget: 2_000 }), gpt4o, registry).answerLimit,
    limit - 2_000,
  );
  // Not when the request sets a limit of its own, nor with the cap off or refusing.
  assert.equal(g.capCheck(body({ max_tokens: 50 }), gpt4o, registry).answerLimit, null);
  assert.equal(g.capCheck(body({ max_tokens: 1e6 }), gpt4o, registry).answerLimit, null);
  // Nor past what any model writes, under a cap that high.
  const high = guards(snap(1e6), { maxPointsPerMessage: 1e6 }).g;
  assert.equal(high.capCheck(body(), gpt4o, registry).answerLimit, null);
  // Nor, once Poe refused its size for a model, one as large to that model again; a smaller one
  // is sent. A second refusal as large teaches nothing (two requests refused at once).
  g.limitRefused(gpt4o, limit, false);
  g.limitRefused(gpt4o, limit, false);
  assert.equal(g.capCheck(body(), gpt4o, registry).answerLimit, null);
  const longer = body({ messages: [{ role: "user", content: "lorem ipsum ".repeat(500) }] });
  const smaller = g.capCheck(longer, gpt4o, registry).answerLimit!;
  assert.ok(smaller < limit);
  assert.equal(logger.lines.filter((l) => l.includes("answer limit refused")).length, 1);
  // A refusal of the field itself: none at all from then on.
  g.limitRefused(gpt4o, smaller, true);
  assert.equal(g.capCheck(longer, gpt4o, registry).answerLimit, null);
  const huge = body({ messages: [{ role: "user", content: "lorem ipsum ".repeat(2000) }] });
  assert.equal(g.capCheck(huge, gpt4o, registry).answerLimit, null);
  assert.equal(logger.lines.filter((l) => l.includes("answer limit refused")).length, 2);
  // A media model's answer is a link: it is priced per item, and gets no limit.
  const image = registry.list().find((e) => e.modality === "image" && e.base !== null)!;
  assert.equal(g.capCheck(body({ model: image.id }), image, registry).answerLimit, null);
});

Deno.test("Guards.paused lets requests through without a snapshot and warns once", () => {
  const { g, logger } = guards(null);
  for (let i = 0; i < 5; i++) assert.equal(g.check(body(), gpt4o, registry), null);
  assert.equal(logger.lines.filter((l) => l.includes("no balance yet")).length, 1);
});

Deno.test("Guards.overCap prices the largest answer limit the request carries, extra_body too", () => {
  // GPT-4o: 140 + 35 per 1k tokens; 100,000 answer tokens are about 3,640 points.
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 1000 });
  const bodies: Partial<ChatRequest>[] = [
    { max_completion_tokens: 1, max_tokens: 100_000 },
    { max_tokens: 1, max_completion_tokens: 100_000 },
    { extra_body: { max_tokens: 100_000 } },
    { max_tokens: 1, extra_body: { max_completion_tokens: 100_000 } },
  ];
  for (const over of bodies) {
    const refusal = g.overCap(body(over), gpt4o, registry);
    assert.equal(refusal?.guard, "cost-cap", JSON.stringify(over));
    assert.match(refusal.message, /up to 100,000 answer tokens/);
  }
  assert.equal(
    g.overCap(body({ max_completion_tokens: 1, max_tokens: 100 }), gpt4o, registry),
    null,
  );
  // No limit anywhere: the default length is assumed.
  const { g: low } = guards(snap(1e6), { maxPointsPerMessage: 100 });
  const assumed = low.overCap(body({ extra_body: { reasoning_effort: "low" } }), gpt4o, registry)!;
  assert.match(
    assumed.message,
    new RegExp(`${DEFAULT_COMPLETION_TOKENS.toLocaleString("en-US")} answer tokens assumed`),
  );
});

Deno.test("Guards.overCap prices a thinking budget on top of the answer, and names it", () => {
  // GPT-4o: 140 + 35 per 1k tokens; ~15 input + 1,000 answer tokens are about 176 points, and a
  // thinking budget of 4,000 tokens adds about 140.
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 250 });
  assert.equal(g.overCap(body(), gpt4o, registry), null);
  const assumed = g.overCap(body({ thinking_budget: 4_000 }), gpt4o, registry)!;
  assert.equal(assumed.guard, "cost-cap");
  assert.match(
    assumed.message,
    /up to 5,000 answer tokens \(a thinking budget of 4,000 and 1,000 assumed for the answer\)/,
  );
  // The request sets no limit to lower, and a new chat would not fit: it was told both.
  assert.match(assumed.message, /\. Lower thinking_budget to ask for less\. Nothing was sent/);
  assert.doesNotMatch(assumed.message, /new chat|max_tokens/);
  const limited = g.overCap(
    body({ max_tokens: 500, extra_body: { thinking_budget: 4_000 } }),
    gpt4o,
    registry,
  )!;
  assert.match(
    limited.message,
    /up to 4,500 answer tokens \(a thinking budget of 4,000 and an answer limit of 500\)/,
  );
  assert.match(limited.message, /\. Lower max_tokens or thinking_budget to ask for less\. /);
  assert.equal(g.overCap(body({ max_tokens: 500, thinking_budget: 1_000 }), gpt4o, registry), null);
});

Deno.test("Guards.overCap is off at 0 and passes a request under the cap", () => {
  assert.equal(guards(snap(1e6)).g.overCap(body(), gpt4o, registry), null);
  // GPT-4o: 140 + 35 per 1k; ~15 input + 1000 answer tokens is about 176 points.
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 200 });
  assert.equal(g.overCap(body(), gpt4o, registry), null);
});

Deno.test("Guards.overCap shows the balance the footers show: the reading less spending since", () => {
  const { g } = guards(snap(1e6), {
    maxPointsPerMessage: 200,
    spentSince: () => 1_500,
    // Held by requests still running: only the pause check counts it.
    running: () => ({ points: 700, count: 2 }),
  });
  assert.equal(g.overCap(body({ max_tokens: 4000 }), gpt4o, registry)?.balance, 1e6 - 1_500);
  const { g: none } = guards(null, { maxPointsPerMessage: 200 });
  assert.equal(none.overCap(body({ max_tokens: 4000 }), gpt4o, registry)?.balance, null);
});

Deno.test("Guards.overCap refuses over the cap naming estimate, cap and cheaper models", () => {
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 200 });
  const refusal = g.check(body({ max_tokens: 4000 }), gpt4o, registry)!;
  assert.equal(refusal.guard, "cost-cap");
  assert.match(refusal.message, /GPT-4o would cost about 2\d\d points/);
  assert.match(refusal.message, /up to 4,000 answer tokens/);
  assert.match(refusal.message, /MAX_POINTS_PER_MESSAGE of 200 points/);
  assert.match(refusal.message, /Cheaper models: GPT-4o-mini\./);
  const long = g.check(
    body({ messages: [{ role: "user", content: "word ".repeat(3000) }] }),
    gpt4o,
    registry,
  )!;
  assert.match(long.message, /3,0\d\d input tokens, 1,000 answer tokens assumed/);
});

Deno.test("Guards.overCap lets through models without a price", () => {
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 1 });
  assert.equal(g.overCap(body(), registry.lookup("Veo-3")!, registry), null);
});

/** Media priced as the shipped models.yaml prices them. */
const media = ModelRegistry.parse(
  `models:
  text:
    - poe_name: GPT-4o
      base: 140
      per_1k_tokens: 35
  video:
    - poe_name: Veo-3
      base: 84000
      cheaper: [Kling-2.1]
    - poe_name: Kling-2.1
      base: 7000
  audio:
    - poe_name: ElevenLabs-v3
      base: 100
      per_1k_tokens: 1500
`,
  "media.yaml",
);

/** A chat of `turns` user and assistant pairs, then `last` from the user. */
function chat(turns: number, last: string): ChatRequest["messages"] {
  const messages: ChatRequest["messages"] = [];
  for (let i = 0; i < turns; i++) {
    messages.push(
      { role: "user", content: `Question ${i}: ${"tell me more about the weather ".repeat(20)}` },
      { role: "assistant", content: `Answer ${i}: ${"it is sunny and warm today ".repeat(20)}` },
    );
  }
  messages.push({ role: "user", content: last });
  return messages;
}

Deno.test("Guards.overCap prices a media model by its newest user message, not the chat or max_tokens", () => {
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 1000 });
  const speech = media.lookup("ElevenLabs-v3")!;
  const ask = (messages: ChatRequest["messages"]) =>
    g.overCap(body({ model: "ElevenLabs-v3", max_tokens: 16_000, messages }), speech, media);
  // Was refused at about 22,618 points: 16,000 answer tokens at the input price.
  assert.equal(ask(chat(0, "Read this aloud: Hello, world.")), null);
  // Was refused at about 20,593 points: the whole chat priced.
  assert.equal(ask(chat(10, "Read this aloud: Hello, world.")), null);
  // The text to read is what costs: a long one is refused, with advice that fits.
  const parts = [{ type: "text", text: "Read this aloud: " }, {
    type: "text",
    text: "word ".repeat(2000),
  }];
  const long = ask([...chat(2, "x"), { role: "user", content: parts }])!;
  assert.equal(long.guard, "cost-cap");
  assert.match(long.message, /ElevenLabs-v3 would cost about 3,\d\d\d points/);
  assert.match(
    long.message,
    /\(100 points per audio clip, 2,0\d\d tokens in your newest message\)/,
  );
  assert.match(long.message, /Shorten your message to send less\. Nothing was sent to Poe\.$/);
  assert.doesNotMatch(long.message, /new chat|max_tokens/);
  // The newest user message, even with an assistant's or a system message after it.
  const after = ask([
    ...chat(2, "x"),
    { role: "user", content: parts },
    { role: "assistant", content: "word ".repeat(50) },
    { role: "system", content: "Speak slowly." },
  ])!;
  assert.match(after.message, /2,0\d\d tokens in your newest message/);
});

Deno.test("Guards.overCap names no cheaper model the cap would refuse too", () => {
  // Veo-3 lists Kling-2.1 (7,000 points a video): under a cap of 5,000 it would be refused too.
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 5_000 });
  const refusal = g.overCap(body({ model: "Veo-3" }), media.lookup("Veo-3")!, media)!;
  assert.equal(refusal.guard, "cost-cap");
  assert.doesNotMatch(refusal.message, /Kling|Cheaper models/);
  const { g: higher } = guards(snap(1e6), { maxPointsPerMessage: 7_000 });
  const named = higher.overCap(body({ model: "Veo-3" }), media.lookup("Veo-3")!, media)!;
  assert.match(named.message, /Cheaper models: Kling-2\.1\./);
});

Deno.test("Guards.overCap: a per-item price is refused naming only cheaper models", () => {
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 10_000 });
  const veo = media.lookup("Veo-3")!;
  const refusal = g.overCap(
    body({ model: "Veo-3", messages: chat(10, "A fox in the snow"), max_tokens: 50 }),
    veo,
    media,
  )!;
  assert.equal(
    refusal.message,
    "⛔ poe-proxy refused this request: Veo-3 would cost about 84,000 points (84,000 points per " +
      "video), over MAX_POINTS_PER_MESSAGE of 10,000 points. Cheaper models: Kling-2.1. " +
      "This model's base price alone is over MAX_POINTS_PER_MESSAGE: raise it or pick a " +
      "cheaper model. Nothing was sent to Poe.",
  );
  const kling = media.lookup("Kling-2.1")!;
  assert.equal(g.overCap(body({ model: "Kling-2.1" }), kling, media), null);
  // A text model is told what fits: the answer limit, not a new chat (its input is a few tokens).
  const text = g.overCap(
    body({ model: "GPT-4o", max_tokens: 300_000 }),
    media.lookup("GPT-4o")!,
    media,
  )!;
  assert.match(text.message, /\. Lower max_tokens to ask for less\. Nothing was sent to Poe\.$/);
  assert.doesNotMatch(text.message, /new chat|base price/);
});

Deno.test("Guards.overCap counts the tool definitions and response_format schema as input", () => {
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 200 });
  // About 176 points without tools (see above); an agent's tools are thousands of tokens more.
  assert.equal(g.overCap(body(), gpt4o, registry), null);
  const tools = Array.from({ length: 40 }, (_, i) => ({
    type: "function",
    function: {
      name: `tool_${i}`,
      description: "Does one thing of many in a long list of things. ".repeat(8),
      parameters: { type: "object", properties: { path: { type: "string" } } },
    },
  }));
  const refusal = g.overCap(body({ tools }), gpt4o, registry);
  assert.ok(refusal, "the tools push the estimate over the cap");
  assert.match(refusal.message, /\d,\d{3} input tokens/);
  const schema = {
    type: "json_schema",
    json_schema: { schema: { description: "x ".repeat(5000) } },
  };
  assert.ok(g.overCap(body({ response_format: schema }), gpt4o, registry));
});

Deno.test("pricedInputTokens tokenizes a bounded amount, and spends the request's budget", () => {
  // 200 parts of 20 kB of hex-like text (a model without a context cap is not clipped, so the
  // cost cap is what counts it first): each text had its own bound, the request none.
  const hex = (seed: number) =>
    Array.from({ length: 20_000 }, (_, i) => "0123456789abcdef"[(i * 7 + seed * 13) % 16]).join("");
  const parts = Array.from({ length: 200 }, (_, i) => ({ type: "text", text: hex(i) }));
  const request = body({ messages: [{ role: "user", content: parts }] });
  const counter = new TokenCounter();
  const tokens = pricedInputTokens(counter, request, gpt4o);
  assert.ok(tokens > 200 * 20_000 / 8, `${tokens}`);
  assert.ok(counter.tokenized <= REQUEST_EXACT_BYTES + REQUEST_SAMPLE_BYTES + 512);
  // What clipping left of the request's allowance is what the cost cap has.
  const spent = new CountBudget({ exactBytes: 0, sampleBytes: 0 });
  spent.observe(1, 4);
  const fresh = new TokenCounter();
  pricedInputTokens(fresh, request, gpt4o, spent);
  assert.equal(fresh.tokenized, 0);
});
