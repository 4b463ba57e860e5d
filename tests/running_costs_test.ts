/** @module RunningCosts, longestRunMs and runningHold: what requests still running hold. */
import assert from "node:assert/strict";
import { longestRunMs, RunningCosts, runningHold } from "../lib/running_costs.ts";
import { memoryLogger } from "../lib/log.ts";
import { ModelRegistry } from "../lib/models.ts";
import type { ChatRequest } from "../lib/openai_types.ts";
import { testConfig, testRegistry } from "./harness.ts";
import { buildPdf } from "./pdf_fixture.ts";

function ledger(start = 1_000_000) {
  let now = start;
  const logger = memoryLogger();
  const running = new RunningCosts({ now: () => now, logger });
  return { running, logger, advance: (ms: number) => now += ms };
}

Deno.test("RunningCosts: reservations add up and each release takes its own off", () => {
  const { running } = ledger();
  assert.deepEqual(running.total, { points: 0, count: 0 });
  const a = running.reserve(300, 60_000);
  const b = running.reserve(200.5, 60_000);
  assert.equal(a.points, 300);
  assert.deepEqual(running.total, { points: 500.5, count: 2 });
  a.release();
  assert.deepEqual(running.total, { points: 200.5, count: 1 });
  b.release();
  assert.deepEqual(running.total, { points: 0, count: 0 });
});

Deno.test("RunningCosts: reservations at a stand-in's price are counted apart while they hold", () => {
  const { running, advance } = ledger();
  const own = running.reserve(300, 60_000);
  const a = running.reserve(200, 60_000, { standIn: true });
  running.reserve(100, 10_000, { standIn: true });
  assert.equal(a.standIn, true);
  assert.equal(own.standIn, false);
  assert.deepEqual(running.total, { points: 600, count: 3, standIns: 2 });
  a.release();
  a.release();
  assert.deepEqual(running.total, { points: 400, count: 2, standIns: 1 });
  // Past its bound, the last one stops counting too: then there is no stand-in to name.
  advance(10_000);
  assert.deepEqual(running.total, { points: 300, count: 1 });
  assert.equal(running.reserve(0, 60_000, { standIn: true }).standIn, false, "holds nothing");
  assert.deepEqual(running.total, { points: 300, count: 1 });
});

Deno.test("RunningCosts: a release counts once, however often it is called", () => {
  const { running } = ledger();
  const a = running.reserve(300, 60_000);
  running.reserve(100, 60_000);
  // Only the first release tells it let go: the caller that turns the hold into spending.
  assert.equal(a.release(), true);
  assert.equal(a.release(), false);
  assert.equal(a.release(), false);
  assert.deepEqual(running.total, { points: 100, count: 1 });
});

Deno.test("RunningCosts: no points, or no number, hold nothing", () => {
  const { running } = ledger();
  for (const points of [0, -5, NaN, Infinity]) {
    const r = running.reserve(points, 60_000);
    assert.equal(r.points, 0);
    r.release();
  }
  assert.deepEqual(running.total, { points: 0, count: 0 });
});

Deno.test("RunningCosts: sums of fractions end at exactly nothing", () => {
  const { running } = ledger();
  const held = [0.1, 0.2, 0.3, 1e-9, 12345.678].map((p) => running.reserve(p, 60_000));
  for (const r of held.reverse()) r.release();
  assert.deepEqual(running.total, { points: 0, count: 0 });
});

Deno.test("RunningCosts: a reservation past its bound stops counting, and its late release takes nothing", () => {
  const { running, logger, advance } = ledger();
  const leaked = running.reserve(500, 10_000);
  advance(5_000);
  const later = running.reserve(100, 60_000);
  advance(4_999);
  assert.deepEqual(running.total, { points: 600, count: 2 });
  advance(1);
  assert.deepEqual(running.total, { points: 100, count: 1 });
  assert.ok(logger.lines.some((l) => l.includes("expired") && l.includes("points=500")));
  // Released after it expired: the other reservation is not touched, and nothing was let go.
  assert.equal(leaked.release(), false);
  assert.deepEqual(running.total, { points: 100, count: 1 });
  later.release();
  assert.deepEqual(running.total, { points: 0, count: 0 });
});

Deno.test("RunningCosts: a shorter bound reserved later expires first; the longer one stays", () => {
  const { running, advance } = ledger();
  const long = running.reserve(500, 100_000);
  running.reserve(70, 1_000);
  advance(1_000);
  assert.deepEqual(running.total, { points: 500, count: 1 });
  advance(98_999);
  assert.deepEqual(running.total, { points: 500, count: 1 });
  // The next expiry was found again after the sweep.
  advance(1);
  assert.deepEqual(running.total, { points: 0, count: 0 });
  long.release();
  assert.deepEqual(running.total, { points: 0, count: 0 });
});

Deno.test("longestRunMs: every call's whole wait and backoff, then the answer and the footer's wait", () => {
  const config = testConfig();
  // 3 calls of (300 s + 30 s), the ladder's 4 of 300 s, then 300 s for the answer, then
  // FOOTER_WAIT_MS.
  assert.equal(longestRunMs(config, false), (3 * 330 + 1200 + 300) * 1000 + config.footerWaitMs);
  assert.equal(longestRunMs(config, true), (3 * 930 + 3600 + 900) * 1000 + config.footerWaitMs);
  const idle = testConfig({ IDLE_TIMEOUT_SECONDS: "600", UPSTREAM_RETRIES: "0" });
  assert.equal(longestRunMs(idle, false), (330 + 1200 + 600) * 1000 + idle.footerWaitMs);
});

const registry = await testRegistry();
/** Prices without a base: every token counts. */
const perToken = ModelRegistry.parse(
  `models:
  text:
    - poe_name: Tokens-Only
      per_1k_tokens: 10
      per_1k_output_tokens: 20
  audio:
    - poe_name: Speech
      base: 300
      per_1k_tokens: 100
`,
  "inline.yaml",
);
const tokensOnly = perToken.lookup("Tokens-Only")!;

const req = (o: Partial<ChatRequest> = {}): ChatRequest =>
  ({ model: "m", messages: [{ role: "user", content: "x".repeat(400) }], ...o }) as ChatRequest;

Deno.test("runningHold: a token per four characters sent, and 1,000 answer tokens", () => {
  // 400 characters: 100 input tokens at 10, 1,000 answer tokens at 20 per 1,000.
  assert.equal(runningHold(req(), tokensOnly, perToken).points, 1 + 20);
  // Rounded up: 401 characters are 101 tokens.
  const odd = req({ messages: [{ role: "user", content: "x".repeat(401) }] });
  assert.equal(runningHold(odd, tokensOnly, perToken).points, 1.01 + 20);
});

Deno.test("runningHold: every message's text, text parts and tool calls count; images and files at their estimates", () => {
  const body = req({
    messages: [
      { role: "system", content: "s".repeat(100) },
      {
        role: "user",
        content: [
          { type: "text", text: "t".repeat(200) },
          { type: "image_url", image_url: { url: `data:image/png;base64,${"A".repeat(5000)}` } },
          { type: "file", file: { file_data: btoa("word ".repeat(750)) } },
        ],
      },
      {
        role: "assistant",
        content: null,
        tool_calls: [{
          id: "c",
          type: "function",
          function: { name: "f".repeat(20), arguments: "a".repeat(80) },
        }],
      },
      { role: "tool", tool_call_id: "c", content: "r".repeat(0) },
    ],
  } as Partial<ChatRequest>);
  // 100 + 200 + 20 + 80 + 1 (the tool_call_id) = 401 characters: 101 tokens; the image 765, the
  // file (3,750 bytes read as text) 938.
  assert.equal(runningHold(body, tokensOnly, perToken).points, 10 * (101 + 765 + 938) / 1000 + 20);
  // A PDF by its pages, as the cost cap counts it: 30 pages, 60,000 tokens.
  const pdf = {
    type: "file",
    file: { filename: "a.pdf", file_data: buildPdf({ pages: 30 }).dataUrl },
  };
  const withPdf = req({ messages: [{ role: "user", content: [pdf] }] } as Partial<ChatRequest>);
  assert.equal(runningHold(withPdf, tokensOnly, perToken).points, 10 * 60_000 / 1000 + 20);
});

Deno.test("runningHold: tool definitions count for a text model, given or built", () => {
  const tools = [{ type: "function", function: { name: "g", parameters: { type: "object" } } }];
  const body = req({ tools } as Partial<ChatRequest>);
  const definitions = JSON.stringify([tools]);
  const expected = 10 * Math.ceil((400 + definitions.length) / 4) / 1000 + 20;
  assert.equal(runningHold(body, tokensOnly, perToken).points, expected);
  assert.equal(runningHold(body, tokensOnly, perToken, { definitions }).points, expected);
  // What the caller passes is what counts (it has them already).
  assert.equal(runningHold(body, tokensOnly, perToken, { definitions: "" }).points, 1 + 20);
});

Deno.test("runningHold: the answer limit counts up to 1,000 tokens, wherever it is set", () => {
  assert.equal(runningHold(req({ max_tokens: 200 }), tokensOnly, perToken).points, 1 + 4);
  assert.equal(runningHold(req({ max_tokens: 64_000 }), tokensOnly, perToken).points, 1 + 20);
  assert.equal(
    runningHold(req({ max_completion_tokens: 100, max_tokens: 300 }), tokensOnly, perToken).points,
    1 + 6,
  );
  const extra = req({ max_tokens: 100, extra_body: { max_tokens: 500 } } as Partial<ChatRequest>);
  assert.equal(runningHold(extra, tokensOnly, perToken).points, 1 + 10);
});

Deno.test("runningHold: the cost cap's count of input tokens is used when it made one", () => {
  assert.equal(runningHold(req(), tokensOnly, perToken, { countedInput: 3_000 }).points, 30 + 20);
  assert.equal(runningHold(req(), tokensOnly, perToken, { countedInput: null }).points, 1 + 20);
});

Deno.test("runningHold: a media model is priced per item and its newest user message", () => {
  const speech = perToken.lookup("Speech")!;
  const body = req({
    messages: [
      { role: "user", content: "o".repeat(4000) },
      { role: "assistant", content: "a".repeat(4000) },
      { role: "user", content: [{ type: "text", text: "n".repeat(40) }] },
      { role: "system", content: "s".repeat(4000) },
    ],
    max_tokens: 64_000,
  });
  // 300 per item, 10 tokens at 100 per 1,000; the answer is a link, priced by nothing.
  assert.equal(runningHold(body, speech, perToken).points, 301);
  // An image model of the tests' registry: its base alone.
  assert.equal(runningHold(body, registry.lookup("Imagen-4")!, registry).points, 400);
});

Deno.test("runningHold: a model with no price holds nothing; one with a base holds it", () => {
  assert.equal(runningHold(req(), registry.lookup("Veo-3")!, registry).points, 0);
  // GPT-4o: 140 per message (its first 1,000 answer tokens included) and 35 per 1,000 tokens.
  assert.equal(runningHold(req(), registry.lookup("GPT-4o")!, registry).points, 140 + 3.5);
});

Deno.test("runningHold: a model without a price holds the dearest priced model of its modality, with standIn", () => {
  const stand = ModelRegistry.parse(
    `models:
  text:
    - Bare
    - {poe_name: Cheap, base: 5, per_1k_tokens: 1}
    - {poe_name: Tokens, per_1k_tokens: 30}
    - {poe_name: Dear, base: 200}
  image:
    - {poe_name: Img, base: 5000}
  video: [Film]
`,
    "inline.yaml",
  );
  const bare = stand.lookup("Bare")!;
  // 100 input tokens and 1,000 answer tokens: Dear's 200 against Tokens' 3 + 30 and Cheap's 5.1.
  assert.deepEqual(runningHold(req(), bare, stand, { standIn: true }), {
    points: 200,
    standIn: "Dear",
  });
  // A long prompt makes the per-token model the dearer: 40,000 tokens at 30 per 1,000.
  const long = req({ messages: [{ role: "user", content: "x".repeat(160_000) }] });
  assert.deepEqual(runningHold(long, bare, stand, { standIn: true }), {
    points: 1200 + 30,
    standIn: "Tokens",
  });
  assert.equal(runningHold(long, bare, stand, { standIn: true }).points, 1230);
  // Without a cutoff, or without a priced model of its modality (never another's), nothing.
  assert.deepEqual(runningHold(req(), bare, stand), { points: 0, standIn: null });
  assert.deepEqual(runningHold(req(), stand.lookup("Film")!, stand, { standIn: true }), {
    points: 0,
    standIn: null,
  });
  // A priced model holds its own estimate, never a stand-in's.
  assert.deepEqual(runningHold(req(), stand.lookup("Cheap")!, stand, { standIn: true }), {
    points: 5.1,
    standIn: null,
  });
});
