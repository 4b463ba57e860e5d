/** @module Tests of the fake Poe server, over real TCP on port 0. */

import assert from "node:assert/strict";
import { DEFAULT_REASONING, DEFAULT_REPLY, FakePoe, parseDirectives } from "./fake_poe.ts";

const KEY = "test-poe-key";

function post(
  fake: FakePoe,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${fake.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal,
  });
}

function get(fake: FakePoe, path: string, key: string | null = KEY): Promise<Response> {
  return fetch(`${fake.url}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
}

const hi = (text = "Say hello") => [{ role: "user", content: text }];

// deno-lint-ignore no-explicit-any
type Json = any;

/** Reads a whole SSE body: the parsed `data:` payloads (`[DONE]` kept as a string) and the raw text. */
async function sse(res: Response): Promise<{ events: Json[]; raw: string }> {
  const raw = await res.text();
  const events = raw.split(/\r?\n\r?\n/).filter((e) => e.startsWith("data: ")).map((e) => {
    const data = e.slice(6);
    return data === "[DONE]" ? data : JSON.parse(data);
  });
  return { events, raw };
}

function wait(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await wait(5);
  }
}

Deno.test("FakePoe non-streamed answer has Poe's recorded shape and echoes the model spelling", async () => {
  await using fake = await FakePoe.start();
  const res = await post(fake, { model: "gpt-4O", messages: hi("12345678") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("x-ratelimit-limit-requests"), "500");
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "499");
  assert.match(res.headers.get("x-ratelimit-reset-requests")!, /^\d+s$/);
  assert.equal(res.headers.get("x-poe-feature-active"), "chat-completions-legacy");
  const body = await res.json();
  assert.match(body.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.deepEqual(Object.keys(body), ["id", "object", "created", "model", "choices", "usage"]);
  assert.equal(body.object, "chat.completion");
  assert.ok(Math.abs(body.created - Date.now() / 1000) < 5);
  assert.equal(body.model, "gpt-4O");
  assert.deepEqual(body.choices, [{
    index: 0,
    message: { role: "assistant", content: DEFAULT_REPLY },
    finish_reason: "stop",
  }]);
  assert.deepEqual(body.usage, { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7 });
  const [rec] = fake.chatRequests();
  assert.equal(rec.headers.authorization, `Bearer ${KEY}`);
  assert.deepEqual(rec.body, { model: "gpt-4O", messages: hi("12345678") });
});

Deno.test("FakePoe streams usage on the finish chunk, on a separate chunk, or not at all", async () => {
  await using fake = await FakePoe.start();
  const cases: [Record<string, unknown>, string, "finish" | "separate" | "none"][] = [
    [{}, "", "finish"],
    [{ stream_options: { include_usage: true } }, "", "separate"],
    [{ stream_options: { include_usage: true } }, "usage=finish", "finish"],
    [{}, "usage=separate", "separate"],
    [{}, "usage=none", "none"],
  ];
  for (const [extra, directives, where] of cases) {
    const headers: Record<string, string> = directives ? { "x-fake-poe": directives } : {};
    const res = await post(
      fake,
      { model: "GPT-4o", messages: hi(), stream: true, ...extra },
      headers,
    );
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const { events } = await sse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === "GPT-4o"));
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    assert.equal(text, DEFAULT_REPLY);
    const finishIdx = chunks.findIndex((c) => c.choices[0]?.finish_reason === "stop");
    const withUsage = chunks.filter((c) => c.usage);
    if (where === "none") assert.equal(withUsage.length, 0);
    if (where === "finish") {
      assert.equal(finishIdx, chunks.length - 1);
      assert.deepEqual(withUsage, [chunks[finishIdx]]);
    }
    if (where === "separate") {
      assert.equal(finishIdx, chunks.length - 2);
      assert.deepEqual(chunks.at(-1).choices, []);
      assert.deepEqual(withUsage, [chunks.at(-1)]);
      assert.equal(withUsage[0].usage.total_tokens, 8);
    }
  }
});

Deno.test("FakePoe stream variants: no-role, chunks, crlf, comment, no-done, no-finish", async () => {
  await using fake = await FakePoe.start();
  const stream = (directives: string) =>
    post(fake, { model: "GPT-4o", messages: hi(), stream: true }, { "x-fake-poe": directives });
  let { events, raw } = await sse(await stream("no-role,chunks=2,crlf,comment,reply=a%2Cb c d"));
  assert.ok(raw.startsWith(": keep-alive\r\n\r\ndata: "));
  assert.ok(!raw.replaceAll("\r\n", "").includes("\n"));
  assert.equal(events[0].choices[0].delta.role, undefined);
  assert.deepEqual(events.slice(0, 2).map((e) => e.choices[0].delta.content), ["a,b", " c d"]);
  ({ events } = await sse(await stream("no-done")));
  assert.equal(events.at(-1).choices[0].finish_reason, "stop");
  ({ events } = await sse(await stream("no-finish")));
  assert.ok(events.every((e) => e !== "[DONE]" && e.choices[0].finish_reason === null));
  assert.equal(fake.historyEntries().length, 3);
});

Deno.test("FakePoe streams a tool call with index, without it for Gemini, and answers it non-streamed", async () => {
  await using fake = await FakePoe.start();
  const tools = [{
    type: "function",
    function: {
      name: "lookup",
      parameters: {
        type: "object",
        properties: { city: { type: "string" }, days: { type: "integer" } },
      },
    },
  }];
  for (const [model, indexed] of [["GPT-4o", true], ["Gemini-2.5-Pro", false]] as const) {
    const res = await post(fake, { model, messages: hi(), tools, stream: true }, {
      "x-fake-poe": "tools",
    });
    const { events } = await sse(res);
    const calls = events.filter((e) => e !== "[DONE]" && e.choices[0]?.delta.tool_calls)
      .map((e) => e.choices[0].delta.tool_calls[0]);
    assert.ok(calls.length >= 3);
    assert.equal(calls[0].function.name, "lookup");
    assert.match(calls[0].id, /^call_/);
    assert.equal(calls[0].type, "function");
    assert.ok(calls.every((c) => indexed ? c.index === 0 : !("index" in c)));
    const args = calls.map((c) => c.function.arguments).join("");
    assert.deepEqual(JSON.parse(args), { city: "Paris", days: 1 });
    assert.equal(events.at(-2).choices[0].finish_reason, "tool_calls");
  }
  const res = await post(fake, { model: "GPT-4o", messages: hi(), tools }, {
    "x-fake-poe": "tools",
  });
  const body = await res.json();
  const message = body.choices[0].message;
  assert.equal(message.content, "");
  assert.equal(message.tool_calls[0].function.name, "lookup");
  assert.equal(message.tool_calls[0].type, "function");
  assert.equal(body.choices[0].finish_reason, "tool_calls");
  assert.equal(body.usage.completion_tokens, 0);
  const raw = await post(fake, { model: "GPT-4o", messages: hi() }, {
    "x-fake-poe": "tool-args={bad json,tool-no-index",
  });
  assert.equal((await raw.json()).choices[0].message.tool_calls[0].function.arguments, "{bad json");
});

Deno.test('FakePoe tool-calls=N sends N calls; tool-id=empty gives each delta id "", none no id', async () => {
  await using fake = await FakePoe.start();
  const toolCalls = async (model: string, directives: string, stream: boolean) => {
    const res = await post(fake, { model, messages: hi(), stream }, { "x-fake-poe": directives });
    if (!stream) return (await res.json()).choices[0].message.tool_calls;
    const { events } = await sse(res);
    return events.filter((e) => e !== "[DONE]" && e.choices[0]?.delta.tool_calls)
      .map((e) => e.choices[0].delta.tool_calls[0]);
  };
  const given = await toolCalls("GPT-4o", "tool-calls=2", false);
  assert.equal(given.length, 2);
  assert.notEqual(given[0].id, given[1].id);
  assert.ok(given.every((c: Json) => /^call_/.test(c.id)));
  const empty = await toolCalls("GPT-4o", "tool-calls=2,tool-id=empty", false);
  assert.deepEqual(empty.map((c: Json) => c.id), ["", ""]);
  const none = await toolCalls("GPT-4o", "tool-calls=2,tool-id=none", false);
  assert.ok(none.every((c: Json) => !("id" in c)));
  for (const model of ["GPT-4o", "Gemini-2.5-Pro"]) {
    const deltas = await toolCalls(model, "tool-calls=2,tool-id=empty", true);
    assert.ok(deltas.length >= 4);
    assert.ok(deltas.every((c: Json) => c.id === ""), model);
    assert.equal(deltas.filter((c: Json) => c.function.name === "get_weather").length, 2);
    if (model === "GPT-4o") {
      assert.deepEqual([...new Set(deltas.map((c: Json) => c.index))], [0, 1]);
    }
    const missing = await toolCalls(model, "tool-calls=2,tool-id=none", true);
    assert.ok(missing.every((c: Json) => !("id" in c)), model);
  }
  assert.throws(() => parseDirectives("tool-id=blank"), /tool-id must be empty or none/);
});

Deno.test("FakePoe reasoning models send reasoning_content and reasoning, then content", async () => {
  await using fake = await FakePoe.start();
  const body = await (await post(fake, { model: "O3-Mini", messages: hi() })).json();
  const message = body.choices[0].message;
  assert.equal(message.reasoning_content, DEFAULT_REASONING);
  assert.equal(message.reasoning, DEFAULT_REASONING);
  assert.equal(message.content, DEFAULT_REPLY);
  assert.ok(body.usage.completion_tokens_details.reasoning_tokens > 0);
  const { events } = await sse(
    await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
      "x-fake-poe": "reasoning",
    }),
  );
  const deltas = events.slice(0, -1).map((e) => e.choices[0].delta);
  const reasoning = deltas.filter((d) => d.reasoning_content);
  assert.ok(reasoning.length >= 2);
  assert.ok(reasoning.every((d) => d.reasoning === d.reasoning_content));
  assert.equal(reasoning.map((d) => d.reasoning).join(""), DEFAULT_REASONING);
  const firstContent = deltas.findIndex((d) => d.content);
  assert.ok(firstContent > deltas.indexOf(reasoning.at(-1)));
});

Deno.test("FakePoe answers every documented error status in both shapes", async () => {
  await using fake = await FakePoe.start();
  const types: Record<number, string> = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits",
    403: "moderation_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "provider_error",
    502: "upstream_error",
    503: "upstream_error",
    529: "overloaded_error",
  };
  for (const [status, type] of Object.entries(types)) {
    let res = await post(fake, { model: "GPT-4o", messages: hi() }, {
      "x-fake-poe": `status=${status}`,
    });
    assert.equal(res.status, Number(status));
    const openai = await res.json();
    assert.deepEqual(Object.keys(openai.error), ["message", "type", "param", "code"]);
    assert.equal(openai.error.type, type);
    assert.equal(res.headers.get("retry-after"), null);
    res = await post(fake, { model: "GPT-4o", messages: hi() }, {
      "x-fake-poe": `status=${status},error-shape=documented,retry-after=3`,
    });
    assert.equal(res.status, Number(status));
    assert.equal(res.headers.get("retry-after"), "3");
    const documented = await res.json();
    assert.equal(documented.error.code, Number(status));
    assert.equal(documented.error.type, type);
    assert.equal(typeof documented.error.message, "string");
    assert.deepEqual(documented.error.metadata, {});
  }
  assert.equal(fake.historyEntries().length, 0);
});

Deno.test("FakePoe refuses unknown models, malformed bodies and unknown directives", async () => {
  await using fake = await FakePoe.start();
  let res = await post(fake, { model: "No-Such-Bot", messages: hi() });
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.type, "not_found_error");
  res = await post(fake, { model: "No-Such-Bot", messages: hi() }, {
    "x-fake-poe": "unknown-model=400",
  });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, "model_not_found");
  res = await fetch(`${fake.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}` },
    body: "{not json",
  });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.type, "invalid_request_error");
  assert.equal(fake.chatRequests()[2].body, "{not json");
  res = await post(fake, { model: "GPT-4o", messages: hi() }, { "x-fake-poe": "bogus" });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /bogus/);
  assert.throws(() => parseDirectives("stall=abc"), /stall needs a number/);
});

Deno.test("FakePoe rejection switches and fail-first drive a retry ladder", async () => {
  await using fake = await FakePoe.start();
  const cases: [Record<string, unknown>, string, number][] = [
    [{ model: "GPT-4o", max_tokens: 5 }, "reject-max-tokens", 400],
    [{ model: "GPT-4o", max_completion_tokens: 5 }, "reject-max-tokens", 400],
    [{ model: "gpt-4o", max_tokens: 5 }, "reject-uppercase-model", 200],
    [{ model: "GPT-4o" }, "reject-uppercase-model", 400],
    [{ model: "gpt-4o", extra_body: { web_search: true } }, "reject-field=web_search", 400],
    [{ model: "gpt-4o", seed: 1 }, "reject-field=web_search,reject-field=seed", 400],
    [{ model: "gpt-4o" }, "reject-field=web_search", 200],
  ];
  for (const [body, directives, status] of cases) {
    const res = await post(fake, { messages: hi(), ...body }, { "x-fake-poe": directives });
    assert.equal(res.status, status, directives);
    const json = await res.json();
    if (status === 400) assert.equal(json.error.type, "invalid_request_error");
  }
  const statuses = [];
  for (let i = 0; i < 3; i++) {
    const res = await post(fake, { model: "GPT-4o", messages: hi() }, {
      "x-fake-poe": "fail-first=2:529,retry-after=1",
    });
    await res.body?.cancel();
    statuses.push(res.status);
  }
  assert.deepEqual(statuses, [529, 529, 200]);
});

Deno.test("FakePoe points history appears after historyDelayMs, costs 0 for zeroCostMs, then final", async () => {
  await using fake = await FakePoe.start({ historyDelayMs: 100, zeroCostMs: 100, balance: 5000 });
  const history = async () => (await (await get(fake, "/usage/points_history")).json()).data;
  const start = Date.now();
  const body = await (await post(fake, { model: "claude-sonnet-4.6", messages: hi() })).json();
  const cost = 10 + body.usage.total_tokens;
  assert.deepEqual(await history(), []);
  assert.equal(fake.balance, 5000);
  await wait(150 - (Date.now() - start));
  let [entry] = await history();
  assert.equal(entry.cost_points, 0);
  assert.deepEqual(entry.cost_breakdown_in_points, {});
  assert.equal(fake.balance, 5000);
  await wait(260 - (Date.now() - start));
  [entry] = await history();
  assert.equal(entry.cost_points, cost);
  assert.equal(entry.bot_name, "Claude-Sonnet-4.6");
  assert.equal(entry.usage_type, "API");
  assert.equal(entry.chat_name, null);
  assert.equal(entry.api_key_name, "test-key");
  assert.equal(typeof entry.cost_usd, "string");
  assert.match(entry.query_id, /^[A-Za-z0-9]{17}$/);
  assert.ok(Math.abs(entry.creation_time / 1000 - start) < 1000);
  assert.deepEqual(Object.keys(entry.cost_breakdown_in_points), ["Input", "Output", "Total"]);
  assert.equal(fake.balance, 5000 - cost);
});

Deno.test("FakePoe points history pages newest first with starting_after and checks limit", async () => {
  await using fake = await FakePoe.start({ botNameCasing: "request" });
  const now = Date.now() * 1000;
  for (let i = 0; i < 5; i++) {
    fake.addHistory({ query_id: `q${i}`, creation_time: now - (10 - i) * 1_000_000 });
  }
  fake.addHistory({ query_id: "too-old", creation_time: now - 31 * 86_400_000_000 });
  await (await post(fake, { model: "gemini-2.5-PRO", messages: hi() })).body?.cancel();
  const page = async (query: string) =>
    await (await get(fake, `/usage/points_history${query}`)).json();
  let p = await page("?limit=2");
  assert.equal(p.has_more, true);
  assert.equal(p.length, 2);
  assert.equal(p.data[0].bot_name, "gemini-2.5-PRO");
  assert.equal(p.data[1].query_id, "q4");
  p = await page("?limit=2&starting_after=q4");
  assert.deepEqual(p.data.map((e: Json) => e.query_id), ["q3", "q2"]);
  p = await page("?limit=100&starting_after=q2");
  assert.deepEqual(p.data.map((e: Json) => e.query_id), ["q1", "q0"]);
  assert.equal(p.has_more, false);
  for (const bad of ["0", "101", "x"]) {
    const res = await get(fake, `/usage/points_history?limit=${bad}`);
    assert.equal(res.status, 400);
    await res.body?.cancel();
  }
  assert.equal(fake.usageCalls(), 6);
});

Deno.test("FakePoe debits the balance per completion and reports it in current_balance", async () => {
  await using fake = await FakePoe.start({ balance: 1000 });
  await (await post(fake, { model: "GPT-4o", messages: hi() })).body?.cancel();
  await sse(await post(fake, { model: "GPT-4o", messages: hi(), stream: true }));
  const costs = fake.historyEntries().map((e) => e.cost_points);
  assert.deepEqual(costs, [18, 18]);
  assert.equal(fake.balance, 964);
  const res = await get(fake, "/usage/current_balance");
  const body = await res.json();
  assert.equal(body.current_point_balance, 964);
  assert.equal(body.plan_points_balance + body.addon_point_balance, 964);
  assert.ok(body.next_monthly_grant_time > Date.now() * 1000);
  assert.equal(typeof body.next_monthly_grant_amount, "number");
  fake.balance = 50;
  assert.equal(
    (await (await get(fake, "/usage/current_balance")).json()).current_point_balance,
    50,
  );
});

Deno.test("FakePoe applies due debits only, in order, leaving later ones pending", async () => {
  await using fake = await FakePoe.start({ historyDelayMs: 300, balance: 1000 });
  const start = Date.now();
  await (await post(fake, { model: "GPT-4o", messages: hi() })).body?.cancel();
  await wait(200 - (Date.now() - start));
  await (await post(fake, { model: "GPT-4o", messages: hi() })).body?.cancel();
  assert.equal(fake.balance, 1000);
  // The first debit is due at 300 ms, the second at about 500 ms.
  await wait(400 - (Date.now() - start));
  assert.equal(fake.balance, 982);
  await wait(600 - (Date.now() - start));
  assert.equal(fake.balance, 964);
  assert.equal(fake.balance, 964);
});

Deno.test("FakePoe requires the Bearer key except for GET /v1/models", async () => {
  await using fake = await FakePoe.start({ apiKey: "k1" });
  let res = await post(fake, { model: "GPT-4o", messages: hi() });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.type, "authentication_error");
  res = await get(fake, "/usage/current_balance", null);
  assert.equal(res.status, 401);
  await res.body?.cancel();
  res = await get(fake, "/usage/current_balance", "k1");
  assert.equal(res.status, 200);
  await res.body?.cancel();
  res = await get(fake, "/v1/models", null);
  assert.equal(res.status, 200);
  const models = await res.json();
  assert.equal(models.object, "list");
  const sonnet = models.data.find((x: Json) => x.id === "claude-sonnet-4.6");
  assert.equal(sonnet.metadata.display_name, "Claude-Sonnet-4.6");
  assert.ok(sonnet.created > 1e12);
  assert.equal(typeof sonnet.pricing.prompt, "string");
  assert.equal(sonnet.context_window.context_length, 200000);
  assert.equal(sonnet.architecture.modality, "text,image->text");
  assert.ok(models.data.some((x: Json) => x.pricing === null));
  assert.ok(models.data.every((x: Json) => x.id === x.id.toLowerCase()));
  res = await get(fake, "/nowhere");
  assert.equal(res.status, 404);
  await res.body?.cancel();
});

Deno.test("FakePoe records a cancelled stream and a cancelled slow answer, and bills neither", async () => {
  await using fake = await FakePoe.start();
  const res = await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
    "x-fake-poe": "words=50,stall=20",
  });
  const reader = res.body!.getReader();
  assert.equal((await reader.read()).done, false);
  await reader.cancel();
  await until(() => fake.cancellations.length === 1);
  assert.equal(fake.cancellations[0].path, "/v1/chat/completions");
  const ac = new AbortController();
  const pending = post(fake, { model: "GPT-4o", messages: hi() }, {
    "x-fake-poe": "slow-first=5000",
  }, ac.signal);
  await until(() => fake.chatRequests().length === 2);
  ac.abort();
  await assert.rejects(pending);
  await until(() => fake.cancellations.length === 2);
  assert.equal(fake.historyEntries().length, 0);
});

Deno.test("FakePoe hold keeps chat answers, recorded, until released; a client that leaves is cancelled", async () => {
  await using fake = await FakePoe.start();
  const release = fake.hold();
  let answered = 0;
  const pending = [1, 2].map((n) =>
    post(fake, { model: "GPT-4o", messages: hi(`ask ${n}`) }).then((res) => {
      answered++;
      return res;
    })
  );
  const ac = new AbortController();
  const leaving = post(fake, { model: "GPT-4o", messages: hi() }, {}, ac.signal);
  await until(() => fake.chatRequests().length === 3);
  // Other routes are not held.
  assert.equal(
    (await (await get(fake, "/usage/current_balance")).json()).current_point_balance,
    1e6,
  );
  assert.equal(answered, 0);
  ac.abort();
  await assert.rejects(leaving);
  await until(() => fake.cancellations.length === 1);
  release();
  for (const res of await Promise.all(pending)) {
    assert.equal(res.status, 200);
    assert.equal((await res.json()).choices[0].message.content, DEFAULT_REPLY);
  }
  // Released for good: later requests are answered at once.
  const later = await post(fake, { model: "GPT-4o", messages: hi() });
  assert.equal(later.status, 200);
  await later.body?.cancel();
  assert.equal(fake.historyEntries().length, 3);
});

Deno.test("FakePoe holdHistory hangs points-history calls, counted, until released; a client that leaves is cancelled", async () => {
  await using fake = await FakePoe.start();
  const release = fake.holdHistory();
  let answered = false;
  const held = get(fake, "/usage/points_history").then((res) => {
    answered = true;
    return res;
  });
  const ac = new AbortController();
  const leaving = fetch(`${fake.url}/usage/points_history`, {
    headers: { authorization: `Bearer ${KEY}` },
    signal: ac.signal,
  });
  await until(() => fake.usageCalls() === 2);
  // The balance and chat are not held.
  assert.equal(
    (await (await get(fake, "/usage/current_balance")).json()).current_point_balance,
    1e6,
  );
  const chat = await post(fake, { model: "GPT-4o", messages: hi() });
  assert.equal((await chat.json()).choices[0].message.content, DEFAULT_REPLY);
  assert.equal(answered, false);
  ac.abort();
  await assert.rejects(leaving);
  await until(() => fake.cancellations.some((c) => c.path === "/usage/points_history"));
  // Answered with the history as it is when released: the answer billed meanwhile included.
  release();
  const page = await (await held).json();
  assert.equal(page.data.length, 1);
  const later = await get(fake, "/usage/points_history");
  assert.equal((await later.json()).data.length, 1);
});

Deno.test("FakePoe drop breaks the stream and midstream-error sends an error event then [DONE]", async () => {
  await using fake = await FakePoe.start();
  const res = await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
    "x-fake-poe": "drop",
  });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  await assert.rejects(async () => {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
    }
  });
  assert.match(text, /"content":"Hello"/);
  assert.ok(!text.includes("[DONE]"));
  const { events } = await sse(
    await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
      "x-fake-poe": "midstream-error",
    }),
  );
  assert.equal(events.at(-1), "[DONE]");
  assert.equal(events.at(-2).error.type, "provider_error");
  assert.ok(events.some((e) => e.choices?.[0].delta.content));
  assert.equal(fake.historyEntries().length, 0);
});

Deno.test("FakePoe slow-first and stall delay the answer", async () => {
  await using fake = await FakePoe.start();
  let start = Date.now();
  await (await post(fake, { model: "GPT-4o", messages: hi() }, { "x-fake-poe": "slow-first=60" }))
    .json();
  assert.ok(Date.now() - start >= 55);
  start = Date.now();
  await sse(
    await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
      "x-fake-poe": "stall=10",
    }),
  );
  assert.ok(Date.now() - start >= 50);
});

Deno.test("FakePoe done-linger ends the body that long after [DONE], billed at [DONE]", async () => {
  await using fake = await FakePoe.start();
  const res = await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
    "x-fake-poe": "done-linger=80",
  });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.endsWith("data: [DONE]\n\n")) text += (await reader.read()).value;
  const done = Date.now();
  assert.equal(fake.historyEntries().length, 1);
  assert.equal(fake.openAnswers, 1);
  assert.equal((await reader.read()).done, true);
  assert.ok(Date.now() - done >= 70, `ended ${Date.now() - done} ms after [DONE]`);
  assert.equal(fake.openAnswers, 0);
  assert.equal(fake.cancellations.length, 0);
});

Deno.test("FakePoe close() ends an open stream and a pending slow answer", async () => {
  const fake = await FakePoe.start();
  const res = await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
    "x-fake-poe": "stall=60000",
  });
  const reader = res.body!.getReader();
  assert.equal((await reader.read()).done, false);
  const pending = post(fake, { model: "GPT-4o", messages: hi() }, {
    "x-fake-poe": "slow-first=60000",
  });
  await until(() => fake.chatRequests().length === 2);
  const closed = fake.close();
  while (!(await reader.read()).done) { /* drain */ }
  const late = await pending;
  assert.equal(late.status, 503);
  await late.body?.cancel();
  await closed;
  assert.equal(fake.historyEntries().length, 0);
});

Deno.test("FakePoe media bots answer with URLs the fake serves", async () => {
  await using fake = await FakePoe.start();
  const body = await (await post(fake, { model: "imagen-4", messages: hi("A red fox") })).json();
  const content: string = body.choices[0].message.content;
  const match = /^!\[a-red-fox\.png\]\((\S+)\)\n\n(\S+)$/.exec(content);
  assert.ok(match, content);
  assert.equal(match[1], match[2]);
  assert.match(match[1], new RegExp(`^${fake.url}/base/image/[0-9a-f]{64}$`));
  let res = await fetch(match[1]);
  assert.equal(res.headers.get("content-type"), "image/png");
  const png = new Uint8Array(await res.arrayBuffer());
  assert.deepEqual([...png.slice(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  for (
    const [model, kind, type] of [["Veo-3", "video", "video/mp4"], [
      "ElevenLabs",
      "audio",
      "audio/mpeg",
    ]]
  ) {
    const { events } = await sse(await post(fake, { model, messages: hi(), stream: true }));
    const url = events.slice(0, -1).map((e) => e.choices[0]?.delta.content ?? "").join("");
    assert.match(url, new RegExp(`^${fake.url}/base/${kind}/[0-9a-f]{64}$`));
    res = await fetch(url);
    assert.equal(res.headers.get("content-type"), type);
    assert.ok((await res.arrayBuffer()).byteLength > 0);
  }
});

Deno.test("FakePoe marker in the last user message selects the scenario; the header wins", async () => {
  await using fake = await FakePoe.start();
  const messages = [
    { role: "user", content: "old [[fake: status=500]]" },
    { role: "assistant", content: "ok" },
    { role: "user", content: [{ type: "text", text: "now [[fake: status=429, retry-after=2]]" }] },
  ];
  let res = await post(fake, { model: "GPT-4o", messages });
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "2");
  await res.body?.cancel();
  res = await post(fake, { model: "GPT-4o", messages }, { "x-fake-poe": "reply=header" });
  assert.equal((await res.json()).choices[0].message.content, "header");
  res = await post(fake, {
    model: "GPT-4o",
    messages: [...messages, { role: "user", content: "hi" }],
  });
  assert.equal(res.status, 200, "a marker in an older message is ignored");
  await res.body?.cancel();
});

Deno.test("FakePoe script() steps apply in order before directives, then directives resume", async () => {
  await using fake = await FakePoe.start();
  fake.script("status=503", { reply: "second" }, "reply=third");
  const headers = { "x-fake-poe": "reply=directive" };
  const results = [];
  for (let i = 0; i < 4; i++) {
    const res = await post(fake, { model: "GPT-4o", messages: hi() }, headers);
    const body = await res.json();
    results.push(res.ok ? body.choices[0].message.content : res.status);
  }
  assert.deepEqual(results, [503, "second", "third", "directive"]);
  fake.script("status=500");
  fake.reset();
  assert.equal(fake.requests.length, 0);
  const res = await post(fake, { model: "GPT-4o", messages: hi() });
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

Deno.test("FakePoe words=N gives a long deterministic reply and record=false keeps nothing", async () => {
  await using fake = await FakePoe.start({ record: false });
  const { events } = await sse(
    await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
      "x-fake-poe": "words=100",
    }),
  );
  const text = events.slice(0, -1).map((e) => e.choices[0]?.delta.content ?? "").join("");
  assert.equal(text.split(" ").length, 100);
  assert.equal(fake.requests.length, 0);
});

Deno.test("FakePoe json answers a streamed request with the whole completion; json-error with a 200 error body", async () => {
  await using fake = await FakePoe.start();
  const res = await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
    "x-fake-poe": "json",
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  const body = await res.json();
  assert.equal(body.object, "chat.completion");
  assert.equal(body.choices[0].message.content, DEFAULT_REPLY);
  await until(() => fake.historyEntries().length === 1);
  for (const stream of [true, false]) {
    const failed = await post(fake, { model: "GPT-4o", messages: hi(), stream }, {
      "x-fake-poe": "json-error=529",
    });
    assert.equal(failed.status, 200);
    assert.equal(failed.headers.get("content-type"), "application/json");
    assert.deepEqual(await failed.json(), {
      error: {
        message: "The service is overloaded; try again shortly.",
        type: "overloaded_error",
        param: null,
        code: null,
      },
    });
  }
  const documented = await post(fake, { model: "GPT-4o", messages: hi(), stream: true }, {
    "x-fake-poe": "json-error=402,error-shape=documented,message=No%20points.",
  });
  assert.deepEqual((await documented.json()).error, {
    code: 402,
    type: "insufficient_credits",
    message: "No points.",
    metadata: {},
  });
  assert.equal(fake.historyEntries().length, 1, "an error is not billed");
});
