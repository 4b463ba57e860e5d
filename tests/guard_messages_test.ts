/**
 * @module The refusals' wording (`lib/guard_messages.ts`), as Guards.paused gives it: the next
 * grant's time, a stale reading's age; and the cost cap's advice, which only says what can help.
 */
import assert from "node:assert/strict";
import { capMessage } from "../lib/guard_messages.ts";
import { DEFAULT_COMPLETION_TOKENS } from "../lib/guards.ts";
import { ModelRegistry } from "../lib/models.ts";
import { loadTokenizer } from "../lib/tokens.ts";
import { body, guards, NOW, snap } from "./guards_fixture.ts";

// Guards.overCap counts tokens synchronously; the chat path loads the tokenizer first.
await loadTokenizer();

Deno.test("Guards.paused says when the next grant comes: within the hour, an hour, hours, days", () => {
  const at = (ms: number) => {
    const grant = { time: NOW + ms, amount: null, kind: "daily" as const };
    return guards(snap(5, { nextGrant: grant })).g.paused()!.message;
  };
  const HOUR = 3_600_000;
  assert.match(at(HOUR / 2), /\(within the hour\)/);
  assert.match(at(HOUR), /\(in about an hour\)/);
  assert.match(at(1.4 * HOUR), /\(in about an hour\)/);
  assert.match(at(1.6 * HOUR), /\(in about 2 hours\)/);
  assert.match(at(47 * HOUR), /\(in about 47 hours\)/);
  assert.match(at(49 * HOUR), /\(in 2 days\)/);
});

Deno.test("Guards.paused mentions a stale snapshot's age and skips a grant in the past", () => {
  const grant = { time: NOW - 1000, amount: null, kind: "daily" as const };
  const { g } = guards(snap(5, { takenAt: NOW - 10 * 60_000, nextGrant: grant }));
  const refusal = g.paused()!;
  assert.match(refusal.message, /as of 10 minutes ago/);
  assert.doesNotMatch(refusal.message, /grants/);
});

/** Priced per message and per 1,000 tokens in and out; and one priced by its tokens alone. */
const priced = ModelRegistry.parse(
  `models:
  text:
    - poe_name: Chat
      base: 100
      per_1k_tokens: 100
      per_1k_output_tokens: 100
    - poe_name: Tokens
      per_1k_tokens: 100
`,
  "priced.yaml",
);

/** The cost-cap refusal of `model` for `input` tokens and an answer limit (null: none set). */
function refusal(
  model: string,
  cap: number,
  input: number,
  limit: number | null,
  single = false,
): string {
  const entry = priced.lookup(model)!;
  const answer = { tokens: limit ?? DEFAULT_COMPLETION_TOKENS, limit, thinking: null };
  const points = priced.estimatePoints(entry, input, answer.tokens)!.points;
  assert.ok(points > cap, `${points} is over ${cap}`);
  return capMessage(entry, {
    points,
    cap,
    input,
    answer,
    cheaper: [],
    single,
    price: (i, a) => priced.estimatePoints(entry, i, a)!.points,
  });
}

/** The advice: what a refusal says between the cap and "Nothing was sent to Poe.". */
const adviceOf = (message: string) =>
  /over MAX_POINTS_PER_MESSAGE of [\d,]+ points\. (.*)Nothing was sent to Poe\.$/.exec(message)![1];

Deno.test("capMessage advises each change only when it brings the estimate under the cap", () => {
  // 100 + 300 for 3,000 input tokens + 200 for 3,000 answer tokens (the first 1,000 in the base).
  assert.equal(
    adviceOf(refusal("Chat", 450, 3_000, 3_000)),
    "Start a new chat or lower max_tokens to send less. ",
  );
  // No limit set: a 1,000-token answer is assumed, within the base; only a new chat helps.
  assert.equal(adviceOf(refusal("Chat", 350, 3_000, null)), "Start a new chat to send less. ");
  // A short chat and a long answer: a new chat cannot help (500 points at no input at all).
  assert.equal(
    adviceOf(refusal("Chat", 300, 100, 5_000)),
    "Lower max_tokens to ask for less. ",
  );
  // Either alone leaves 300 points; both together 100.
  assert.equal(
    adviceOf(refusal("Chat", 250, 2_000, 3_000)),
    "Start a new chat and lower max_tokens: either alone is not enough. ",
  );
  // Without a base every answer token costs, so setting a limit can help when none is set.
  assert.equal(adviceOf(refusal("Tokens", 50, 100, null)), "Set max_tokens to ask for less. ");
  assert.equal(
    adviceOf(refusal("Tokens", 50, 1_000, null)),
    "Start a new chat and set max_tokens: either alone is not enough. ",
  );
});

Deno.test("capMessage asks to shorten the message, not for a new chat, when the chat holds only it", () => {
  assert.equal(
    adviceOf(refusal("Chat", 350, 3_000, null, true)),
    "Shorten your message to send less. ",
  );
  // As Guards.overCap tells: system messages aside, one message.
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 350 });
  const chat = priced.lookup("Chat")!;
  const text = "lorem ipsum dolor sit amet ".repeat(600);
  const advice = (messages: { role: "system" | "user" | "assistant"; content: string }[]) =>
    adviceOf(g.overCap(body({ model: "Chat", messages }), chat, priced)!.message);
  assert.equal(
    advice([{ role: "system", content: "Be brief." }, { role: "user", content: text }]),
    "Shorten your message to send less. ",
  );
  assert.equal(
    advice([
      { role: "user", content: text },
      { role: "assistant", content: "Done." },
      { role: "user", content: "And?" },
    ]),
    "Start a new chat to send less. ",
  );
});

Deno.test("capMessage says when the model's base price alone is over the cap, nothing else", () => {
  assert.equal(
    adviceOf(refusal("Chat", 50, 3_000, 3_000)),
    "This model's base price alone (100 points per message) is over MAX_POINTS_PER_MESSAGE: " +
      "raise it or pick a cheaper model. ",
  );
  // The reviewer's request, with the shipped models.yaml: no chat or answer limit could help.
  const shipped = ModelRegistry.parse(
    Deno.readTextFileSync(new URL("../models.yaml", import.meta.url)),
    "models.yaml",
  );
  const { g } = guards(snap(1e6), { maxPointsPerMessage: 500 });
  const opus = shipped.lookup("claude-opus-4.1")!;
  const refused = g.overCap(
    body({
      model: "claude-opus-4.1",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 100,
    }),
    opus,
    shipped,
  )!;
  assert.equal(
    refused.message,
    "⛔ poe-proxy refused this request: Claude-Opus-4.1 would cost about 1,001 points (5 input " +
      "tokens, up to 100 answer tokens), over MAX_POINTS_PER_MESSAGE of 500 points. Cheaper " +
      "models: Claude-Sonnet-4.6, Claude-Haiku-4.5. This model's base price alone (1,000 points " +
      "per message) is over MAX_POINTS_PER_MESSAGE: raise it or pick a cheaper model. Nothing " +
      "was sent to Poe.",
  );
});
