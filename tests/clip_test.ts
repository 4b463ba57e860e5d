import assert from "node:assert/strict";
import {
  clipMessages,
  type ClipOptions,
  clippedField,
  type ClipResult,
  DEFAULT_ANSWER_RESERVE,
} from "../lib/clip.ts";
import { ProxyError } from "../lib/errors.ts";
import type { ChatMessage } from "../lib/openai_types.ts";
import { loadTokenizer, TokenCounter } from "../lib/tokens.ts";
import { PDF_PAGE_TOKENS } from "../lib/attachment_tokens.ts";
import { CountBudget, REQUEST_EXACT_BYTES, REQUEST_SAMPLE_BYTES } from "../lib/count_budget.ts";
import { buildPdf } from "./pdf_fixture.ts";
import { random } from "./random.ts";

Deno.test("clipContext loads the tokenizer only when the byte shortcut does not settle it", async () => {
  // A fresh process: this one loads the tokenizer for the other tests.
  const script = `
    import { clipContext } from ${JSON.stringify(new URL("../lib/clip.ts", import.meta.url).href)};
    import { TokenCounter, tokenizerLoaded } from ${
    JSON.stringify(new URL("../lib/tokens.ts", import.meta.url).href)
  };
    const counter = new TokenCounter();
    const short = await clipContext([{ role: "user", content: "hello" }], { cap: 1000, counter });
    const afterShort = tokenizerLoaded();
    const long = await clipContext([
      { role: "user", content: "old question ".repeat(50) },
      { role: "assistant", content: "old answer ".repeat(50) },
      { role: "user", content: "new question" },
    ], { cap: 60, counter });
    console.log(JSON.stringify([short.counted, afterShort, tokenizerLoaded(), long.counted, long.messages.length]));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), [false, false, true, true, 1]);
});

await loadTokenizer();

/**
 * {@linkcode clipMessages} leaving no room for the answer unless `reserve` is given (null: as a
 * request without an answer limit). The tests of what is kept size their caps to the messages
 * alone; the room for the answer has tests of its own.
 */
const clip = (messages: readonly ChatMessage[], options: ClipOptions) =>
  clipMessages(messages, {
    ...options,
    reserve: options.reserve === undefined ? 0 : options.reserve,
  });

const words = (n: number, tag: string) => `${tag} ` + "lorem ipsum dolor sit amet ".repeat(n);
const sys = (n = 5): ChatMessage => ({ role: "system", content: words(n, "system") });
const dev = (n = 5): ChatMessage => ({ role: "developer", content: words(n, "developer") });
const user = (n = 10, tag = "user"): ChatMessage => ({ role: "user", content: words(n, tag) });
const asst = (n = 10, ...calls: string[]): ChatMessage => ({
  role: "assistant",
  content: calls.length ? null : words(n, "assistant"),
  ...(calls.length
    ? {
      tool_calls: calls.map((id) => ({
        id,
        type: "function",
        function: { name: "lookup", arguments: JSON.stringify({ q: words(n, id) }) },
      })),
    }
    : {}),
});
const tool = (id: string, n = 10): ChatMessage => ({
  role: "tool",
  tool_call_id: id,
  content: words(n, `result ${id}`),
});

interface Case {
  name: string;
  messages: ChatMessage[];
  /** Indices whose tokens make the cap; the cap is their sum plus `slack`. */
  fit: number[];
  slack?: number;
  reserve?: number;
  /** Expected kept indices. */
  kept: number[];
}

const CASES: Case[] = [
  {
    name: "drops the oldest turns first",
    messages: [sys(), user(), asst(), user(), asst(), user()],
    fit: [0, 3, 4, 5],
    kept: [0, 3, 4, 5],
  },
  {
    name: "keeps several system and developer messages in place",
    messages: [sys(), user(), asst(), dev(), user(), asst(), sys(), user()],
    fit: [0, 3, 4, 5, 6, 7],
    kept: [0, 3, 4, 5, 6, 7],
  },
  {
    // The room the result alone would take goes to the user message that opens the history.
    name: "drops a tool result together with its assistant message",
    messages: [user(), asst(5, "x"), tool("x"), asst(), user()],
    fit: [2, 3, 4],
    kept: [0, 3, 4],
  },
  {
    name: "keeps parallel tool calls with all their results",
    messages: [user(40), asst(5, "x", "y"), tool("x"), tool("y"), user(), asst(5, "z"), tool("z")],
    fit: [1, 2, 3, 4, 5, 6],
    kept: [4, 5, 6],
  },
  {
    name: "drops a parallel call unit whole when one result does not fit",
    messages: [user(), asst(5, "x", "y"), tool("x"), tool("y", 200), user(5), asst(), user()],
    fit: [1, 2, 4, 5, 6],
    kept: [4, 5, 6],
  },
  {
    name: "never opens the kept history with an assistant message",
    messages: [user(50), asst(), user()],
    fit: [1, 2],
    kept: [2],
  },
  {
    // A follow-up ("yes") to an agent's answer: the task opens the history, the oldest round goes.
    name:
      "opens the kept history with the nearest user message that fits, dropping the oldest turns after it",
    messages: [
      sys(),
      user(),
      asst(5, "x"),
      tool("x", 100),
      asst(5, "y"),
      tool("y", 100),
      asst(),
      user(2),
    ],
    fit: [0, 1, 4, 5, 6, 7],
    kept: [0, 1, 4, 5, 6, 7],
  },
  {
    // A nudge in the middle of an agent's run ("also update the tests"): the task still opens the
    // history, with the newest rounds before the nudge, not the nudge alone.
    name: "opens the kept history with the task when a user message interrupts the agent's rounds",
    messages: [
      sys(),
      user(5, "task"),
      asst(5, "x"),
      tool("x", 60),
      asst(5, "y"),
      tool("y", 60),
      user(2, "nudge"),
      asst(5, "z"),
      tool("z"),
      asst(),
      user(2),
    ],
    fit: [0, 1, 4, 5, 6, 7, 8, 9, 10],
    kept: [0, 1, 4, 5, 6, 7, 8, 9, 10],
  },
  {
    name: "opens the kept history with an older user message when the nearest does not fit",
    messages: [user(), asst(), user(300, "document"), asst(5, "x"), tool("x", 50), asst(), user(2)],
    fit: [0, 5, 6],
    kept: [0, 5, 6],
  },
  {
    name: "opens the kept history with a user message and keeps parallel tool calls whole",
    messages: [
      user(),
      asst(5, "x", "y"),
      tool("x", 60),
      tool("y", 60),
      asst(5, "z"),
      tool("z", 60),
      asst(),
      user(2),
    ],
    fit: [0, 4, 5, 6, 7],
    slack: 5,
    kept: [0, 4, 5, 6, 7],
  },
  {
    name: "keeps an earlier user message that fits when the answer before the question does not",
    messages: [sys(), user(), asst(200), user(2)],
    fit: [0, 1, 3],
    kept: [0, 1, 3],
  },
  {
    name: "keeps the newest user message and the newest agent rounds after it",
    messages: [user(), asst(5, "x"), tool("x", 300), asst(5, "y"), tool("y")],
    fit: [0, 3, 4],
    kept: [0, 3, 4],
  },
  {
    name: "drops an orphaned tool message with the turn before it",
    messages: [user(), tool("nobody"), user(), asst(), user()],
    fit: [2, 3, 4],
    kept: [2, 3, 4],
  },
  {
    name: "leaves room for max_tokens",
    messages: [sys(), user(), asst(), user(100), asst(100), user(100)],
    fit: [0, 3, 4, 5],
    slack: 200,
    reserve: 200,
    kept: [0, 3, 4, 5],
  },
  {
    name: "keeps the user messages right before the newest one (a document, then the question)",
    messages: [user(), asst(), user(60, "document"), user(2, "question")],
    fit: [2, 3],
    slack: 5,
    kept: [2, 3],
  },
  {
    // An agent reads files after the question: its rounds must not crowd out the document.
    name: "keeps the document before the question ahead of the agent's tool rounds after it",
    messages: [
      sys(),
      user(),
      asst(),
      user(60, "document"),
      user(2, "question"),
      asst(5, "x"),
      tool("x", 40),
      asst(5, "y"),
      tool("y", 2),
    ],
    fit: [0, 3, 4, 7, 8],
    kept: [0, 3, 4, 7, 8],
  },
  {
    name: "keeps the newest of a run that does not fit whole, and nothing older than the run",
    messages: [
      user(),
      asst(),
      user(40, "doc1"),
      user(40, "doc2"),
      user(2, "q"),
      asst(5, "x"),
      tool("x", 5),
    ],
    fit: [3, 4, 5, 6],
    slack: 20,
    kept: [3, 4, 5, 6],
  },
  {
    name: "keeps the last tool round after the newest user message, dropping older ones first",
    messages: [user(), asst(), user(), asst(5, "x"), tool("x", 100), asst(5, "y"), tool("y", 100)],
    fit: [2, 5, 6],
    kept: [2, 5, 6],
  },
];

for (const c of CASES) {
  Deno.test(`clipMessages ${c.name}`, () => {
    const counter = new TokenCounter();
    const cap = c.fit.reduce((sum, i) => sum + counter.countMessage(c.messages[i]), 0) +
      (c.slack ?? 0);
    const before = structuredClone(c.messages);
    const result = clip(c.messages, { cap, reserve: c.reserve, counter });
    assert.deepEqual(result.messages, c.kept.map((i) => c.messages[i]));
    result.messages.forEach((m, k) => assert.equal(m, c.messages[c.kept[k]], "same objects"));
    assert.deepEqual(c.messages, before, "input not mutated");
    assert.equal(result.clipped, c.kept.length < c.messages.length);
    assert.equal(result.dropped, c.messages.length - c.kept.length);
    assert.equal(result.tokensBefore, counter.countMessages(c.messages));
    assert.equal(result.approximate, false);
    assert.equal(result.tokensAfter, counter.countMessages(result.messages));
    assert.ok(result.tokensAfter <= cap - (c.reserve ?? 0));
    assertPairsIntact(result.messages);
  });
}

/** Every kept tool result has its assistant, and every kept tool call has all its results. */
function assertPairsIntact(messages: ChatMessage[]): void {
  const calls = new Set(messages.flatMap((m) => m.tool_calls?.map((c) => c.id) ?? []));
  const results = new Set(messages.filter((m) => m.role === "tool").map((m) => m.tool_call_id));
  for (const id of results) assert.ok(calls.has(id!), `tool result ${id} without its call`);
  for (const id of calls) assert.ok(results.has(id), `tool call ${id} without its result`);
  const first = messages.find((m) => m.role !== "system" && m.role !== "developer");
  assert.ok(first === undefined || first.role === "user", `history opens with ${first?.role}`);
}

/** A random agent history: turns of a user message (sometimes two), tool rounds, an answer. */
function agentHistory(r: () => number): ChatMessage[] {
  const n = (most: number) => 1 + Math.floor(r() * most);
  const messages: ChatMessage[] = r() < 0.8 ? [sys(n(5))] : [];
  let id = 0;
  const turns = n(6);
  for (let t = 0; t < turns; t++) {
    messages.push(user(n(40)));
    if (r() < 0.2) messages.push(user(n(40)));
    for (let round = Math.floor(r() * 4); round > 0; round--) {
      const calls = Array.from({ length: n(3) }, () => `c${id++}`);
      messages.push(asst(n(10), ...calls), ...calls.map((c) => tool(c, n(60))));
      if (r() < 0.1) messages.push({ role: "system", content: "reminder" });
    }
    if (t < turns - 1 || r() < 0.3) messages.push(asst(n(30)));
  }
  return messages;
}

Deno.test("clipMessages on random agent histories: valid, within the cap, and anchored on the task", () => {
  const counter = new TokenCounter();
  let anchored = 0;
  for (let seed = 1; seed <= 1500; seed++) {
    const r = random(seed);
    const messages = agentHistory(r);
    const tokens = messages.map((m) => counter.countMessage(m));
    const cap = Math.max(10, Math.floor(tokens.reduce((a, b) => a + b) * (0.2 + r() * 0.8)));
    let result;
    try {
      result = clip(messages, { cap, counter });
    } catch (e) {
      assert.ok(e instanceof ProxyError && e.code === "context_length_exceeded", String(e));
      continue;
    }
    const at = `seed ${seed}`;
    const kept = new Set(result.messages);
    assert.ok(result.tokensAfter <= cap, at);
    assert.equal(result.tokensAfter, counter.countMessages(result.messages), at);
    assertPairsIntact(result.messages);
    const pinned = messages.filter((m) => m.role === "system");
    assert.ok(pinned.every((m) => kept.has(m)), `${at}: a system message dropped`);
    // The answer right before the newest user message, and the user message before that answer,
    // are kept whenever they fit beside everything after the question.
    const question = messages.findLastIndex((m) => m.role === "user");
    const after = messages.slice(question).filter((m) => m.role !== "system");
    const answer = messages.findLastIndex((m, i) => i < question && m.role !== "system");
    const task = messages.findLastIndex((m, i) => i < answer && m.role === "user");
    if (!after.every((m) => kept.has(m)) || task < 0) continue;
    if (messages[answer].role !== "assistant" || messages[answer].tool_calls) continue;
    const sum = (list: ChatMessage[]) => list.reduce((a, m) => a + counter.countMessage(m), 0);
    if (sum([...pinned, ...after, messages[answer], messages[task]]) > cap) continue;
    assert.ok(kept.has(messages[task]) && kept.has(messages[answer]), `${at}: not anchored`);
    if (result.clipped) anchored++;
  }
  assert.ok(anchored > 50, `only ${anchored} clipped histories checked for their anchor`);
});

Deno.test("clipMessages fails with context_length_exceeded on a single oversized message", () => {
  const counter = new TokenCounter();
  const messages = [sys(), user(), asst(), user(2000)];
  assert.throws(
    () => clip(messages, { cap: 1000, counter }),
    (e: unknown) =>
      e instanceof ProxyError && e.status === 400 && e.code === "context_length_exceeded" &&
      e.param === "messages",
  );
  try {
    clip(messages, { cap: 1000, counter });
    assert.fail("expected a ProxyError");
  } catch (e) {
    const system = counter.countMessage(messages[0]);
    const last = counter.countMessage(messages[3]);
    const text = (e as Error).message;
    assert.match(text, new RegExp(`system messages \\(${system} tokens\\)`));
    assert.match(text, new RegExp(`newest user message \\(${last} tokens\\)`));
    assert.match(text, /context cap is 1000 tokens/);
  }
});

Deno.test("clipMessages reserves at most half the cap for the answer", () => {
  const counter = new TokenCounter();
  const messages = [user(), asst(), user()];
  const cap = 2 * counter.countMessages(messages) + 10;
  assert.equal(clipMessages(messages, { cap, counter }).clipped, false);
  // A client's max_tokens of the whole cap (or more) still leaves half of it for the input.
  for (const reserve of [cap, 10 * cap]) {
    assert.equal(clipMessages(messages, { cap, reserve, counter }).clipped, false);
  }
  const last = counter.countMessage(messages[2]);
  assert.throws(
    () => clipMessages(messages, { cap: 2 * last - 2, reserve: 10 * cap, counter }),
    new RegExp(`minus ${last - 1} reserved for the answer \\(max_tokens\\) leaves ${last - 1}`),
  );
});

Deno.test("clipMessages leaves DEFAULT_ANSWER_RESERVE free for the answer when the request sets no limit", () => {
  const counter = new TokenCounter();
  // About 30,000 tokens to a 20,000-token cap. Without a limit nothing was reserved: the
  // reviewer's 30 turns to GPT-4o were clipped to 127,763 of its 128,000 tokens, 237 left to answer.
  const messages: ChatMessage[] = [sys()];
  for (let i = 0; i < 60; i++) messages.push(user(40, `u${i}`), asst(60, `a${i}`));
  messages.push(user());
  const cap = 20_000;
  const turn = counter.countMessages(messages.slice(1, 3));
  /** Clipped to `room` for the messages, within a turn (what is kept is whole turns). */
  const within = (result: ClipResult, room: number) => {
    assert.ok(result.clipped);
    assert.ok(result.tokensAfter <= room, `${result.tokensAfter} > ${room}`);
    assert.ok(result.tokensAfter > room - turn, `${result.tokensAfter} <= ${room} - ${turn}`);
  };
  // Under this cap the default is its eighth (2,500): DEFAULT_ANSWER_RESERVE from a cap of 32,768.
  const eighth = cap / 8;
  const none = clipMessages(messages, { cap, counter });
  within(none, cap - eighth);
  const twice = [sys(), ...messages.slice(1, -1), ...messages.slice(1, -1), user()];
  within(clipMessages(twice, { cap: 40_000, counter }), 40_000 - DEFAULT_ANSWER_RESERVE);
  // What chat.ts passes for a request without a limit (answerLimit's null) is the same.
  assert.deepEqual(clipMessages(messages, { cap, reserve: null, counter }).messages, none.messages);
  // A limit the request sets is reserved as it is, below the default or above it.
  within(clipMessages(messages, { cap, reserve: 100, counter }), cap - 100);
  within(clipMessages(messages, { cap, reserve: 8_000, counter }), cap - 8_000);
  // A thinking budget comes on top of the default, not of a limit, which holds it.
  within(clipMessages(messages, { cap, thinking: 2_000, counter }), cap - eighth - 2_000);
  within(clipMessages(messages, { cap, reserve: 100, thinking: 2_000, counter }), cap - 100);
  // A cap lowered to save points: the default is an eighth of it, with thinking at most half.
  within(clipMessages(messages, { cap: 6_000, counter }), 5_250);
  within(clipMessages(messages, { cap: 6_000, thinking: 4_000, counter }), 3_000);
});

Deno.test("clipMessages refusing says the room for the answer is the default when no limit is set", () => {
  const counter = new TokenCounter();
  const messages = [user(100)];
  const question = counter.countMessage(messages[0]);
  const cap = question + 5;
  const eighth = Math.floor(cap / 8);
  assert.throws(
    () => clipMessages(messages, { cap, counter }),
    (e: ProxyError) =>
      e.code === "context_length_exceeded" &&
      e.message.endsWith(
        `minus ${eighth} reserved for the answer (no max_tokens set: the default) leaves ${
          cap - eighth
        }.`,
      ),
  );
  // A limit the request sets is named as such, and a small one lets the question through.
  assert.throws(
    () => clipMessages(messages, { cap, reserve: 10, counter }),
    /minus 10 reserved for the answer \(max_tokens\) leaves/,
  );
  assert.equal(clipMessages(messages, { cap, reserve: 5, counter }).tokensAfter, question);
});

Deno.test("clipMessages drops the oldest of a run of user messages that does not fit, not the chat", () => {
  const counter = new TokenCounter();
  // A group chat relayed by a bot, or messages resent after failed answers: user after user.
  const run = Array.from({ length: 60 }, (_, i) => user(10, `said ${i}`));
  const messages = [sys(), user(10, "first"), asst(10, "reply"), ...run];
  const cap = 25 * counter.countMessage(run[0]);
  const result = clip(messages, { cap, counter });
  assert.ok(result.clipped);
  assert.ok(result.tokensAfter <= cap);
  assert.equal(result.messages[0], messages[0], "the system message stays");
  assert.equal(result.messages.at(-1), run.at(-1), "the newest message stays");
  // The newest of the run, in order, as many as fit.
  const kept = result.messages.slice(1);
  assert.deepEqual(kept, run.slice(run.length - kept.length));
  assert.ok(kept.length > 10);
  // A document just before the question goes the same way when it cannot fit: the question is
  // answered, and the footer and x-poe-proxy-clipped say what was dropped.
  const doc = [sys(), user(60, "document"), user(2, "question")];
  const clipped = clip(doc, { cap: 100, counter });
  assert.deepEqual(clipped.messages, [doc[0], doc[2]]);
});

Deno.test("clipMessages refuses, not clips, when the last tool result alone is over the cap", () => {
  const counter = new TokenCounter();
  const messages = [sys(), user(), asst(5, "x"), tool("x", 400)];
  assert.throws(
    () => clip(messages, { cap: 300, counter }),
    (e: ProxyError) =>
      e.code === "context_length_exceeded" &&
      /the newest user message and the last tool round after it/.test(e.message),
  );
});

Deno.test("clipMessages fails when there is no user message to keep", () => {
  const counter = new TokenCounter();
  assert.throws(
    () => clip([sys(), asst(500)], { cap: 100, counter }),
    /no user message/,
  );
});

Deno.test("clipMessages with a cap of zero or null clips and counts nothing", () => {
  const counter = new TokenCounter();
  const messages = [user(5000), asst(5000), user()];
  for (const cap of [0, null, -1]) {
    const result = clip(messages, { cap, reserve: 100, counter });
    assert.deepEqual(result.messages, messages);
    assert.equal(result.clipped, false);
    assert.equal(result.counted, false);
  }
  assert.equal(counter.stats().misses, 0);
});

Deno.test("clipMessages takes the byte shortcut: small requests are not tokenized", () => {
  const counter = new TokenCounter();
  const messages = [sys(), user(), asst(), user()];
  const result = clip(messages, { cap: 100_000, counter });
  assert.equal(result.counted, false);
  assert.equal(result.clipped, false);
  assert.ok(result.tokensBefore >= new TokenCounter().countMessages(messages));
  assert.deepEqual(counter.stats(), { hits: 0, misses: 0, entries: 0 });
});

Deno.test("clipMessages does not count base64 image data as text", () => {
  const counter = new TokenCounter();
  const image = "data:image/jpeg;base64," + "/9j/4AAQSkZJRg".repeat(200_000);
  const messages: ChatMessage[] = [
    user(),
    asst(),
    {
      role: "user",
      content: [
        { type: "text", text: "describe" },
        { type: "image_url", image_url: { url: image } },
      ],
    },
  ];
  const result = clip(messages, { cap: 2000, counter });
  assert.equal(result.counted, false, "the shortcut applies despite 2.8 MB of image data");
  assert.equal(result.messages.length, 3);
  const tight = clip(messages, { cap: counter.countMessage(messages[2]), counter });
  assert.deepEqual(tight.messages, [messages[2]]);
});

Deno.test("clipMessages on a resent history tokenizes only the new messages", () => {
  const counter = new TokenCounter();
  const history: ChatMessage[] = [sys()];
  for (let i = 0; i < 100; i++) history.push(user(15, `u${i}`), asst(15));
  history.push(user());
  const cap = Math.floor(counter.countMessages(history) / 2);
  const fresh = new TokenCounter();
  const first = clip(history, { cap, counter: fresh });
  assert.ok(first.clipped);
  assert.equal(first.approximate, false);
  const misses = fresh.stats().misses;
  const next = structuredClone(history);
  next.push({ role: "assistant", content: "a new answer" }, user(10, "next"));
  const second = clip(next, { cap, counter: fresh });
  assert.ok(second.clipped);
  assert.equal(fresh.stats().misses, misses + 2);
});

Deno.test("clipMessages on a resent history counts exactly what the first request estimated", () => {
  // 280 kB of text not plain prose: more than a request tokenizes exactly (REQUEST_EXACT_BYTES).
  const dense = (role: "user" | "assistant", tag: string): ChatMessage => ({
    role,
    content: words(50, tag).replaceAll(" ", "\u00a0"),
  });
  const history: ChatMessage[] = [sys()];
  for (let i = 0; i < 100; i++) history.push(dense("user", `u${i}`), dense("assistant", `a${i}`));
  history.push(user());
  const exact = new TokenCounter();
  const real = history.map((m) => exact.countMessage(m));
  const cap = Math.floor(real.reduce((a, b) => a + b) / 2);
  const counter = new TokenCounter();
  const first = clip(history, { cap, counter });
  assert.ok(first.clipped && first.approximate, "the dropped part is estimated");
  assert.ok(first.tokensAfter <= cap);
  // Estimates err high: what is kept really fits.
  const keptReal = first.messages.reduce((sum, m) => sum + real[history.indexOf(m)], 0);
  assert.ok(keptReal <= first.tokensAfter, `${keptReal} > ${first.tokensAfter}`);
  // Each resend counts exactly more of what was estimated, until nothing is.
  let last = first;
  for (let turn = 0; turn < 4 && last.approximate; turn++) {
    last = clip(structuredClone(history), { cap, counter });
  }
  assert.equal(last.approximate, false);
  assert.equal(last.tokensBefore, real.reduce((a, b) => a + b));
  assert.ok(last.tokensAfter <= cap);
});

Deno.test("clipMessages makes room for the tool definitions first, and says so when they leave none", () => {
  const counter = new TokenCounter();
  const messages = [sys(), user(50, "a"), asst(50, "b"), user(50, "c"), asst(50, "d"), user(5)];
  const all = counter.countMessages(messages);
  const cap = all + 20;
  assert.equal(clip(messages, { cap, counter }).clipped, false);
  const definitions = JSON.stringify([[{
    type: "function",
    function: { name: "read_file", description: "Reads a file. ".repeat(20) },
  }]]);
  const tools = counter.countDefinitions(definitions);
  assert.ok(tools > 40);
  const result = clip(messages, { cap, counter, definitions });
  assert.ok(result.clipped, "the history makes room for the tools");
  assert.ok(result.tokensAfter <= cap, `${result.tokensAfter} <= ${cap}`);
  assert.equal(
    result.tokensAfter,
    counter.countMessages(result.messages) + tools,
    "what is sent, tools included",
  );
  assert.throws(
    () => clip(messages, { cap: tools + 10, counter, definitions }),
    (e: ProxyError) =>
      e.code === "context_length_exceeded" &&
      new RegExp(`minus ${tools} for the tool definitions`).test(e.message),
  );
});

// Joined by no-break spaces: not plain prose (`plainText`), of which a request's allowance holds
// eight times more, so that these texts reach its limits.
const ENGLISH = "The quick brown fox jumps over the lazy dog. ".replaceAll(" ", "\u00a0");

Deno.test("clipMessages refusing counts every system message, not those up to the budget", () => {
  const counter = new TokenCounter();
  const system = Array.from({ length: 10 }, (_, i) => sys(180 + i));
  const messages = [...system, user(2, "hi")];
  const all = counter.countMessages(system);
  const question = counter.countMessage(messages[10]);
  assert.throws(
    () => clip(messages, { cap: 2000, counter }),
    (e: ProxyError) =>
      e.code === "context_length_exceeded" &&
      e.message.includes(`the system messages (${all} tokens)`) &&
      e.message.includes(`need ${all + question} tokens`),
  );
  // Tool definitions larger than the budget: the system messages are still counted, and the room
  // left is none, not a negative number.
  const definitions = JSON.stringify([{ description: ENGLISH.repeat(300) }]);
  assert.throws(
    () => clip(messages, { cap: 2000, counter, definitions }),
    (e: ProxyError) =>
      e.message.includes(`the system messages (${all} tokens)`) &&
      /leaves no room for the messages\.$/.test(e.message) && !/-\d/.test(e.message),
  );
});

Deno.test("clipMessages refusing counts system messages within the request's budget, and says about", () => {
  const counter = new TokenCounter();
  // 630 kB each: the first is counted (on its own sample of EXACT_TEXT_BYTES), and is over the
  // budget; the others are counted as far as the request's allowance goes, then estimated.
  const system = [1, 2, 3].map((i): ChatMessage => ({
    role: "system",
    content: `Part ${i}. ${ENGLISH.repeat(14_000)}`,
  }));
  const messages = [...system, user(2, "hi")];
  const real = new TokenCounter().countMessages(system, EXACTLY());
  const budget = new CountBudget();
  try {
    clip(messages, { cap: 2000, counter, budget });
    assert.fail("expected a refusal");
  } catch (e) {
    const text = (e as Error).message;
    const figure = Number(/the system messages \(about (\d+) tokens\)/.exec(text)?.[1]);
    assert.ok(figure >= real && figure < real * 1.15, `${text} (counted: ${real})`);
    assert.match(text, /need about \d+ tokens/);
  }
  assert.ok(budget.tokenized <= REQUEST_EXACT_BYTES + REQUEST_SAMPLE_BYTES, `${budget.tokenized}`);
});

/** A budget without limit: the exact figures the tests compare with. */
const EXACTLY = () => new CountBudget({ exactBytes: Infinity, exactMs: Infinity });

/** `n` messages of 50 kB of English, user and assistant in turn, each its own. */
function bulky(n: number): ChatMessage[] {
  return Array.from({ length: n }, (_, i) => ({
    role: i % 2 ? "assistant" : "user",
    content: `Turn ${i}. ${ENGLISH.repeat(1_100)}`,
  }));
}

Deno.test("clipMessages estimates a dropped part beyond the request's budget, a little high, and says so", () => {
  const counter = new TokenCounter();
  // 1.5 MB in 30 messages: the turn after them does not fit, so they are never tried, only
  // counted for the figure, as far as the request's allowance goes.
  const messages = [...bulky(30), user(500, "too long"), asst(), user(2, "question")];
  const budget = new CountBudget();
  const result = clip(messages, { cap: 2000, counter, budget });
  assert.deepEqual(result.messages, [messages[32]]);
  assert.equal(result.approximate, true);
  assert.equal(result.approximateAfter, false, "what is kept was counted");
  const real = new TokenCounter().countMessages(messages, EXACTLY());
  assert.ok(
    result.tokensBefore >= real && result.tokensBefore < real * 1.15,
    `${result.tokensBefore} is not about ${real}`,
  );
  assert.equal(result.tokensAfter, counter.countMessage(messages[32]));
  // Plain prose (the short turns) takes an eighth of the allowance a byte: a little more is read.
  const bound = REQUEST_EXACT_BYTES + REQUEST_SAMPLE_BYTES + 8 * 1024;
  assert.ok(budget.tokenized <= bound, `${budget.tokenized}`);
});

Deno.test("clipMessages counts PDFs by their pages, in exact and in estimated figures alike", () => {
  const pdf: ChatMessage = {
    role: "user",
    content: [
      { type: "text", text: "read this" },
      { type: "file", file: { file_data: buildPdf({ pages: 5, imageBytes: 300_000 }).dataUrl } },
    ],
  };
  // 2 MB of PDF data and little text: the dropped part is counted, not estimated, PDFs and all.
  const counter = new TokenCounter();
  const messages = [pdf, asst(), pdf, asst(), user(2, "question")];
  const result = clip(messages, { cap: 2000, counter });
  assert.deepEqual(result.messages, [messages[4]]);
  assert.equal(result.approximate, false);
  assert.equal(result.tokensBefore, new TokenCounter().countMessages(messages));
  assert.ok(result.tokensBefore > 2 * 5 * PDF_PAGE_TOKENS);
  // Beyond the request's allowance, a dropped message's text is estimated: its PDF still by its
  // pages, not sampled with it.
  const pages = { type: "file", file: { file_data: buildPdf({ pages: 100 }).dataUrl } };
  const texts = bulky(6).map((m) => ({ type: "text", text: m.content as string }));
  const both: ChatMessage = { role: "user", content: [...texts, pages] };
  const withText = [both, asst(), user(500, "too long"), asst(), user(2, "question")];
  const estimated = clip(withText, { cap: 2000, counter: new TokenCounter() });
  assert.deepEqual(estimated.messages, [withText[4]]);
  assert.equal(estimated.approximate, true);
  const textOnly = new TokenCounter().countMessage({ role: "user", content: texts }, {
    budget: EXACTLY(),
  });
  const rest = new TokenCounter().countMessages(withText.slice(1), EXACTLY());
  const figure = estimated.tokensBefore - rest - 100 * PDF_PAGE_TOKENS;
  assert.ok(figure >= textOnly && figure < textOnly * 1.15, `${figure} vs ${textOnly}`);
});

Deno.test("clipMessages does not tokenize thousands of dropped messages for the figure", () => {
  const counter = new TokenCounter();
  const messages: ChatMessage[] = Array.from({ length: 10_000 }, (_, i) => ({
    role: i % 2 ? "assistant" : "user",
    content: `message number ${i} with a few words`,
  }));
  messages.push({ role: "user", content: "final" });
  const result = clip(messages, { cap: 2000, counter });
  assert.ok(result.clipped);
  assert.equal(result.approximate, true);
  // Counted: what was kept, and what was tried; not the 10,000 (a per-message cost, ~5 µs each).
  assert.ok(counter.stats().misses < 1000, `${counter.stats().misses} messages tokenized`);
  const real = new TokenCounter().countMessages(messages);
  assert.ok(Math.abs(result.tokensBefore - real) < real / 4, `${result.tokensBefore} vs ${real}`);
  // A few hundred dropped messages are still counted exactly.
  const few = messages.slice(-400);
  const exact = clip(few, { cap: 2000, counter });
  assert.equal(exact.approximate, false);
  assert.equal(exact.tokensBefore, new TokenCounter().countMessages(few));
});

Deno.test("clippedField marks each figure that is partly estimated with ~", () => {
  const result = {
    messages: [],
    clipped: true,
    dropped: 3,
    tokensBefore: 900,
    approximate: false,
    tokensAfter: 100,
    approximateAfter: false,
    counted: true,
  };
  assert.equal(clippedField(result), "dropped=3 tokens=900->100");
  assert.equal(clippedField({ ...result, approximate: true }), "dropped=3 tokens=~900->100");
  assert.equal(
    clippedField({ ...result, approximate: true, approximateAfter: true }),
    "dropped=3 tokens=~900->~100",
  );
  assert.equal(clippedField({ ...result, clipped: false, dropped: 0 }), null);
});
