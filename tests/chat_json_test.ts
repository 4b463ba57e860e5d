/** @module Tests of lib/chat_json.ts's helpers: the usage written into Poe's own answer text. */
import assert from "node:assert/strict";
import { withUsage } from "../lib/chat_json.ts";

const usage = { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 };
const before = JSON.stringify(usage);

Deno.test("withUsage: the cost goes into Poe's usage; the rest of the answer stays as Poe wrote it", () => {
  // Escapes JSON.stringify would write otherwise: kept as they came.
  const text =
    `{"id":"c1","choices":[{"message":{"role":"assistant","content":"caf\\u00e9 \\/ ok"}}],` +
    `"usage":${before}}`;
  const out = withUsage(text, before, { ...usage, cost_points: 42, balance_points: 900 });
  assert.equal(
    out,
    `{"id":"c1","choices":[{"message":{"role":"assistant","content":"caf\\u00e9 \\/ ok"}}],` +
      `"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"cost_points":42,"balance_points":900}}`,
  );
  assert.equal(JSON.parse(out!).choices[0].message.content, "café / ok");
});

Deno.test("withUsage: null where the usage is not found once right after its key: the answer is serialized", () => {
  const added = { ...usage, cost_points: 1 };
  // Spaced as Poe might write it.
  assert.equal(withUsage(`{"usage": {"prompt_tokens": 12}}`, before, added), null);
  assert.equal(withUsage(`{"usage": ${before}}`, before, added), null);
  // Twice: which one is the answer's cannot be told.
  assert.equal(withUsage(`{"a":{"usage":${before}},"usage":${before}}`, before, added), null);
  // Once, but as another key's value.
  assert.equal(
    withUsage(`{"stats":${before},"usage":{"prompt_tokens":12.0}}`, before, added),
    null,
  );
  // Not at all.
  assert.equal(withUsage(`{"choices":[]}`, before, added), null);
});
