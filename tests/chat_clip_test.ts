import assert from "node:assert/strict";
import { FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import { ModelRegistry } from "../lib/models.ts";
import type { ChatMessage } from "../lib/openai_types.ts";
import { stripFooter } from "../lib/footer.ts";
import { setup } from "./points_fixture.ts";
import { DEFAULT_ANSWER_RESERVE } from "../lib/clip.ts";
import { loadTokenizer, TokenCounter } from "../lib/tokens.ts";

// The test registry caps Claude-Haiku-4.5 at 60 tokens of context.
function longHistory(turns: number): ChatMessage[] {
  const messages: ChatMessage[] = [{ role: "system", content: "Be brief." }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: "user", content: `question number ${i} about the weather today` });
    messages.push({ role: "assistant", content: `answer number ${i}: it is sunny and warm` });
  }
  messages.push({ role: "user", content: "and tomorrow?" });
  return messages;
}

async function chat(url: string, body: unknown): Promise<Response> {
  return await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

Deno.test("clipping: Poe receives the clipped history and the response says so", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  const messages = longHistory(10);
  const res = await chat(proxy.url, { model: "claude-haiku-4.5", messages });
  assert.equal(res.status, 200);
  await res.json();
  const header = res.headers.get("x-poe-proxy-clipped");
  assert.ok(header, "x-poe-proxy-clipped header missing");
  const match = header.match(/^dropped=(\d+) tokens=(\d+)->(\d+)$/);
  assert.ok(match, header);
  const sent = (fake.chatRequests()[0].body as { messages: ChatMessage[] }).messages;
  assert.equal(Number(match[1]), messages.length - sent.length);
  assert.ok(Number(match[3]) <= 60 && Number(match[2]) > 60, header);
  assert.deepEqual(sent[0], messages[0], "the system message is kept");
  assert.deepEqual(sent.at(-1), messages.at(-1), "the newest user message is kept");
  assert.equal(sent[1].role, "user", "the kept history starts with a user turn");
  assert.deepEqual(sent.slice(1), messages.slice(messages.length - sent.length + 1));
  assert.match(proxy.logs.find((l) => l.includes("path=/v1/chat/completions"))!, /clipped=/);
});

Deno.test("clipping: a short conversation goes through untouched and without the header", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  const messages = longHistory(1);
  const res = await chat(proxy.url, { model: "gpt-4o", messages, stream: true });
  await res.body?.cancel();
  assert.equal(res.headers.get("x-poe-proxy-clipped"), null);
  assert.deepEqual((fake.chatRequests()[0].body as { messages: ChatMessage[] }).messages, messages);
});

Deno.test("clipping: a newest message over the cap is a 400 context_length_exceeded, Poe not called", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  const res = await chat(proxy.url, {
    model: "Claude-Haiku-4.5",
    messages: [{ role: "user", content: "word ".repeat(500) }],
  });
  assert.equal(res.status, 400);
  const body = await res.json();
  assert.equal(body.error.code, "context_length_exceeded");
  assert.match(body.error.message, /\d+/);
  assert.equal(fake.chatRequests().length, 0);
});

Deno.test("clipping: a larger max_tokens leaves more room for the answer", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  const messages = longHistory(2);
  // Without a limit the default room is reserved, at most half the cap (25 of 50) as here: a
  // limit of 1 leaves the messages nearly all of it.
  const small = await chat(proxy.url, { model: "claude-haiku-4.5", messages, max_tokens: 1 });
  await small.body?.cancel();
  const withRoom = await chat(proxy.url, { model: "claude-haiku-4.5", messages, max_tokens: 30 });
  await withRoom.body?.cancel();
  const [a, b] = fake.chatRequests().map((r) =>
    (r.body as { messages: unknown[] }).messages.length
  );
  assert.ok(b < a, `with max_tokens ${b} messages should be fewer than ${a}`);
});

Deno.test("clipping: a request without an answer limit leaves the default room for the answer", async () => {
  await using fake = await FakePoe.start();
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - poe_name: GPT-4o\n      max_tokens: 40000\n",
    "clip.yaml",
  );
  await using proxy = await startProxy({ poeUrl: fake.url, registry });
  // About 58,000 tokens in 60 turns. Clipped to the whole cap, the answer had a few hundred
  // tokens of room (the reviewer's 30 turns to GPT-4o's 128,000: 127,763 kept, 237 left).
  const messages: ChatMessage[] = [];
  for (let i = 0; i < 60; i++) {
    messages.push(
      { role: "user", content: `Question ${i}: ${"tell me more about the weather ".repeat(40)}` },
      { role: "assistant", content: `Answer ${i}: ${"it is sunny and warm today ".repeat(120)}` },
    );
  }
  messages.push({ role: "user", content: "and tomorrow?" });
  await loadTokenizer();
  const counter = new TokenCounter();
  const turn = counter.countMessages(messages.slice(0, 2));
  /** The tokens Poe received, as the header's figure after clipping gives them. */
  const sentTokens = async (extra: Record<string, unknown>, stream = false) => {
    const res = await chat(proxy.url, { model: "gpt-4o", messages, stream, ...extra });
    assert.equal(res.status, 200);
    const answer = stream ? null : (await res.json()).choices[0].message.content as string;
    if (stream) await res.body?.cancel();
    const header = res.headers.get("x-poe-proxy-clipped") ?? "";
    const match = /^dropped=(\d+) tokens=(\d+)->(\d+)$/.exec(header);
    assert.ok(match, header);
    const sent = (fake.chatRequests().at(-1)!.body as { messages: ChatMessage[] }).messages;
    assert.equal(Number(match[1]), messages.length - sent.length);
    assert.equal(Number(match[3]), counter.countMessages(sent), "the header counts what was sent");
    assert.ok(
      answer === null || answer.includes(
        `✂️ Context clipped: dropped ${match[1]} messages (${
          Number(match[2]).toLocaleString("en-US")
        } → ${Number(match[3]).toLocaleString("en-US")} tokens)`,
      ),
      "the footer says the same",
    );
    return Number(match[3]);
  };
  for (const stream of [false, true]) {
    const none = await sentTokens({}, stream);
    assert.ok(none <= 40_000 - DEFAULT_ANSWER_RESERVE, `${none} tokens kept`);
    assert.ok(none > 40_000 - DEFAULT_ANSWER_RESERVE - turn, `${none} tokens kept`);
  }
  // A limit the request sets is the room, smaller than the default or larger.
  for (const limit of [500, 6_000]) {
    const kept = await sentTokens({ max_tokens: limit });
    assert.ok(kept <= 40_000 - limit && kept > 40_000 - limit - turn, `${kept} tokens kept`);
  }
});

Deno.test("clipping: the tools an agent sends take their room in the context first", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  // Fits the 50-token cap of Claude-Haiku-4.5 alone, with a limit of 1 for the answer (without
  // one, half the cap is its room); not with a tool definition besides.
  const messages = longHistory(1);
  const alone = await chat(proxy.url, { model: "claude-haiku-4.5", messages, max_tokens: 1 });
  assert.equal(alone.status, 200);
  await alone.body?.cancel();
  assert.equal(alone.headers.get("x-poe-proxy-clipped"), null);
  const tools = [{ type: "function", function: { name: "get_weather", description: "City." } }];
  const res = await chat(proxy.url, {
    model: "claude-haiku-4.5",
    messages,
    tools,
    max_tokens: 1,
  });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.match(res.headers.get("x-poe-proxy-clipped") ?? "", /^dropped=1 /);
  // The answer goes; the question it answered still opens the history.
  const sent = (fake.chatRequests()[1].body as { messages: ChatMessage[] }).messages;
  assert.deepEqual(sent, [messages[0], messages[1], messages.at(-1)]);
});

Deno.test("clipping: a short follow-up keeps the task and the newest tool round before it", async () => {
  await using fake = await FakePoe.start();
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - poe_name: GPT-4o\n      max_tokens: 1000\n",
    "clip.yaml",
  );
  await using proxy = await startProxy({ poeUrl: fake.url, registry });
  // Each file is about 600 tokens: one tool round fits the cap with the rest, two do not.
  const file = "def parse(line): return line.split(',')\n".repeat(60);
  const read = (id: string): ChatMessage[] => [
    {
      role: "assistant",
      content: null,
      tool_calls: [{
        id,
        type: "function",
        function: { name: "read_file", arguments: '{"path":"parser.py"}' },
      }],
    },
    { role: "tool", tool_call_id: id, content: file },
  ];
  const messages: ChatMessage[] = [
    { role: "system", content: "You are a coding agent." },
    { role: "user", content: "Refactor the parser module." },
    ...read("call_1"),
    ...read("call_2"),
    { role: "assistant", content: "I refactored parser.py. Shall I also update the docs?" },
    { role: "user", content: "yes" },
  ];
  const tools = [{
    type: "function",
    function: { name: "read_file", parameters: { type: "object" } },
  }];
  // A limit of 1 leaves the messages the cap (without one, half of it is the answer's room).
  const res = await chat(proxy.url, { model: "gpt-4o", messages, tools, max_tokens: 1 });
  assert.equal(res.status, 200);
  await res.json();
  // Only the older tool round goes: before, everything but "yes" did (dropped=6).
  assert.match(res.headers.get("x-poe-proxy-clipped") ?? "", /^dropped=2 tokens=\d+->\d+$/);
  const sent = (fake.chatRequests()[0].body as { messages: ChatMessage[] }).messages;
  assert.deepEqual(sent, [0, 1, 4, 5, 6, 7].map((i) => messages[i]));
});

Deno.test("clipping: the room for the answer is the largest limit the request sets, wherever", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  const messages = longHistory(2);
  // The cap is 50: at most 25 is reserved, and a limit of 1 leaves the messages nearly all of it.
  const variants: Record<string, unknown>[] = [
    { max_tokens: 1 },
    { max_tokens: 25 },
    { max_completion_tokens: 1, max_tokens: 25 },
    { max_tokens: 1, max_completion_tokens: 25 },
    { extra_body: { max_tokens: 25 } },
    { max_tokens: 1, extra_body: { max_completion_tokens: 25 } },
    // Thinking is counted within the answer limit: added to one, it reserves nothing more.
    { max_tokens: 1, thinking_budget: 25 },
    // No limit: the default room, under so small a cap an eighth of it (6): more than a limit of 1.
    {},
  ];
  for (const extra of variants) {
    const res = await chat(proxy.url, { model: "claude-haiku-4.5", messages, ...extra });
    assert.equal(res.status, 200, await res.text());
  }
  const sent = fake.chatRequests().map((r) => (r.body as { messages: unknown[] }).messages.length);
  assert.ok(sent[1] < sent[0], `${sent}`);
  assert.deepEqual(sent.slice(0, 7), [sent[0], ...Array(5).fill(sent[1]), sent[0]]);
  // The default's eighth keeps at least what a limit of 25 does, at most what one of 1 does.
  assert.ok(sent[7] >= sent[1] && sent[7] <= sent[0], `${sent}`);
});

Deno.test("clipping: a dropped part too large to count is estimated, and the header and footer say so", async () => {
  await using t = await setup();
  const english = "The quick brown fox jumps over the lazy dog. ";
  // 1.5 MB in 30 parts: more than a request tokenizes (REQUEST_EXACT_BYTES), the rest sampled.
  const parts = Array.from({ length: 30 }, (_, i) => ({
    type: "text",
    text: `Part ${i}. ${english.repeat(1_100)}`,
  }));
  const messages: ChatMessage[] = [
    { role: "user", content: parts },
    { role: "assistant", content: "Read it." },
    { role: "user", content: "word ".repeat(45) }, // does not fit: the big one is never tried
    { role: "assistant", content: "Noted." },
    { role: "user", content: "and now?" },
  ];
  const res = await chat(t.proxy.url, { model: "claude-haiku-4.5", messages });
  assert.equal(res.status, 200);
  const answer = (await res.json()).choices[0].message.content as string;
  const header = res.headers.get("x-poe-proxy-clipped") ?? "";
  const match = /^dropped=4 tokens=~(\d+)->(\d+)$/.exec(header);
  assert.ok(match, header);
  // About 330,000 tokens; its 1.5 MB byte count is no estimate.
  assert.ok(Number(match[1]) > 250_000 && Number(match[1]) < 500_000, header);
  assert.match(answer, /\n✂️ Context clipped: dropped 4 messages \(about [\d,]+ → \d+ tokens\)$/);
  // Resent, the footer is stripped like any other.
  await chat(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "hi" }, { role: "assistant", content: answer }],
  });
  const resent = (t.fake.chatRequests().at(-1)!.body as { messages: ChatMessage[] }).messages;
  assert.equal(resent[1].content, stripFooter(answer));
  assert.doesNotMatch(String(resent[1].content), /Context clipped/);
});
