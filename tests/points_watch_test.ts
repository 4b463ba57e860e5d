/**
 * @module Points end to end for answers whose cost comes late or may come at all: billed before
 * the proxy saw them end, failed calls Poe may have billed, models without a price.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { ModelRegistry } from "../lib/models.ts";
import { answerWith, lateCosts, setup, until } from "./points_fixture.ts";
import { breakingPoe } from "./raw_http.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Poe bills a JSON answer with a stall when its headers go out: its entry lands while its body is
// still on the way, and the proxy has not seen it end. So does a stream Poe answers with JSON.
const billedEarly = [
  { usage: "usage=none", long: "stall=2000", stream: false },
  { usage: "usage=finish", long: "stall=2000", stream: false },
  { usage: "usage=none", long: "json,stall=2000", stream: true },
];
for (const { usage, long: directives, stream } of billedEarly) {
  Deno.test(`${usage}: an answer ending while another of its model, billed before its body (${directives}, stream: ${stream}) came, does not take its cost`, async () => {
    await using t = await setup({ fake: { historyDelayMs: 500 } });
    const long = answerWith(t.proxy.url, {
      text: "A".repeat(2000),
      reply: "long",
      directives,
      stream,
    });
    await sleep(300);
    const short = await answerWith(t.proxy.url, {
      text: "short",
      reply: "short",
      directives: usage,
      stream: true,
    });
    for (const a of [short, await long]) {
      assert.ok(a.estimated || a.points === a.own, `shown ${a.points} as real, cost ${a.own}`);
    }
    // With its token counts, the short one still finds its own entry.
    if (usage === "usage=finish") assert.equal(short.estimated, false);
  });
}

Deno.test("a 504 of Poe's gateway: the model may have run, so its estimate counts and its entry is watched for", async () => {
  await using t = await setup({ fake: { historyDelayMs: 300 } });
  /** A 504, then the entry Poe writes when it bills the run all the same (the fake cannot). */
  const gatewayTimeout = async () => {
    t.fake.script("status=504");
    const failed = await answerWith(t.proxy.url, {
      text: "a long task",
      reply: "x",
      directives: "",
      stream: false,
      expectError: true,
    });
    assert.equal(failed.status, 504);
    t.fake.addHistory({
      bot_name: "GPT-4o",
      cost_points: 900,
      cost_breakdown_in_points: {
        Input: "400 points (390 tokens)",
        Output: "500 points (500 tokens)",
        Total: "900 points",
      },
    });
    return failed;
  };
  const alone = await gatewayTimeout();
  assert.ok(t.usage.poller.spentSinceSnapshot > 0, "the estimate counts against the balance");
  await until(() => lateCosts(t.proxy.logs).includes("900"));
  const line = t.proxy.logs.find((l) => l.includes("late cost") && l.includes("points=900"))!;
  assert.ok(line.includes(alone.id!), line);
  // The next answer of the model, without token counts, does not take such an entry as its own.
  await gatewayTimeout();
  const next = await answerWith(t.proxy.url, {
    text: "next",
    reply: "next",
    directives: "usage=none",
    stream: true,
  });
  assert.ok(next.estimated || next.points === next.own, `shown ${next.points} as real`);
});

Deno.test("a call whose connection broke after Poe held it: not sent again, its estimate counts and its entry is watched for", async () => {
  await using t = await setup({
    fake: { historyDelayMs: 300 },
    // Poe takes the call and runs the model, then the connection breaks before its headers.
    front: (fake) => breakingPoe({ holdMs: 1500, breaks: 2, relayTo: fake }),
  });
  /** A call that breaks, then the entry Poe writes when it bills the run all the same. */
  const broken = async (stream: boolean) => {
    const failed = await answerWith(t.proxy.url, {
      text: "a long task",
      reply: "x",
      directives: "",
      stream,
      expectError: true,
    });
    assert.equal(failed.status, 502);
    t.fake.addHistory({
      bot_name: "GPT-4o",
      cost_points: 900,
      cost_breakdown_in_points: {
        Input: "400 points (390 tokens)",
        Output: "500 points (500 tokens)",
        Total: "900 points",
      },
    });
    return failed;
  };
  const alone = await broken(false);
  assert.equal(t.front!.calls(), 1, "not sent again: the model may have run");
  assert.ok(t.usage.poller.spentSinceSnapshot > 0, "the estimate counts against the balance");
  await until(() => lateCosts(t.proxy.logs).includes("900"));
  const line = t.proxy.logs.find((l) => l.includes("late cost") && l.includes("points=900"))!;
  assert.ok(line.includes(alone.id!), line);
  // A streamed call breaks the same way; the next answer of the model, without token counts, does
  // not take its entry as its own.
  await broken(true);
  assert.equal(t.front!.calls(), 2);
  const next = await answerWith(t.proxy.url, {
    text: "next",
    reply: "next",
    directives: "usage=none",
    stream: true,
  });
  assert.ok(next.estimated || next.points === next.own, `shown ${next.points} as real`);
  assert.equal(t.fake.chatRequests().length, 1, "only the next answer reached the fake");
});

Deno.test("a call the first-byte deadline ended: watched for, its estimate counted meanwhile", async () => {
  await using t = await setup({ env: { FIRST_BYTE_TIMEOUT_SECONDS: "1" } });
  for (const stream of [false, true]) {
    const timedOut = await answerWith(t.proxy.url, {
      text: "slow",
      reply: "x",
      directives: "slow-first=3000",
      stream,
      expectError: true,
    });
    assert.equal(timedOut.status, 504);
  }
  assert.equal(t.usage.costs.pending, 2);
  assert.ok(t.usage.poller.spentSinceSnapshot > 0);
});

Deno.test("a non-streamed answer still coming when the SDK's timeout ends: one call, a 504 it does not retry, watched for", async () => {
  await using t = await setup();
  // The SDK's defaults: 2 retries, which a timed-out call would get. It says its timeout when it
  // is set for the request (X-Stainless-Timeout), not for the client.
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k" });
  for (const model of ["gpt-4o", "Imagen-4"]) {
    const started = performance.now();
    await assert.rejects(
      client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "Slow, please. [[fake: slow-first=4000]]" }],
      }, { timeout: 2_000 }),
      (err: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(err.status, 504, `${model}: ${err}`);
        assert.equal(err.code, "upstream_timeout");
        assert.match(err.message, /client's timeout \(2 s\) was about to end/);
        return true;
      },
    );
    assert.ok(performance.now() - started < 2_000, "answered before the SDK gave up");
  }
  assert.equal(t.fake.chatRequests().length, 2, "one call each, not three");
  assert.equal(t.usage.costs.pending, 2, "both watched for in Poe's history");
  // The Python SDK's read timeout says the same.
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-stainless-read-timeout": "1.5" },
    body: JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Slow. [[fake: slow-first=3000]]" }],
    }),
  });
  assert.equal(res.status, 504);
  assert.equal(res.headers.get("x-should-retry"), "false");
  await res.body?.cancel();
});

Deno.test("the SDK's timeout ending in a pause between tries stops no call: nothing is watched", async () => {
  await using t = await setup();
  t.fake.script("status=503,retry-after=5", "");
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-stainless-timeout": "2" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] }),
  });
  assert.equal(res.status, 504);
  await res.body?.cancel();
  assert.equal(t.fake.chatRequests().length, 1);
  assert.equal(t.usage.costs.pending, 0, "Poe refused the one call: nothing to look for");
  assert.equal(t.usage.poller.spentSinceSnapshot, 0);
});

Deno.test("two agents' tool calls at once each get their own real cost, told apart by their prompts", async () => {
  await using t = await setup();
  const tools = [{
    type: "function",
    function: { name: "read_file", parameters: { type: "object", properties: {} } },
  }];
  const ask = (who: string) =>
    fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "GPT-4o",
        tools,
        messages: [{ role: "user", content: `${who}: fix the bug [[fake: tool-calls=1]]` }],
      }),
    }).then((r) => r.json());
  // Both at Poe at once, as two agents' windows: by order neither could be paired.
  const release = t.fake.hold();
  const answers = Promise.all([ask("agent one"), ask("agent two, with a longer prompt")]);
  await until(() => t.fake.chatRequests().length === 2);
  release();
  const [a, b] = await answers;
  assert.equal(a.choices[0].finish_reason, "tool_calls");
  assert.notEqual(a.usage.prompt_tokens, b.usage.prompt_tokens);
  await until(() => lateCosts(t.proxy.logs).length === 2, 8_000);
  const own = t.fake.historyEntries().map((e) => String(e.cost_points)).sort();
  assert.deepEqual(lateCosts(t.proxy.logs).sort(), own);
});

Deno.test("a step back of the wall clock (NTP) does not hold answers waiting for their cost", async () => {
  const wall = Date.now;
  let offset = 0;
  // Installed first: the proxy's clocks are taken when it starts.
  Date.now = () => wall() + offset;
  // While the answer waits for its cost, the clock is set back 20 s.
  const step = setTimeout(() => offset = -20_000, 250);
  try {
    await using t = await setup({
      fake: { historyDelayMs: 300_000 },
      env: { FOOTER_WAIT_MS: "500" },
    });
    const started = performance.now();
    for (const stream of [false, true]) {
      const answer = await answerWith(t.proxy.url, {
        text: "hello",
        reply: "hi",
        directives: "",
        stream,
      });
      assert.ok(answer.estimated, "no cost found in time: the estimate");
    }
    assert.ok(performance.now() - started < 5_000, "each waited its 500 ms, not the step too");
  } finally {
    clearTimeout(step);
    Date.now = wall;
  }
});

Deno.test("a model without a price: its real cost, found after its answer, counts against POINTS_CUTOFF", async () => {
  const registry = ModelRegistry.parse("models:\n  text:\n    - GPT-4o\n", "bare.yaml");
  await using t = await setup({
    registry,
    fake: { historyDelayMs: 400 },
    env: { FOOTER_WAIT_MS: "0", USAGE_POLL_SECONDS: "600" },
  });
  const answer = await answerWith(t.proxy.url, {
    text: "hello",
    reply: "hi",
    directives: "",
    stream: false,
    noFooter: true,
  });
  assert.equal(t.usage.poller.spentSinceSnapshot, 0, "no estimate to count");
  await until(() => lateCosts(t.proxy.logs).length === 1);
  assert.equal(lateCosts(t.proxy.logs)[0], String(answer.own));
  assert.equal(t.usage.poller.spentSinceSnapshot, answer.own);
});

Deno.test("an agent's loop of answers without token counts, each sent as the last one came: each cost found during the loop", async () => {
  await using t = await setup();
  const n = 6;
  const found: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-poe-proxy-footer": "off" },
      body: JSON.stringify({
        model: "GPT-4o",
        messages: [{
          role: "user",
          content: `step ${i} [[fake: reply=r${i},usage=none,slow-first=300]]`,
        }],
      }),
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    found.push(lateCosts(t.proxy.logs).length);
  }
  // The next request is at Poe when an answer's entry is read: it was not billed yet, and takes
  // nothing from the order.
  assert.ok(found[n - 1] >= n - 2, `late costs found after each answer: ${found}`);
});

for (
  const [directive, stream] of [
    ["open-error=504", true],
    ["json-error=504", true],
    ["json-error=504", false],
  ] as const
) {
  Deno.test(`Poe's refusal in a 200 body naming 504 (${directive}, ${stream ? "streamed" : "not streamed"}) is not a gateway timeout: nothing counted or watched`, async () => {
    await using t = await setup();
    const failed = await answerWith(t.proxy.url, {
      text: "a",
      reply: "x",
      directives: `${directive},error-shape=documented`,
      stream,
      expectError: true,
    });
    assert.equal(failed.status, 504);
    assert.equal(t.usage.poller.spentSinceSnapshot, 0);
    assert.equal(t.usage.costs.pending, 0);
  });
}
