// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { startProxy, testConfig, testRegistry } from "./harness.ts";
import { ModelRegistry } from "../lib/models.ts";
import { createApp } from "../lib/app.ts";
import { memoryLogger } from "../lib/log.ts";
import { FakePoe } from "./fake_poe.ts";

async function getJson(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

function assertErrorShape(body: any): void {
  assert.equal(typeof body.error.message, "string");
  assert.equal(typeof body.error.type, "string");
  assert.ok("param" in body.error);
  assert.ok("code" in body.error);
}

Deno.test("GET /healthz reports status, version and model count", async () => {
  await using proxy = await startProxy();
  const { status, body, headers } = await getJson(`${proxy.url}/healthz`);
  assert.equal(status, 200);
  assert.deepEqual(body, { status: "ok", version: "test", models: 9 });
  assert.ok(headers.get("x-request-id"));
});

Deno.test("GET /v1/models lists the registry in OpenAI's shape with stable created", async () => {
  await using proxy = await startProxy();
  const first = await getJson(`${proxy.url}/v1/models`);
  assert.equal(first.status, 200);
  assert.equal(first.body.object, "list");
  const gpt = first.body.data.find((m: any) => m.id === "GPT-4o");
  assert.equal(gpt.object, "model");
  assert.equal(gpt.owned_by, "poe");
  assert.equal(gpt.modality, "text");
  assert.deepEqual(gpt.context_window, { context_length: 128000 });
  // The cap the proxy clips to: a model without its own max_tokens shows the default.
  const mini = first.body.data.find((m: any) => m.id === "GPT-4o-mini");
  assert.deepEqual(mini.context_window, { context_length: 200000 });
  const image = first.body.data.find((m: any) => m.modality === "image");
  assert.equal(image.context_window, null);
  assert.equal(gpt.pricing.base, 140);
  assert.equal(typeof gpt.created, "number");
  const modalities = new Set(first.body.data.map((m: any) => m.modality));
  assert.deepEqual([...modalities].sort(), ["audio", "image", "text", "video"]);
  const second = await getJson(`${proxy.url}/v1/models`);
  assert.deepEqual(second.body, first.body);
});

Deno.test("GET /v1/models prices answer tokens as the estimate does: a media model's are free", async () => {
  const shipped = ModelRegistry.parse(
    await Deno.readTextFile(new URL("../models.yaml", import.meta.url)),
    "models.yaml",
  );
  const registry = ModelRegistry.parse(
    await Deno.readTextFile(new URL("../models.yaml", import.meta.url)) +
      "    - poe_name: Speech-Out\n      per_1k_tokens: 40\n      per_1k_output_tokens: 7\n",
    "models.yaml",
  );
  assert.equal(registry.size, shipped.size + 1);
  await using proxy = await startProxy({ registry });
  const listed = await getJson(`${proxy.url}/v1/models`);
  const byId = new Map<string, any>(listed.body.data.map((m: any) => [m.id, m]));
  const eleven = await getJson(`${proxy.url}/v1/models/elevenlabs`);
  assert.equal(eleven.body.modality, "audio");
  assert.deepEqual(eleven.body.pricing, {
    unit: "points",
    base: 100,
    per_1k_tokens: 1500,
    per_1k_output_tokens: 0,
    estimated: true,
  });
  assert.equal(byId.get("Speech-Out").pricing.per_1k_output_tokens, 7);
  // A text model without per_1k_output_tokens pays per_1k_tokens for its answer.
  const text = registry.list().find((e) =>
    e.modality === "text" && e.per1kOutputTokens === null && e.per1kTokens !== null
  )!;
  assert.equal(byId.get(text.id).pricing.per_1k_output_tokens, text.per1kTokens);
  // Every priced model: the listed price of 1,000 more answer tokens is what the estimate adds.
  let checked = 0;
  for (const entry of registry.list()) {
    const pricing = byId.get(entry.id).pricing;
    const more = registry.estimatePoints(entry, 0, 3000);
    if (more === null) {
      assert.equal(pricing, null, entry.id);
      continue;
    }
    const added = more.points - registry.estimatePoints(entry, 0, 2000)!.points;
    assert.equal(pricing.per_1k_output_tokens, added, entry.id);
    checked++;
  }
  assert.ok(checked > 20);
});

Deno.test("GET /v1/models/{id} finds by any casing and alias, else 404", async () => {
  await using proxy = await startProxy();
  const one = await getJson(`${proxy.url}/v1/models/gpt-4o`);
  assert.equal(one.status, 200);
  assert.equal(one.body.id, "GPT-4o");
  const alias = await getJson(`${proxy.url}/v1/models/claude-sonnet`);
  assert.equal(alias.body.id, "Claude-Sonnet-4.6");
  const missing = await getJson(`${proxy.url}/v1/models/nope-9`);
  assert.equal(missing.status, 404);
  assertErrorShape(missing.body);
  assert.equal(missing.body.error.code, "model_not_found");
});

Deno.test("unknown paths are 404 and wrong methods 405 with Allow, OpenAI-shaped", async () => {
  await using proxy = await startProxy();
  const notFound = await getJson(`${proxy.url}/v2/nothing`);
  assert.equal(notFound.status, 404);
  assertErrorShape(notFound.body);
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
