/** @module What of a message is counted, and its token bounds without the tokenizer. */
import assert from "node:assert/strict";
import type { ChatMessage } from "../lib/openai_types.ts";
import {
  MESSAGE_OVERHEAD,
  messageTextChars,
  tokenBoundWithin,
  utf8Length,
} from "../lib/token_bounds.ts";
import { random } from "./random.ts";

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
  // Long texts are measured by V8 (node:buffer), short ones by a loop: both agree with TextEncoder.
  const r = random(5);
  const alphabet = ["a", "é", "日", "😀", "\ud800", "\udc00", "\u07ff", "\u0800", " "];
  for (let n = 0; n < 300; n++) {
    const length = Math.floor(r() * 200);
    cases.push(Array.from({ length }, () => alphabet[Math.floor(r() * alphabet.length)]).join(""));
  }
  for (const text of cases) {
    assert.equal(utf8Length(text), new TextEncoder().encode(text).length, JSON.stringify(text));
  }
});

Deno.test("tokenBoundWithin returns the byte bound or null past the limit", () => {
  const messages = [{ role: "user", content: "abc" }, { role: "user", content: "日本" }];
  assert.equal(tokenBoundWithin(messages, 100), 2 * MESSAGE_OVERHEAD + 3 + 6);
  assert.equal(tokenBoundWithin(messages, 2 * MESSAGE_OVERHEAD + 8), null);
});

Deno.test("messageTextChars: the characters of the text counted, images and files none", () => {
  const message = {
    role: "assistant",
    name: "bob",
    content: [
      { type: "text", text: "héllo" },
      { type: "refusal", refusal: "no" },
      { type: "image_url", image_url: { url: `data:image/png;base64,${"A".repeat(999)}` } },
      { type: "file", file: { file_data: "B".repeat(999) } },
    ],
    tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
  } as unknown as ChatMessage;
  // bob + héllo + no + f + {} (characters, not UTF-8 bytes).
  assert.equal(messageTextChars(message), 3 + 5 + 2 + 1 + 2);
  assert.equal(messageTextChars({ role: "tool", tool_call_id: "c1", content: "ok" }), 4);
  assert.equal(messageTextChars({ role: "assistant", content: null }), 0);
});
