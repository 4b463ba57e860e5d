// deno-lint-ignore-file no-explicit-any
/** @module The retry ladder and Poe's error mapping, over real sockets against the fake Poe. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import { memoryLogger } from "../lib/log.ts";
import { UpstreamClient } from "../lib/upstream.ts";
import { MAX_EVENT_CHARS } from "../lib/sse.ts";
import { breakingPoe, bytesOf, portOf, writeAll } from "./raw_http.ts";
import { paddedJson } from "./body_streams.ts";

function seconds(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value) * 1000;
}

/** The fake, and a proxy whose Poe client sleeps instantly and records how long it would have. */
async function setup(
  options: {
    retries?: number;
    baseUrl?: string;
    env?: Record<string, string>;
    fetch?: typeof fetch;
    connectTimeoutMs?: number;
    streamStartMs?: number;
  } = {},
) {
  const fake = await FakePoe.start();
  const sleeps: number[] = [];
  const upstreamLog = memoryLogger();
  const upstream = new UpstreamClient({
    baseUrl: options.baseUrl ?? fake.url,
    apiKey: "test-poe-key",
    retries: options.retries ?? 2,
    fetch: options.fetch,
    connectTimeoutMs: options.connectTimeoutMs,
    // As the app sets them from its config.
    firstByteTimeoutMs: seconds(options.env?.FIRST_BYTE_TIMEOUT_SECONDS),
    streamStartMs: options.streamStartMs ?? seconds(options.env?.KEEPALIVE_SECONDS),
    logger: upstreamLog,
    random: () => 0,
    sleep: (ms, signal) => {
      sleeps.push(ms);
      return signal.aborted ? Promise.reject(signal.reason) : Promise.resolve();
    },
  });
  const proxy = await startProxy({
    poeUrl: fake.url,
    env: { FOOTER: "off", ...options.env },
    deps: { upstream },
  });
  return {
    fake,
    proxy,
    sleeps,
    upstreamLog,
    /** Bodies the fake received, in order. */
    bodies: (): any[] => fake.chatRequests().map((r) => r.body),
    async [Symbol.asyncDispose]() {
      await proxy.close();
      upstream.close();
      await fake.close();
    },
  };
}

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: any; text: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: any = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // A stream; the caller reads `text`.
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

function chat(marker = "", extra: Record<string, unknown> = {}) {
  return {
    model: "gpt-4o",
    messages: [{ role: "user", content: `Hi${marker ? ` [[fake: ${marker}]]` : ""}` }],
    ...extra,
  };
}

function assertOpenAiError(body: any): void {
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(typeof body.error.message, "string");
  assert.equal(typeof body.error.type, "string");
}

// --- the 400 ladder ------------------------------------------------------------------------------

Deno.test("400 ladder: a refused max_tokens is sent as max_completion_tokens, keeping its bound", async () => {
  await using t = await setup();
  // OpenAI's reasoning models refuse max_tokens ("Use 'max_completion_tokens' instead").
  const res = await post(t.proxy.url, {
    model: "o3-mini",
    max_tokens: 300,
    messages: [{ role: "user", content: "Hi [[fake: reject-field=max_tokens]]" }],
  });
  assert.equal(res.status, 200);
  const bodies = t.bodies();
  assert.equal(bodies.length, 2);
  assert.equal(bodies[0].max_tokens, 300);
  assert.equal("max_tokens" in bodies[1], false);
  assert.equal(bodies[1].max_completion_tokens, 300, "the answer stays bounded as asked");
  assert.deepEqual(t.sleeps, [], "a ladder step does not wait");
  const reasons = t.upstreamLog.lines.filter((l) => l.includes("upstream attempt"));
  assert.match(reasons[0], /reason=first status=400/);
  assert.match(reasons[1], /reason=max-completion-tokens status=200/);
  const line = t.proxy.logs.find((l) => l.includes("path=/v1/chat/completions"))!;
  assert.match(line, /attempts=first:400,max-completion-tokens:200/);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:400,max-completion-tokens:200");
});

Deno.test("400 ladder: a refused limit under both names is dropped, and the client is told", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, chat("reject-max-tokens", { max_tokens: 50 }));
  assert.equal(res.status, 200);
  const bodies = t.bodies();
  assert.deepEqual(bodies.map((b) => [b.max_tokens, b.max_completion_tokens]), [
    [50, undefined],
    [undefined, 50],
    [undefined, undefined],
  ]);
  assert.equal(bodies[2].model, "GPT-4o", "the model stays as it was");
  assert.deepEqual(t.sleeps, [], "a ladder step does not wait");
  const line = t.proxy.logs.find((l) => l.includes("path=/v1/chat/completions"))!;
  assert.match(line, /attempts=first:400,max-completion-tokens:400,drop-max-tokens:200/);
  // The client learns that its max_tokens was not applied.
  assert.equal(
    res.headers.get("x-poe-proxy-attempts"),
    "first:400,max-completion-tokens:400,drop-max-tokens:200",
  );
});

Deno.test("400 ladder: max_completion_tokens is dropped too, never renamed", async () => {
  await using t = await setup();
  const res = await post(
    t.proxy.url,
    chat("reject-max-tokens", { max_completion_tokens: 50, max_tokens: 40 }),
  );
  assert.equal(res.status, 200);
  const bodies = t.bodies();
  assert.equal(bodies.length, 2);
  const [first, second] = bodies;
  assert.equal(first.max_completion_tokens, 50);
  assert.equal("max_completion_tokens" in second, false);
  assert.equal("max_tokens" in second, false);
});

Deno.test("400 ladder: a refused upper-case model is lowercased, the max_tokens step skipped when it changes nothing", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, chat("reject-uppercase-model"));
  assert.equal(res.status, 200);
  assert.deepEqual(t.bodies().map((b) => b.model), ["GPT-4o", "gpt-4o"]);
  assert.equal(res.body.model, "gpt-4o");
});

Deno.test("400 ladder: a 400 naming the model goes straight to lowercase, keeping max_tokens", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, chat("reject-uppercase-model", { max_tokens: 50 }));
  assert.equal(res.status, 200);
  const bodies = t.bodies();
  assert.deepEqual(bodies.map((b) => [b.model, b.max_tokens]), [
    ["GPT-4o", 50],
    ["gpt-4o", 50],
  ]);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:400,lowercase-model:200");
});

Deno.test("400 ladder: both steps together when each alone is refused", async () => {
  await using t = await setup();
  const res = await post(
    t.proxy.url,
    chat("reject-uppercase-model,reject-max-tokens", { max_tokens: 50 }),
  );
  assert.equal(res.status, 200);
  const bodies = t.bodies();
  // Poe named the model first: the step that keeps it is not sent.
  assert.deepEqual(bodies.map((b) => [b.model, "max_tokens" in b]), [
    ["GPT-4o", true],
    ["gpt-4o", true],
    ["gpt-4o", false],
  ]);
  const line = t.proxy.logs.find((l) => l.includes("path=/v1/chat/completions"))!;
  assert.match(line, /attempts=first:400,lowercase-model:400,both:200/);
});

Deno.test("400 ladder: at most LADDER_STEPS (4) calls after the first, every step refused", async () => {
  await using t = await setup();
  // Poe names max_tokens first, then refuses every variant naming nothing.
  t.fake.script("reject-field=max_tokens", "status=400", "status=400", "status=400", "status=400");
  const res = await post(t.proxy.url, chat("", { max_tokens: 9, model: "GPT-4o" }));
  assert.equal(res.status, 400);
  assert.equal(t.bodies().length, 5);
  assert.equal(
    res.headers.get("x-poe-proxy-attempts"),
    "first:400,max-completion-tokens:400,drop-max-tokens:400,lowercase-model:400,both:400",
  );
});

Deno.test("400 ladder: a field of the wrong type is refused before Poe is called, never laddered", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, chat("", { max_tokens: 9, temperature: "hot" }));
  assert.equal(res.status, 400);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.param, "temperature");
  assert.equal(t.bodies().length, 0);
});

Deno.test("400 ladder: no step is tried when none would change the request", async () => {
  await using t = await setup();
  // o3-mini is already lower case, and there is no max_tokens to drop.
  const res = await post(t.proxy.url, {
    model: "o3-mini",
    messages: [{ role: "user", content: "Hi [[fake: reject-field=reasoning_effort]]" }],
    reasoning_effort: "high",
  });
  assert.equal(res.status, 400);
  assertOpenAiError(res.body);
  assert.match(res.body.error.message, /'reasoning_effort' is not supported with this model/);
  assert.equal(res.body.error.param, "reasoning_effort");
  assert.equal(res.body.error.code, "unsupported_parameter");
  assert.equal(t.bodies().length, 1);
});

Deno.test("400 ladder: a 400 naming another field is passed on at once, no variant can cure it", async () => {
  await using t = await setup();
  const res = await post(
    t.proxy.url,
    chat("reject-field=reasoning_effort", { max_tokens: 9, reasoning_effort: "high" }),
  );
  assert.equal(res.status, 400);
  assert.equal(res.body.error.param, "reasoning_effort");
  assert.equal(t.bodies().length, 1);
});

Deno.test("400 ladder: Poe's documented error shape has no param; a field its message names is passed on at once", async () => {
  await using t = await setup();
  const res = await post(
    t.proxy.url,
    chat("reject-field=reasoning_effort,error-shape=documented", {
      max_tokens: 9,
      model: "GPT-4o",
      reasoning_effort: "high",
    }),
  );
  assert.equal(res.status, 400);
  assert.match(res.body.error.message, /reasoning_effort/);
  assert.equal(t.bodies().length, 1, "no variant changes reasoning_effort");
  // The limits it names are the ladder's to cure.
  const limit = await post(
    t.proxy.url,
    chat("reject-max-tokens,error-shape=documented", { max_tokens: 9 }),
  );
  assert.equal(limit.status, 200);
  assert.equal(
    limit.headers.get("x-poe-proxy-attempts"),
    "first:400,max-completion-tokens:400,drop-max-tokens:200",
  );
});

Deno.test("400 ladder: a feature the model lacks (unsupported_feature_for_model) is passed on at once", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, chat("reject-feature", { max_tokens: 9, model: "GPT-4o" }));
  assert.equal(res.status, 400);
  assert.equal(res.body.error.code, "unsupported_feature_for_model");
  assert.equal(res.body.error.param, "model");
  assert.equal(t.bodies().length, 1, "no spelling of the model gives it vision");
});

Deno.test("400 ladder: a 400 no step cures ends with Poe's last 400", async () => {
  await using t = await setup();
  // A 400 that names no field: each variant is tried.
  t.fake.script("status=400", "status=400", "status=400", "status=400");
  const res = await post(t.proxy.url, chat("", { max_tokens: 9, model: "GPT-4o" }));
  assert.equal(res.status, 400);
  assert.equal(t.bodies().length, 4);
});

// --- transient failures --------------------------------------------------------------------------

for (const status of [408, 429, 500, 502, 503, 529]) {
  Deno.test(`transient ${status} is retried with backoff and then succeeds`, async () => {
    await using t = await setup();
    t.fake.script(`status=${status}`, `status=${status}`, "");
    const res = await post(t.proxy.url, chat());
    assert.equal(res.status, 200);
    assert.equal(t.bodies().length, 3);
    assert.deepEqual(t.bodies()[2], t.bodies()[0], "a retry sends the same body");
    // Exponential from 250 ms with jitter; random() = 0 gives the lower half's floor.
    assert.deepEqual(t.sleeps, [125, 250]);
    const line = t.proxy.logs.find((l) => l.includes("path=/v1/chat/completions"))!;
    assert.match(
      line,
      new RegExp(`attempts=first:${status},retry-${status}:${status},retry-${status}:200`),
    );
  });
}

Deno.test("transient failures stop after UPSTREAM_RETRIES more tries", async () => {
  await using t = await setup({ retries: 2 });
  t.fake.script("status=503", "status=503", "status=503", "");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 503);
  assertOpenAiError(res.body);
  assert.equal(t.bodies().length, 3);
  // The client is told what was tried, as on an answer.
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:503,retry-503:503,retry-503:503");
});

Deno.test("UPSTREAM_RETRIES=0 means one try", async () => {
  await using t = await setup({ retries: 0 });
  t.fake.script("status=502", "");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 502);
  assert.equal(t.bodies().length, 1);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), null, "one call: nothing to tell");
});

Deno.test("Retry-After is honoured as the wait before the next try", async () => {
  await using t = await setup();
  t.fake.script("status=429,retry-after=3", "status=503,retry-after=0.5", "");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 200);
  assert.deepEqual(t.sleeps, [3000, 500]);
});

Deno.test("Retry-After over 30 s is passed on at once, with Poe's status; over 60 s with no client retry", async () => {
  for (const status of [429, 503]) {
    await using t = await setup();
    t.fake.script(`status=${status},retry-after=120`, "");
    const res = await post(t.proxy.url, chat());
    assert.equal(res.status, status);
    assert.equal(res.headers.get("retry-after"), "120");
    // The SDKs retry within a second when a wait is over their 60 s: they are told not to.
    assert.equal(res.headers.get("x-should-retry"), "false");
    assertOpenAiError(res.body);
    assert.match(res.body.error.message, /wait 120 s/);
    assert.equal(t.bodies().length, 1);
    assert.deepEqual(t.sleeps, []);
  }
  // A wait the SDKs do wait out (60 s at most) is left to them, as against OpenAI.
  await using t = await setup();
  t.fake.script("status=429,retry-after=35", "");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "35");
  assert.equal(res.headers.get("x-should-retry"), null);
  assert.match(res.body.error.message, /wait 35 s/);
  assert.equal(t.bodies().length, 1);
});

Deno.test("the Poe key quoted in any field or header of Poe's error reaches the client hidden", async () => {
  const key = "test-poe-key";
  await using poe = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () =>
      Response.json({
        error: {
          message: `Invalid key ${key}.`,
          type: `authentication_error ${key}`,
          param: `key=${key}`,
          code: `bad_key_${key}`,
        },
      }, { status: 401, headers: { "x-ratelimit-limit-requests": key, "retry-after": key } }),
  );
  await using t = await setup({ baseUrl: `http://127.0.0.1:${poe.addr.port}` });
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 401);
  assertOpenAiError(res.body);
  assert.doesNotMatch(res.text, new RegExp(key));
  for (const [name, value] of res.headers) assert.doesNotMatch(value, new RegExp(key), name);
  assert.match(res.body.error.param, /^key=/);
});

Deno.test("errors the proxy retried already, or that may have been billed, tell the SDK not to retry", async () => {
  const cases: { script: string[]; status: number; calls: number; retry: string | null }[] = [
    // Retried twice here: a third layer of retries in the client would make nine calls.
    { script: ["status=500", "status=500", "status=500"], status: 500, calls: 3, retry: "false" },
    { script: ["status=520", "status=522", ""], status: 200, calls: 3, retry: null },
    // A gateway that gave up on a running model: not retried, by the proxy or the client.
    { script: ["status=504", ""], status: 504, calls: 1, retry: "false" },
    { script: ["status=524", ""], status: 524, calls: 1, retry: "false" },
    // Not retried by the SDKs anyway: no header needed.
    {
      script: ["status=400", "status=400", "status=400", "status=400"],
      status: 400,
      calls: 4,
      retry: null,
    },
  ];
  for (const c of cases) {
    await using t = await setup();
    t.fake.script(...c.script);
    const res = await post(t.proxy.url, chat("", { max_tokens: 10, model: "GPT-4o" }));
    assert.equal(res.status, c.status, c.script.join(" "));
    assert.equal(res.headers.get("x-should-retry"), c.retry, c.script.join(" "));
    assert.equal(t.bodies().length, c.calls, c.script.join(" "));
  }
});

Deno.test("with UPSTREAM_RETRIES=0 a transient failure is left to the client's own retries", async () => {
  await using t = await setup({ retries: 0 });
  t.fake.script("status=503", "");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("x-should-retry"), null);
  assert.equal(t.bodies().length, 1);
});

Deno.test("with UPSTREAM_RETRIES=0 a Retry-After over the SDKs' 60 s tells the client not to retry", async () => {
  await using t = await setup({ retries: 0 });
  t.fake.script("status=429,retry-after=100");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "100");
  assert.equal(res.headers.get("x-should-retry"), "false");
  assert.match(res.body.error.message, /wait 100 s/);
  assert.equal(t.bodies().length, 1);
  // Within 60 s the SDKs wait it out themselves: left to them.
  t.fake.script("status=429,retry-after=40");
  const short = await post(t.proxy.url, chat());
  assert.equal(short.headers.get("retry-after"), "40");
  assert.equal(short.headers.get("x-should-retry"), null);
});

for (const status of [401, 402, 403, 404, 413]) {
  Deno.test(`${status} is never retried`, async () => {
    await using t = await setup();
    t.fake.script(`status=${status}`, "");
    const res = await post(t.proxy.url, chat("", { max_tokens: 10 }));
    assert.equal(res.status, status === 413 ? 400 : status);
    assertOpenAiError(res.body);
    assert.equal(t.bodies().length, 1);
  });
}

Deno.test("retries take tokens from POE_RATE_LIMIT_PER_MINUTE: no more calls to Poe than it allows", async () => {
  await using t = await setup({ env: { POE_RATE_LIMIT_PER_MINUTE: "2" } });
  t.fake.script("status=503", "status=503", "status=503", "");
  const res = await post(t.proxy.url, chat());
  // One token for the first call, one for the first retry; the second retry finds none.
  assert.equal(res.status, 503);
  assertOpenAiError(res.body);
  assert.equal(t.bodies().length, 2);
  assert.ok(t.proxy.logs.some((l) => l.includes("limited=poe-retry")));
  const next = await post(t.proxy.url, chat());
  assert.equal(next.status, 429, "the bucket is empty for the next request too");
  assert.equal(t.bodies().length, 2);
});

// --- error mapping -------------------------------------------------------------------------------

const MAPPING: [number, string, RegExp | null][] = [
  [400, "invalid_request_error", null],
  [401, "authentication_error", /check POE_API_KEY/],
  [402, "insufficient_credits", /out of points/],
  [403, "moderation_error", null],
  [404, "not_found_error", null],
  [408, "timeout_error", null],
  // Poe's 413 is "tokens over the context window": OpenAI's 400 context_length_exceeded.
  [413, "invalid_request_error", /context window/],
  [429, "rate_limit_error", /500 requests a minute/],
  [500, "provider_error", null],
  [502, "upstream_error", null],
  [503, "upstream_error", null],
  [529, "overloaded_error", null],
];

Deno.test("Poe's errors keep status, message and type, in both of Poe's shapes, with hints", async () => {
  await using t = await setup({ retries: 0 });
  for (const shape of ["openai", "documented"]) {
    for (const [status, type, hint] of MAPPING) {
      const message = `Poe says ${status} in ${shape}.`;
      t.fake.script(`status=${status},error-shape=${shape},message=${encodeURIComponent(message)}`);
      // o3-mini is lower case and there is no max_tokens: the 400 ladder has no step to try.
      const res = await post(t.proxy.url, chat("", { model: "o3-mini" }));
      assert.equal(res.status, status === 413 ? 400 : status);
      if (status === 413) assert.equal(res.body.error.code, "context_length_exceeded");
      assert.match(res.headers.get("content-type")!, /^application\/json/);
      assert.ok(res.headers.get("x-request-id"));
      assertOpenAiError(res.body);
      assert.ok(res.body.error.message.includes(message), res.body.error.message);
      assert.equal(res.body.error.type, type, `${status} ${shape}`);
      if (hint) assert.match(res.body.error.message, hint);
    }
  }
});

Deno.test("a 429 from Poe passes its Retry-After and x-ratelimit headers on", async () => {
  await using t = await setup({ retries: 0 });
  t.fake.script("status=429,retry-after=7");
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "7");
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "0");
  assert.equal(res.headers.get("x-ratelimit-limit-requests"), "500");
});

// --- no retry once bytes were sent -----------------------------------------------------------------

Deno.test("a stream that drops mid-way is an error event and one [DONE], tried once", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, chat("drop", { stream: true }));
  assert.equal(res.status, 200);
  const events = res.text.split("\n\n").filter(Boolean);
  const data = events.map((e) => e.replace(/^data: /, ""));
  assert.equal(data.at(-1), "[DONE]");
  assert.equal(data.filter((d) => d === "[DONE]").length, 1);
  const error = JSON.parse(data.at(-2)!);
  assert.equal(error.error.code, "upstream_disconnected");
  assert.ok(data.slice(0, -2).every((d) => JSON.parse(d).choices[0].finish_reason === null));
  assert.equal(t.bodies().length, 1);
});

// --- streams that open with an error ------------------------------------------------------------

Deno.test("a stream that opens with a transient error event is retried before the client sees a byte", async () => {
  await using t = await setup();
  t.fake.script("open-error=529", "open-error=502,error-shape=documented", "");
  const res = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:529,retry-529:502,retry-502:200");
  assert.doesNotMatch(res.text, /error/);
  const data = res.text.split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
  assert.equal(data.filter((d) => d === "[DONE]").length, 1);
  assert.equal(JSON.parse(data[0]).choices[0].delta.role, "assistant", "the answer from its start");
  assert.ok(data.some((d) => d !== "[DONE]" && JSON.parse(d).choices[0]?.delta?.content));
  assert.equal(t.bodies().length, 3);
  assert.deepEqual(t.sleeps, [125, 250]);
});

Deno.test("a stream that opened with an error and ends a little later leaves its connection to the retry", async () => {
  // The Poe client's own pause: the failed body ends during it.
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER: "off" } });
  fake.script("open-error=529,done-linger=20", "");
  const res = await post(proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:529,retry-529:200");
  const [failed, retry] = fake.chatRequests();
  assert.equal(retry.remotePort, failed.remotePort);
  assert.equal(fake.cancellations.length, 0);
});

Deno.test("a stream that opens with an error gets that error's status, in OpenAI's shape", async () => {
  const cases = [
    // Poe's documented shape: a numeric code.
    { marker: "open-error=401,error-shape=documented", status: 401, type: "authentication_error" },
    // The OpenAI shape: the status comes from the type.
    { marker: "open-error=402", status: 402, type: "insufficient_credits" },
    { marker: "open-error=400,message=Temperature%20too%20high.", status: 400, type: null },
  ];
  for (const c of cases) {
    await using t = await setup();
    const res = await post(t.proxy.url, chat(c.marker, { stream: true, max_tokens: 10 }));
    assert.equal(res.status, c.status, c.marker);
    assertOpenAiError(res.body);
    assert.match(res.body.error.message, /^Poe answered 200, and its stream opened with an error/);
    if (c.type) assert.equal(res.body.error.type, c.type);
    assert.equal(t.bodies().length, c.status === 400 ? 4 : 1, "the 400 ladder applies too");
  }
  await using t = await setup();
  t.fake.script("open-error=529", "open-error=529", "open-error=529", "");
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 2 });
  await assert.rejects(
    client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
    }),
    (err: unknown) =>
      err instanceof OpenAI.APIError && err.status === 529 && /overloaded/.test(err.message),
  );
  assert.equal(t.bodies().length, 3, "retried by the proxy only: the SDK was told not to");
});

Deno.test("a stream's opening is read for an error only so long: a slow one is passed on whole", async () => {
  await using t = await setup({ streamStartMs: 50 });
  // The role chunk, then 150 ms of silence before the content.
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(chat("stall=150,chunks=2,reply=Slow%20but%20sure.", { stream: true })),
  });
  assert.equal(res.status, 200, "headers after the wait, before the answer");
  const text = await res.text();
  const data = text.split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
  assert.equal(JSON.parse(data[0]).choices[0].delta.role, "assistant");
  const content = data.filter((d) => d !== "[DONE]")
    .map((d) => JSON.parse(d).choices[0]?.delta?.content ?? "").join("");
  assert.equal(content, "Slow but sure.");
  assert.equal(t.bodies().length, 1);
});

Deno.test("a stream whose opening breaks is retried", async () => {
  await using t = await setup();
  t.fake.script("open-drop", "");
  const res = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 200);
  assert.doesNotMatch(res.text, /error/);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:0,retry-network:200");
  assert.equal(t.bodies().length, 2);
});

Deno.test("a stream that ends with no event at all is a 502 the client is told not to retry", async () => {
  let calls = 0;
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    return new Response(": nothing but a comment\n\ndata: [DONE]\n\n", {
      headers: { "content-type": "text/event-stream" },
    });
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  const res = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 502);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.code, "upstream_empty");
  assert.equal(res.headers.get("x-should-retry"), "false");
  assert.equal(calls, 1, "not retried: like a 200 without choices");
});

Deno.test("an error answer with an endless body is read no further than its start", async () => {
  const chunk = new TextEncoder().encode("<html><title>502 Bad Gateway</title>" + "x".repeat(8192));
  let sent = 0;
  await using upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream({
          pull(c) {
            sent += chunk.byteLength;
            c.enqueue(chunk);
          },
        }),
        { status: 502, headers: { "content-type": "text/html" } },
      ),
  );
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}`, retries: 0 });
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(chat("")),
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json();
  assert.equal(res.status, 502);
  assertOpenAiError(body);
  assert.match(body.error.message, /^Poe answered 502: 502 Bad Gateway\./);
  // Before, the whole body was read into memory: here, until the client gave up.
  assert.ok(sent < 4 * 1024 * 1024, `${sent} bytes were sent`);
});

Deno.test("a JSON answer larger than MAX_EVENT_CHARS is a 502, its read cancelled, not held whole", async () => {
  // 64 MiB of JSON whitespace, then a completion: read whole, it was a 200 (and an endless body
  // grew the proxy without bound until the answer deadline).
  const tail =
    '{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,' +
    '"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}';
  let calls = 0;
  let body: ReturnType<typeof paddedJson> | null = null;
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    body = paddedJson(64 * 1024 * 1024, tail);
    return new Response(body.body, { headers: { "content-type": "application/json" } });
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 502, res.text.slice(0, 200));
  assertOpenAiError(res.body);
  assert.equal(res.body.error.code, "upstream_bad_body");
  assert.ok(res.body.error.message.includes(`larger than ${MAX_EVENT_CHARS} bytes`));
  assert.equal(res.headers.get("x-should-retry"), "false");
  assert.equal(calls, 1, "not asked again: Poe may have billed it");
  const { sent, ended } = body!;
  assert.equal(await ended, "cancelled");
  // What the sockets buffer on both sides comes on top (up to 16 MiB seen); whole was 64 MiB.
  assert.ok(sent < 3 * MAX_EVENT_CHARS, `${sent} bytes were sent`);
});

Deno.test("a JSON answer to a streamed request that breaks mid-body is not asked for again", async () => {
  let calls = 0;
  const enc = new TextEncoder();
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    return new Response(
      new ReadableStream({
        async start(c) {
          c.enqueue(enc.encode('{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index'));
          await new Promise((r) => setTimeout(r, 20));
          c.error(new Error("reset"));
        },
      }),
      { headers: { "content-type": "application/json" } },
    );
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  const res = await post(t.proxy.url, chat("", { stream: true }));
  // Poe sends a JSON answer once its model is done: that one was billed already.
  assert.equal(calls, 1);
  assert.equal(res.status, 502);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.code, "upstream_disconnected");
  assert.match(res.body.error.message, /before the answer was complete/);
  assert.equal(res.headers.get("x-should-retry"), "false");
});

// --- JSON answers to streamed requests -----------------------------------------------------------

/** Poe's errors in a 200 JSON body, and the status and type each must become. */
const JSON_ERRORS = [
  // Poe's documented shape: a numeric code.
  { marker: "json-error=401,error-shape=documented", status: 401, type: "authentication_error" },
  // The OpenAI shape: the status comes from the type.
  { marker: "json-error=402", status: 402, type: "insufficient_credits" },
  { marker: "json-error=404", status: 404, type: "not_found_error" },
  { marker: "json-error=400,message=Temperature%20too%20high.", status: 400, type: null },
];

Deno.test("a JSON error to a streamed request gets that error's status, in OpenAI's shape", async () => {
  for (const c of JSON_ERRORS) {
    await using t = await setup();
    const res = await post(t.proxy.url, chat(c.marker, { stream: true, max_tokens: 10 }));
    assert.equal(res.status, c.status, c.marker);
    assert.match(res.headers.get("content-type")!, /^application\/json/);
    assertOpenAiError(res.body);
    assert.match(res.body.error.message, /^Poe answered 200 with an error: /);
    if (c.type) assert.equal(res.body.error.type, c.type);
    assert.equal(t.bodies().length, c.status === 400 ? 4 : 1, "the 400 ladder applies too");
    assert.ok(t.bodies().every((b) => b.stream === true));
  }
});

Deno.test("a transient JSON error to a streamed request is retried before the client sees a byte", async () => {
  await using t = await setup();
  t.fake.script("json-error=529", "json-error=503,error-shape=documented", "");
  const res = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:529,retry-529:503,retry-503:200");
  assert.doesNotMatch(res.text, /error/);
  const data = res.text.split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
  assert.equal(data.filter((d) => d === "[DONE]").length, 1);
  assert.equal(t.bodies().length, 3);
  assert.deepEqual(t.sleeps, [125, 250]);
  // Retried until the tries run out: Poe's status, and the SDK is told not to add its own.
  t.fake.script("json-error=529", "json-error=529", "json-error=529", "");
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 2 });
  await assert.rejects(
    client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
    }),
    (err: unknown) =>
      err instanceof OpenAI.APIError && err.status === 529 && /overloaded/.test(err.message) &&
      err.type === "overloaded_error",
  );
  assert.equal(t.bodies().length, 6, "retried by the proxy only: the SDK was told not to");
});

Deno.test("a transient JSON error, then a JSON completion: the openai SDK reads the answer as a stream", async () => {
  await using t = await setup();
  t.fake.script("json-error=529", "json");
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const { data: stream, response } = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    stream_options: { include_usage: true },
  }).withResponse();
  assert.equal(response.headers.get("x-poe-proxy-attempts"), "first:529,retry-529:200");
  let text = "";
  let finish: string | null = null;
  let usage: any = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  assert.equal(text, "Hello there, friend.");
  assert.equal(finish, "stop");
  assert.ok(usage.total_tokens > 0);
  assert.equal(t.bodies().length, 2);
});

Deno.test("a JSON answer to a streamed request that holds no answer is a 502 the client is told not to retry", async () => {
  const bodies = [
    { body: "{}", message: /no choices/ },
    { body: '{"choices":[]}', message: /no choices/ },
    { body: "null", message: /no choices/ },
    { body: "not json", message: /not JSON/ },
  ];
  let next = "";
  let calls = 0;
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    return new Response(next, { headers: { "content-type": "application/json" } });
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  for (const b of bodies) {
    next = b.body;
    calls = 0;
    const res = await post(t.proxy.url, chat("", { stream: true }));
    assert.equal(res.status, 502, b.body);
    assertOpenAiError(res.body);
    assert.equal(res.body.error.code, "upstream_bad_body", b.body);
    assert.match(res.body.error.message, b.message);
    assert.equal(res.headers.get("x-should-retry"), "false");
    assert.equal(calls, 1, "not retried: Poe may have billed it");
  }
});

// --- JSON errors to requests not streamed --------------------------------------------------------

Deno.test("a JSON error to a request not streamed gets that error's status, as a streamed one does", async () => {
  for (const c of JSON_ERRORS) {
    await using t = await setup();
    const res = await post(t.proxy.url, chat(c.marker, { max_tokens: 10 }));
    assert.equal(res.status, c.status, c.marker);
    assertOpenAiError(res.body);
    assert.match(res.body.error.message, /^Poe answered 200 with an error: /);
    if (c.type) assert.equal(res.body.error.type, c.type);
    // Not retried by the SDKs as a 502 would be: a 4xx of Poe's is final.
    assert.equal(res.headers.get("x-should-retry"), null, c.marker);
    assert.equal(t.bodies().length, c.status === 400 ? 4 : 1, "the 400 ladder applies too");
    assert.ok(t.bodies().every((b) => b.stream === false));
    const line = t.proxy.logs.find((l) => l.includes("path=/v1/chat/completions"))!;
    assert.match(line, new RegExp(`status=${c.status} `));
  }
});

Deno.test("a transient JSON error to a request not streamed is retried with backoff; openai SDK", async () => {
  await using t = await setup();
  t.fake.script("json-error=529", "json-error=503,error-shape=documented", "");
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  }).withResponse();
  assert.equal(data.choices[0].message.content, "Hello there, friend.");
  assert.equal(
    response.headers.get("x-poe-proxy-attempts"),
    "first:529,retry-529:503,retry-503:200",
  );
  assert.equal(t.bodies().length, 3);
  assert.deepEqual(t.sleeps, [125, 250]);
  // Retried until the tries run out: Poe's status and type, and the SDK adds no retries of its own.
  t.fake.script("json-error=429", "json-error=429", "json-error=429", "");
  const retrying = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 2 });
  await assert.rejects(
    retrying.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
    }),
    (err: unknown) =>
      err instanceof OpenAI.RateLimitError && err.type === "rate_limit_error" &&
      err.headers?.get("x-should-retry") === "false",
  );
  assert.equal(t.bodies().length, 6, "three more calls, by the proxy only");
});

Deno.test("a JSON error of Poe's own server to a request not streamed: retried, then its status", async () => {
  let calls = 0;
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    return new Response('{"error":{"message":"provider crashed","type":"provider_error"}}', {
      headers: { "content-type": "application/json" },
    });
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 500);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.type, "provider_error");
  assert.match(res.body.error.message, /^Poe answered 200 with an error: provider crashed\./);
  assert.equal(res.headers.get("x-should-retry"), "false", "the proxy retried it already");
  assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:500,retry-500:500,retry-500:500");
  assert.equal(calls, 3);
});

// --- network errors and clients that leave -------------------------------------------------------

function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("Poe unreachable: 502 after the retries, each attempt logged", async () => {
  const port = closedPort();
  await using t = await setup({ baseUrl: `http://127.0.0.1:${port}` });
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 502);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.code, "upstream_unreachable");
  assert.match(res.body.error.message, /after 3 attempt/);
  const attempts = t.upstreamLog.lines.filter((l) => l.includes("upstream attempt"));
  assert.equal(attempts.length, 3);
  assert.match(attempts[0], /reason=first status=0/);
  assert.match(attempts[2], /reason=retry-network status=0/);
  assert.deepEqual(t.sleeps, [125, 250]);
});

Deno.test("connect timeout: a Poe that never takes the connection is 504 after the retries", async () => {
  const port = closedPort();
  // fetch hangs as it would on a black-holed address; the probe finds the port closed.
  const hanging: typeof fetch = (_input, init) =>
    new Promise((_, reject) => {
      const signal = init!.signal!;
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  await using t = await setup({
    baseUrl: `http://127.0.0.1:${port}`,
    fetch: hanging,
    connectTimeoutMs: 30,
  });
  const started = Date.now();
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 504);
  assert.equal(res.body.error.type, "timeout_error");
  assert.equal(res.body.error.code, "upstream_connect_timeout");
  assert.match(res.body.error.message, /CONNECT_TIMEOUT_SECONDS/);
  const attempts = t.upstreamLog.lines.filter((l) => l.includes("upstream attempt"));
  assert.equal(attempts.length, 3, "a connect timeout is a network error: retried");
  assert.match(attempts[0], /error="connect timeout"/);
  assert.ok(Date.now() - started < 1000);
});

Deno.test("Poe unreachable with the default client from config: 502", async () => {
  const port = closedPort();
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${port}`,
    env: { UPSTREAM_RETRIES: "0" },
  });
  const res = await post(proxy.url, chat());
  assert.equal(res.status, 502);
  assert.equal(res.body.error.type, "upstream_error");
});

// A connection that breaks after Poe held the call: Poe took it and its model may have run (and be
// billed), as behind a gateway's 504. Held longer than the 1 s within which a failure is retried.
const HELD_MS = 1500;

Deno.test("a call whose connection broke after Poe held it is not sent again: 502 upstream_disconnected", async () => {
  for (const stream of [false, true]) {
    await using poe = breakingPoe({ holdMs: HELD_MS });
    await using t = await setup({ baseUrl: poe.url });
    const res = await post(t.proxy.url, chat("", { stream }));
    assert.equal(res.status, 502, `stream: ${stream}`);
    assertOpenAiError(res.body);
    assert.equal(res.body.error.code, "upstream_disconnected");
    assert.equal(res.body.error.type, "upstream_error");
    assert.match(res.body.error.message, /broke while it was answering/);
    assert.equal(res.headers.get("x-should-retry"), "false", "the model may have run");
    assert.equal(poe.calls(), 1, "not sent again");
    assert.deepEqual(t.sleeps, []);
  }
});

Deno.test("a stream that opened with Poe's 200, then broke after Poe held it, is not sent again", async () => {
  const role = JSON.stringify({
    id: "chatcmpl-held",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt-4o",
    choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }],
  });
  const event = `data: ${role}\n\n`;
  await using poe = breakingPoe({
    holdMs: HELD_MS,
    opening: "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" +
      `transfer-encoding: chunked\r\n\r\n${event.length.toString(16)}\r\n${event}\r\n`,
  });
  await using t = await setup({ baseUrl: poe.url });
  const res = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 502);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.code, "upstream_disconnected");
  assert.match(res.body.error.message, /broke while it was answering/);
  assert.equal(res.headers.get("x-should-retry"), "false", "the model may have run");
  assert.equal(poe.calls(), 1, "not sent again");
  assert.deepEqual(t.sleeps, []);
});

Deno.test("a held call that broke, with UPSTREAM_RETRIES=0: upstream_disconnected, not 'could not reach Poe'", async () => {
  await using poe = breakingPoe({ holdMs: HELD_MS });
  await using proxy = await startProxy({ poeUrl: poe.url, env: { UPSTREAM_RETRIES: "0" } });
  const res = await post(proxy.url, chat());
  assert.equal(res.status, 502);
  assert.equal(res.body.error.code, "upstream_disconnected");
  assert.equal(res.headers.get("x-should-retry"), "false");
});

Deno.test("a connection that breaks at once (a stale keep-alive's) is retried", async () => {
  for (const stream of [false, true]) {
    await using fake = await FakePoe.start();
    await using poe = breakingPoe({ holdMs: 0, breaks: 1, relayTo: fake.url });
    await using t = await setup({ baseUrl: poe.url });
    const res = await post(t.proxy.url, chat("", { stream }));
    assert.equal(res.status, 200, `stream: ${stream}`);
    assert.equal(res.headers.get("x-poe-proxy-attempts"), "first:0,retry-network:200");
    assert.equal(poe.calls(), 2);
    assert.equal(fake.chatRequests().length, 1);
  }
});

Deno.test("a TLS handshake Poe held, then broke, is retried: the call was never sent", async () => {
  await using poe = breakingPoe({ holdMs: HELD_MS });
  await using t = await setup({ baseUrl: poe.url.replace("http:", "https:"), retries: 1 });
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 502);
  assert.equal(res.body.error.code, "upstream_unreachable");
  assert.match(res.body.error.message, /after 2 attempt/);
  assert.equal(poe.calls(), 2);
});

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("a client that leaves during a retry backoff stops the retries", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER: "off" } });
  fake.script("status=503,retry-after=5", "");
  const ac = new AbortController();
  const pending = fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "gone-in-backoff" },
    body: JSON.stringify(chat()),
    signal: ac.signal,
  }).catch((err) => err);
  await until(() => fake.chatRequests().length === 1);
  const started = Date.now();
  ac.abort();
  assert.ok((await pending) instanceof Error);
  const mine = (l: string) => l.includes("request_id=gone-in-backoff") && l.includes(" path=");
  await until(() => proxy.logs.some(mine));
  assert.ok(Date.now() - started < 1000, "the backoff ended when the client left");
  const line = proxy.logs.find(mine)!;
  assert.match(line, /status=499/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fake.chatRequests().length, 1, "no further attempt after the client left");
});

Deno.test("a 200 from Poe that holds no answer is a 502 the client is told not to retry", async () => {
  const bodies = [
    { body: "{}", code: "upstream_bad_body", message: /no choices/ },
    { body: '{"choices":[]}', code: "upstream_bad_body", message: /no choices/ },
    { body: "null", code: "upstream_bad_body", message: /no choices/ },
    { body: "<html>oops</html>", code: "upstream_bad_body", message: /not JSON/ },
  ];
  let next = "";
  await using upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(next, { headers: { "content-type": "application/json" } }),
  );
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  for (const b of bodies) {
    next = b.body;
    const res = await post(t.proxy.url, chat());
    assert.equal(res.status, 502, b.body);
    assertOpenAiError(res.body);
    assert.equal(res.body.error.code, b.code, b.body);
    assert.match(res.body.error.message, b.message);
    assert.equal(res.headers.get("x-should-retry"), "false");
  }
});

Deno.test("the openai client does not add its retries to the proxy's: three calls to Poe, not nine", async () => {
  await using t = await setup();
  t.fake.script("status=503", "status=503", "status=503", "status=503", "status=503");
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 2 });
  await assert.rejects(
    client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
    }),
    (err: unknown) => err instanceof OpenAI.APIError && err.status === 503,
  );
  assert.equal(t.bodies().length, 3);
});

Deno.test("a 200 web page (a captive portal) is retried, and never becomes a streamed 200", async () => {
  let calls = 0;
  let pages = 0;
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    if (calls <= pages) {
      return new Response("<html>Sign in to the hotel wifi</html>", {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    return Response.json(completion("Hi!"));
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  pages = 1;
  const ok = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(ok.status, 200);
  assert.match(ok.text, /Hi!/);
  assert.equal(calls, 2);
  // The page was no answer of Poe's: a failed call, status 0 as for a broken opening.
  assert.equal(ok.headers.get("x-poe-proxy-attempts"), "first:0,retry-html:200");
  calls = 0;
  pages = 10;
  const res = await post(t.proxy.url, chat("", { stream: true }));
  assert.equal(res.status, 502);
  assertOpenAiError(res.body);
  assert.equal(res.body.error.code, "upstream_bad_body");
  assert.match(res.body.error.message, /web page/);
  assert.equal(calls, 3);
});

Deno.test("first-byte timeout: the wait for Poe's headers counts toward it, it is not restarted", async () => {
  // Headers after 0.7 s, the first event 0.7 s later: 1.4 s in all, over FIRST_BYTE_TIMEOUT_SECONDS.
  await using upstream = sseUpstream(700, 700, "late");
  // The stream's opening read for an error for 0.1 s, then relayed; or read until the timeout.
  for (const streamStartMs of [100, 5_000]) {
    await using t = await setup({
      baseUrl: `http://127.0.0.1:${upstream.addr.port}`,
      env: { FIRST_BYTE_TIMEOUT_SECONDS: "1", KEEPALIVE_SECONDS: "0.1" },
      streamStartMs,
    });
    const res = await post(t.proxy.url, chat("", { stream: true }));
    assert.equal(res.status, 200);
    assert.match(res.text, /upstream_timeout|FIRST_BYTE_TIMEOUT_SECONDS/);
    assert.doesNotMatch(res.text, /late/);
  }
});

Deno.test("retry-after-ms is honoured like Retry-After", async () => {
  const cases: [Record<string, string>, number][] = [
    [{ "retry-after-ms": "1500" }, 1500],
    [{ "retry-after-ms": "63000" }, 63_000],
  ];
  for (const [hint, ms] of cases) {
    let calls = 0;
    await using upstream = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => {
        if (++calls > 1) {
          return Response.json(completion("Hi"));
        }
        return Response.json({ error: { message: "slow down", type: "rate_limit_error" } }, {
          status: 429,
          headers: hint,
        });
      },
    );
    await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
    const res = await post(t.proxy.url, chat());
    if (ms > 30_000) {
      // Too long to wait here: passed on at once, with the wait said in Retry-After.
      assert.equal(res.status, 429);
      assert.equal(res.headers.get("retry-after"), String(ms / 1000));
      assert.equal(res.body.error.code, "rate_limit_exceeded");
      assert.deepEqual(t.sleeps, []);
    } else {
      assert.equal(res.status, 200);
      assert.deepEqual(t.sleeps, [ms]);
    }
  }
});

Deno.test("a gateway's HTML error page becomes its title, not its markup", async () => {
  await using upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        { status: 502, headers: { "content-type": "text/html" } },
      ),
  );
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}`, retries: 0 });
  const res = await post(t.proxy.url, chat());
  assert.equal(res.status, 502);
  assert.match(res.body.error.message, /^Poe answered 502: 502 Bad Gateway\. /);
  assert.doesNotMatch(res.body.error.message, /</);
});

Deno.test("first-byte timeout: a slow upload does not count toward it", async () => {
  // Poe's headers at once, its first event 0.3 s later.
  await using upstream = sseUpstream(0, 300, "on time");
  await using t = await setup({
    baseUrl: `http://127.0.0.1:${upstream.addr.port}`,
    env: { FIRST_BYTE_TIMEOUT_SECONDS: "1" },
  });
  // A 100 kB body (an image) sent over 1.5 s: longer than the timeout.
  const body = bytesOf(JSON.stringify({
    model: "gpt-4o",
    stream: true,
    messages: [{
      role: "user",
      content: [
        { type: "text", text: "What is this?" },
        { type: "image_url", image_url: { url: `data:image/png;base64,${"A".repeat(100_000)}` } },
      ],
    }],
  }));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(t.proxy.url) });
  await writeAll(
    conn,
    bytesOf(
      "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    ),
  );
  for (let i = 0; i < body.length; i += 10_000) {
    await writeAll(conn, body.subarray(i, i + 10_000));
    await new Promise((r) => setTimeout(r, 150));
  }
  // The whole chunked answer, to the end of the connection.
  let text = "";
  const buf = new Uint8Array(65536);
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  conn.close();
  assert.match(text, /^HTTP\/1\.1 200/);
  assert.match(text, /on time/);
  assert.doesNotMatch(text, /FIRST_BYTE_TIMEOUT_SECONDS/);
});

/** A Poe stand-in that sends its SSE headers after `headersMs` and one answer event `eventMs` later. */
function sseUpstream(
  headersMs: number,
  eventMs: number,
  content: string,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    if (headersMs > 0) await new Promise((r) => setTimeout(r, headersMs));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setTimeout(() => {
          const chunk = {
            id: "c1",
            object: "chat.completion.chunk",
            created: 1,
            model: "gpt-4o",
            choices: [{ index: 0, delta: { content }, finish_reason: "stop" }],
          };
          controller.enqueue(new TextEncoder().encode(`data: ${JSON.stringify(chunk)}\n\n`));
          controller.close();
        }, eventMs);
      },
      cancel: () => clearTimeout(timer),
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
}

/** A non-streamed answer of Poe's with `content`. */
function completion(content: string) {
  return {
    id: "c1",
    object: "chat.completion",
    created: 1,
    model: "gpt-4o",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
  };
}

Deno.test("an answer that also carries an error object is an answer, streamed or not, not retried", async () => {
  let calls = 0;
  await using upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    calls++;
    return Response.json({
      id: "chatcmpl-0123456789abcdef01234567",
      object: "chat.completion",
      created: 1,
      model: "GPT-4o",
      choices: [{
        index: 0,
        message: { role: "assistant", content: "Partial answer" },
        finish_reason: "stop",
      }],
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      error: { message: "moderation warning", type: "server_error", code: 503 },
    });
  });
  await using t = await setup({ baseUrl: `http://127.0.0.1:${upstream.addr.port}` });
  const res = await post(t.proxy.url, chat(""));
  assert.equal(res.status, 200);
  assert.equal(res.body.choices[0].message.content, "Partial answer");
  assert.equal(calls, 1, "its model ran: asking again would bill it again");
  const streamed = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...chat(""), stream: true }),
  });
  assert.equal(streamed.status, 200);
  assert.match(await streamed.text(), /Partial answer[\s\S]*data: \[DONE\]/);
  assert.equal(calls, 2);
});
