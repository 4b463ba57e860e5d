// deno-lint-ignore-file no-explicit-any
/**
 * @module Tests of lib/upstream_bytes.ts: the bytes a large body's call to Poe sends are exactly
 * `JSON.stringify` of the body's UTF-8, whatever was spliced from the client's bytes; and, over
 * real sockets, a large image body through the proxy, streamed and not, retried.
 */
import assert from "node:assert/strict";
import { LARGE_BODY_BYTES, LONG_STRING_CHARS, RawStrings } from "../lib/upstream_bytes.ts";
import { upstreamBody } from "../lib/chat_request.ts";
import { ladderVariants } from "../lib/retry_ladder.ts";
import { UpstreamClient } from "../lib/upstream.ts";
import type { ChatRequest } from "../lib/openai_types.ts";
import { FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import { random } from "./random.ts";

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** A base64 data URL of `chars` characters, the same on every run for one seed. */
function image(chars: number, seed: number): string {
  const next = random(seed);
  const out: string[] = [];
  for (let i = 0; i < chars; i++) out.push(B64[Math.floor(next() * 64)]);
  return `data:image/png;base64,${out.join("")}`;
}

const IMG_A = image(600_000, 1);
const IMG_B = image(500_000, 2);
const IMG_C = image(100_000, 3);

function imagePart(url: string) {
  return { type: "image_url", image_url: { url } };
}

/** The client's body as it arrives: text, bytes, parsed, and what was found in it. */
function arrive(text: string) {
  const bytes = new TextEncoder().encode(text);
  const decoded = new TextDecoder().decode(bytes);
  const json = JSON.parse(decoded) as ChatRequest;
  return { bytes, json, raw: RawStrings.find(decoded, bytes, json) };
}

/** Asserts that `raw` serializes `body` to exactly `JSON.stringify(body)`'s UTF-8. */
function assertExact(raw: RawStrings, body: unknown): Uint8Array | string {
  const got = raw.serialize(body);
  const want = new TextEncoder().encode(JSON.stringify(body));
  const bytes = typeof got === "string" ? new TextEncoder().encode(got) : got;
  // Compared byte by byte: a failing deepEqual of megabytes takes minutes to describe.
  assert.equal(bytes.length, want.length, "as many bytes");
  assert.equal(want.findIndex((b, i) => b !== bytes[i]), -1, "the first byte that differs");
  return got;
}

/** A chat of several images over a few turns, with a developer message, as clients send it. */
function chat(): ChatRequest {
  return {
    model: "gpt-4o",
    max_tokens: 300,
    messages: [
      { role: "developer", content: "Describe images briefly." },
      { role: "user", content: [{ type: "text", text: "First:" }, imagePart(IMG_A)] },
      { role: "assistant", content: "A cat." },
      {
        role: "user",
        content: [{ type: "text", text: "And these?" }, imagePart(IMG_B), imagePart(IMG_C)],
      },
    ],
  } as unknown as ChatRequest;
}

Deno.test("RawStrings: several images, sent streamed or not, are spliced to JSON.stringify's bytes", () => {
  const { json, raw } = arrive(JSON.stringify(chat()));
  assert.ok(raw);
  assert.equal(raw.size, 3);
  for (const stream of [false, true]) {
    const body = upstreamBody({ ...json, stream }, "GPT-4o", json.messages);
    assert.equal((body.messages[0] as any).role, "system", "developer became system");
    const got = assertExact(raw, body);
    assert.ok(got instanceof Uint8Array, "the bytes are assembled, not serialized whole");
  }
});

Deno.test("RawStrings: a clipped history, and one clipped of every image, are exact too", () => {
  const { json, raw } = arrive(JSON.stringify(chat()));
  assert.ok(raw);
  const clipped = upstreamBody(json, "GPT-4o", [json.messages[0], ...json.messages.slice(2)]);
  assert.ok(assertExact(raw, clipped) instanceof Uint8Array);
  const none = upstreamBody(json, "GPT-4o", [json.messages[0], json.messages[2]]);
  assert.equal(typeof assertExact(raw, none), "string", "nothing to splice: JSON.stringify's own");
});

Deno.test("RawStrings: the 400 ladder's variants (max_tokens dropped, model lowercased) are exact", () => {
  const { json, raw } = arrive(JSON.stringify(chat()));
  assert.ok(raw);
  const variants = ladderVariants(upstreamBody(json, "GPT-4o", json.messages));
  assert.equal(variants.length, 3);
  for (const v of variants) assertExact(raw, v.body);
});

Deno.test("RawStrings: an image sent twice is spliced at both places, each from its own bytes", () => {
  const body = chat();
  body.messages.push({ role: "user", content: [imagePart(IMG_A)] } as any);
  const { json, raw } = arrive(JSON.stringify(body));
  assert.ok(raw);
  assert.equal(raw.size, 4);
  const got = assertExact(raw, upstreamBody(json, "GPT-4o", json.messages));
  assert.ok(got instanceof Uint8Array);
});

Deno.test("RawStrings: a string the client escaped is serialized as usual; the others are spliced", () => {
  // PHP's json_encode escapes `/`: the parsed string never stands verbatim in the body.
  const text = JSON.stringify(chat()).replace(
    IMG_B.slice(0, 30),
    IMG_B.slice(0, 30).replace("/", "\\/"),
  );
  assert.ok(text.includes("data:image\\/png"));
  const { json, raw } = arrive(text);
  assert.ok(raw);
  assert.equal(raw.size, 2);
  assertExact(raw, upstreamBody(json, "GPT-4o", json.messages));
  // A long text with newlines (escaped in JSON) is not looked for either.
  const long = { ...chat(), messages: [{ role: "user", content: "line\n".repeat(300_000) }] };
  assert.equal(arrive(JSON.stringify(long)).raw, null);
});

Deno.test("RawStrings: characters that stand raw between tokens are never taken for a string's", () => {
  // The body's own whitespace `":<tabs>"` reads like the quoted string `:<tabs>` of a message, which
  // JSON.stringify writes with escapes: splicing the raw tabs would send Poe other bytes.
  const tabs = ":" + "\t".repeat(LONG_STRING_CHARS);
  const text = `{"model":"gpt-4o","messages":[{"role":"user","content":${JSON.stringify(tabs)}},` +
    `{"role":"user","content":${JSON.stringify([imagePart(IMG_A), imagePart(IMG_B)])}}],` +
    `"k"${tabs}"v"}`;
  const { json, raw } = arrive(text);
  assert.ok(raw);
  assert.equal(raw.size, 2, "the images only");
  assertExact(raw, upstreamBody(json, "GPT-4o", json.messages));
});

Deno.test("RawStrings: a string with a backslash is never taken for another string's escapes", () => {
  // `"a\n…"` stands in the body as the JSON of the string `a` newline `…`, not of this one.
  const slash = "a\\n" + IMG_C;
  const { json, raw } = arrive(JSON.stringify({
    model: "gpt-4o",
    messages: [
      { role: "user", content: slash },
      { role: "user", content: "a\n" + IMG_C },
      { role: "user", content: [imagePart(IMG_A), imagePart(IMG_B)] },
    ],
  }));
  assert.ok(raw);
  assert.equal(raw.size, 2, "the images only");
  assertExact(raw, upstreamBody(json, "GPT-4o", json.messages));
});

Deno.test("RawStrings: a body built to make a search slow is one pass, and exact", () => {
  // Searched for, `A…A` would be compared at each of the pad's million places: minutes.
  const v = "A".repeat(LONG_STRING_CHARS + 10);
  const messages = [{ role: "user", content: v }, { role: "user", content: [imagePart(IMG_C)] }];
  const text = JSON.stringify({ pad: "A".repeat(1_200_000), model: "gpt-4o", messages });
  const { json, raw } = arrive(text);
  assert.ok(raw);
  assert.equal(raw.size, 2);
  assertExact(raw, upstreamBody(json, "GPT-4o", json.messages));
  // A long token of the same length before the messages: that string is serialized as usual.
  const before = arrive(
    JSON.stringify({ pad: "B".repeat(v.length), more: [IMG_A, IMG_B], model: "m", messages }),
  );
  assert.ok(before.raw);
  assert.equal(before.raw.size, 1, "the image only");
  assertExact(before.raw, upstreamBody(before.json, "GPT-4o", before.json.messages));
});

Deno.test("RawStrings: a body with any non-ASCII character, or a small one, is left to JSON.stringify", () => {
  const body = chat();
  body.messages[2].content = "Un chat, café au lait.";
  const text = JSON.stringify(body);
  assert.ok(text.length > LARGE_BODY_BYTES);
  assert.equal(arrive(text).raw, null);
  // Non-ASCII the client escaped leaves the body ASCII; Poe gets the character as UTF-8.
  const escaped = arrive(text.replace("é", "\\u00e9"));
  assert.ok(escaped.raw);
  const got = assertExact(escaped.raw, upstreamBody(escaped.json, "GPT-4o", escaped.json.messages));
  assert.ok(got instanceof Uint8Array);
  const small = {
    model: "m",
    messages: [{ role: "user", content: [imagePart(image(70_000, 4))] }],
  };
  assert.ok(JSON.stringify(small).length < LARGE_BODY_BYTES);
  assert.equal(arrive(JSON.stringify(small)).raw, null);
  assert.equal(arrive(JSON.stringify({ ...chat(), messages: "no" })).raw, null);
});

// --- over HTTP, against the fake Poe -------------------------------------------------------------

/** The fake, a proxy whose Poe client retries at once, and the bodies handed to `fetch`. */
async function setup() {
  const fake = await FakePoe.start();
  const sent: unknown[] = [];
  const upstream = new UpstreamClient({
    baseUrl: fake.url,
    apiKey: "test-poe-key",
    retries: 2,
    // The real fetch; what it is handed is recorded.
    fetch: (input, init) => {
      sent.push(init?.body);
      return fetch(input, init);
    },
    random: () => 0,
    sleep: (_ms, signal) => signal.aborted ? Promise.reject(signal.reason) : Promise.resolve(),
  });
  const proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER: "off" }, deps: { upstream } });
  return {
    fake,
    proxy,
    sent,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      upstream.close();
      await fake.close();
    },
  };
}

for (const stream of [false, true]) {
  Deno.test(`HTTP: a large image body ${stream ? "streamed" : "not streamed"}, retried after a 503, reaches Poe exact`, async () => {
    await using t = await setup();
    t.fake.script("status=503", "");
    const body = chat();
    body.messages.push({ role: "user", content: [imagePart(IMG_A)] } as any);
    const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer client-key" },
      body: JSON.stringify({ ...body, stream }),
    });
    const answer = await res.text();
    assert.equal(res.status, 200, answer);
    if (stream) assert.match(answer, /data: \[DONE\]/);
    else assert.equal(JSON.parse(answer).object, "chat.completion");
    const calls = t.fake.chatRequests();
    assert.equal(calls.length, 2, "the 503's retry sent the body again");
    for (const call of calls) {
      const got = call.body as any;
      assert.equal(got.model, "GPT-4o");
      assert.equal(got.stream, stream);
      assert.equal(got.messages[0].role, "system");
      assert.equal(got.messages[1].content[1].image_url.url, IMG_A);
      assert.equal(got.messages[3].content[1].image_url.url, IMG_B);
      assert.equal(got.messages[3].content[2].image_url.url, IMG_C);
      assert.equal(got.messages[4].content[0].image_url.url, IMG_A);
      // What arrived is JSON.stringify's own text of what it parses to: no byte more or less.
      assert.equal(call.text, JSON.stringify(got));
    }
    assert.equal(calls[1].text, calls[0].text);
    assert.equal(t.sent.length, 2);
    assert.ok(
      t.sent.every((b) => b instanceof Uint8Array),
      "both calls' bodies were spliced bytes",
    );
  });
}
