/** @module A request's allowance of tokenizing, as the token counter spends it. */
import assert from "node:assert/strict";
import {
  CountBudget,
  ESTIMATE_MARGIN,
  plainText,
  REQUEST_EXACT_BYTES,
  REQUEST_SAMPLE_BYTES,
  requestBudget,
} from "../lib/count_budget.ts";
import type { ChatMessage } from "../lib/openai_types.ts";
import { utf8Length } from "../lib/token_bounds.ts";
import { loadTokenizer, TokenCounter } from "../lib/tokens.ts";
import { random } from "./random.ts";

await loadTokenizer();

/** A budget without limit: the exact figures the tests compare with. */
const EXACTLY = () => new CountBudget({ exactBytes: Infinity, exactMs: Infinity });

/** Base64 of seeded random bytes: about 0.68 tokens a byte, and the costliest to tokenize. */
function base64Text(chars: number, seed: number): string {
  const r = random(seed);
  const raw = new Uint8Array(Math.ceil((chars * 3) / 4));
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(r() * 256);
  return raw.toBase64().slice(0, chars);
}

/** This repository's own source and README: English and code as agents send them. */
function repositoryTexts(): string[] {
  const texts = [Deno.readTextFileSync(new URL("../README.md", import.meta.url))];
  for (const entry of Deno.readDirSync(new URL("../lib", import.meta.url))) {
    texts.push(Deno.readTextFileSync(new URL(`../lib/${entry.name}`, import.meta.url)));
  }
  return texts.sort();
}

Deno.test("CountBudget: texts are exact within the allowance, then estimated from samples, then untokenized", () => {
  const texts = Array.from({ length: 20 }, (_, i) => base64Text(20_000, i));
  const budget = new CountBudget({ textChars: 20 * 20_000 });
  const counter = new TokenCounter();
  const exact = new TokenCounter();
  const counts = texts.map((text) => counter.countText(text, budget));
  const real = texts.map((text) => exact.countText(text, EXACTLY()));
  const within = Math.floor(REQUEST_EXACT_BYTES / 20_000);
  assert.deepEqual(counts.slice(0, within), real.slice(0, within), "exact while it lasts");
  assert.equal(budget.estimates, 20 - within);
  assert.ok(budget.tokenized <= REQUEST_EXACT_BYTES + REQUEST_SAMPLE_BYTES + 512);
  assert.equal(counter.tokenized, budget.tokenized);
  for (let i = within; i < 20; i++) {
    assert.ok(counts[i] >= real[i] && counts[i] <= real[i] * 1.15, `${i}: ${counts[i]} ${real[i]}`);
    assert.ok(counts[i] <= utf8Length(texts[i]), "never more than a token a byte");
  }
  // Spent: further texts are estimated from what was counted, at no cost.
  const spent = new CountBudget({ exactBytes: 0, sampleBytes: 0 });
  spent.observe(68, 100);
  assert.equal(counter.countText(base64Text(1_000, 99), spent), Math.ceil(680 * ESTIMATE_MARGIN));
  assert.equal(spent.tokenized, 100, "nothing more tokenized");
});

Deno.test("CountBudget bounds what any number of texts tokenizes: parts, messages, system messages", () => {
  const part = (i: number) => ({ type: "text", text: base64Text(3_000, 100 + i) });
  const shapes: ChatMessage[][] = [
    [{ role: "user", content: Array.from({ length: 150 }, (_, i) => part(i)) }],
    Array.from({ length: 150 }, (_, i) => ({ role: "system", content: [part(i)] })),
    Array.from({ length: 20_000 }, (_, i) => ({
      role: "tool",
      tool_call_id: `call_${i}`,
      content: `result ${i} of the tool`,
    })),
  ];
  for (const messages of shapes) {
    const counter = new TokenCounter();
    const budget = requestBudget(messages);
    const tokens = counter.countMessages(messages, budget);
    assert.ok(
      counter.tokenized <= REQUEST_EXACT_BYTES + REQUEST_SAMPLE_BYTES + 512,
      `${counter.tokenized} bytes tokenized of ${messages.length} messages`,
    );
    const real = new TokenCounter().countMessages(messages, EXACTLY());
    assert.ok(tokens >= real * 0.98 && tokens <= real * 1.15, `${tokens} vs ${real}`);
  }
});

Deno.test("CountBudget estimates err high, within 15 %, on English and code", () => {
  // The repository: 2 to 3 MB of source and prose in messages, counted newest first as clipping
  // counts them, against counting every message exactly.
  const messages: ChatMessage[] = repositoryTexts().map((content, i) => ({
    role: i % 2 ? "assistant" : "user",
    content,
  }));
  const real = new TokenCounter().countMessages(messages, EXACTLY());
  const counter = new TokenCounter();
  // Plain prose and code take an eighth of the allowance a byte (PLAIN_TEXT_DISCOUNT): a smaller
  // one makes this reach its end.
  const budget = requestBudget(messages, "", { exactBytes: REQUEST_EXACT_BYTES / 16 });
  let estimated = 0;
  for (let i = messages.length - 1; i >= 0; i--) {
    estimated += counter.countMessage(messages[i], { budget });
  }
  assert.ok(budget.estimates > 0, "beyond the allowance");
  assert.ok(estimated >= real && estimated < real * 1.15, `${estimated} vs ${real}`);
});

Deno.test("CountBudget spreads its samples over the whole request, so a later kind of text is sampled too", () => {
  // English first (the allowance goes on it), then base64 at 2.7 times its tokens a byte: an
  // estimate from the English alone would be a third of the truth.
  const english = repositoryTexts().join("\n").slice(0, 400_000);
  const texts = [
    ...Array.from({ length: 20 }, (_, i) => english.slice(i * 20_000, (i + 1) * 20_000)),
    ...Array.from({ length: 20 }, (_, i) => base64Text(20_000, 200 + i)),
  ];
  const messages: ChatMessage[] = texts.map((content) => ({ role: "user", content }));
  const counter = new TokenCounter();
  const estimated = counter.countMessages(messages, requestBudget(messages));
  const real = new TokenCounter().countMessages(messages, EXACTLY());
  assert.ok(estimated >= real && estimated < real * 1.15, `${estimated} vs ${real}`);
});

Deno.test("TokenCounter.countMessage remembers estimates as such, and counts them exactly when it can", () => {
  const message: ChatMessage = {
    role: "user",
    content: Array.from({ length: 8 }, (_, i) => ({ type: "text", text: base64Text(10_000, i) })),
  };
  const real = new TokenCounter().countMessage(message, { budget: EXACTLY() });
  const counter = new TokenCounter();
  const small = new CountBudget({ exactBytes: 20_000 });
  const estimate = counter.countMessage(message, { budget: small });
  assert.ok(small.estimates > 0 && estimate > real, `${estimate} vs ${real}`);
  // No allowance left: the estimate is taken from the cache, and said to be one.
  const spent = new CountBudget({ exactBytes: 0, sampleBytes: 0 });
  assert.equal(counter.countMessage(message, { budget: spent }), estimate);
  assert.equal(spent.estimates, 1);
  assert.deepEqual(counter.stats(), { hits: 1, misses: 1, entries: 1 });
  // A request with room counts it again, exactly, and that is what is remembered from then on.
  assert.equal(counter.countMessage(message, { budget: new CountBudget() }), real);
  assert.equal(counter.countMessage(message, { budget: spent }), real);
  assert.equal(spent.estimates, 1);
  assert.deepEqual(counter.stats(), { hits: 2, misses: 2, entries: 1 });
});

Deno.test("TokenCounter.countMessage tokenizes no more of a message once it is over its room", () => {
  const message: ChatMessage = {
    role: "user",
    content: Array.from({ length: 40 }, (_, i) => ({ type: "text", text: base64Text(10_000, i) })),
  };
  const counter = new TokenCounter();
  const budget = new CountBudget();
  const tokens = counter.countMessage(message, { budget, room: 10_000 });
  // About 6,800 tokens a part: the second is over the room, the other 38 are estimated.
  assert.ok(counter.tokenized <= 20_000, `${counter.tokenized} bytes tokenized`);
  assert.equal(budget.estimates, 38);
  const real = new TokenCounter().countMessage(message, { budget: EXACTLY() });
  assert.ok(tokens >= real && tokens < real * 1.15, `${tokens} vs ${real}`);
});

Deno.test("plainText: ASCII prose and code with spaces, not base64, hashes, minified data or CJK", () => {
  const [readme] = repositoryTexts().filter((t) => t.startsWith("# poe-proxy"));
  for (const text of [readme.slice(0, 5_000), "The quick brown fox. ".repeat(20)]) {
    assert.equal(plainText(text), true, text.slice(0, 40));
  }
  for (
    const text of [
      base64Text(5_000, 1),
      "0123456789abcdef".repeat(100),
      JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: i, ok: true }))),
      "敏捷的棕色狐狸跳过了懒狗。".repeat(40),
      "short",
    ]
  ) {
    assert.equal(plainText(text), false, text.slice(0, 40));
  }
});

Deno.test("CountBudget: plain prose takes an eighth of the allowance a byte, and its time is bounded too", () => {
  // 600 kB of prose, more than the allowance's bytes, counted exactly.
  const prose = repositoryTexts().join("\n").replace(/[^ -~\n]/g, " ").slice(0, 600_000);
  const parts = Array.from({ length: 30 }, (_, i) => prose.slice(i * 20_000, (i + 1) * 20_000));
  const messages: ChatMessage[] = parts.map((content) => ({ role: "user", content }));
  const budget = requestBudget(messages);
  const counted = new TokenCounter().countMessages(messages, budget);
  assert.equal(budget.estimates, 0, "all exact");
  assert.equal(counted, new TokenCounter().countMessages(messages, EXACTLY()));
  assert.ok(budget.exactLeft > 0 && budget.exactLeft < REQUEST_EXACT_BYTES);
  // Past its time, nothing more is counted exactly, plain or not.
  const late = new CountBudget({ exactMs: -1 });
  const estimate = new TokenCounter().countMessages(messages, late);
  assert.ok(late.estimates > 0 && estimate > 0);
  assert.equal(late.takeExact(10, true), false);
});
