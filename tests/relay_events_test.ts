/**
 * @module Tests of lib/relay_events.ts, through the relay: which of Poe's events are dropped, and
 * how Poe's error events reach the client.
 */
import assert from "node:assert/strict";
import { type RelayOptions, type RelayOutcome, relaySse } from "../lib/sse.ts";
import { RelayEvents } from "../lib/relay_events.ts";

const chunk = (content: string | null, finish: string | null = null) =>
  JSON.stringify({
    id: "c1",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
  });

/**
 * Relays `text` (Poe's whole body, in one read) and returns what the client got, and the outcome.
 */
async function relayOf(text: string, options: Partial<RelayOptions> = {}) {
  const upstream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
  let outcome: RelayOutcome | null = null;
  const relay = relaySse(upstream, {
    keepaliveMs: 60_000,
    firstByteTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    includeUsage: false,
    abortUpstream: () => {},
    onEnd: (o) => outcome = o,
    ...options,
  });
  let out = "";
  for await (const bytes of relay) out += new TextDecoder().decode(bytes);
  const data = out.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
  return { data, outcome: outcome! as RelayOutcome };
}

Deno.test("relaySse drops events that are not JSON objects: the SDKs end the whole stream on them", async () => {
  const { data, outcome } = await relayOf(
    `data: ${chunk("Hel")}\n\ndata: {"choices":[{"delta":{"content":"x"\n\ndata: ping\n\n` +
      `data: 42\n\ndata: ${chunk("lo", "stop")}\n\ndata: [DONE]\n\n`,
  );
  assert.equal(data.at(-1), "[DONE]");
  for (const d of data.slice(0, -1)) assert.equal(typeof JSON.parse(d), "object", d);
  assert.equal(data.length, 3);
  assert.equal(outcome.droppedEvents, 3);
  assert.equal(outcome.end, "done");
});

Deno.test("relaySse makes Poe's error events OpenAI's, named `event: error` ones too", async () => {
  const cases = [
    // Poe's documented shape: a numeric code and metadata.
    {
      body:
        `data: {"error":{"code":429,"type":"rate_limit_error","message":"slow down","metadata":{}}}\n\n`,
      error: { message: "slow down", type: "rate_limit_error", param: null, code: "429" },
    },
    {
      body: `data: ${chunk("Hi")}\n\nevent: error\ndata: {"message":"boom"}\n\n`,
      error: { message: "boom", type: "upstream_error", param: null, code: null },
    },
    {
      body: `data: {"error":"Upstream provider overloaded"}\n\n`,
      error: {
        message: "Upstream provider overloaded",
        type: "upstream_error",
        param: null,
        code: null,
      },
    },
    {
      body: `event: error\ndata: overloaded\n\n`,
      error: { message: "overloaded", type: "upstream_error", param: null, code: null },
    },
  ];
  for (const c of cases) {
    const { data, outcome } = await relayOf(c.body);
    const errors = data.filter((d) => d.startsWith('{"error"'));
    assert.equal(errors.length, 1, c.body);
    assert.deepEqual(JSON.parse(errors[0]), { error: c.error });
    assert.equal(outcome.end, "upstream-error");
    assert.equal(data.at(-1), "[DONE]");
  }
});

Deno.test("relaySse drops JSON events without choices, which the SDKs cannot read, but keeps usage", async () => {
  const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };
  const { data, outcome } = await relayOf(
    `data: ${chunk("Hel")}\n\nevent: ping\ndata: {"type":"ping"}\n\ndata: {}\n\ndata: [1]\n\n` +
      // Past the first content chunk, where the relay passes plain deltas on without parsing them.
      `data: {"type":"ping","finish_reason":null}\n\n` +
      `data: ${chunk("lo", "stop")}\n\ndata: ${JSON.stringify({ usage })}\n\ndata: [DONE]\n\n`,
    { includeUsage: true },
  );
  assert.equal(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  for (const c of chunks) assert.ok(Array.isArray(c.choices), JSON.stringify(c));
  assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""), "Hello");
  assert.deepEqual(chunks.at(-1).usage, usage);
  assert.equal(outcome.droppedEvents, 4);
  assert.equal(outcome.end, "done");
});

Deno.test("relaySse ignores what Poe sends after its [DONE]", async () => {
  const { data } = await relayOf(
    `data: ${chunk("Hello")}\n\ndata: ${chunk(null, "stop")}\n\ndata: [DONE]\n\n` +
      `data: ${chunk("EXTRA")}\n\ndata: [DONE]\n\n`,
  );
  assert.deepEqual(data.map((d) => d === "[DONE]" ? d : JSON.parse(d).choices[0].delta.content), [
    "Hello",
    undefined,
    "[DONE]",
  ]);
});

Deno.test("relaySse's own chunks share one id and name the model asked for when Poe's name none", async () => {
  const bare = (content: string) =>
    `data: ${
      JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })
    }\n\n`;
  const { data, outcome } = await relayOf(bare("Hi") + bare(" there"), {
    model: "gpt-4o",
    includeUsage: true,
    estimateUsage: () => ({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }),
    finish: () => ({ footer: "\n\n(footer)" }),
  });
  // Poe's two chunks, then the footer, the finish the stream lacked and the usage chunk.
  const own = data.slice(2, -1).map((d) => JSON.parse(d));
  assert.equal(own.length, 3, data.join("\n"));
  assert.match(own[0].choices[0].delta.content, /footer/);
  assert.equal(own[1].choices[0].finish_reason, "stop");
  assert.ok(own[2].usage);
  assert.equal(new Set(own.map((c) => c.id)).size, 1, own.map((c) => c.id).join(" "));
  assert.equal(new Set(own.map((c) => c.created)).size, 1);
  for (const c of own) assert.equal(c.model, "gpt-4o");
  assert.ok(outcome.finishAdded);
});

Deno.test("relaySse counts a long answer Poe sent no usage for from its whole text", async () => {
  // About 2 MB of events: past what is kept as events, the earlier ones are kept as text.
  const pieces = Array.from({ length: 20_000 }, (_, i) => `w${i} `);
  const body = pieces.map((p) => `data: ${chunk(p)}\n\n`).join("") +
    `data: ${chunk(null, "stop")}\n\ndata: [DONE]\n\n`;
  let counted = "";
  const { data } = await relayOf(body, {
    includeUsage: true,
    estimateUsage: (text) => {
      counted = text;
      return { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };
    },
  });
  assert.equal(counted, pieces.join(""));
  assert.deepEqual(JSON.parse(data.at(-2)!).usage, {
    prompt_tokens: 1,
    completion_tokens: 2,
    total_tokens: 3,
  });
});

Deno.test("RelayEvents holds a long answer's text for counting, not every event whole", () => {
  const events = new RelayEvents({
    includeUsage: false,
    estimateUsage: () => ({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }),
  }, () => {});
  let sent = 0;
  let text = 0;
  for (let i = 0; i < 20_000; i++) {
    const data = chunk(`w${i} `);
    events.onEvent({ data, event: undefined, id: undefined });
    sent += data.length;
    text += `w${i} `.length;
  }
  // 2.4 MB of events, 130 KB of text: what is held is the text and the last events, under 400 KB.
  assert.ok(sent > 2_000_000, `${sent}`);
  assert.ok(events.heldChars < 400_000, `held ${events.heldChars} of ${sent}`);
  assert.ok(events.heldChars > text, "the text is all there");
});
