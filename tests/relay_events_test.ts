/**
 * @module Tests of lib/relay_events.ts, through the relay: which of Poe's events are dropped, and
 * how Poe's error events reach the client.
 */
import assert from "node:assert/strict";
import { type RelayOutcome, relaySse } from "../lib/sse.ts";

const chunk = (content: string | null, finish: string | null = null) =>
  JSON.stringify({
    id: "c1",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
  });

/** Relays `text` (Poe's whole body, in one read) and returns what the client got, and the outcome. */
async function relayOf(text: string) {
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
