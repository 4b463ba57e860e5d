import assert from "node:assert/strict";
import { answerLimit, pricedAnswer, thinkingBudget } from "../lib/answer_limit.ts";
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

Deno.test("thinkingBudget reads thinking_budget at the top level and in extra_body, the largest", () => {
  assert.equal(thinkingBudget(body()), null);
  assert.equal(thinkingBudget(body({ thinking_budget: 8_000 })), 8_000);
  assert.equal(thinkingBudget(body({ extra_body: { thinking_budget: 16_000 } })), 16_000);
  assert.equal(
    thinkingBudget(body({ thinking_budget: 2_000, extra_body: { thinking_budget: 500 } })),
    2_000,
  );
  // Poe passes other forms on to the model, which refuses them: nothing to price.
  for (const value of ["8000", 0, -5, null, Infinity, NaN, { tokens: 9 }]) {
    assert.equal(thinkingBudget(body({ thinking_budget: value })), null, String(value));
  }
});

Deno.test("pricedAnswer adds the thinking budget to the answer limit, or to the length assumed", () => {
  assert.deepEqual(pricedAnswer(body(), 1000), { tokens: 1000, limit: null, thinking: null });
  assert.deepEqual(pricedAnswer(body({ max_tokens: 300 }), 1000), {
    tokens: 300,
    limit: 300,
    thinking: null,
  });
  assert.deepEqual(pricedAnswer(body({ thinking_budget: 8_000 }), 1000), {
    tokens: 9_000,
    limit: null,
    thinking: 8_000,
  });
  assert.deepEqual(
    pricedAnswer(
      body({ max_completion_tokens: 4_000, extra_body: { thinking_budget: 3_000 } }),
      1000,
    ),
    { tokens: 7_000, limit: 4_000, thinking: 3_000 },
  );
});
