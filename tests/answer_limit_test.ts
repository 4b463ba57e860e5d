import assert from "node:assert/strict";
import { answerLimit } from "../lib/answer_limit.ts";
import type { ChatRequest } from "../lib/openai_types.ts";

const body = (over: Record<string, unknown> = {}): ChatRequest => ({
  model: "GPT-4o",
  messages: [{ role: "user", content: "Hi" }],
  ...over,
});

Deno.test("answerLimit is the largest of max_tokens and max_completion_tokens, extra_body's too", () => {
  assert.equal(answerLimit(body()), null);
  assert.equal(answerLimit(body({ max_tokens: 90 })), 90);
  assert.equal(answerLimit(body({ max_completion_tokens: 1, max_tokens: 100_000 })), 100_000);
  assert.equal(answerLimit(body({ max_completion_tokens: 100_000, max_tokens: 1 })), 100_000);
  assert.equal(answerLimit(body({ extra_body: { max_tokens: 100_000 } })), 100_000);
  assert.equal(
    answerLimit(body({ max_tokens: 5, extra_body: { max_completion_tokens: 7 } })),
    7,
  );
  assert.equal(answerLimit(body({ max_tokens: 500, extra_body: { max_tokens: 7 } })), 500);
  assert.equal(answerLimit(body({ max_tokens: null, max_completion_tokens: 40 })), 40);
});

Deno.test("answerLimit ignores an extra_body that is not an object", () => {
  assert.equal(answerLimit(body({ extra_body: "max_tokens=100000" })), null);
  assert.equal(answerLimit(body({ extra_body: [{ max_tokens: 100_000 }] })), null);
  assert.equal(answerLimit(body({ extra_body: null, max_tokens: 3 })), 3);
});
