import assert from "node:assert/strict";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import type { ChatMessage } from "../lib/openai_types.ts";
import {
  FILE_PART_TOKENS,
  IMAGE_LOW_DETAIL_TOKENS,
  IMAGE_PART_TOKENS,
} from "../lib/attachment_tokens.ts";
import { MESSAGE_OVERHEAD, messageTokenBound, utf8Length } from "../lib/token_bounds.ts";
import {
  EXACT_TEXT_BYTES,
  loadTokenizer,
  SEGMENT_LENGTH,
  segmentEnd,
  TokenCounter,
} from "../lib/tokens.ts";
import { random } from "./random.ts";

await loadTokenizer();

const MB = 1 << 20;

function pick(alphabet: string, length: number, seed: number): string {
  const r = random(seed);
  const chars = [...alphabet];
  const out: string[] = [];
  for (let i = 0; i < length; i++) out.push(chars[Math.floor(r() * chars.length)]);
  return out.join("");
}

const ENGLISH = "The quick brown fox jumps over the lazy dog, and then it naps in the sun. " +
  "Tokenizers split text into pieces; most English words are a single token.\n\n";

Deno.test("TokenCounter.countText matches the library on ordinary text", () => {
  const counter = new TokenCounter();
  const texts = [
    "hello world",
    ENGLISH.repeat(40),
    "function add(a, b) {\n  return a + b; // sum\n}\n".repeat(50),
    "日本語のテキストです。".repeat(30),
    "mixed  spacing\t\tand\n\nnewlines   here ".repeat(40),
  ];
  for (const text of texts) {
    const plain = countTokens(text, { disallowedSpecial: new Set() });
    const ours = counter.countText(text);
    assert.ok(Math.abs(ours - plain) <= Math.ceil(plain * 0.01), `${ours} vs ${plain}`);
  }
  assert.equal(counter.countText(ENGLISH.repeat(40)), countTokens(ENGLISH.repeat(40)));
});

Deno.test("TokenCounter.countText counts special-token text as plain text", () => {
  const counter = new TokenCounter();
  assert.ok(counter.countText("before <|endoftext|> after <|im_start|>") > 5);
});

Deno.test("TokenCounter.countText samples texts longer than EXACT_TEXT_BYTES within 2%", () => {
  const counter = new TokenCounter();
  const text = ENGLISH.repeat(Math.ceil((EXACT_TEXT_BYTES * 4) / ENGLISH.length)) +
    pick("abcdefghijklmnopqrstuvwxyz ", EXACT_TEXT_BYTES, 7);
  const exact = countTokens(text);
  const sampled = counter.countText(text);
  assert.ok(Math.abs(sampled - exact) / exact < 0.02, `${sampled} vs ${exact}`);
});

Deno.test("segmentEnd cuts before whitespace and never inside a surrogate pair", () => {
  const words = "alpha beta gamma ".repeat(100);
  const end = segmentEnd(words, 0);
  assert.ok(end <= SEGMENT_LENGTH && words[end] === " " && words[end - 1] !== " ");
  for (const text of ["😀".repeat(1000), "a" + "😀".repeat(1000), "日😀".repeat(500)]) {
    for (let start = 0; start < text.length;) {
      const cut = segmentEnd(text, start);
      assert.ok(cut > start && cut - start <= SEGMENT_LENGTH);
      const before = text.charCodeAt(cut - 1);
      assert.ok(cut === text.length || !(before >= 0xd800 && before <= 0xdbff), `cut at ${cut}`);
      start = cut;
    }
  }
  const counter = new TokenCounter();
  assert.equal(counter.countText("😀".repeat(1000)), countTokens("😀".repeat(1000)));
});

Deno.test("TokenCounter.countText completes on 1 MB pathological inputs", () => {
  const counter = new TokenCounter();
  const base64 = btoa(pick("\x00\x01\x7f\x80\xfe\xff0aZ", (MB * 3) / 4, 3));
  const inputs = {
    repeated: "a".repeat(MB),
    spaces: " ".repeat(MB),
    newlines: "\n".repeat(MB),
    cjk: pick(
      "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会",
      MB / 3,
      1,
    ),
    base64,
    lowercase: pick("abcdefghijklmnopqrstuvwxyz", MB, 2),
    emoji: "😀".repeat(MB / 4),
    code: "if (x[i] > 0) { y += x[i] * 2; }\n".repeat(MB / 32),
    english: ENGLISH.repeat(Math.ceil(MB / ENGLISH.length)),
  };
  for (const [name, text] of Object.entries(inputs)) {
    const tokens = counter.countText(text);
    assert.ok(tokens > 0 && tokens <= utf8Length(text), `${name}: ${tokens}`);
  }
});

const IMAGE = "data:image/png;base64," + "iVBORw0KGgo".repeat(100_000);

Deno.test("TokenCounter.countMessage counts text, names, tool calls and fixed part estimates", () => {
  const counter = new TokenCounter();
  const t = (s: string) => counter.countText(s);
  const table: [string, ChatMessage, number][] = [
    ["string content", { role: "user", content: "hello there" }, t("hello there")],
    ["empty", { role: "assistant", content: null }, 0],
    ["name", { role: "user", name: "alice", content: "hi" }, t("alice") + t("hi")],
    [
      "text and image parts (base64 not tokenized)",
      {
        role: "user",
        content: [
          { type: "text", text: "what is this?" },
          { type: "image_url", image_url: { url: IMAGE } },
          { type: "image_url", image_url: { url: IMAGE, detail: "low" } },
        ],
      },
      t("what is this?") + IMAGE_PART_TOKENS + IMAGE_LOW_DETAIL_TOKENS,
    ],
    [
      "file and unknown parts (attachment_tokens_test.ts has the estimates of inline data)",
      {
        role: "user",
        content: [
          { type: "file", file: { file_id: "file-abc" } },
          { type: "video_url", video_url: { url: "https://example.com/a.mp4" } },
          { type: "file", file: { filename: "a.png", file_data: IMAGE } },
        ],
      },
      2 * FILE_PART_TOKENS + IMAGE_PART_TOKENS,
    ],
    [
      "tool calls",
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }],
      },
      t("f") + t("{}"),
    ],
    [
      "tool result",
      { role: "tool", tool_call_id: "call_1", content: "42" },
      t("42") + t("call_1"),
    ],
  ];
  for (const [name, message, text] of table) {
    assert.equal(counter.countMessage(message), MESSAGE_OVERHEAD + text, name);
    assert.ok(messageTokenBound(message) >= counter.countMessage(message), `${name}: bound`);
  }
  assert.ok(messageTokenBound(table[3][1]) < 1000, "image data adds no bytes to the bound");
});

Deno.test("TokenCounter caches messages by content, with LRU eviction", () => {
  const counter = new TokenCounter({ cacheSize: 2 });
  const a = { role: "user", content: "first message" };
  counter.countMessage(a);
  counter.countMessage({ ...a });
  assert.deepEqual(counter.stats(), { hits: 1, misses: 1, entries: 1 });
  counter.countMessage({ role: "assistant", content: "first message" });
  counter.countMessage({ role: "user", content: "first message!" });
  assert.deepEqual(counter.stats(), { hits: 1, misses: 3, entries: 2 });
  counter.countMessage(a); // evicted: the oldest entry
  assert.equal(counter.stats().misses, 4);
  const none = new TokenCounter({ cacheSize: 0 });
  none.countMessage(a);
  none.countMessage(a);
  assert.deepEqual(none.stats(), { hits: 0, misses: 2, entries: 0 });
  assert.throws(() => new TokenCounter({ cacheSize: -1 }), RangeError);
});

Deno.test("TokenCounter.countMessages resends a history at the cost of its new messages", () => {
  const counter = new TokenCounter();
  const history: ChatMessage[] = [];
  for (let i = 0; i < 50; i++) history.push({ role: "user", content: `${ENGLISH} ${i}` });
  const total = counter.countMessages(history);
  const resent = structuredClone(history);
  resent.push({ role: "assistant", content: "new" });
  assert.equal(counter.countMessages(resent), total + counter.countMessage(resent[50]));
  assert.deepEqual(counter.stats(), { hits: 51, misses: 51, entries: 51 });
});

Deno.test("TokenCounter by default keeps a 10,000-message history counted newest first for its next turn", () => {
  const counter = new TokenCounter();
  const history: ChatMessage[] = [];
  for (let i = 0; i < 10_000; i++) history.push({ role: "user", content: `note ${i}` });
  const newestFirst = (messages: ChatMessage[]) => {
    for (let i = messages.length - 1; i >= 0; i--) counter.countMessage(messages[i]);
  };
  newestFirst(history);
  const before = counter.stats();
  newestFirst([...history, { role: "assistant", content: "new" }]);
  const after = counter.stats();
  assert.equal(after.misses - before.misses, 1, "only the new message is tokenized");
  assert.equal(after.hits - before.hits, 10_000);
  assert.equal(after.entries, 10_001);
});

Deno.test("TokenCounter evicts the least recently used message, over many evictions", () => {
  // Against a plain model of an LRU cache: the counter keeps its place among evictions.
  const r = random(11);
  for (const size of [1, 3, 17]) {
    const counter = new TokenCounter({ cacheSize: size });
    const model: number[] = [];
    let hits = 0;
    for (let n = 0; n < 5_000; n++) {
      const key = Math.floor(r() * size * 3);
      counter.countMessage({ role: "user", content: `message ${key}` });
      const at = model.indexOf(key);
      if (at >= 0) {
        hits++;
        model.splice(at, 1);
      } else if (model.length >= size) model.shift();
      model.push(key);
    }
    assert.deepEqual(counter.stats(), { hits, misses: 5_000 - hits, entries: model.length });
  }
});
