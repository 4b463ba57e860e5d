/** @module The ids this proxy makes in OpenAI's forms. */
import assert from "node:assert/strict";
import { completionId, toolCallId } from "../lib/openai_types.ts";

Deno.test("completionId: chatcmpl- and 24 hex digits", () => {
  assert.match(completionId(), /^chatcmpl-[0-9a-f]{24}$/);
});

Deno.test("toolCallId: call_ and 24 letters and digits, a new one each time", () => {
  const ids = new Set<string>();
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = toolCallId();
    assert.match(id, /^call_[A-Za-z0-9]{24}$/);
    ids.add(id);
    for (const c of id.slice(5)) seen.add(c);
  }
  assert.equal(ids.size, 1000);
  // Every one of the 62 characters turns up in 24,000 draws.
  assert.equal(seen.size, 62);
});
