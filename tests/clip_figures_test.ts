import assert from "node:assert/strict";
import {
  EXACT_TOTAL_MESSAGES,
  figureText,
  MessageCounts,
  tokensOfMessages,
  tooLong,
} from "../lib/clip_figures.ts";
import { CountBudget } from "../lib/count_budget.ts";
import type { ChatMessage } from "../lib/openai_types.ts";
import { messageTokenGuess } from "../lib/token_bounds.ts";
import { loadTokenizer, TokenCounter } from "../lib/tokens.ts";

await loadTokenizer();

/**
 * `tokensOfMessages` over `messages` with a fresh counter, `known` counted beforehand, under a
 * budget of `exactBytes` (default: a request's).
 */
function figure(
  messages: ChatMessage[],
  known: number[] = [],
  wanted?: (i: number) => boolean,
  budget = new CountBudget(),
) {
  const counter = new TokenCounter();
  const counts = new MessageCounts(messages, counter, budget);
  for (const i of known) counts.count(i);
  const before = counter.stats().misses;
  return {
    ...tokensOfMessages(messages, counts, wanted),
    tokenized: counter.stats().misses - before,
  };
}

Deno.test("tokensOfMessages counts what is uncounted when it is few, keeping known counts", () => {
  const messages: ChatMessage[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "What is the weather like today?" },
    { role: "assistant", content: "Sunny." },
  ];
  const all = new TokenCounter().countMessages(messages);
  assert.deepEqual(figure(messages, [1]), { tokens: all, exact: true, tokenized: 2 });
  const system = new TokenCounter().countMessage(messages[0]);
  assert.deepEqual(
    figure(messages, [], (i) => messages[i].role === "system"),
    { tokens: system, exact: true, tokenized: 1 },
  );
});

Deno.test("tokensOfMessages guesses, untokenized, past the message count", () => {
  const many: ChatMessage[] = Array.from({ length: EXACT_TOTAL_MESSAGES + 1 }, (_, i) => ({
    role: "user",
    content: `short message ${i}`,
  }));
  const guess = many.reduce((sum, m) => sum + messageTokenGuess(m), 0);
  assert.deepEqual(figure(many), { tokens: guess, exact: false, tokenized: 0 });
  // One counted message fewer to go: the rest is within the bound again.
  assert.equal(figure(many, [0]).exact, true);
});

Deno.test("tokensOfMessages counts beyond the request's budget on samples, and says so", () => {
  // 10 kB, words joined by no-break spaces: not plain prose, which takes an eighth of the budget.
  const words = "word\u00a0".repeat(2_000);
  const messages: ChatMessage[] = Array.from({ length: 10 }, (_, i) => ({
    role: "user",
    content: `${i}. ${words}`,
  }));
  const exact = new TokenCounter().countMessages(messages);
  assert.deepEqual(figure(messages), { tokens: exact, exact: true, tokenized: 10 });
  // 37 kB to count exactly: three messages of 12 kB; the other seven are estimated, a little high.
  const budget = new CountBudget({ exactBytes: 37_000 });
  const estimated = figure(messages, [], undefined, budget);
  assert.equal(estimated.exact, false);
  assert.ok(estimated.tokens >= exact && estimated.tokens < exact * 1.15, `${estimated.tokens}`);
  assert.ok(budget.tokenized < 48_000, `${budget.tokenized} bytes tokenized`);
});

Deno.test("figureText says about when a figure is partly estimated", () => {
  assert.equal(figureText({ tokens: 1234, exact: true }), "1234");
  assert.equal(figureText({ tokens: 1234, exact: false }), "about 1234");
});

Deno.test("tooLong never says a negative room is left", () => {
  const asked = (tokens: number) => ({ tokens, asked: true });
  const over = tooLong("the system messages (10 tokens) need 10 tokens", 1000, asked(500), 900);
  assert.equal(over.status, 400);
  assert.equal(over.code, "context_length_exceeded");
  assert.match(
    over.message,
    /minus 500 reserved for the answer \(max_tokens\) and 900 for the tool definitions and response_format leaves no room for the messages\.$/,
  );
  assert.match(tooLong("x", 1000, asked(100), 0).message, /leaves 900\.$/);
  assert.match(tooLong("x", 1000, asked(0), 0).message, /but the context cap is 1000 tokens\.$/);
});

Deno.test("tooLong says when the room for the answer is the default, no max_tokens set", () => {
  assert.match(
    tooLong("x", 1000, { tokens: 500, asked: false }, 0).message,
    /minus 500 reserved for the answer \(no max_tokens set: the default\) leaves 500\.$/,
  );
});

Deno.test("tokensOfMessages: images and files are no text to count, so many of them stay exact", () => {
  const image = {
    role: "user",
    content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }],
  } as ChatMessage;
  // 1,400 images: over 1 MB of fixed estimates, under the message bound, no text to tokenize.
  const messages = Array.from({ length: 1_400 }, () => image);
  const result = figure(messages);
  assert.equal(result.exact, true);
  assert.equal(result.tokens, new TokenCounter().countMessages(messages));
});
