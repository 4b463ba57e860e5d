import assert from "node:assert/strict";
import { nearestUserUnit, type Unit, unitsOf } from "../lib/clip_units.ts";
import { EXACT_TOTAL_BYTES } from "../lib/clip_figures.ts";
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
    nearestUserUnit(messages, units, before, { room, tokensOf, counted: () => false });
  assert.equal(find(5, 30), 4);
  assert.equal(find(5, 15), 0);
  assert.equal(find(4, 60), 2, "only before the run");
  assert.equal(find(5, 5), -1);
  assert.equal(find(5, 0), -1);
});

Deno.test("nearestUserUnit tokenizes no more than the input's total would", () => {
  // Huge user messages that do not fit: the search gives up past EXACT_TOTAL_BYTES of them.
  const big = "x".repeat(EXACT_TOTAL_BYTES * 0.6);
  const messages: ChatMessage[] = [
    { role: "user", content: "fits" },
    { role: "assistant", content: "x" },
    { role: "user", content: big },
    { role: "user", content: big },
    { role: "assistant", content: "x" },
  ];
  const { units, tokenized, tokensOf } = lengthCounted(messages);
  const options = { room: 100, tokensOf, counted: () => false };
  assert.equal(nearestUserUnit(messages, units, 4, options), -1);
  assert.deepEqual(tokenized, [3], "the second huge message is not tokenized");
  // Counted already (the total counts what is small enough): the search goes on for free.
  const again = lengthCounted(messages);
  for (const unit of again.units.slice(2, 4)) again.tokensOf(unit);
  const found = nearestUserUnit(messages, again.units, 4, {
    ...options,
    tokensOf: again.tokensOf,
    counted: (i) => i === 2 || i === 3,
  });
  assert.equal(found, 0);
});
