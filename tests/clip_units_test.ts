import assert from "node:assert/strict";
import { nearestUserUnit, type Unit, unitsOf } from "../lib/clip_units.ts";
import { EXACT_TOTAL_MESSAGES } from "../lib/clip_figures.ts";
import type { ChatMessage } from "../lib/openai_types.ts";

const call = (id: string) => ({ id, type: "function", function: { name: "f", arguments: "{}" } });

Deno.test("unitsOf keeps a call with all its results, skips system messages, and adopts orphans", () => {
  const messages: ChatMessage[] = [
    { role: "system", content: "s" },
    { role: "user", content: "u" },
    { role: "tool", tool_call_id: "nobody", content: "orphan" },
    { role: "assistant", content: null, tool_calls: [call("a"), call("b")] },
    { role: "tool", tool_call_id: "b", content: "b" },
    { role: "developer", content: "d" },
    { role: "tool", tool_call_id: "a", content: "a" },
    { role: "assistant", content: "done" },
    { role: "user", content: "q" },
  ];
  const units = unitsOf(messages);
  assert.deepEqual(units.map((u) => u.indices), [[1, 2], [3, 4, 6], [7], [8]]);
  assert.deepEqual(units.map((u) => u.opensHistory), [true, false, false, true]);
  assert.ok(units.every((u) => u.tokens === -1), "not counted yet");
});

/** Units whose tokens are their text's length, and the units tokenized. */
function lengthCounted(messages: ChatMessage[]) {
  const tokenized: number[] = [];
  const tokensOf = (unit: Unit) => {
    if (unit.tokens < 0) {
      tokenized.push(unit.indices[0]);
      unit.tokens = unit.indices.reduce((a, i) => a + String(messages[i].content).length, 0);
    }
    return unit.tokens;
  };
  return { units: unitsOf(messages), tokenized, tokensOf };
}

Deno.test("nearestUserUnit finds the newest user message that fits, passing over those that do not", () => {
  const messages: ChatMessage[] = [
    { role: "user", content: "x".repeat(10) },
    { role: "assistant", content: "x" },
    { role: "user", content: "x".repeat(50) },
    { role: "assistant", content: "x" },
    { role: "user", content: "x".repeat(20) },
    { role: "assistant", content: "x" },
  ];
  const { units, tokensOf } = lengthCounted(messages);
  const find = (before: number, room: number) =>
    nearestUserUnit(units, before, { room, tokensOf, counted: () => false });
  assert.equal(find(5, 30), 4);
  assert.equal(find(5, 15), 0);
  assert.equal(find(4, 60), 2, "only before the run");
  assert.equal(find(5, 5), -1);
  assert.equal(find(5, 0), -1);
});

Deno.test("nearestUserUnit counts no more messages than the input's total would", () => {
  // User messages that do not fit: the search gives up past EXACT_TOTAL_MESSAGES of them (what
  // each tokenizes is the request's CountBudget's business).
  const messages: ChatMessage[] = [{ role: "user", content: "fits" }];
  for (let i = 0; i < EXACT_TOTAL_MESSAGES + 10; i++) {
    messages.push({ role: "assistant", content: "x" }, { role: "user", content: "x".repeat(200) });
  }
  const { units, tokenized, tokensOf } = lengthCounted(messages);
  const options = { room: 100, tokensOf, counted: () => false };
  assert.equal(nearestUserUnit(units, units.length, options), -1);
  assert.equal(tokenized.length, EXACT_TOTAL_MESSAGES, "the rest are not counted");
  // Counted already (the total counts what is few enough): the search goes on for free.
  const again = lengthCounted(messages);
  for (const unit of again.units) if (unit.indices[0] > 0) again.tokensOf(unit);
  const found = nearestUserUnit(again.units, again.units.length, {
    ...options,
    tokensOf: again.tokensOf,
    counted: (i) => i > 0,
  });
  assert.equal(found, 0);
});
