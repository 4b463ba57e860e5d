// deno-lint-ignore-file no-explicit-any
/**
 * @module A stream whose Poe is slow gets its headers and keep-alives before Poe's verdict, then the
 * answer or the error as an event; over real sockets against the fake Poe.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FakePoe } from "./fake_poe.ts";
import { startFakeAndProxy, startProxy, testConfig, testRegistry } from "./harness.ts";
import { parseMetrics, sample } from "./prometheus_text.ts";
import { createApp } from "../lib/app.ts";
import { memoryLogger } from "../lib/log.ts";
import { UpstreamClient } from "../lib/upstream.ts";
import { Deadlines } from "../lib/deadlines.ts";
import { settlesWithin, streamStartMs } from "../lib/early_stream.ts";

/** A stream's verdict is waited for 0.2 s before its headers go out. */
const FAST = { KEEPALIVE_SECONDS: "0.2" };

function chatBody(marker: string): string {
  return JSON.stringify({
    model: "gpt-4o",
    messages: [{ role: "user", content: `Hi${marker ? ` [[fake: ${marker}]]` : ""}` }],
    stream: true,
  });
}

function streamRequest(url: string, marker: string, id: string, signal?: AbortSignal) {
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": id },
    body: chatBody(marker),
    signal,
  });
}

/** A response's body read as text, as far as asked. */
function bodyText(body: ReadableStream<Uint8Array>) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  return {
    /** Reads until `text` holds `what`; the text so far. */
    async until(what: string): Promise<string> {
      while (!text.includes(what)) {
        const r = await reader.read();
        if (r.done) throw new Error(`the body ended without ${JSON.stringify(what)}: ${text}`);
        text += r.value;
      }
      return text;
    },
    /** Reads to the end; the whole text. */
    async rest(): Promise<string> {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
      return text;
    },
  };
}

/** `data` of each event, in order. */
function dataOf(text: string): string[] {
  return text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
}

function contentOf(data: string[]): string {
  return data.filter((d) => d !== "[DONE]")
    .map((d) => JSON.parse(d).choices?.[0]?.delta?.content ?? "").join("");
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Holds the fake's chat calls. The old code sends nothing before Poe's headers: there the hold
 * is let go after a while all the same, so that such a test fails on `released` rather than hangs.
 */
function holdPoe(fake: FakePoe) {
  const release = fake.hold();
  const state = { released: false, release: () => {} };
  state.release = () => {
    state.released = true;
    release();
  };
  const fallback = setTimeout(state.release, 8_000);
  return {
    state,
    [Symbol.dispose]() {
      clearTimeout(fallback);
      state.release();
    },
  };
}

/** The request log line of `id`. */
function requestLine(logs: string[], id: string): string | undefined {
  return logs.find((l) => l.includes(` request request_id=${id} `));
}

Deno.test("a slow Poe: 200 and a keep-alive before Poe's headers, then the whole answer and one [DONE]", async () => {
  await using t = await startFakeAndProxy(FAST);
  using held = holdPoe(t.fake);
  const res = await streamRequest(t.proxy.url, "chunks=3,reply=Late%20but%20whole.", "early-ok");
  assert.equal(held.state.released, false, "the headers came while Poe had not answered");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  assert.equal(res.headers.get("x-request-id"), "early-ok");
  assert.equal(res.headers.get("x-accel-buffering"), "no");
  assert.equal(res.headers.get("x-poe-feature-active"), null, "Poe's headers are not known yet");
  const body = bodyText(res.body!);
  assert.equal(await body.until(": keep-alive\n\n"), ": keep-alive\n\n", "nothing else before it");
  assert.equal(held.state.released, false);
  assert.equal(t.fake.chatRequests().length, 1);
  held.state.release();
  const text = await body.rest();
  const data = dataOf(text);
  assert.equal(contentOf(data), "Late but whole.");
  assert.equal(data.at(-1), "[DONE]");
  assert.equal(data.filter((d) => d === "[DONE]").length, 1);
  assert.ok(text.indexOf(": keep-alive") < text.indexOf("data: "));
  await until(() => requestLine(t.proxy.logs, "early-ok") !== undefined);
  const line = requestLine(t.proxy.logs, "early-ok")!;
  assert.match(line, / status=200 /);
  assert.match(line, / early=true/);
  assert.match(line, / attempts=first:200/);
  assert.doesNotMatch(line, / end=/);
});

Deno.test("a slow Poe: the openai SDK's stream gets its headers first and reads the answer", async () => {
  await using t = await startFakeAndProxy(FAST);
  using held = holdPoe(t.fake);
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi [[fake: chunks=2,reply=From%20the%20SDK.]]" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(held.state.released, false, "the SDK had its response before Poe answered");
  held.state.release();
  let content = "";
  let usage: any = null;
  for await (const chunk of stream) {
    content += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(content, "From the SDK.");
  assert.ok(usage?.completion_tokens > 0, "the usage chunk asked for");
});

Deno.test("a slow Poe that fails after the retries: one error event, then [DONE]; logged and counted with its status", async () => {
  await using t = await startFakeAndProxy(FAST);
  const busy = "status=503,message=Busy%20right%20now.";
  t.fake.script(busy, busy, busy);
  using held = holdPoe(t.fake);
  const res = await streamRequest(t.proxy.url, "", "early-fail");
  assert.equal(held.state.released, false, "the headers came while Poe had not answered");
  assert.equal(res.status, 200);
  const body = bodyText(res.body!);
  await body.until(": keep-alive\n\n");
  held.state.release();
  const data = dataOf(await body.rest());
  assert.equal(data.length, 2, "one error event and [DONE]");
  const { error } = JSON.parse(data[0]);
  assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
  assert.match(error.message, /Busy right now\./);
  assert.equal(error.type, "upstream_error");
  assert.equal(data[1], "[DONE]");
  assert.equal(t.fake.chatRequests().length, 3, "the first call and both retries");

  await until(() => requestLine(t.proxy.logs, "early-fail") !== undefined);
  const line = requestLine(t.proxy.logs, "early-fail")!;
  assert.match(line, / status=503 /, "the status the error would have had");
  assert.match(line, / attempts=first:503,retry-503:503,retry-503:503/);
  assert.match(line, / early=true/);
  const metrics = parseMetrics(await (await fetch(`${t.proxy.url}/metrics`)).text());
  const chat = { route: "/v1/chat/completions", model: "GPT-4o" };
  assert.equal(sample(metrics, "poe_proxy_requests_total", { ...chat, status: "503" }), 1);
  assert.equal(sample(metrics, "poe_proxy_requests_total", { ...chat, status: "200" }), undefined);
  assert.equal(
    sample(metrics, "poe_proxy_stream_ends_total"),
    undefined,
    "no answer was relayed",
  );
  const recent = (await (await fetch(`${t.proxy.url}/api/usage`)).json()).recent;
  assert.equal(recent.find((r: any) => r.id === "early-fail")?.status, 503);

  // The SDK raises it.
  t.fake.script(busy, busy, busy);
  using again = holdPoe(t.fake);
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
  });
  assert.equal(again.state.released, false);
  again.state.release();
  await assert.rejects(async () => {
    for await (const _ of stream) { /* the error comes first */ }
  }, (err: unknown) => err instanceof OpenAI.APIError && /Busy right now/.test(err.message));
});

Deno.test("a client that leaves before Poe's headers: the call to Poe is aborted, logged 499", async () => {
  await using t = await startFakeAndProxy(FAST);
  using held = holdPoe(t.fake);
  const ac = new AbortController();
  const res = await streamRequest(t.proxy.url, "", "early-gone", ac.signal);
  assert.equal(held.state.released, false, "the headers came while Poe had not answered");
  await bodyText(res.body!).until(": keep-alive\n\n");
  ac.abort();
  await until(() => requestLine(t.proxy.logs, "early-gone") !== undefined);
  const line = requestLine(t.proxy.logs, "early-gone")!;
  assert.match(line, / status=499 /);
  assert.match(line, /error="client gone before Poe answered"/);
  assert.doesNotMatch(line, / end=/);
  await until(() => t.fake.cancellations.length === 1);
  assert.equal(t.fake.chatRequests().length, 1);
  const metrics = parseMetrics(await (await fetch(`${t.proxy.url}/metrics`)).text());
  assert.equal(
    sample(metrics, "poe_proxy_requests_total", { route: "/v1/chat/completions", status: "499" }),
    1,
  );
  assert.equal(sample(metrics, "poe_proxy_stream_ends_total"), undefined);
});

Deno.test("a client that leaves while Poe's stream opens: Poe's answer is aborted and watched for, logged 499", async () => {
  // Poe's headers and role chunk at once, then nothing until the test says.
  let cancelled = false;
  let answered = false;
  const { promise: go, resolve: letGo } = Promise.withResolvers<void>();
  const encoder = new TextEncoder();
  const chunk = (delta: unknown, finish: string | null = null) =>
    encoder.encode(`data: ${
      JSON.stringify({
        id: "c1",
        object: "chat.completion.chunk",
        created: 1,
        model: "gpt-4o",
        choices: [{ index: 0, delta, finish_reason: finish }],
      })
    }\n\n`);
  await using poe = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(chunk({ role: "assistant", content: "" }));
            await go;
            if (cancelled) return;
            answered = true;
            controller.enqueue(chunk({ content: "late" }, "stop"));
            controller.enqueue(encoder.encode("data: [DONE]\n\n"));
            controller.close();
          },
          cancel() {
            cancelled = true;
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      ),
  );
  // Its opening is read for an error far longer than the wait for a verdict.
  const upstream = new UpstreamClient({
    baseUrl: `http://127.0.0.1:${poe.addr.port}`,
    apiKey: "test-poe-key",
    streamStartMs: 60_000,
  });
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${poe.addr.port}`,
    env: { ...FAST, FOOTER: "off" },
    deps: { upstream },
  });
  const fallback = setTimeout(letGo, 8_000);
  try {
    const ac = new AbortController();
    const res = await streamRequest(proxy.url, "", "early-begun", ac.signal);
    assert.equal(answered, false, "the headers came before Poe's answer");
    await bodyText(res.body!).until(": keep-alive\n\n");
    ac.abort();
    await until(() => requestLine(proxy.logs, "early-begun") !== undefined);
    const line = requestLine(proxy.logs, "early-begun")!;
    assert.match(line, / status=499 /);
    assert.match(line, /error="client gone while Poe answered"/);
    assert.match(line, / attempts=first:200/);
    await until(() => cancelled);
  } finally {
    clearTimeout(fallback);
    letGo();
    upstream.close();
  }
});

Deno.test("a slow Poe and the shutdown's cut: the shutdown's error event and [DONE], logged 503 end=shutdown", async () => {
  await using fake = await FakePoe.start();
  const logger = memoryLogger();
  const registry = await testRegistry();
  const app = createApp({
    config: testConfig({ ...FAST, POE_BASE_URL: fake.url, FOOTER: "off" }),
    version: "t",
    registry: () => registry,
    logger,
  });
  try {
    using held = holdPoe(fake);
    const res = await app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "early-cut" },
        body: chatBody(""),
      }),
    );
    assert.equal(held.state.released, false, "the headers came while Poe had not answered");
    const body = bodyText(res.body!);
    await body.until(": keep-alive\n\n");
    assert.equal(app.cutOpen(), 1);
    const data = dataOf(await body.rest());
    assert.equal(data.length, 2);
    assert.equal(JSON.parse(data[0]).error.code, "server_shutting_down");
    assert.equal(data[1], "[DONE]");
    const lines = logger.lines.filter((l) => l.includes(" request request_id=early-cut "));
    assert.equal(lines.length, 1);
    assert.match(lines[0], / status=503 .*end=shutdown/);
    // Poe's answer, should it still come, is let go.
    held.state.release();
    await until(() => fake.openAnswers === 0);
  } finally {
    await app.close();
  }
});

Deno.test("a fast answer is unchanged: Poe's headers passed, no keep-alive first, no early field", async () => {
  // The default KEEPALIVE_SECONDS: 5 s to the verdict, which the fake gives at once.
  await using t = await startFakeAndProxy();
  const res = await streamRequest(t.proxy.url, "chunks=2,reply=Quick.", "fast");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-poe-feature-active"), "chat-completions-legacy");
  assert.equal(res.headers.get("x-ratelimit-limit-requests"), "500");
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const text = await res.text();
  assert.ok(text.startsWith("data: "), "the answer's first event comes first");
  assert.equal(contentOf(dataOf(text)), "Quick.");
  await until(() => requestLine(t.proxy.logs, "fast") !== undefined);
  assert.doesNotMatch(requestLine(t.proxy.logs, "fast")!, /early/);
});

Deno.test("streamStartMs: a keep-alive's length, at most 5 s", () => {
  assert.equal(streamStartMs({ keepaliveSeconds: 0.2 }), 200);
  assert.equal(streamStartMs({ keepaliveSeconds: 15 }), 5_000);
});

Deno.test("settlesWithin: true for a call that settles first, either way; false past the deadline", async () => {
  const long = new Deadlines(60_000);
  const short = new Deadlines(1);
  try {
    assert.equal(await settlesWithin(Promise.resolve(1), long), true);
    assert.equal(await settlesWithin(Promise.reject(new Error("no")), long), true);
    assert.equal(long.pending, 0, "its deadline cancelled");
    assert.equal(await settlesWithin(new Promise(() => {}), short), false);
  } finally {
    long.clear();
    short.clear();
  }
});
