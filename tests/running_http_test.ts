/**
 * @module Requests still running hold points against POINTS_CUTOFF, end to end: the proxy on a real
 * port, the fake Poe holding answers so that a burst is in flight at once, and every way a request
 * ends letting go of what it held.
 */
import assert from "node:assert/strict";
import { FakePoe, type FakePoeOptions } from "./fake_poe.ts";
import { startProxy, testConfig, testRegistry } from "./harness.ts";
import { createUsageService } from "../lib/usage_service.ts";
import { memoryLogger } from "../lib/log.ts";
import { createApp } from "../lib/app.ts";
import { ModelRegistry } from "../lib/models.ts";
import { parseMetrics, sample } from "./prometheus_text.ts";

const CUTOFF = 100_000;
const registry = await testRegistry();
const gpt4o = registry.lookup("gpt-4o")!;
/** What one request of {@linkcode ask} holds: GPT-4o's 140 per message, 35 per 1,000 tokens. */
const HELD = registry.estimatePoints(gpt4o, Math.ceil("Hello there".length / 4), 1000)!.points;

/** The fake Poe with a balance `margin` points above the cutoff, and the proxy serving `models`. */
async function setup(
  margin: number,
  env: Record<string, string> = {},
  fake: FakePoeOptions = {},
  models: ModelRegistry = registry,
) {
  const poe = await FakePoe.start({ balance: CUTOFF + margin, ...fake });
  const all = { POINTS_CUTOFF: String(CUTOFF), FOOTER_WAIT_MS: "1500", ...env };
  const logger = memoryLogger();
  const usage = createUsageService(testConfig({ POE_BASE_URL: poe.url, ...all }), { logger });
  usage.poller.start();
  await usage.poller.refresh();
  const proxy = await startProxy({ poeUrl: poe.url, env: all, deps: { usage }, registry: models });
  const holds: (() => void)[] = [];
  return {
    fake: poe,
    proxy,
    usage,
    /** What requests still running hold now. */
    running: () => usage.running.total,
    /** {@linkcode FakePoe.hold}, released at the end whatever happened (else the proxy's close waits). */
    hold: () => {
      const release = poe.hold();
      holds.push(release);
      return release;
    },
    async [Symbol.asyncDispose]() {
      for (const release of holds) release();
      await proxy.close();
      await usage.close();
      await poe.close();
    },
  };
}

/**
 * Asks the proxy; `fake` is a directive for the fake Poe (in a marker of the message, which the
 * proxy passes on as it is).
 */
function ask(
  url: string,
  over: Record<string, unknown> = {},
  fake = "",
  signal?: AbortSignal,
): Promise<Response> {
  const content = fake ? `Hello there [[fake: ${fake}]]` : "Hello there";
  return fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content }], ...over }),
    signal,
  });
}

/** `actual` is `expected` give or take the few tokens a fake directive adds to a message. */
function assertNear(actual: number, expected: number, message = ""): void {
  assert.ok(Math.abs(actual - expected) < 0.02 * expected, `${actual} ≉ ${expected} ${message}`);
}

async function until(check: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The text of an answer, streamed or not. */
async function answerText(res: Response): Promise<string> {
  const text = await res.text();
  if (!res.headers.get("content-type")?.includes("event-stream")) {
    return JSON.parse(text).choices[0].message.content;
  }
  return text.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) =>
    JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? ""
  ).join("");
}

/**
 * Sends a request while the fake holds answers, and returns its response once the proxy answered it
 * itself, or null when it reached the fake instead (it is answered once the hold ends).
 */
async function whileHeld(t: Awaited<ReturnType<typeof setup>>): Promise<Response | null> {
  const before = t.fake.chatRequests().length;
  let response: Response | null = null;
  const pending = ask(t.proxy.url).then((res) => response = res);
  await until(() => response !== null || t.fake.chatRequests().length > before);
  if (response === null) {
    void pending.then((res) => res.body?.cancel());
    return null;
  }
  return response;
}

/** `balance_points` of an answer's usage, streamed or not. */
async function balanceShown(res: Response): Promise<number> {
  const text = await res.text();
  if (!res.headers.get("content-type")?.includes("event-stream")) {
    return JSON.parse(text).usage.balance_points;
  }
  const usage = text.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) =>
    JSON.parse(e.slice(6)).usage
  ).find((u) => u);
  return usage.balance_points;
}

/**
 * Sends `count` requests at once while the fake holds its answers: those that pass reach it and
 * wait there; the others are answered by the proxy. Returns them all once every one has either
 * reached the fake or been answered, and the function that lets the fake answer.
 */
async function burst(
  t: Awaited<ReturnType<typeof setup>>,
  count: number,
  over: Record<string, unknown> = {},
) {
  const release = t.hold();
  let answered = 0;
  const responses = Array.from(
    { length: count },
    () =>
      ask(t.proxy.url, over).then((res) => {
        answered++;
        return res;
      }),
  );
  await until(() => t.fake.chatRequests().length + answered === count);
  return { responses, release, reached: t.fake.chatRequests().length };
}

for (const stream of [false, true]) {
  const kind = stream ? "streamed" : "non-streamed";
  Deno.test(`a ${kind} burst just above the cutoff: only what the margin holds reaches Poe`, async () => {
    // Room for two requests: with two running, a third would take the balance below the cutoff.
    await using t = await setup(1.5 * HELD);
    const over = { stream, ...(stream ? { stream_options: { include_usage: true } } : {}) };
    const { responses, release, reached } = await burst(t, 5, over);
    assert.equal(reached, 2);
    assert.deepEqual(t.running(), { points: 2 * HELD, count: 2 });
    release();
    const answers = await Promise.all(responses);
    const paused = answers.filter((r) => r.headers.get("x-poe-proxy-guard") === "paused");
    assert.equal(paused.length, 3);
    for (const res of answers) assert.equal(res.status, 200);
    const texts = await Promise.all(answers.map((r) => answerText(r.clone())));
    const refusals = texts.filter((x) => x.startsWith("⏸️"));
    assert.equal(refusals.length, 3);
    const shown = Math.round(CUTOFF + 1.5 * HELD - 2 * HELD).toLocaleString("en-US");
    for (const text of refusals) {
      assert.match(
        text,
        new RegExp(
          `balance, counting requests still running, is about ${shown} points \\(.* less about ${
            Math.round(2 * HELD)
          } points for 2 requests still running\\), below the POINTS_CUTOFF`,
        ),
      );
    }
    // The balance the answer shows is the one the check compared.
    for (const res of paused) {
      const balance = await balanceShown(res);
      assert.equal(balance, Math.round(CUTOFF + 1.5 * HELD - 2 * HELD));
    }
    assert.equal(t.fake.chatRequests().length, 2);
    // Both answered and settled: they hold nothing now, and what they cost is counted instead.
    assert.deepEqual(t.running(), { points: 0, count: 0 });
    assert.ok(t.usage.poller.spentSinceSnapshot > 0);
    // Their real costs leave room for another request: it reaches Poe.
    const next = await ask(t.proxy.url, { stream });
    assert.equal(next.headers.get("x-poe-proxy-guard"), null);
    await next.body?.cancel();
    assert.equal(t.fake.chatRequests().length, 3);
    assert.ok(!t.proxy.logs.some((l) => l.includes("points expired")));
  });
}

Deno.test("a burst to a model without a price holds a stand-in's estimate: only what the margin holds reaches Poe", async () => {
  // Web-Search has no price: while it runs, each request holds what GPT-4o, the dearest priced
  // text model, would for it (priced as in the tests' registry: HELD).
  const models = ModelRegistry.parse(
    "models:\n  text:\n    - Web-Search\n    - {poe_name: GPT-4o, base: 140, per_1k_tokens: 35}\n" +
      "    - {poe_name: GPT-4o-mini, base: 9, per_1k_tokens: 2}\n",
    "inline.yaml",
  );
  await using t = await setup(1.5 * HELD, {}, {}, models);
  const { responses, release, reached } = await burst(t, 5, { model: "web-search" });
  assert.equal(reached, 2);
  assert.deepEqual(t.running(), { points: 2 * HELD, count: 2, standIns: 2 });
  release();
  const answers = await Promise.all(responses);
  const paused = answers.filter((r) => r.headers.get("x-poe-proxy-guard") === "paused");
  assert.equal(paused.length, 3);
  for (const res of paused) {
    assert.match(
      await answerText(res),
      /less about \d+ points for 2 requests still running \(held at a stand-in: the dearest priced model of the same modality, for models without a price in models\.yaml\)\), below the POINTS_CUTOFF/,
    );
  }
  await Promise.all(answers.filter((r) => !paused.includes(r)).map((r) => r.text()));
  assert.equal(t.fake.chatRequests().length, 2);
  const sent = t.proxy.logs.filter((l) => l.includes("held_as=GPT-4o"));
  assert.equal(sent.length, 2, t.proxy.logs.join("\n"));
});

for (const stream of [false, true]) {
  Deno.test(`one after another (stream=${stream}), requests to a model without a price stop at the cutoff as a priced model's do`, async () => {
    const models = ModelRegistry.parse(
      "models:\n  text:\n    - Web-Search\n    - {poe_name: GPT-4o, base: 140, per_1k_tokens: 35}\n",
      "inline.yaml",
    );
    // An agent's loop: each request after the last ended; Poe's history shows costs 10 s late.
    const loop = async (model: string) => {
      await using t = await setup(1.5 * HELD, { FOOTER_WAIT_MS: "300" }, {
        historyDelayMs: 10_000,
      }, models);
      const guards: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model,
            stream,
            messages: [{ role: "user", content: "Hello there" }],
          }),
        });
        await res.text();
        guards.push(res.headers.get("x-poe-proxy-guard") ?? "sent");
      }
      return guards;
    };
    const priced = await loop("gpt-4o");
    assert.deepEqual(priced, ["sent", "sent", "paused", "paused", "paused"]);
    // The stand-in each held counts as spent once it ended, until its cost is found.
    assert.deepEqual(await loop("web-search"), priced);
  });
}

Deno.test("the balance an answer of a model without a price shows does not take its stand-in off", async () => {
  const models = ModelRegistry.parse(
    "models:\n  text:\n    - Web-Search\n    - {poe_name: GPT-4o, base: 140, per_1k_tokens: 35}\n",
    "inline.yaml",
  );
  await using t = await setup(
    10 * HELD,
    { FOOTER_WAIT_MS: "300" },
    { historyDelayMs: 10_000 },
    models,
  );
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "web-search",
      messages: [{ role: "user", content: "Hello there [[fake: words=3000]]" }],
    }),
  });
  const body = await res.json();
  assert.equal(res.headers.get("x-poe-points"), null, "no cost known yet, no price");
  assert.equal(res.headers.get("x-poe-balance"), String(Math.round(CUTOFF + 10 * HELD)));
  assert.equal(body.usage.balance_points, Math.round(CUTOFF + 10 * HELD));
  // The guards still count it meanwhile, priced at the answer's own tokens.
  const standIn = models.standIn(
    models.lookup("web-search")!,
    body.usage.prompt_tokens,
    body.usage.completion_tokens,
  )!;
  assert.equal(standIn.id, "GPT-4o");
  assert.ok(standIn.estimate.points > HELD, "the answer is longer than the 1,000 tokens held");
  assert.equal(t.usage.poller.spentSinceSnapshot, standIn.estimate.points);
});

Deno.test("a streamed answer with FOOTER off lets go of what it held once its points are counted", async () => {
  await using t = await setup(0.5 * HELD, { FOOTER: "off" });
  const { responses, release, reached } = await burst(t, 3, { stream: true });
  assert.equal(reached, 1);
  release();
  const answers = await Promise.all(responses);
  assert.equal(answers.filter((r) => r.headers.get("x-poe-proxy-guard") === "paused").length, 2);
  await Promise.all(answers.map((r) => r.text()));
  // The points are settled in the background once the stream ended: never counted twice, nor
  // not at all, on the way.
  await until(() => t.usage.poller.spentSinceSnapshot > 0);
  assert.deepEqual(t.running(), { points: 0, count: 0 });
});

Deno.test("with a cost cap, what a request holds is priced by the cap's own count", async () => {
  await using t = await setup(0.5 * HELD, { MAX_POINTS_PER_MESSAGE: "100000" });
  const { responses, release, reached } = await burst(t, 3);
  assert.equal(reached, 1);
  // The cap counted the message with the tokenizer, its overhead included: not a fourth of its
  // characters.
  const counted = t.running().points;
  assert.ok(counted > HELD && counted < HELD + 1, String(counted));
  release();
  const answers = await Promise.all(responses);
  assert.equal(answers.filter((r) => r.headers.get("x-poe-proxy-guard") === "paused").length, 2);
  await Promise.all(answers.map((r) => r.body?.cancel()));
  assert.deepEqual(t.running(), { points: 0, count: 0 });
});

Deno.test("a single request passes a balance its own estimate would take below the cutoff", async () => {
  await using t = await setup(1);
  const res = await ask(t.proxy.url);
  assert.equal(res.headers.get("x-poe-proxy-guard"), null);
  assert.equal(res.status, 200);
  await res.body?.cancel();
  assert.equal(t.fake.chatRequests().length, 1);
});

for (const status of [500, 400]) {
  Deno.test(`a request Poe refuses with ${status} (after its retries) lets go of what it held`, async () => {
    await using t = await setup(0.5 * HELD);
    const release = t.hold();
    const failing = ask(t.proxy.url, {}, `status=${status}`);
    await until(() => t.fake.chatRequests().length === 1);
    // While it runs, it holds its points: another request is paused.
    const second = await whileHeld(t);
    assert.equal(second?.headers.get("x-poe-proxy-guard"), "paused");
    assert.match(await answerText(second), /for 1 request still running/);
    assert.equal(t.running().count, 1);
    release();
    const failed = await failing;
    assert.equal(failed.status, status);
    await failed.body?.cancel();
    assert.ok(t.fake.chatRequests().length > 1, "retried");
    assert.deepEqual(t.running(), { points: 0, count: 0 });
    const calls = t.fake.chatRequests().length;
    const third = await ask(t.proxy.url);
    assert.equal(third.headers.get("x-poe-proxy-guard"), null);
    await third.body?.cancel();
    assert.equal(t.fake.chatRequests().length, calls + 1);
  });
}

Deno.test("/metrics shows what requests still running hold, then what was spent", async () => {
  await using t = await setup(10 * HELD);
  const scrape = async () => parseMetrics(await (await fetch(`${t.proxy.url}/metrics`)).text());
  const release = t.hold();
  const answer = ask(t.proxy.url);
  await until(() => t.fake.chatRequests().length === 1);
  let m = await scrape();
  assertNear(sample(m, "poe_proxy_points_running")!, HELD);
  assert.equal(sample(m, "poe_proxy_points_unshown"), 0);
  release();
  await (await answer).text();
  m = await scrape();
  assert.equal(sample(m, "poe_proxy_points_running"), 0);
  assert.equal(sample(m, "poe_proxy_points_unshown"), t.usage.poller.spentSinceSnapshot);
  assert.ok(t.usage.poller.spentSinceSnapshot > 0);
});

Deno.test("a client that leaves before Poe answers lets go of what its request held", async () => {
  await using t = await setup(0.5 * HELD);
  const release = t.hold();
  const abort = new AbortController();
  const leaving = ask(t.proxy.url, {}, "", abort.signal);
  await until(() => t.fake.chatRequests().length === 1);
  const paused = await whileHeld(t);
  assert.equal(paused?.headers.get("x-poe-proxy-guard"), "paused");
  await paused.body?.cancel();
  assert.equal(t.running().count, 1);
  abort.abort();
  await assert.rejects(leaving);
  await until(() => t.running().count === 0);
  assert.equal(t.running().points, 0);
  await until(() => t.proxy.logs.some((l) => l.includes("status=499")));
  release();
  const next = await ask(t.proxy.url);
  assert.equal(next.headers.get("x-poe-proxy-guard"), null);
  await next.body?.cancel();
  assert.equal(t.fake.chatRequests().length, 2);
});

Deno.test("a client that leaves a stream half-way: what its request held counts on as spent", async () => {
  await using t = await setup(0.5 * HELD);
  const abort = new AbortController();
  const res = await ask(
    t.proxy.url,
    { stream: true },
    "words=200,chunks=200,stall=50",
    abort.signal,
  );
  const reader = res.body!.getReader();
  assert.equal((await reader.read()).done, false);
  const paused = await ask(t.proxy.url);
  assert.equal(paused.headers.get("x-poe-proxy-guard"), "paused");
  await paused.body?.cancel();
  assert.equal(t.running().count, 1);
  abort.abort();
  await reader.cancel().catch(() => {});
  await until(() => t.running().count === 0);
  assert.equal(t.running().points, 0);
  await until(() => t.proxy.logs.some((l) => l.includes("end=client-gone")));
  // Poe may bill the part it answered: the estimate is spent until its real cost is found.
  assertNear(t.usage.poller.spentSinceSnapshot, HELD);
  const next = await ask(t.proxy.url);
  assert.equal(next.headers.get("x-poe-proxy-guard"), "paused");
  await next.body?.cancel();
});

Deno.test("a stream that breaks, or Poe leaves silent: what its request held counts on as spent", async () => {
  await using t = await setup(2.5 * HELD, { IDLE_TIMEOUT_SECONDS: "1" });
  let spent = 0;
  for (const directive of ["drop", "midstream-error", "stall=3000"]) {
    const res = await ask(t.proxy.url, { stream: true }, directive);
    assert.equal(res.status, 200, directive);
    assert.match(await res.text(), /"error"/, directive);
    assert.deepEqual(t.running(), { points: 0, count: 0 }, directive);
    // Poe began the answer and may bill it: counted at its estimate, and watched for.
    spent += HELD;
    assertNear(t.usage.poller.spentSinceSnapshot, spent, directive);
  }
  const next = await ask(t.proxy.url);
  assert.equal(next.headers.get("x-poe-proxy-guard"), "paused");
  await next.body?.cancel();
});

Deno.test("a non-streamed answer Poe began but that was never read: what its request held counts on as spent", async () => {
  // Poe bills it at once, and its history shows it 30 s later: the estimate stands meanwhile.
  await using t = await setup(1.5 * HELD, { FIRST_BYTE_TIMEOUT_SECONDS: "1" }, {
    historyDelayMs: 30_000,
  });
  // The body comes 3 s after the headers: past the answer's deadline (504).
  const late = await ask(t.proxy.url, {}, "stall=3000");
  assert.equal(late.status, 504);
  await late.body?.cancel();
  assert.deepEqual(t.running(), { points: 0, count: 0 });
  assertNear(t.usage.poller.spentSinceSnapshot, HELD);
  // The client leaves while the body is awaited.
  const abort = new AbortController();
  const leaving = ask(t.proxy.url, {}, "stall=3000", abort.signal);
  await until(() => t.fake.chatRequests().length === 2);
  await new Promise((r) => setTimeout(r, 200));
  abort.abort();
  await assert.rejects(leaving);
  await until(() => t.proxy.logs.some((l) => l.includes("status=499")));
  assert.deepEqual(t.running(), { points: 0, count: 0 });
  assertNear(t.usage.poller.spentSinceSnapshot, 2 * HELD);
  const next = await ask(t.proxy.url);
  assert.equal(next.headers.get("x-poe-proxy-guard"), "paused");
  await next.body?.cancel();
});

Deno.test("a JSON answer to a stream that Poe began but that was never read counts on as spent", async () => {
  // Some bots answer a stream with JSON, once their model is done: billed.
  await using t = await setup(0.5 * HELD, { FIRST_BYTE_TIMEOUT_SECONDS: "1" }, {
    historyDelayMs: 30_000,
  });
  const late = await ask(t.proxy.url, { stream: true }, "json,stall=3000");
  assert.equal(late.status, 504);
  await late.body?.cancel();
  assert.deepEqual(t.running(), { points: 0, count: 0 });
  assertNear(t.usage.poller.spentSinceSnapshot, HELD);
  const next = await ask(t.proxy.url);
  assert.equal(next.headers.get("x-poe-proxy-guard"), "paused");
  await next.body?.cancel();
});

Deno.test("an answer that was never read: its real cost takes the estimate's place once found", async () => {
  await using t = await setup(1.5 * HELD, { FIRST_BYTE_TIMEOUT_SECONDS: "1" }, {
    historyDelayMs: 300,
  });
  const late = await ask(t.proxy.url, {}, "stall=3000");
  assert.equal(late.status, 504);
  await late.body?.cancel();
  // The fake bills 10 points plus the tokens: far less than the estimate's 140 per message.
  await until(() => t.usage.poller.spentSinceSnapshot < 0.5 * HELD);
  assert.ok(t.usage.poller.spentSinceSnapshot > 0);
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
});

Deno.test("an error Poe sends with a 200 counts nothing: the request only lets go of what it held", async () => {
  await using t = await setup(0.5 * HELD, { KEEPALIVE_SECONDS: "1" });
  // Not streamed: Poe's refusal, with its own status once the retries are spent.
  const res = await ask(t.proxy.url, {}, "json-error=500");
  assert.equal(res.status, 500);
  assert.equal(t.fake.chatRequests().length, 3);
  await res.body?.cancel();
  assert.deepEqual(t.running(), { points: 0, count: 0 });
  assert.equal(t.usage.poller.spentSinceSnapshot, 0);
  // A stream relayed after its opening wait (1 s here) whose first event after the role chunk is
  // Poe's error: refused, not begun.
  for (const code of [500, 429]) {
    const opened = await ask(t.proxy.url, { stream: true }, `open-error=${code},stall=1500`);
    assert.equal(opened.status, 200);
    assert.match(await opened.text(), /"error"/);
    assert.deepEqual(t.running(), { points: 0, count: 0 });
    assert.equal(t.usage.poller.spentSinceSnapshot, 0, String(code));
  }
  const next = await ask(t.proxy.url);
  assert.equal(next.headers.get("x-poe-proxy-guard"), null);
  await next.body?.cancel();
});

Deno.test("requests cut by the shutdown let go of what they held, answered later or not", async () => {
  await using fake = await FakePoe.start();
  const app = createApp({
    config: testConfig({ POE_BASE_URL: fake.url }),
    version: "t",
    registry: () => registry,
    logger: memoryLogger(),
  });
  const chat = (stream: boolean, content: string) =>
    app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o", stream, messages: [{ role: "user", content }] }),
      }),
    );
  try {
    const streamed = await chat(true, "Hi [[fake: stall=200,chunks=50]]");
    const release = fake.hold();
    const waiting = chat(false, "Hi");
    await until(() => fake.chatRequests().length === 2);
    assert.equal(app.usage.running.total.count, 2);
    assert.equal(app.cutOpen(), 2);
    assert.deepEqual(app.usage.running.total, { points: 0, count: 0 });
    await streamed.body?.cancel();
    // Poe answers the one not streamed after all: its points are counted, nothing held again.
    release();
    await (await waiting).body?.cancel();
    assert.deepEqual(app.usage.running.total, { points: 0, count: 0 });
  } finally {
    await app.close();
  }
});
