/** @module Benchmarks of token counting and context clipping (`deno bench`). */

import { clearMergeCache } from "gpt-tokenizer/encoding/o200k_base";
import { clipMessages } from "../../lib/clip.ts";
import type { ChatMessage } from "../../lib/openai_types.ts";
import { loadTokenizer, TokenCounter } from "../../lib/tokens.ts";
import { random } from "../random.ts";

const MB = 1 << 20;

const WORDS = ("the of and to in is that for it as was with be by on not he this are or his from " +
  "at which but have an they you were her she there been one all we their has would when if so " +
  "no will more can out time other into could about than only its some up then very tokenizer " +
  "context history message assistant clipping proxy request response stream model budget").split(
    " ",
  );

function english(length: number, seed: number): string {
  const r = random(seed);
  const parts: string[] = [];
  let n = 0;
  while (n < length) {
    const word = WORDS[Math.floor(r() * WORDS.length)];
    const sep = r() < 0.08 ? ". " : r() < 0.01 ? ".\n\n" : " ";
    parts.push(word, sep);
    n += word.length + sep.length;
  }
  return parts.join("").slice(0, length);
}

function code(length: number, seed: number): string {
  const r = random(seed);
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < length; i++) {
    const v = Math.floor(r() * 1e6);
    const line = [
      `export function handler${i}(request: Request, limit = ${v}): Promise<Response> {`,
      `  const body = await request.json() as { items?: number[] };`,
      `  if (!body.items || body.items.length > limit) throw new Error("too many: " + ${v});`,
      `  return Response.json(body.items.map((x) => x * ${i % 7} + ${v % 13}));`,
      `}`,
    ].join("\n") + "\n\n";
    lines.push(line);
    n += line.length;
  }
  return lines.join("").slice(0, length);
}

/** CJK without punctuation or spaces, 1 MB of UTF-8 (3 bytes a character). */
function cjk(bytes: number, seed: number): string {
  const common =
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会" +
    "那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面";
  const r = random(seed);
  const out: string[] = [];
  for (let i = 0; i < bytes / 3; i++) out.push(common[Math.floor(r() * common.length)]);
  return out.join("");
}

/** Random bytes as base64: the slowest kind of input measured (few whole-vocabulary pieces). */
function base64(bytes: number, seed: number): string {
  const r = random(seed);
  const raw = new Uint8Array((bytes * 3) / 4);
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(r() * 256);
  let binary = "";
  for (let i = 0; i < raw.length; i += 8192) {
    binary += String.fromCharCode(...raw.subarray(i, i + 8192));
  }
  return btoa(binary);
}

const INPUTS = {
  english: english(MB, 1),
  code: code(MB, 2),
  cjk: cjk(MB, 3),
  repeated: "a".repeat(MB),
  base64: base64(MB, 4),
};

/** A chat history of about `tokens` tokens: turns of prose and code, with tool calls. */
function history(tokens: number): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: "system", content: english(2000, 0) }];
  const counter = new TokenCounter();
  let total = counter.countMessage(messages[0]);
  for (let i = 0; total < tokens; i++) {
    const turn: ChatMessage[] = [{ role: "user", content: english(1500, 10 + i) }];
    if (i % 5 === 4) {
      turn.push(
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: `call_${i}`,
            type: "function",
            function: { name: "read_file", arguments: JSON.stringify({ path: `src/f${i}.ts` }) },
          }],
        },
        { role: "tool", tool_call_id: `call_${i}`, content: code(6000, 1000 + i) },
      );
    }
    turn.push({ role: "assistant", content: english(3000, 2000 + i) + code(2000, 3000 + i) });
    for (const m of turn) total += counter.countMessage(m);
    messages.push(...turn);
  }
  messages.push({ role: "user", content: "And what about the last point?" });
  return messages;
}

await loadTokenizer();

const H300K = history(300_000);
const H200K = history(200_000);
const CAP = 128_000;
const RESERVE = 4096;

for (const [name, text] of Object.entries(INPUTS)) {
  Deno.bench(`countText 1 MB of ${name} (cold)`, { group: "count" }, (b) => {
    const counter = new TokenCounter();
    clearMergeCache();
    b.start();
    counter.countText(text);
    b.end();
  });
}

Deno.bench("clip a 300k-token history (cold: fresh counter)", { group: "clip" }, (b) => {
  const counter = new TokenCounter();
  clearMergeCache();
  const messages = structuredClone(H300K);
  b.start();
  clipMessages(messages, { cap: CAP, reserve: RESERVE, counter });
  b.end();
});

const warm300 = new TokenCounter();
clipMessages(H300K, { cap: CAP, reserve: RESERVE, counter: warm300 });
Deno.bench("clip a 300k-token history (warm: resent)", { group: "clip" }, (b) => {
  const messages = structuredClone(H300K);
  b.start();
  clipMessages(messages, { cap: CAP, reserve: RESERVE, counter: warm300 });
  b.end();
});

const warm200 = new TokenCounter();
clipMessages(H200K, { cap: CAP, reserve: RESERVE, counter: warm200 });
Deno.bench("clip a 200k-token history (warm: resent)", { group: "clip" }, (b) => {
  const messages = structuredClone(H200K);
  b.start();
  clipMessages(messages, { cap: CAP, reserve: RESERVE, counter: warm200 });
  b.end();
});

Deno.bench("clip a small request (byte shortcut)", { group: "clip" }, (b) => {
  const counter = new TokenCounter();
  const messages = structuredClone(H300K.slice(0, 5));
  b.start();
  clipMessages(messages, { cap: CAP, reserve: RESERVE, counter });
  b.end();
});
