import assert from "node:assert/strict";
import { FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import type { ChatMessage } from "../lib/openai_types.ts";

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

Deno.test("clipping: max_tokens leaves room for the answer", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  const messages = longHistory(2);
  const without = await chat(proxy.url, { model: "claude-haiku-4.5", messages });
  await without.body?.cancel();
  const withRoom = await chat(proxy.url, { model: "claude-haiku-4.5", messages, max_tokens: 30 });
  await withRoom.body?.cancel();
  const [a, b] = fake.chatRequests().map((r) =>
    (r.body as { messages: unknown[] }).messages.length
  );
  assert.ok(b < a, `with max_tokens ${b} messages should be fewer than ${a}`);
});

Deno.test("clipping: the tools an agent sends take their room in the context first", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url });
  // Fits the 60-token cap of Claude-Haiku-4.5 alone; not with a tool definition besides.
  const messages = longHistory(1);
  const alone = await chat(proxy.url, { model: "claude-haiku-4.5", messages });
  assert.equal(alone.status, 200);
  await alone.body?.cancel();
  assert.equal(alone.headers.get("x-poe-proxy-clipped"), null);
  const tools = [{ type: "function", function: { name: "get_weather", description: "City." } }];
  const res = await chat(proxy.url, { model: "claude-haiku-4.5", messages, tools });
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.match(res.headers.get("x-poe-proxy-clipped") ?? "", /^dropped=2 /);
  const sent = (fake.chatRequests()[1].body as { messages: ChatMessage[] }).messages;
  assert.deepEqual(sent, [messages[0], messages.at(-1)]);
});
