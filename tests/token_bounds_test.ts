/** @module What of a message is counted, and its token bounds without the tokenizer. */
import assert from "node:assert/strict";
import { MESSAGE_OVERHEAD, tokenBoundWithin, utf8Length } from "../lib/token_bounds.ts";

Deno.test("utf8Length equals TextEncoder's byte count, lone surrogates included", () => {
  const cases = [
    "",
    "abc",
    "é",
    "日本語",
    "😀",
    "a😀b",
    "\ud800",
    "\udc00x",
    "x\ud83d",
    "\u07ff\u0800",
  ];
  for (const text of cases) {
    assert.equal(utf8Length(text), new TextEncoder().encode(text).length, JSON.stringify(text));
  }
});

Deno.test("tokenBoundWithin returns the byte bound or null past the limit", () => {
  const messages = [{ role: "user", content: "abc" }, { role: "user", content: "日本" }];
  assert.equal(tokenBoundWithin(messages, 100), 2 * MESSAGE_OVERHEAD + 3 + 6);
  assert.equal(tokenBoundWithin(messages, 2 * MESSAGE_OVERHEAD + 8), null);
});
