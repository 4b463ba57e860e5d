import assert from "node:assert/strict";
import { assertErrorShape, getJson } from "./http_json.ts";
import { startProxy, testConfig, testRegistry } from "./harness.ts";
import { createApp } from "../lib/app.ts";
import { memoryLogger } from "../lib/log.ts";
import { FakePoe } from "./fake_poe.ts";

Deno.test("unknown paths are 404 and wrong methods 405 with Allow, OpenAI-shaped", async () => {
  await using proxy = await startProxy();
  const notFound = await getJson(`${proxy.url}/v2/nothing`);
  assert.equal(notFound.status, 404);
  assertErrorShape(notFound.body);
  // OpenAI's type for an unknown URL ("Invalid URL (POST /v1/embeddings)").
  const embeddings = await getJson(`${proxy.url}/v1/embeddings`, { method: "POST", body: "{}" });
  assert.equal(embeddings.status, 404);
  assert.equal(embeddings.body.error.type, "invalid_request_error");
  assert.equal(embeddings.body.error.param, null);
  assert.equal(notFound.body.error.type, "invalid_request_error");
  const wrong = await getJson(`${proxy.url}/v1/chat/completions`);
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("allow"), "POST");
  assertErrorShape(wrong.body);
  const del = await getJson(`${proxy.url}/v1/models`, { method: "DELETE" });
  assert.equal(del.status, 405);
  assert.equal(del.headers.get("allow"), "GET");
});

Deno.test("x-request-id echoes a sane client id and replaces an unsafe one", async () => {
  await using proxy = await startProxy();
  const mine = await fetch(`${proxy.url}/healthz`, { headers: { "x-request-id": "abc-123" } });
  await mine.body?.cancel();
  assert.equal(mine.headers.get("x-request-id"), "abc-123");
  const bad = await fetch(`${proxy.url}/healthz`, { headers: { "x-request-id": "a b\tc" } });
  await bad.body?.cancel();
  assert.notEqual(bad.headers.get("x-request-id"), "a b\tc");
  assert.match(bad.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);
});

Deno.test("every request writes one log line with its status", async () => {
  await using proxy = await startProxy();
  const res = await fetch(`${proxy.url}/healthz`, { headers: { "x-request-id": "log-me" } });
  await res.body?.cancel();
  const lines = proxy.logs.filter((l) => l.includes("request_id=log-me"));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /status=200/);
});

Deno.test("App.cutOpen logs each request still open once, with end=shutdown; finished ones are gone", async () => {
  await using fake = await FakePoe.start();
  const logger = memoryLogger();
  const registry = await testRegistry();
  const app = createApp({
    config: testConfig({ POE_BASE_URL: fake.url, FOOTER: "off" }),
    version: "t",
    registry: () => registry,
    logger,
  });
  try {
    const health = await app.handler(new Request("http://proxy/healthz"));
    await health.body?.cancel();
    const streamed = await app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "open-1" },
        body: JSON.stringify({
          model: "gpt-4o",
          stream: true,
          messages: [{ role: "user", content: "Hi [[fake: stall=200,chunks=50]]" }],
        }),
      }),
    );
    assert.equal(streamed.status, 200);
    assert.equal(app.cutOpen(), 1);
    const lines = logger.lines.filter((l) => / request request_id=open-1 /.test(l));
    assert.equal(lines.length, 1);
    assert.match(lines[0], / status=200 .*end=shutdown/);
    assert.equal(app.cutOpen(), 0, "a request is cut once");
    await streamed.body?.cancel();
    assert.equal(logger.lines.filter((l) => / request request_id=open-1 /.test(l)).length, 1);
  } finally {
    await app.close();
  }
});

Deno.test("App.cutOpen: a whole answer waiting for its footer ends as answered, not with an error", async () => {
  // The cost shows late: the footer waits for it, and the cut comes meanwhile.
  await using fake = await FakePoe.start({ historyDelayMs: 5000 });
  const logger = memoryLogger();
  const registry = await testRegistry();
  const app = createApp({
    config: testConfig({ POE_BASE_URL: fake.url, FOOTER_WAIT_MS: "3000" }),
    version: "t",
    registry: () => registry,
    logger,
  });
  try {
    const res = await app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "whole" },
        body: JSON.stringify({
          model: "gpt-4o",
          stream: true,
          messages: [{ role: "user", content: "Hi" }],
        }),
      }),
    );
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const all = (async () => {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
    })();
    while (!text.includes('"iend."')) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    app.cutOpen();
    await all;
    // Asking again would be billed again: the client gets the finish, no error.
    assert.doesNotMatch(text, /"error"/);
    assert.match(text, /"finish_reason":"stop"/);
    assert.match(text, /data: \[DONE\]\n\n$/);
    assert.doesNotMatch(text, /Points/, "no footer: its cost never came");
  } finally {
    await app.close();
  }
});

Deno.test("App.cutOpen: a whole answer not streamed, waiting for its footer's cost, goes out with the estimate", async () => {
  // FOOTER=on: answers not streamed wait for their cost too; it shows late, and the cut comes.
  await using fake = await FakePoe.start({ historyDelayMs: 5000 });
  const logger = memoryLogger();
  const registry = await testRegistry();
  const app = createApp({
    config: testConfig({ POE_BASE_URL: fake.url, FOOTER: "on", FOOTER_WAIT_MS: "3000" }),
    version: "t",
    registry: () => registry,
    logger,
  });
  try {
    const answering = app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": "json-whole" },
        body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] }),
      }),
    );
    while (fake.chatRequests().length === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    assert.equal(app.cutOpen(), 1);
    const res = await answering;
    assert.ok(Date.now() - started < 1000, "the footer's wait ended with the cut");
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.choices[0].finish_reason, "stop");
    // Its cost never came: the estimate stands.
    assert.equal(res.headers.get("x-poe-points-estimated"), "true");
    const lines = logger.lines.filter((l) => / request request_id=json-whole /.test(l));
    assert.equal(lines.length, 1);
    assert.match(lines[0], / status=200 /);
    assert.doesNotMatch(lines[0], /end=shutdown/);
  } finally {
    await app.close();
  }
});

Deno.test("App.cutOpen: a finished answer still waiting for Poe's usage gets the usage asked for", async () => {
  const enc = new TextEncoder();
  const ev = (o: unknown) => enc.encode(`data: ${JSON.stringify(o)}\n\n`);
  const base = { id: "c1", object: "chat.completion.chunk", created: 1, model: "gpt-4o" };
  const { promise: finished, resolve } = Promise.withResolvers<void>();
  await using poe = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(ev({ ...base, choices: [{ index: 0, delta: { content: "Hi" } }] }));
            c.enqueue(ev({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }));
            resolve();
            // Poe's usage chunk and [DONE] never come before the cut.
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      ),
  );
  const registry = await testRegistry();
  const app = createApp({
    config: testConfig({ POE_BASE_URL: `http://127.0.0.1:${poe.addr.port}`, FOOTER: "off" }),
    version: "t",
    registry: () => registry,
    logger: memoryLogger(),
  });
  try {
    const res = await app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "gpt-4o",
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "Hi" }],
        }),
      }),
    );
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const all = (async () => {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
    })();
    await finished;
    while (!text.includes('"finish_reason":"stop"')) await new Promise((r) => setTimeout(r, 10));
    app.cutOpen();
    await all;
    const events = text.split("\n\n").filter(Boolean);
    assert.equal(events.at(-1), "data: [DONE]");
    // Counted here, as when Poe sends none: the client asked for it.
    const usage = JSON.parse(events.at(-2)!.slice(6));
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.tokens_estimated, true);
    assert.doesNotMatch(text, /"error"/);
  } finally {
    await app.close();
  }
});
