import assert from "node:assert/strict";
import { relaySse } from "../lib/sse.ts";

const chunk = (content: string | null, finish: string | null = null) =>
  JSON.stringify({
    id: "c1",
    object: "chat.completion.chunk",
    created: 1,
    model: "m",
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
  });

Deno.test("relaySse sends the events one upstream read completed as one write, ending included", async () => {
  // The first delta carries the role: no event needs changing on the way.
  const first = chunk("Hel").replace('"delta":{', '"delta":{"role":"assistant",');
  const events = [first, chunk("lo"), chunk(null, "stop")].map((d) => `data: ${d}\n\n`);
  const reads = [events[0], events[1] + events[2] + "data: [DONE]\n\n"];
  const upstream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = reads.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(new TextEncoder().encode(next));
    },
  });
  const writes: string[] = [];
  const relay = relaySse(upstream, {
    keepaliveMs: 60_000,
    firstByteTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    includeUsage: false,
    finish: () => ({ footer: "\n\n(footer)" }),
    abortUpstream: () => {},
  });
  for await (const bytes of relay) writes.push(new TextDecoder().decode(bytes));
  assert.equal(writes.length, 2, JSON.stringify(writes));
  assert.equal(writes[0], events[0]);
  // The second read's delta, the footer, the held finish chunk and [DONE], together.
  const last = writes[1].split("\n\n").filter(Boolean);
  assert.equal(last.length, 4, writes[1]);
  assert.equal(last[0], events[1].trim());
  assert.match(last[1], /\(footer\)/);
  assert.match(last[2], /"finish_reason":"stop"/);
  assert.equal(last[3], "data: [DONE]");
});
