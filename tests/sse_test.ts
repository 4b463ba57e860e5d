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

/** Poe's body from steps: text, written as one read, or a pause of that many milliseconds. */
function scripted(steps: (string | number)[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (; i < steps.length; i++) {
        const step = steps[i];
        if (typeof step === "number") await new Promise((r) => setTimeout(r, step));
        else {
          i++;
          return controller.enqueue(new TextEncoder().encode(step));
        }
      }
      controller.close();
    },
  });
}

/** Poe's `: ping` comments, `count` of them, one every `everyMs`. */
const pings = (count: number, everyMs: number) =>
  Array.from({ length: count }, () => [everyMs, ": ping\n\n"]).flat();

/** What the client got of a relay: its events' data and its comments. */
async function relayed(relay: ReadableStream<Uint8Array>) {
  const text = await new Response(relay).text();
  const blocks = text.split("\n\n").filter(Boolean);
  return {
    data: blocks.filter((b) => b.startsWith("data: ")).map((b) => b.slice(6)),
    keepalives: blocks.filter((b) => b === ": keep-alive").length,
  };
}

const role = chunk("").replace('"delta":{', '"delta":{"role":"assistant",');
const contentOf = (data: string[]) =>
  data.filter((d) => d.startsWith("{")).map((d) => JSON.parse(d).choices?.[0]?.delta?.content ?? "")
    .join("");

Deno.test("relaySse keeps sending its keep-alives while Poe sends only comments, which keep the answer alive", async () => {
  // Poe pings more often than KEEPALIVE_SECONDS for longer than IDLE_TIMEOUT_SECONDS: the client
  // must still get bytes (its own pings never reach it), and the answer is not timed out.
  const events = [`data: ${role}\n\ndata: ${chunk("Hel")}\n\n`, ...pings(60, 5)];
  events.push(`data: ${chunk("lo", "stop")}\n\ndata: [DONE]\n\n`);
  const { data, keepalives } = await relayed(relaySse(scripted(events), {
    keepaliveMs: 40,
    firstByteTimeoutMs: 60_000,
    idleTimeoutMs: 100,
    includeUsage: false,
    abortUpstream: () => {},
  }));
  assert.equal(contentOf(data), "Hello");
  assert.equal(data.at(-1), "[DONE]");
  assert.ok(keepalives >= 2, `${keepalives} keep-alives`);
});

Deno.test("relaySse times a role chunk's silence by the first-byte timeout, with keep-alives", async () => {
  const events = [`data: ${role}\n\n`, 300, `data: ${chunk("Hello", "stop")}\n\ndata: [DONE]\n\n`];
  const { data, keepalives } = await relayed(relaySse(scripted(events), {
    keepaliveMs: 20,
    firstByteTimeoutMs: 10_000,
    idleTimeoutMs: 50,
    includeUsage: false,
    abortUpstream: () => {},
  }));
  assert.equal(contentOf(data), "Hello", data.join("\n"));
  assert.ok(keepalives >= 1, `${keepalives} keep-alives`);
});

Deno.test("relaySse's first-byte timeout counts from the start: a role chunk and Poe's comments do not renew it", async () => {
  let cancelled = false;
  const upstream = scripted([
    `data: ${role}\n\n`,
    ...pings(400, 5),
    `data: ${chunk("Hi", "stop")}\n\n`,
  ]);
  const { data } = await relayed(relaySse(upstream, {
    keepaliveMs: 20,
    firstByteTimeoutMs: 150,
    idleTimeoutMs: 60_000,
    includeUsage: false,
    abortUpstream: () => cancelled = true,
  }));
  assert.equal(contentOf(data), "");
  assert.equal(data.at(-1), "[DONE]");
  const error = JSON.parse(data.at(-2)!).error;
  assert.equal(error.code, "upstream_timeout");
  assert.match(error.message, /FIRST_BYTE_TIMEOUT_SECONDS/);
  assert.ok(cancelled, "Poe's request is aborted");
});
