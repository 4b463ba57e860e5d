// deno-lint-ignore-file no-explicit-any
/** @module The streamed chat answer over real sockets: chunkings, usage, endings, timeouts, cancels, headers. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startFakeAndProxy as setup, startProxy } from "./harness.ts";
import { relaySse } from "../lib/sse.ts";
import { FakePoe } from "./fake_poe.ts";

// --- helpers -------------------------------------------------------------------------------------

interface Sse {
  /** `data` of each event, in order. */
  data: string[];
  /** Comment lines (without the colon), in order. */
  comments: string[];
  /** Each event's data parsed as JSON, `[DONE]` left out. */
  chunks: any[];
}

function parseSse(text: string): Sse {
  const data: string[] = [];
  const comments: string[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (!block) continue;
    const lines = block.split(/\r?\n/);
    const dataLines = lines.filter((l) => l.startsWith("data:")).map((l) =>
      l.slice(5).replace(/^ /, "")
    );
    for (const l of lines) if (l.startsWith(":")) comments.push(l.slice(1).trim());
    if (dataLines.length) data.push(dataLines.join("\n"));
  }
  return { data, comments, chunks: data.filter((d) => d !== "[DONE]").map((d) => JSON.parse(d)) };
}

function streamRequest(
  url: string,
  marker: string,
  extra: Record<string, unknown> = {},
  init: RequestInit & { headers?: Record<string, string> } = {},
): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    ...init,
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: `Hi [[fake: ${marker}]]` }],
      stream: true,
      ...extra,
    }),
  });
}

async function until(check: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function assertEndsWithOneDone(sse: Sse): void {
  assert.equal(sse.data.at(-1), "[DONE]");
  assert.equal(sse.data.filter((d) => d === "[DONE]").length, 1);
}

// --- a recorded Poe body, replayed in hostile chunkings ------------------------------------------

const RECORDED_CHUNKS = [
  { delta: { role: "assistant", content: "" } },
  { delta: { reasoning_content: "Pensée ", reasoning: "Pensée " } },
  { delta: { content: "Café 🎉 " } },
  { delta: { content: "naïve — 日本語" } },
  {
    delta: {
      tool_calls: [{
        index: 0,
        id: "call_1",
        type: "function",
        function: { name: "f", arguments: '{"q":"é' },
      }],
    },
  },
  { delta: { tool_calls: [{ index: 0, function: { arguments: '🎉"}' } }] } },
  { delta: {}, finish_reason: "tool_calls" },
].map(({ delta, finish_reason }) =>
  JSON.stringify({
    id: "chatcmpl-0123456789abcdef01234567",
    object: "chat.completion.chunk",
    created: 1774577726,
    model: "GPT-4o",
    choices: [{ index: 0, delta, finish_reason: finish_reason ?? null }],
  })
);
const RECORDED_USAGE = JSON.stringify({
  id: "chatcmpl-0123456789abcdef01234567",
  object: "chat.completion.chunk",
  created: 1774577726,
  model: "GPT-4o",
  choices: [],
  usage: { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 },
});
const RECORDED_DATA = [...RECORDED_CHUNKS, RECORDED_USAGE, "[DONE]"];
const RECORDED_BODY = new TextEncoder().encode(
  ": keep-alive\r\n\r\n" + RECORDED_DATA.map((d) => `data: ${d}\r\n\r\n`).join(""),
);

/**
 * The relayed events equal Poe's, byte for byte, except that the proxy may add its own fields
 * (cost, balance) to the usage chunk's `usage`.
 */
function assertSameEvents(actual: string[], expected: string[]): void {
  assert.equal(actual.length, expected.length, actual.join("\n"));
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] === expected[i]) continue;
    const got = JSON.parse(actual[i]);
    const want = JSON.parse(expected[i]);
    assert.ok(want.usage, `event ${i} changed: ${actual[i]}`);
    assert.deepEqual({ ...got, usage: undefined }, { ...want, usage: undefined });
    assert.deepEqual({ ...got.usage, ...want.usage }, got.usage, "Poe's usage fields are kept");
  }
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
  });
}

async function relayText(chunks: Uint8Array[]): Promise<string> {
  const out = relaySse(streamOf(chunks), {
    keepaliveMs: 60_000,
    firstByteTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    includeUsage: true,
    abortUpstream: () => {},
  });
  return await new Response(out).text();
}

Deno.test("relaySse gives the same events for a Poe body split at every byte boundary", async () => {
  const body = RECORDED_BODY;
  for (let k = 1; k < body.length; k++) {
    const text = await relayText([body.subarray(0, k), body.subarray(k)]);
    assert.deepEqual(parseSse(text).data, RECORDED_DATA, `split at byte ${k}`);
  }
  const oneByOne = Array.from(body, (_, i) => body.subarray(i, i + 1));
  assert.deepEqual(parseSse(await relayText(oneByOne)).data, RECORDED_DATA);
});

Deno.test("relaySse: a step forward of the wall clock (NTP) does not time out a stream still answering", async () => {
  const wall = Date.now;
  const enc = new TextEncoder();
  const event = (delta: string, finish = "null") =>
    enc.encode(
      `data: {"id":"c","choices":[{"index":0,"delta":${delta},"finish_reason":${finish}}]}\n\n`,
    );
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(event('{"role":"assistant","content":"Hel"}'));
      await new Promise((r) => setTimeout(r, 300));
      Date.now = () => wall() + 130_000;
      await new Promise((r) => setTimeout(r, 500));
      controller.enqueue(event('{"content":"lo"}'));
      controller.enqueue(event("{}", '"stop"'));
      controller.enqueue(enc.encode("data: [DONE]\n\n"));
      controller.close();
    },
  });
  try {
    const out = relaySse(body, {
      keepaliveMs: 60_000,
      firstByteTimeoutMs: 60_000,
      idleTimeoutMs: 1_000,
      includeUsage: false,
      abortUpstream: () => {},
    });
    const sse = parseSse(await new Response(out).text());
    assert.equal(sse.chunks.filter((c) => c.error).length, 0, JSON.stringify(sse.chunks));
    assert.equal(sse.chunks.at(-1).choices[0].finish_reason, "stop");
  } finally {
    Date.now = wall;
  }
});

Deno.test("relaySse keeps an event of several data lines one event", async () => {
  const body =
    'data: {"choices":[{"index":0,\ndata: "delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n';
  const text = await relayText([new TextEncoder().encode(body)]);
  const sse = parseSse(text);
  // The chunk, the finish the stream lacked, [DONE].
  assert.deepEqual(sse.data.length, 3);
  assert.equal(sse.chunks[0].choices[0].delta.content, "x");
  assert.equal(sse.chunks[1].choices[0].finish_reason, "stop");
});

Deno.test("relaySse does not count a slow client's pauses as Poe's silence", async () => {
  const events = RECORDED_DATA.map((d) => new TextEncoder().encode(`data: ${d}\n\n`));
  const out = relaySse(streamOf(events), {
    keepaliveMs: 10,
    firstByteTimeoutMs: 20,
    idleTimeoutMs: 20,
    includeUsage: true,
    abortUpstream: () => {},
  });
  const reader = out.getReader();
  const data: string[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    data.push(...parseSse(new TextDecoder().decode(value)).data);
    await new Promise((r) => setTimeout(r, 40));
  }
  assert.deepEqual(data, RECORDED_DATA);
});

Deno.test("a Poe stream written one byte per chunk over TCP reaches the client intact", async () => {
  // A tiny upstream of our own: it writes the recorded body one byte per write, yielding between.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    await req.body?.cancel();
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i >= RECORDED_BODY.length) return controller.close();
        controller.enqueue(RECORDED_BODY.slice(i, i + 1));
        i++;
        if (i % 8 === 0) await new Promise((r) => setTimeout(r, 0));
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  try {
    await using proxy = await startProxy({
      poeUrl: `http://127.0.0.1:${server.addr.port}`,
      env: { FOOTER: "off" },
    });
    const res = await streamRequest(proxy.url, "", { stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    const sse = parseSse(await res.text());
    assertSameEvents(sse.data, RECORDED_DATA);
    const content = sse.chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    assert.equal(content, "Café 🎉 naïve — 日本語");
  } finally {
    await server.shutdown();
  }
});

Deno.test("CRLF line endings from Poe are relayed as the same events", async () => {
  await using t = await setup();
  const res = await streamRequest(t.proxy.url, "crlf,comment,chunks=6");
  const sse = parseSse(await res.text());
  assertEndsWithOneDone(sse);
  const text = sse.chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  assert.equal(text, "Hello there, friend.");
});

// --- usage in each position ----------------------------------------------------------------------

for (const position of ["finish", "separate", "none"] as const) {
  for (const asked of [true, false]) {
    Deno.test(`usage=${position}, client ${asked ? "asked" : "did not ask"} for include_usage`, async () => {
      await using t = await setup();
      const res = await streamRequest(
        t.proxy.url,
        `usage=${position}`,
        asked ? { stream_options: { include_usage: true } } : {},
      );
      const sse = parseSse(await res.text());
      assertEndsWithOneDone(sse);
      assert.equal((t.fake.chatRequests()[0].body as any).stream_options.include_usage, true);
      const withUsage = sse.chunks.filter((c) => c.usage);
      const usageOnly = sse.chunks.filter((c) => c.choices.length === 0);
      const finish = sse.chunks.filter((c) => c.choices[0]?.finish_reason);
      assert.equal(finish.length, 1);
      assert.equal(finish[0].choices[0].finish_reason, "stop");
      if (position === "none" && asked) {
        // Poe sent none: counted here, as OpenAI's last chunk, marked as counted.
        assert.equal(usageOnly.length, 1);
        assert.equal(sse.chunks.at(-1), usageOnly[0]);
        const u = usageOnly[0].usage;
        assert.equal(u.tokens_estimated, true);
        assert.ok(u.prompt_tokens > 0);
        // The fake's reply: "Hello there, friend." is 5 tokens of o200k_base.
        assert.equal(u.completion_tokens, 5);
        assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
      } else if (position === "none") {
        assert.equal(withUsage.length, 0);
      } else if (position === "finish" && !asked) {
        assert.equal(withUsage.length, 1);
        assert.equal(withUsage[0], finish[0], "usage stays on the finish chunk");
      } else if (asked) {
        // Wherever Poe put it, an include_usage client gets OpenAI's separate, last usage chunk.
        assert.equal(withUsage.length, 1);
        assert.equal(usageOnly.length, 1);
        assert.equal(sse.chunks.at(-1), usageOnly[0], "the usage chunk comes last");
        assert.ok(usageOnly[0].usage.total_tokens > 0);
      } else {
        assert.equal(
          usageOnly.length,
          0,
          "a usage-only chunk the client did not ask for is dropped",
        );
        assert.equal(withUsage.length, 0);
      }
      const line = t.proxy.logs.find((l) => l.includes(" path=/v1/chat/completions"))!;
      if (position === "none" && !asked) assert.doesNotMatch(line, /tokens_in=/);
      else assert.match(line, /tokens_in=\d+ tokens_out=\d+/);
      assert.equal(/tokens_estimated=true/.test(line), position === "none" && asked);
    });
  }
}

// --- endings -------------------------------------------------------------------------------------

Deno.test("a stream without [DONE] ends with exactly one [DONE]", async () => {
  await using t = await setup();
  const sse = parseSse(await (await streamRequest(t.proxy.url, "no-done")).text());
  assertEndsWithOneDone(sse);
  assert.equal(sse.chunks.filter((c) => c.choices[0]?.finish_reason === "stop").length, 1);
});

for (const [variant, reason] of [["no-finish,tools", "tool_calls"], ["no-finish", "stop"]]) {
  Deno.test(`a stream ending silently (${variant}) gets finish_reason ${reason}, one [DONE]`, async () => {
    await using t = await setup();
    const sse = parseSse(await (await streamRequest(t.proxy.url, variant)).text());
    assertEndsWithOneDone(sse);
    const finishes = sse.chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finishes.length, 1);
    assert.equal(finishes[0].choices[0].finish_reason, reason);
    assert.deepEqual(finishes[0].choices[0].delta, {});
    assert.equal(sse.chunks.filter((c) => c.choices[0]?.finish_reason === undefined).length, 0);
    assert.ok(sse.chunks.every((c) => !c.error));
    assert.ok(sse.chunks.indexOf(finishes[0]) >= sse.chunks.length - 2, "the finish comes last");
    const line = t.proxy.logs.find((l) => l.includes(" path=/v1/chat/completions"))!;
    assert.match(line, new RegExp(`finish=${reason} finish_added=true`));
  });
}

Deno.test("a stream with no event at all ends with an error event, not an invented answer", async () => {
  const text = await relayText([]);
  const sse = parseSse(text);
  assertEndsWithOneDone(sse);
  assert.equal(sse.chunks.length, 1);
  assert.equal(sse.chunks[0].error.code, "upstream_empty");
});

Deno.test("a body that ends inside an event is a broken answer, not one that stopped", async () => {
  const head =
    'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n' +
    'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"The answer is 4"}}]}\n\n';
  const cut = await relayText([
    new TextEncoder().encode(head + 'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"con'),
  ]);
  const sse = parseSse(cut);
  assertEndsWithOneDone(sse);
  assert.equal(sse.chunks.at(-1).error.code, "upstream_disconnected");
  assert.equal(sse.chunks.filter((c) => c.choices?.[0]?.finish_reason).length, 0);
  // Cut near its end, a plain text delta too (which is otherwise passed on unparsed).
  const plain = await relayText([
    new TextEncoder().encode(
      head +
        'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}',
    ),
  ]);
  const cutPlain = parseSse(plain);
  assertEndsWithOneDone(cutPlain);
  assert.equal(cutPlain.chunks.at(-1).error.code, "upstream_disconnected");
  // A last event whole but for its blank line is the answer's end, as before.
  const whole = await relayText([
    new TextEncoder().encode(
      head + 'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
    ),
  ]);
  const ended = parseSse(whole);
  assertEndsWithOneDone(ended);
  assert.equal(ended.chunks.filter((c) => c.error).length, 0);
  assert.equal(ended.chunks.at(-1).choices[0].finish_reason, "stop");
});

Deno.test("a mid-stream error event passes through, then one [DONE], no invented finish", async () => {
  await using t = await setup();
  const sse = parseSse(
    await (await streamRequest(t.proxy.url, "midstream-error,message=Provider%20broke.")).text(),
  );
  assertEndsWithOneDone(sse);
  const error = sse.chunks.at(-1);
  assert.equal(error.error.message, "Provider broke.");
  assert.ok(sse.chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
  assert.equal(sse.chunks.filter((c) => c.error).length, 1);
});

Deno.test("a mid-stream error event ends the answer at once, though Poe stays silent after it", async () => {
  await using t = await setup({ IDLE_TIMEOUT_SECONDS: "30" });
  for (const include_usage of [false, true]) {
    const started = performance.now();
    const res = await streamRequest(
      t.proxy.url,
      "midstream-error,no-done,done-linger=20000,message=Provider%20broke.",
      { stream_options: { include_usage } },
    );
    const sse = parseSse(await res.text());
    assert.ok(performance.now() - started < 5_000, "not held until Poe's silence timed out");
    assertEndsWithOneDone(sse);
    assert.equal(sse.chunks.at(-1).error.message, "Provider broke.");
    assert.equal(sse.chunks.filter((c) => c.error).length, 1);
    // Nothing after the error: no finish or usage chunk.
    assert.ok(sse.chunks.every((c) => c.error || c.choices[0]?.finish_reason === null));
  }
});

// --- Poe's connection kept for the next request -------------------------------------------------

Deno.test("answers whose body ends a little after [DONE] leave Poe's connection to the next ones", async () => {
  await using t = await setup();
  for (let i = 0; i < 10; i++) {
    assertEndsWithOneDone(
      parseSse(await (await streamRequest(t.proxy.url, "done-linger=20")).text()),
    );
    // The next request comes once Poe's body is over, as it does between real answers.
    await until(() => t.proxy.stats().drainingBodies === 0);
  }
  // A body cancelled before its last chunk costs its connection: each request would open one.
  const ports = new Set(t.fake.chatRequests().map((r) => r.remotePort));
  assert.ok(ports.size <= 2, `${ports.size} connections to Poe for 10 answers`);
  assert.equal(t.fake.cancellations.length, 0);
  assert.equal(t.fake.historyEntries().length, 10);
});

Deno.test("reading the end of Poe's body holds neither the client nor the proxy's shutdown", async () => {
  const t = await setup();
  try {
    const started = performance.now();
    const res = await streamRequest(t.proxy.url, "done-linger=60000");
    assertEndsWithOneDone(parseSse(await res.text()));
    assert.ok(performance.now() - started < 1000);
    await until(() => t.proxy.logs.some((l) => l.includes(" path=/v1/chat/completions")));
    assert.equal(t.proxy.stats().drainingBodies, 1);
    const closing = performance.now();
    await t.proxy.close();
    assert.ok(performance.now() - closing < 1000);
    // The proxy's shutdown cancelled the body it was still reading.
    await until(() => t.fake.cancellations.length === 1);
  } finally {
    await t.fake.close();
  }
});

// --- keep-alive and timeouts ---------------------------------------------------------------------

Deno.test("keep-alive comments flow while Poe stalls between events", async () => {
  await using t = await setup({ KEEPALIVE_SECONDS: "0.015" });
  const res = await streamRequest(t.proxy.url, "stall=60,chunks=2");
  const sse = parseSse(await res.text());
  assertEndsWithOneDone(sse);
  assert.ok(sse.comments.length >= 3, `got ${sse.comments.length} comments`);
  assert.ok(sse.comments.every((c) => c === "keep-alive"));
  const text = sse.chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  assert.equal(text, "Hello there, friend.");
});

Deno.test("first-byte timeout: 504 before any header, and Poe's request is abandoned", async () => {
  await using t = await setup({ FIRST_BYTE_TIMEOUT_SECONDS: "0.2" });
  for (const stream of [true, false]) {
    const started = Date.now();
    const res = await streamRequest(t.proxy.url, "slow-first=3000", { stream });
    const body = await res.json();
    assert.equal(res.status, 504);
    assert.equal(body.error.type, "timeout_error");
    assert.match(body.error.message, /FIRST_BYTE_TIMEOUT_SECONDS/);
    assert.ok(Date.now() - started < 1500);
  }
  assert.equal(t.fake.chatRequests().length, 2, "a slow model is not asked again");
  await until(() => t.fake.cancellations.length === 2);
});

Deno.test("idle timeout: an error event after the stream started, then [DONE]", async () => {
  await using t = await setup({ IDLE_TIMEOUT_SECONDS: "0.2", KEEPALIVE_SECONDS: "0.05" });
  const started = Date.now();
  // The first event carries text: after a role chunk alone the first-byte timeout would still run.
  const res = await streamRequest(t.proxy.url, "stall=3000,no-role");
  assert.equal(res.status, 200);
  const sse = parseSse(await res.text());
  assert.ok(Date.now() - started < 1500);
  assertEndsWithOneDone(sse);
  assert.ok(sse.chunks[0].choices, "the first event was relayed");
  const error = sse.chunks.at(-1);
  assert.equal(error.error.type, "timeout_error");
  assert.match(error.error.message, /IDLE_TIMEOUT_SECONDS/);
  assert.ok(sse.chunks.every((c) => c.error || c.choices[0].finish_reason === null));
  await until(() => t.fake.cancellations.length === 1);
});

Deno.test("a role chunk, then silence: timed by FIRST_BYTE_TIMEOUT_SECONDS, the answer's pauses by IDLE_TIMEOUT_SECONDS", async () => {
  // A thinking model may send its role chunk at once and its first token minutes later.
  await using t = await setup({
    FIRST_BYTE_TIMEOUT_SECONDS: "5",
    IDLE_TIMEOUT_SECONDS: "0.15",
    KEEPALIVE_SECONDS: "0.05",
  });
  const res = await streamRequest(t.proxy.url, "stall=400");
  assert.equal(res.status, 200);
  const sse = parseSse(await res.text());
  assertEndsWithOneDone(sse);
  assert.equal(sse.chunks[0].choices[0].delta.role, "assistant");
  assert.equal(sse.chunks[1].choices?.[0].delta.content, "Hello", JSON.stringify(sse.chunks[1]));
  // Then the same pause, past IDLE_TIMEOUT_SECONDS once the answer began.
  const error = sse.chunks.at(-1);
  assert.equal(error.error.code, "upstream_timeout");
  assert.match(error.error.message, /IDLE_TIMEOUT_SECONDS/);
  assert.ok(sse.comments.length > 0, "keep-alives flowed meanwhile");
});

Deno.test("first-byte timeout: an answer not streamed whose body stalls after its headers is a 504", async () => {
  // Poe may send its headers at once and the answer when it is whole: FIRST_BYTE_TIMEOUT_SECONDS
  // covers the body too, not the shorter IDLE_TIMEOUT_SECONDS.
  await using t = await setup({ FIRST_BYTE_TIMEOUT_SECONDS: "0.3", IDLE_TIMEOUT_SECONDS: "0.1" });
  const started = Date.now();
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi [[fake: stall=3000]]" }],
    }),
  });
  const body = await res.json();
  assert.equal(res.status, 504, JSON.stringify(body));
  assert.ok(Date.now() - started < 1500, `answered after ${Date.now() - started} ms`);
  assert.equal(body.error.type, "timeout_error");
  assert.equal(body.error.code, "upstream_timeout");
  assert.match(body.error.message, /FIRST_BYTE_TIMEOUT_SECONDS/);
  assert.ok(res.headers.get("x-request-id"));
  // Poe may bill the answer it was making: the SDKs must not start it again.
  assert.equal(res.headers.get("x-should-retry"), "false");
  await until(() => t.fake.cancellations.length === 1);
});

Deno.test("first-byte timeout: a JSON answer to a streamed request whose body stalls is a 504, not a 200", async () => {
  // The first-byte budget ends before the opening's wait would: the client has no status yet.
  await using t = await setup({ FIRST_BYTE_TIMEOUT_SECONDS: "0.3", KEEPALIVE_SECONDS: "1" });
  const started = Date.now();
  const res = await streamRequest(t.proxy.url, "json,stall=3000");
  const text = await res.text();
  assert.equal(res.status, 504, text);
  const body = JSON.parse(text);
  assert.ok(Date.now() - started < 1500, `answered after ${Date.now() - started} ms`);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(body.error.type, "timeout_error");
  assert.equal(body.error.code, "upstream_timeout");
  assert.match(body.error.message, /FIRST_BYTE_TIMEOUT_SECONDS/);
  // Poe may bill the answer it was making: neither the proxy nor the SDKs start it again.
  assert.equal(res.headers.get("x-should-retry"), "false");
  assert.equal(t.fake.chatRequests().length, 1);
  await until(() => t.fake.cancellations.length === 1);
});

Deno.test("a JSON answer to a streamed request slower than the opening's wait: headers and keep-alives first", async () => {
  await using t = await setup({ KEEPALIVE_SECONDS: "0.05" });
  const started = Date.now();
  const res = await streamRequest(t.proxy.url, "json,stall=400");
  assert.equal(res.status, 200);
  assert.ok(Date.now() - started < 300, `headers after ${Date.now() - started} ms`);
  const sse = parseSse(await res.text());
  assert.ok(sse.comments.length >= 2, `${sse.comments.length} keep-alives`);
  assertEndsWithOneDone(sse);
  const text = sse.chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
  assert.equal(text, "Hello there, friend.");
  assert.equal(t.fake.chatRequests().length, 1);
});

Deno.test("a JSON error to a streamed request slower than the opening's wait: an error event after the headers", async () => {
  await using t = await setup({ KEEPALIVE_SECONDS: "0.05" });
  const res = await streamRequest(t.proxy.url, "json-error=529,stall=300");
  assert.equal(res.status, 200);
  const sse = parseSse(await res.text());
  assertEndsWithOneDone(sse);
  assert.equal(sse.chunks.at(-1).error.type, "overloaded_error");
  // The status went out before the error was known: not retried, as a stream's error event.
  assert.equal(t.fake.chatRequests().length, 1);
});

Deno.test("the answer's last words are not held back while its footer waits for the cost", async () => {
  // The cost shows in the points history late: the footer waits FOOTER_WAIT_MS for it.
  await using fake = await FakePoe.start({ historyDelayMs: 5000 });
  await using proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER_WAIT_MS: "500" } });
  const res = await streamRequest(proxy.url, "");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let whenLastWords: string | null = null;
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    text += r.value;
    // Poe's last piece of text came in one read with its [DONE].
    if (whenLastWords === null && text.includes('"iend."')) whenLastWords = text;
  }
  assert.ok(whenLastWords !== null);
  assert.doesNotMatch(whenLastWords, /Points/, "the last words waited for the footer");
  assert.match(text, /Points \(est\.\)/);
});

Deno.test("a JSON answer handed on after the opening's wait is timed out when it pauses past IDLE_TIMEOUT_SECONDS", async () => {
  const body = JSON.stringify({
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1,
    model: "gpt-4o",
    choices: [{
      index: 0,
      message: { role: "assistant", content: "Hello." },
      finish_reason: "stop",
    }],
  });
  const enc = new TextEncoder();
  await using poe = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream({
          async start(c) {
            // After the opening's wait (0.05 s): the client has its headers by then.
            await new Promise((r) => setTimeout(r, 200));
            c.enqueue(enc.encode(body.slice(0, 40)));
            // Then silent, far past IDLE_TIMEOUT_SECONDS, though well within the first-byte budget.
          },
        }),
        { headers: { "content-type": "application/json" } },
      ),
  );
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${poe.addr.port}`,
    env: {
      KEEPALIVE_SECONDS: "0.05",
      IDLE_TIMEOUT_SECONDS: "0.3",
      FIRST_BYTE_TIMEOUT_SECONDS: "30",
      FOOTER: "off",
    },
  });
  const res = await streamRequest(proxy.url, "");
  assert.equal(res.status, 200);
  const sse = parseSse(await res.text());
  assertEndsWithOneDone(sse);
  assert.match(sse.chunks.at(-1).error.message, /IDLE_TIMEOUT_SECONDS/);
});

// --- clients that go away ------------------------------------------------------------------------

Deno.test("a client that aborts mid-stream cancels Poe's stream within one second", async () => {
  await using t = await setup();
  const res = await streamRequest(t.proxy.url, "stall=300,chunks=8", {}, {
    headers: { "x-request-id": "leaves-mid-stream" },
  });
  const reader = res.body!.getReader();
  const first = await reader.read();
  assert.match(new TextDecoder().decode(first.value), /^data: /);
  const cancelledAt = Date.now();
  await reader.cancel();
  await until(() => t.fake.cancellations.length === 1, 1000);
  assert.ok(t.fake.cancellations[0].time - cancelledAt < 1000);
  const mine = (l: string) => l.includes("request_id=leaves-mid-stream") && l.includes(" path=");
  await until(() => t.proxy.logs.some(mine));
  assert.match(t.proxy.logs.find(mine)!, /status=499/);
});

Deno.test("a client that aborts before Poe answered cancels Poe's request", async () => {
  await using t = await setup();
  const ac = new AbortController();
  const pending = streamRequest(t.proxy.url, "slow-first=5000", {}, { signal: ac.signal })
    .catch((err) => err);
  await until(() => t.fake.chatRequests().length === 1);
  const abortedAt = Date.now();
  ac.abort();
  assert.ok((await pending) instanceof Error);
  await until(() => t.fake.cancellations.length === 1, 1000);
  assert.ok(t.fake.cancellations[0].time - abortedAt < 1000);
});

Deno.test("a client that leaves while a JSON answer to its stream is read: Poe's body cancelled, 499 logged", async () => {
  await using t = await setup();
  const ac = new AbortController();
  const pending = streamRequest(t.proxy.url, "json,stall=5000", {}, {
    signal: ac.signal,
    headers: { "x-request-id": "leaves-json-stream" },
  }).catch((err) => err);
  await until(() => t.fake.chatRequests().length === 1);
  await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  assert.ok((await pending) instanceof Error, "no status was sent while the body was read");
  await until(() => t.fake.cancellations.length === 1, 1000);
  const mine = (l: string) => l.includes("request_id=leaves-json-stream") && l.includes(" path=");
  await until(() => t.proxy.logs.some(mine));
  assert.match(t.proxy.logs.find(mine)!, /status=499/);
  assert.equal(t.fake.chatRequests().length, 1);
});

Deno.test("a client that leaves while a non-streamed answer arrives: Poe's body cancelled, 499 logged", async () => {
  const { promise: cancelled, resolve } = Promise.withResolvers<void>();
  const { promise: answering, resolve: started } = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    await req.body?.cancel();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"id":'));
        started();
      },
      cancel: () => resolve(),
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  });
  try {
    await using proxy = await startProxy({
      poeUrl: `http://127.0.0.1:${server.addr.port}`,
      env: { FOOTER: "off" },
    });
    const ac = new AbortController();
    const pending = streamRequest(proxy.url, "", { stream: false }, {
      signal: ac.signal,
      headers: { "x-request-id": "leaves-json" },
    }).catch((err) => err);
    await answering;
    await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    assert.ok((await pending) instanceof Error);
    await cancelled;
    const mine = (l: string) => l.includes("request_id=leaves-json") && l.includes(" path=");
    await until(() => proxy.logs.some(mine));
    assert.match(proxy.logs.find(mine)!, /status=499/);
    assert.ok(!proxy.logs.some((l) => l.includes("request failed")));
  } finally {
    await server.shutdown();
  }
});

// --- headers -------------------------------------------------------------------------------------

Deno.test("stream headers: event-stream, no-cache, no buffering, request id, Poe's rate limits", async () => {
  await using t = await setup();
  const res = await streamRequest(t.proxy.url, "", {}, { headers: { "x-request-id": "mine-1" } });
  await res.body!.cancel();
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
  assert.equal(res.headers.get("cache-control"), "no-cache");
  assert.equal(res.headers.get("x-accel-buffering"), "no");
  assert.equal(res.headers.get("x-request-id"), "mine-1");
  assert.equal(res.headers.get("x-ratelimit-limit-requests"), "500");
  assert.match(res.headers.get("x-ratelimit-remaining-requests")!, /^\d+$/);
  assert.match(res.headers.get("x-ratelimit-reset-requests")!, /^\d+s$/);

  const plain = await streamRequest(t.proxy.url, "", { stream: false });
  await plain.body!.cancel();
  assert.match(plain.headers.get("content-type")!, /^application\/json/);
  assert.equal(plain.headers.get("x-ratelimit-limit-requests"), "500");
  assert.match(plain.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);
});

Deno.test("hop-by-hop and client headers are stripped both ways", async () => {
  // An upstream that answers with headers no client should see.
  let seen: Headers | null = null;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    // The usage poller calls the same host; only the chat request is the one to inspect.
    if (new URL(req.url).pathname !== "/v1/chat/completions") return new Response("{}");
    seen = req.headers;
    await req.body?.cancel();
    return new Response(`data: ${RECORDED_CHUNKS[2]}\n\ndata: [DONE]\n\n`, {
      headers: {
        "content-type": "text/event-stream",
        "keep-alive": "timeout=5",
        "proxy-authenticate": "Basic",
        "set-cookie": "poe=secret",
        "x-internal": "1",
        "x-ratelimit-limit-requests": "500",
      },
    });
  });
  try {
    await using proxy = await startProxy({
      poeUrl: `http://127.0.0.1:${server.addr.port}`,
      env: { FOOTER: "off" },
    });
    const body = JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
    });
    // Raw HTTP/1.1, so the client can send headers fetch would refuse.
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: new URL(proxy.url).port as any,
    });
    const request = [
      "POST /v1/chat/completions HTTP/1.1",
      `Host: 127.0.0.1`,
      "Content-Type: application/json",
      `Content-Length: ${new TextEncoder().encode(body).length}`,
      "Connection: close, X-Hop",
      "X-Hop: 1",
      "Keep-Alive: timeout=9",
      "TE: trailers",
      "Proxy-Authorization: Basic abc",
      "Authorization: Bearer client-key",
      "Cookie: session=1",
      "X-Forwarded-For: 10.0.0.1",
      "poe-feature: chat-completions-strict",
      "",
      body,
    ].join("\r\n");
    await conn.write(new TextEncoder().encode(request));
    const response = await new Response(conn.readable).text();
    const [head, rest] = response.split("\r\n\r\n", 2);
    assert.match(head, /^HTTP\/1\.1 200/);
    const lower = head.toLowerCase();
    assert.match(lower, /\r\nx-ratelimit-limit-requests: 500/);
    for (const name of ["keep-alive", "proxy-authenticate", "set-cookie", "x-internal"]) {
      assert.ok(!lower.includes(`\r\n${name}:`), `${name} must not reach the client`);
    }
    assert.ok(rest.includes("Café"));
    const upstream = seen! as Headers;
    assert.equal(upstream.get("authorization"), "Bearer test-poe-key");
    assert.equal(upstream.get("poe-feature"), "chat-completions-strict");
    for (
      const name of [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "cookie",
        "x-forwarded-for",
      ]
    ) {
      assert.equal(upstream.get(name), null, `${name} must not reach Poe`);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("media models wait MEDIA_TIMEOUT_SECONDS, text models FIRST_BYTE_TIMEOUT_SECONDS", async () => {
  await using t = await setup({
    FIRST_BYTE_TIMEOUT_SECONDS: "0.3",
    IDLE_TIMEOUT_SECONDS: "0.3",
    MEDIA_TIMEOUT_SECONDS: "1.5",
  });
  const ask = async (model: string, marker: string, stream: boolean) => {
    const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model,
        stream,
        messages: [{ role: "user", content: `a cat [[fake: ${marker}]]` }],
      }),
    });
    return { status: res.status, text: await res.text() };
  };
  // Headers after 0.6 s; a stalled body after 0.6 s more: within the media timeout, not the other.
  for (const stream of [false, true]) {
    for (const marker of ["slow-first=600", "stall=600"]) {
      const media = await ask("imagen-4", marker, stream);
      assert.equal(media.status, 200, `${marker} ${stream}: ${media.text}`);
      assert.doesNotMatch(media.text, /timeout/, `${marker} ${stream}`);
      const text = await ask("gpt-4o", marker, stream);
      assert.match(text.text, /upstream_timeout/, `${marker} ${stream}`);
    }
  }
  // Over it: the error names the setting to raise.
  const late = await ask("imagen-4", "slow-first=2000", false);
  assert.equal(late.status, 504);
  assert.match(late.text, /MEDIA_TIMEOUT_SECONDS/);
});

Deno.test("a stream handed on mid-event and mid-character, in reads of reused buffers: every byte once, in order", async () => {
  const enc = new TextEncoder();
  // About 120 KB of multi-byte text in one event, arriving in 7,001-byte writes: many reads into
  // the relay's 16 KiB buffers, each cut inside a character.
  const big = "é😀".repeat(20_000);
  const ev = (content: string) =>
    `data: ${
      JSON.stringify({
        id: "chatcmpl-1",
        object: "chat.completion.chunk",
        created: 1,
        model: "gpt-4o",
        choices: [{ index: 0, delta: { content }, finish_reason: null }],
      })
    }\n\n`;
  const role =
    `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n`;
  const whole = enc.encode(ev("A😀B") + ev(big) + ev("end"));
  // Inside the first event's emoji: the opening is handed on there, its wait over.
  const cut = enc.encode(ev("A")).length + 1;
  await using poe = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream({
          async start(c) {
            c.enqueue(enc.encode(role));
            c.enqueue(whole.slice(0, cut));
            await new Promise((r) => setTimeout(r, 300));
            for (let i = cut; i < whole.length; i += 7001) c.enqueue(whole.slice(i, i + 7001));
            c.enqueue(
              enc.encode(
                `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n`,
              ),
            );
            c.close();
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      ),
  );
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${poe.addr.port}`,
    env: { KEEPALIVE_SECONDS: "0.05", FOOTER: "off" },
  });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "x" }],
    stream: true,
  });
  let text = "";
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, "A😀B" + big + "end");
});

/**
 * A Poe that streams `events` (chunk objects), then keeps its stream open until cancelled, or with
 * `done`, ends it with `[DONE]`.
 */
function scriptedPoe(events: unknown[], done = false): Deno.HttpServer<Deno.NetAddr> {
  const enc = new TextEncoder();
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () =>
    new Response(
      new ReadableStream({
        start(c) {
          for (const e of events) c.enqueue(enc.encode(`data: ${JSON.stringify(e)}\n\n`));
          if (done) {
            c.enqueue(enc.encode("data: [DONE]\n\n"));
            c.close();
          }
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    ));
}

const CHUNK = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "gpt-4o" };

Deno.test("a stream silent after its finish_reason ends as answered, not with a timeout", async () => {
  await using poe = scriptedPoe([
    { ...CHUNK, choices: [{ index: 0, delta: { role: "assistant", content: "Hi there" } }] },
    { ...CHUNK, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] },
  ]);
  for (const footer of ["off", "on"]) {
    await using proxy = await startProxy({
      poeUrl: `http://127.0.0.1:${poe.addr.port}`,
      env: { IDLE_TIMEOUT_SECONDS: "0.3", FOOTER: footer, FOOTER_WAIT_MS: "0" },
    });
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
    const done = await client.chat.completions.stream({
      model: "gpt-4o",
      messages: [{ role: "user", content: "x" }],
    }).finalChatCompletion();
    assert.equal(done.choices[0].finish_reason, "stop");
    assert.match(done.choices[0].message.content!, /^Hi there/);
    await until(() => proxy.logs.some((l) => l.includes(" path=/v1/chat/completions")));
    const line = proxy.logs.find((l) => l.includes(" path=/v1/chat/completions"))!;
    assert.doesNotMatch(line, / end=/, footer);
  }
});

Deno.test("the last piece's logprobs, split from the finish chunk for the footer, are sent once", async () => {
  const lp = (token: string) => ({
    content: [{ token, logprob: -0.1, bytes: null, top_logprobs: [] }],
  });
  await using poe = scriptedPoe([
    {
      ...CHUNK,
      choices: [{ index: 0, delta: { role: "assistant", content: "Hi" }, logprobs: lp("Hi") }],
    },
    {
      ...CHUNK,
      choices: [{ index: 0, delta: { content: "!" }, logprobs: lp("!"), finish_reason: "stop" }],
    },
  ], true);
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${poe.addr.port}`,
    env: { FOOTER_WAIT_MS: "0" },
  });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const done = await client.chat.completions.stream({
    model: "gpt-4o",
    messages: [{ role: "user", content: "x" }],
    logprobs: true,
  }).finalChatCompletion();
  assert.deepEqual(done.choices[0].logprobs!.content!.map((t) => t.token), ["Hi", "!"]);
});
