// deno-lint-ignore-file no-explicit-any
/** @module Points end to end: the proxy on a real port, the fake Poe with its Usage API, real clients. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { DEFAULT_REPLY, FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import { mainCommand } from "./proxy_process.ts";
import { printLine } from "../lib/log.ts";
import { stripFooter } from "../lib/footer.ts";
import { ModelRegistry } from "../lib/models.ts";
import { answerWith, chunks, lateCosts, setup, until } from "./points_fixture.ts";

/** The fake's billing: 10 points plus one per token. */
const fakeCost = (u: { prompt_tokens: number; completion_tokens: number }) =>
  10 + u.prompt_tokens + u.completion_tokens;

const grouped = (n: number) => n.toLocaleString("en-US");

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

Deno.test("openai SDK, non-streamed: the real cost in footer, usage and headers", async () => {
  await using t = await setup();
  const { data, response } = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hello, how much does this cost?" }],
  }).withResponse();
  const usage: any = data.usage;
  const cost = fakeCost(usage);
  const balance = 1_000_000 - cost;
  assert.equal(
    data.choices[0].message.content,
    `${DEFAULT_REPLY}\n\n---\n📊 Tokens: ${usage.total_tokens} (Input: ${usage.prompt_tokens}, ` +
      `Output: ${usage.completion_tokens})\n💰 Points: ${cost}\n🏦 Current balance: ${
        grouped(balance)
      } points`,
  );
  assert.equal(usage.cost_points, cost);
  assert.equal(usage.points_estimated, false);
  assert.equal(usage.balance_points, balance);
  assert.equal(response.headers.get("x-poe-points"), String(cost));
  assert.equal(response.headers.get("x-poe-balance"), String(balance));
  assert.equal(response.headers.get("x-poe-points-estimated"), null);
  assert.ok(t.proxy.logs.some((l) => l.includes(`points=${cost}`) && l.includes("request")));
});

Deno.test("openai SDK, streamed: the footer is the last content chunk, before the finish", async () => {
  await using t = await setup();
  const stream = await t.client.chat.completions.create({
    model: "claude-sonnet",
    messages: [{ role: "user", content: "Stream me something." }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  const seen: string[] = [];
  let usage: any = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice?.delta?.content) {
      text += choice.delta.content;
      seen.push("content");
    }
    if (choice?.finish_reason) seen.push(`finish:${choice.finish_reason}`);
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual(seen.slice(-2), ["content", "finish:stop"]);
  assert.ok(text.startsWith(DEFAULT_REPLY));
  assert.equal(stripFooter(text), DEFAULT_REPLY);
  const cost = fakeCost(usage);
  assert.match(text, new RegExp(`\\n💰 Points: ${cost}\\n`));
  assert.equal(usage.cost_points, cost);
  assert.equal(usage.points_estimated, false);
  assert.equal(usage.balance_points, 1_000_000 - cost);
});

Deno.test("a history entry later than FOOTER_WAIT_MS: estimate now, real cost logged later", async () => {
  await using t = await setup({ fake: { historyDelayMs: 700 }, env: { FOOTER_WAIT_MS: "200" } });
  const started = Date.now();
  const res = await post(t.proxy.url, {
    model: "GPT-4o",
    messages: [{ role: "user", content: "Late entry please." }],
  });
  const body = await res.json();
  assert.ok(Date.now() - started < 1500, "the answer is not held past FOOTER_WAIT_MS");
  const u = body.usage;
  // Base covers the short answer; the prompt's tokens are paid on top.
  const estimate = 140 + 35 * u.prompt_tokens / 1000;
  assert.match(
    body.choices[0].message.content,
    new RegExp(
      `💰 Points \\(est\\.\\): ${Math.round(estimate)} \\(Base: 140, Tokens: ${
        (35 * u.prompt_tokens / 1000).toFixed(1).replace(".", "\\.")
      }\\)`,
    ),
  );
  assert.equal(u.points_estimated, true);
  assert.equal(u.cost_points, Math.round(estimate));
  assert.equal(res.headers.get("x-poe-points-estimated"), "true");
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
  const late = t.proxy.logs.find((l) => l.includes("late cost"))!;
  assert.match(late, new RegExp(`points=${fakeCost(u)}\\b`));
});

Deno.test("a points-history read that hangs: streamed answers are not held for a cost that cannot come in time, and get it late", async () => {
  await using t = await setup({ env: { FOOTER_WAIT_MS: "2000" } });
  const release = t.fake.holdHistory();
  const ask = (reply: string) =>
    answerWith(t.proxy.url, { text: `Question ${reply}`, reply, directives: "", stream: true });
  // The first answer's read hangs; nothing told it would, so the answer is held its wait.
  const first = await ask("one");
  assert.equal(first.estimated, true);
  // That read has been in flight for longer than an answer may wait. The history answers while
  // the second answer could still be waiting: had it waited, its real cost would be in time.
  const second = ask("two");
  await until(() => t.fake.historyEntries().length === 2);
  await new Promise((r) => setTimeout(r, 100));
  release();
  const b = await second;
  assert.equal(b.estimated, true, "the estimate at once, not the wait for the hung read");
  // Both costs are still found and reported late, by the read that hung: no call more.
  await until(() => lateCosts(t.proxy.logs).length === 2);
  assert.deepEqual(lateCosts(t.proxy.logs).sort(), [String(first.own), String(b.own)].sort());
  assert.equal(t.historyCalls(), 1);
  // The history is fast again. The next answer still goes by the last read, which hung; its own
  // read is fast, and the answers after it wait for their cost again.
  const third = await ask("three");
  await until(() => !third.estimated || lateCosts(t.proxy.logs).length === 3);
  const fourth = await ask("four");
  assert.deepEqual([fourth.estimated, fourth.points], [false, fourth.own]);
});

Deno.test("an entry that shows cost 0 first is not final: estimate, then the final cost", async () => {
  await using t = await setup({ fake: { zeroCostMs: 800 }, env: { FOOTER_WAIT_MS: "400" } });
  const res = await post(t.proxy.url, {
    model: "GPT-4o",
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "Zero first." }],
  });
  const all = chunks(await res.text());
  const usage = all.at(-1).usage;
  assert.equal(usage.points_estimated, true);
  assert.notEqual(usage.cost_points, 0);
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
  assert.match(
    t.proxy.logs.find((l) => l.includes("late cost"))!,
    new RegExp(`points=${fakeCost(usage)}\\b`),
  );
});

Deno.test("twenty concurrent answers across two models each get their own cost, from few fetches", async () => {
  await using t = await setup();
  const before = t.historyCalls();
  const results = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const model = i % 2 ? "GPT-4o" : "Claude-Sonnet-4.6";
    const stream = i % 4 < 2;
    // Different lengths give different token counts, so a swapped cost would show.
    const content = `Question ${i}: ${"more words ".repeat(i * 3)}`;
    const res = await post(t.proxy.url, {
      model,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      messages: [{ role: "user", content }],
    });
    if (!stream) {
      const body = await res.json();
      return { usage: body.usage, text: body.choices[0].message.content };
    }
    const all = chunks(await res.text());
    const text = all.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    return { usage: all.at(-1).usage, text };
  }));
  const costs = new Set<number>();
  for (const { usage, text } of results) {
    const cost = fakeCost(usage);
    costs.add(cost);
    assert.equal(usage.points_estimated, false);
    assert.equal(usage.cost_points, cost);
    assert.match(text, new RegExp(`\\n💰 Points: ${cost}\\n`));
  }
  assert.ok(costs.size >= 15, "the test requests cost different amounts");
  const fetches = t.historyCalls() - before;
  assert.ok(fetches >= 1 && fetches <= 4, `${fetches} history fetches for 20 answers`);
});

Deno.test("footers are stripped from a resent history before it goes to Poe, user text included", async () => {
  await using t = await setup();
  const first = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "First question" }],
  });
  const withFooter = first.choices[0].message.content!;
  assert.notEqual(stripFooter(withFooter), withFooter);
  const call = {
    id: "call_1",
    type: "function" as const,
    function: { name: "f", arguments: "{}" },
  };
  await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [
      { role: "user", content: "First question" },
      { role: "assistant", content: withFooter },
      { role: "assistant", content: [{ type: "text", text: `Parts${withFooter}` }] as any },
      // Aider's architect hands its answer to the editor model as user text.
      { role: "user", content: `An architect's answer: ${withFooter}` },
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", tool_call_id: call.id, content: `A tool's own text${withFooter}` },
    ],
  });
  const sent: any = t.fake.chatRequests().at(-1)!.body;
  assert.equal(sent.messages[1].content, DEFAULT_REPLY);
  assert.deepEqual(sent.messages[2].content, [{ type: "text", text: `Parts${DEFAULT_REPLY}` }]);
  assert.equal(sent.messages[3].content, `An architect's answer: ${DEFAULT_REPLY}`);
  assert.equal(sent.messages[5].content, `A tool's own text${withFooter}`);
});

Deno.test("a Continue button: the continuation gets no footer, and the footer it was glued to never reaches Poe", async () => {
  await using t = await setup();
  const first = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Tell me a story" }],
  });
  const withFooter = first.choices[0].message.content!;
  assert.notEqual(stripFooter(withFooter), withFooter);
  // The client resends the stored answer, footer included, to be continued.
  const more = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [
      { role: "user", content: "Tell me a story" },
      { role: "assistant", content: withFooter },
    ],
  });
  const continuation = more.choices[0].message.content!;
  assert.equal(stripFooter(continuation), continuation, "no footer inside the continued answer");
  assert.equal(typeof (more.usage as any)?.cost_points, "number", "its cost stays in usage");
  // It stores the continuation glued to the footer's last line, and the chat goes on.
  await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [
      { role: "user", content: "Tell me a story" },
      { role: "assistant", content: `${withFooter} ${continuation}` },
      { role: "user", content: "Thanks" },
    ],
  });
  const sent: any = t.fake.chatRequests().at(-1)!.body;
  assert.equal(sent.messages[1].content, `${DEFAULT_REPLY} ${continuation}`);
});

Deno.test("a tool-call answer's real cost is found, though Poe counts its answer tokens as 0 and bills them", async () => {
  for (const stream of [false, true]) {
    await using t = await setup();
    const res = await post(t.proxy.url, {
      model: "GPT-4o",
      stream,
      messages: [{ role: "user", content: "Weather? [[fake: tools,billed-output=17]]" }],
      tools: [{ type: "function", function: { name: "get_weather", parameters: {} } }],
    });
    const text = await res.text();
    assert.match(text, /"finish_reason":"tool_calls"/, `stream: ${stream}`);
    const entry = t.fake.historyEntries()[0];
    assert.match(entry.cost_breakdown_in_points.Output, /\(17 tokens\)/);
    await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
    assert.match(
      t.proxy.logs.find((l) => l.includes("late cost"))!,
      new RegExp(`points=${entry.cost_points}\\b`),
      `stream: ${stream}`,
    );
  }
});

Deno.test("no footer on tool calls, response_format or x-poe-proxy-footer: off", async () => {
  await using t = await setup();
  const tool = {
    type: "function" as const,
    function: { name: "get_weather", parameters: { type: "object", properties: {} } },
  };
  const called = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Weather? [[fake: tools]]" }],
    tools: [tool],
  });
  assert.equal(called.choices[0].finish_reason, "tool_calls");
  // No footer: Poe's "" is OpenAI's null.
  assert.equal(called.choices[0].message.content, null);
  assert.equal((called.usage as any).points_estimated !== undefined, true);
  const stream = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Weather? [[fake: tools]]" }],
    tools: [tool],
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.ok(!text.includes("📊"));
  const formatted = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "JSON please" }],
    response_format: { type: "json_object" },
  });
  assert.equal(formatted.choices[0].message.content, DEFAULT_REPLY);
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "No footer" }],
  }, { "x-poe-proxy-footer": "off" });
  const body = await res.json();
  assert.equal(body.choices[0].message.content, DEFAULT_REPLY);
  // Programs still get the cost; without a footer nobody waits for Poe's history.
  assert.equal(body.usage.points_estimated, true);
  assert.ok(body.usage.cost_points > 0);
});

Deno.test("the footer follows the text when Poe's finish chunk carries the last of it", async () => {
  await using t = await setup();
  const stream = t.client.chat.completions.stream({
    model: "claude-sonnet",
    messages: [{
      role: "user",
      content: "Stream me something. [[fake: finish-content,usage=finish]]",
    }],
    stream_options: { include_usage: true },
  });
  const done = await stream.finalChatCompletion();
  const text = done.choices[0].message.content!;
  assert.ok(text.startsWith(DEFAULT_REPLY), text);
  assert.equal(stripFooter(text), DEFAULT_REPLY);
  assert.equal(done.choices[0].finish_reason, "stop");
  assert.equal((done.usage as any)?.cost_points, fakeCost(done.usage!));
});

Deno.test("an answer whose text is a JSON document gets no footer, streamed or not", async () => {
  await using t = await setup();
  const reply = encodeURIComponent('  {"city": "Oslo", "days": [1, 2]}\n');
  const content = `Reply in JSON. [[fake: reply=${reply},chunks=5]]`;
  const plain = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content }],
  });
  assert.deepEqual(JSON.parse(plain.choices[0].message.content!), { city: "Oslo", days: [1, 2] });
  assert.equal((plain.usage as any).points_estimated, true, "nobody waited for the history");
  const stream = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content }],
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.deepEqual(JSON.parse(text), { city: "Oslo", days: [1, 2] });
  // Text that only starts like JSON keeps its footer.
  const prose = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "[[fake: reply=%7Bnot json%7D and more]]" }],
  });
  assert.match(prose.choices[0].message.content!, /📊/);
});

/** Media bots priced as models.yaml prices them, beside a text model. */
const MEDIA_REGISTRY = `
models:
  text:
    - poe_name: GPT-4o
      base: 140
      per_1k_tokens: 35
  image:
    - poe_name: Imagen-4
      base: 400
  video:
    - poe_name: Veo-3
      base: 84000
  audio:
    - poe_name: ElevenLabs
      base: 100
      per_1k_tokens: 1500
`;

Deno.test("an answer that is a bare URL (audio, video) gets no footer, streamed or not, and fetches", async () => {
  await using t = await setup({ registry: ModelRegistry.parse(MEDIA_REGISTRY, "media.yaml") });
  for (const model of ["ElevenLabs", "Veo-3"]) {
    const { data, response } = await t.client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Read this aloud: Hello, world." }],
    }).withResponse();
    const url = data.choices[0].message.content!;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/base\/(audio|video)\/[0-9a-f]{64}$/);
    const media = await fetch(url);
    assert.equal(media.status, 200, `${model}: fetch(message.content)`);
    await media.body?.cancel();
    // The points are still there for programs, as for a JSON answer.
    const usage: any = data.usage;
    assert.ok(usage.cost_points > 0);
    assert.equal(response.headers.get("x-poe-points"), String(usage.cost_points));
    assert.ok(response.headers.get("x-poe-balance"));
    const stream = await t.client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Read this aloud: Hello, world." }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let streamed: any = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) streamed = chunk.usage;
    }
    assert.equal(text, url, `${model}: the streamed text is the URL alone`);
    assert.ok(streamed.cost_points > 0);
  }
  // Any model's answer that is one URL, however the stream splits it, trailing newline and all.
  const reply = encodeURIComponent(`  ${t.fake.url}/base/audio/${"ab".repeat(32)}\n`);
  const stream = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: `Only the link. [[fake: reply=${reply},chunks=9]]` }],
    stream: true,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text.trim(), `${t.fake.url}/base/audio/${"ab".repeat(32)}`);
  // A URL with words after it is prose; an image answer (markdown for chat UIs) keeps its footer.
  for (
    const [model, content] of [
      ["gpt-4o", `[[fake: reply=${encodeURIComponent("https://example.com/a is the link")}]]`],
      ["Imagen-4", "A red fox in the snow"],
    ]
  ) {
    const answer = await t.client.chat.completions.create({
      model,
      messages: [{ role: "user", content }],
    });
    assert.match(answer.choices[0].message.content!, /\n\n---\n📊 Tokens: /, model);
  }
});

Deno.test("cost cap and estimate of media models: the newest message and the item, not the chat or max_tokens", async () => {
  await using t = await setup({
    registry: ModelRegistry.parse(MEDIA_REGISTRY, "media.yaml"),
    env: { MAX_POINTS_PER_MESSAGE: "1000" },
  });
  const messages: any[] = [];
  for (let i = 0; i < 10; i++) {
    messages.push(
      { role: "user", content: `Read this aloud: ${"a long paragraph of prose ".repeat(40)}` },
      { role: "assistant", content: `${t.fake.url}/base/audio/${String(i).repeat(64)}` },
    );
  }
  messages.push({ role: "user", content: "Read this aloud: Hello, world." });
  const { data, response } = await t.client.chat.completions.create({
    model: "ElevenLabs",
    max_tokens: 16_000,
    messages,
  }).withResponse();
  assert.equal(response.headers.get("x-poe-proxy-guard"), null);
  assert.match(data.choices[0].message.content!, /\/base\/audio\/[0-9a-f]{64}$/);
  const usage: any = data.usage;
  // Poe counted the whole chat; the estimate prices the one line read aloud.
  assert.ok(usage.prompt_tokens > 1000, `prompt_tokens ${usage.prompt_tokens}`);
  assert.equal(usage.points_estimated, true);
  assert.ok(usage.cost_points >= 100 && usage.cost_points < 150, `cost ${usage.cost_points}`);
  // A per-item price over the cap is refused without advice about chats or max_tokens.
  const refused = await t.client.chat.completions.create({
    model: "Veo-3",
    messages: [{ role: "user", content: "A fox in the snow" }],
  }).withResponse();
  assert.equal(refused.response.headers.get("x-poe-proxy-guard"), "cost-cap");
  const message = refused.data.choices[0].message.content!;
  assert.match(message, /Veo-3 would cost about 84,000 points \(84,000 points per video\)/);
  assert.doesNotMatch(message, /new chat|max_tokens/);
  assert.match(message, /base price alone is over MAX_POINTS_PER_MESSAGE: raise it or pick a/);
  assert.equal(t.fake.chatRequests().length, 1);
});

Deno.test("a stream Poe finished, left by its client during the footer wait, still counts its points", async () => {
  await using t = await setup({ fake: { historyDelayMs: 600 }, env: { FOOTER_WAIT_MS: "1500" } });
  const abort = new AbortController();
  const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o",
      stream: true,
      messages: [{ role: "user", content: "x" }],
    }),
    signal: abort.signal,
  });
  const reader = res.body!.getReader();
  await reader.read();
  // Poe's answer is complete (billed, its history entry not visible yet): the relay now waits.
  await until(() => t.fake.historyEntries().length > 0);
  await new Promise((r) => setTimeout(r, 100));
  abort.abort();
  await reader.cancel().catch(() => {});
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
  const billed = t.fake.historyEntries()[0].cost_points;
  assert.ok(t.proxy.logs.some((l) => l.includes("late cost") && l.includes(`points=${billed}`)));
  const metrics = await (await fetch(`${t.proxy.url}/metrics`)).text();
  assert.match(metrics, /^poe_proxy_points_spent_total\{[^}]*\} [1-9]/m);
});

Deno.test("another app's entry on the same account is not taken once the proxy knows its key name", async () => {
  await using t = await setup({ fake: { historyDelayMs: 300 } });
  const ask = async () => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
    });
    return (await res.json()).usage;
  };
  // Three answers matched by their token counts teach it the key's name.
  for (let i = 0; i < 3; i++) assert.equal((await ask()).points_estimated, false);
  // Another app spends 5,000 points on GPT-4o just as the next answer ends; its own entry lands
  // 300 ms later, so the first read sees only the other app's.
  t.fake.addHistory({
    bot_name: "GPT-4o",
    cost_points: 5000,
    api_key_name: "other-app",
    creation_time: (Date.now() + 50) * 1000,
  });
  const usage = await ask();
  assert.equal(usage.cost_points, fakeCost(usage));
  assert.equal(usage.points_estimated, false);
});

Deno.test("POE_API_KEY_NAME: an answer without token counts never takes another app's entry, from the first answer on", async () => {
  // The fake names this proxy's entries "test-key"; Poe sends no usage, so no name is learnt.
  await using t = await setup({
    fake: { historyDelayMs: 1000 },
    env: { FOOTER: "on", FOOTER_WAIT_MS: "3000", POE_API_KEY_NAME: "test-key" },
  });
  // Another app spends 5,000 points on GPT-4o just as this answer ends; this answer's entry lands
  // a second later, so the first reads see only the other app's.
  t.fake.addHistory({
    bot_name: "GPT-4o",
    cost_points: 5000,
    api_key_name: "other-app",
    creation_time: (Date.now() + 50) * 1000,
  });
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi [[fake: usage=none]]" }],
  });
  const body = await res.json();
  const own = t.fake.historyEntries().find((e) => e.api_key_name === "test-key")!;
  assert.ok(own, "the answer was billed");
  assert.equal(body.usage.cost_points, own.cost_points);
  assert.equal(body.usage.points_estimated, false);
  assert.match(body.choices[0].message.content, new RegExp(`\\n💰 Points: ${own.cost_points}\\n`));
  assert.equal(res.headers.get("x-poe-points"), String(own.cost_points));
});

for (const offset of [-5_000, 5_000]) {
  Deno.test(`Poe's clock ${offset / 1000} s off this machine's: costs are still found, from its Date header`, async () => {
    await using t = await setup({ fake: { clockOffsetMs: offset } });
    const offsetRead = (t.usage.api as { clockOffsetMs?: number | null }).clockOffsetMs!;
    assert.ok(Math.abs(offsetRead - offset) <= 1_000, `read ${offsetRead}`);
    for (let i = 0; i < 3; i++) {
      const res = await post(t.proxy.url, {
        model: "gpt-4o",
        messages: [{ role: "user", content: `Hi ${i}` }],
      });
      const usage = (await res.json()).usage;
      assert.equal(usage.points_estimated, false);
      assert.equal(usage.cost_points, fakeCost(usage));
    }
  });
}

Deno.test("stop, then regenerate: the abandoned answer's entry is not the next answer's cost", async () => {
  await using t = await setup({ fake: { historyDelayMs: 300 } });
  const abort = new AbortController();
  // Poe bills the answer although its client leaves while the body is on its way. (A request body
  // over about 300 bytes would hide the client's leaving until the answer is written: Deno.serve's
  // signal does not fire for it.)
  const long = "word ".repeat(16);
  const left = fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: `${long} [[fake: stall=2000]]` }],
    }),
    signal: abort.signal,
  }).catch(() => null);
  await until(() => t.fake.historyEntries().length > 0);
  await new Promise((r) => setTimeout(r, 300));
  abort.abort();
  await left;
  await until(() => t.proxy.logs.some((l) => l.includes("status=499")));
  const usage = (await (await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "short again" }],
  })).json()).usage;
  assert.equal(usage.cost_points, fakeCost(usage));
  assert.equal(usage.points_estimated, false);
  // The abandoned answer's cost is logged as its own.
  const billed = Math.max(...t.fake.historyEntries().map((e) => e.cost_points));
  await until(() =>
    t.proxy.logs.some((l) => l.includes("late cost") && l.includes(`points=${billed}`))
  );
});

Deno.test("stop while a model thinks in silence: the left stream's entry is not the next answer's cost", async () => {
  // The client leaves while the stream's opening is read for an error (within KEEPALIVE_SECONDS,
  // 5 s at most), before anything reached it; Poe bills the answer it started.
  await using t = await setup({ fake: { historyDelayMs: 300 } });
  const abort = new AbortController();
  const left = fetch(`${t.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o",
      stream: true,
      messages: [{ role: "user", content: "think [[fake: stall=3000]]" }],
    }),
    signal: abort.signal,
  }).then((r) => r.body?.cancel()).catch(() => null);
  await until(() => t.fake.chatRequests().length === 1);
  await new Promise((r) => setTimeout(r, 300));
  abort.abort();
  await left;
  await until(() => t.proxy.logs.some((l) => l.includes("status=499")));
  const line = t.proxy.logs.find((l) => l.includes("status=499"))!;
  assert.match(line, /attempts=first:200 /);
  assert.match(line, /client gone while Poe answered/);
  // The fake bills only finished streams: the left answer's entry is added as Poe would.
  t.fake.addHistory({ bot_name: "GPT-4o", cost_points: 5000 });
  const usage = (await (await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "next" }],
  })).json()).usage;
  assert.equal(usage.cost_points, fakeCost(usage));
  await until(() => t.proxy.logs.some((l) => l.includes("late cost") && l.includes("points=5000")));
});

Deno.test("a stream Poe sent without usage: its footer shows the tokens counted here, marked", async () => {
  await using t = await setup();
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    stream: true,
    messages: [{ role: "user", content: "Hi [[fake: usage=none]]" }],
  });
  const text = chunks(await res.text()).map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assert.match(text, /\n📊 Tokens \(est\.\): \d+ \(Input: \d+, Output: \d+\)\n💰 Points/);
  // Not matched to the history by these counts, but by order: the real cost still lands.
  assert.match(text, /💰 Points: \d+\n/);
});

Deno.test("FOOTER=off: the body passes unchanged, headers still carry the points", async () => {
  await using t = await setup({ env: { FOOTER: "off" } });
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "x" }],
  });
  const body = await res.json();
  assert.equal(body.choices[0].message.content, DEFAULT_REPLY);
  assert.equal(body.usage.cost_points, undefined);
  assert.ok(Number(res.headers.get("x-poe-points")) > 0);
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
});

Deno.test("pause below POINTS_CUTOFF, streamed and not: a friendly answer, Poe never called", async () => {
  await using t = await setup({ fake: { balance: 50_000 } });
  const { data, response } = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  }).withResponse();
  assert.equal(response.headers.get("x-poe-proxy-guard"), "paused");
  assert.equal(data.choices[0].finish_reason, "stop");
  assert.match(
    data.choices[0].message.content!,
    /50,000 points, below the POINTS_CUTOFF of 100,000/,
  );
  assert.match(
    data.choices[0].message.content!,
    /Poe grants (?:[\d,]+ )?points next on \d{4}-\d\d-\d\d \d\d:\d\d UTC/,
  );
  const stream = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
  });
  let text = "";
  let finish = "";
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.match(text, /poe-proxy is paused/);
  assert.equal(finish, "stop");
  assert.equal(t.fake.chatRequests().length, 0);
  assert.ok(t.proxy.logs.some((l) => l.includes("guard=paused")));
});

Deno.test("cost cap, streamed and not: refused with estimate, cap and cheaper models", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "150" } });
  const plain = await post(t.proxy.url, {
    model: "gpt-4o",
    max_tokens: 4000,
    messages: [{ role: "user", content: "Write a novel." }],
  });
  assert.equal(plain.headers.get("x-poe-proxy-guard"), "cost-cap");
  const body = await plain.json();
  assert.match(body.choices[0].message.content, /would cost about 2\d\d points/);
  assert.match(body.choices[0].message.content, /MAX_POINTS_PER_MESSAGE of 150 points/);
  assert.match(body.choices[0].message.content, /Cheaper models: GPT-4o-mini/);
  // 140 points a message, about 105 for the 3,000 answer tokens past the base's 1,000: a new
  // chat could not bring it under 150, a lower max_tokens can.
  const advice = /\. Lower max_tokens to ask for less\. Nothing was sent to Poe\.$/;
  assert.match(body.choices[0].message.content, advice);
  assert.doesNotMatch(body.choices[0].message.content, /new chat/);
  const streamed = await post(t.proxy.url, {
    model: "gpt-4o",
    max_tokens: 4000,
    stream: true,
    messages: [{ role: "user", content: "Write a novel." }],
  });
  assert.equal(streamed.headers.get("x-poe-proxy-guard"), "cost-cap");
  const all = chunks(await streamed.text());
  assert.equal(all[0].choices[0].delta.role, "assistant");
  assert.equal(all.at(-1).choices[0].finish_reason, "stop");
  assert.match(all.map((c) => c.choices[0]?.delta?.content ?? "").join(""), advice);
  assert.equal(t.fake.chatRequests().length, 0);
  // Under the cap, it goes through.
  const cheap = await post(t.proxy.url, {
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Short." }],
  });
  assert.equal(cheap.headers.get("x-poe-proxy-guard"), null);
  await cheap.body?.cancel();
  assert.equal(t.fake.chatRequests().length, 1);
});

Deno.test("guards refuse tool and JSON-mode requests with a 402 error, not prose", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "150" } });
  const tool = {
    type: "function" as const,
    function: { name: "get_weather", parameters: { type: "object", properties: {} } },
  };
  const requests = [
    { tools: [tool] },
    { functions: [tool.function], function_call: { name: "get_weather" } },
    { response_format: { type: "json_object" } },
    { stream: true, response_format: { type: "json_schema", json_schema: { name: "x" } } },
  ];
  for (const extra of requests) {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      max_tokens: 4000,
      messages: [{ role: "user", content: "Write a novel." }],
      ...extra,
    });
    assert.equal(res.status, 402, JSON.stringify(extra));
    assert.equal(res.headers.get("x-poe-proxy-guard"), "cost-cap");
    const body = await res.json();
    assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(body.error.code, "cost_cap_exceeded");
    assert.equal(body.error.type, "insufficient_credits");
    assert.match(body.error.message, /MAX_POINTS_PER_MESSAGE of 150 points/);
    assert.match(body.error.message, /\. Lower max_tokens to ask for less\. Nothing was sent/);
  }
  // The SDK raises it as an error a program can catch.
  await assert.rejects(
    t.client.chat.completions.create({
      model: "gpt-4o",
      max_tokens: 4000,
      messages: [{ role: "user", content: "Write a novel." }],
      tools: [tool],
    }),
    (err: any) => err instanceof OpenAI.APIError && err.status === 402,
  );
  // A text response_format is a person's request: the answer stays a friendly refusal.
  const text = await post(t.proxy.url, {
    model: "gpt-4o",
    max_tokens: 4000,
    response_format: { type: "text" },
    messages: [{ role: "user", content: "Write a novel." }],
  });
  assert.equal(text.status, 200);
  await text.body?.cancel();
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("POINTS_CUTOFF still holds while the Usage API fails: this proxy's spending counts", async () => {
  await using t = await setup({ fake: { balance: 100_060 }, env: { POINTS_CUTOFF: "100000" } });
  assert.equal(t.usage.poller.snapshot?.balance, 100_060);
  t.fake.balanceErrorStatus = 503;
  let paused = -1;
  for (let i = 0; i < 10 && paused < 0; i++) {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
    });
    if (res.headers.get("x-poe-proxy-guard") === "paused") paused = i;
    await res.body?.cancel();
  }
  // Each answer costs about 20 points: the 60 above the cutoff last three or four answers.
  assert.ok(paused >= 2 && paused <= 5, `paused at request ${paused}`);
  assert.equal(t.usage.poller.snapshot?.balance, 100_060, "Poe's last reading is kept");
  const usage = await (await fetch(`${t.proxy.url}/api/usage`)).json();
  assert.equal(usage.guards.state, "paused");
});

Deno.test("guard on/off lines state the balance the pause check compared, as requests see it", async () => {
  // 100 points above the cutoff: an answer counted at its estimate (140 and more) turns the guard
  // on, and its real cost (about 20) turns it off again once it lands.
  await using t = await setup({
    fake: { balance: 100_100 },
    env: { FOOTER: "stream", POINTS_CUTOFF: "100000" },
  });
  // One reading of Poe's for the whole test.
  t.fake.balanceErrorStatus = 503;
  const ask = async () => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
    });
    await res.body?.cancel();
    return res.headers.get("x-poe-proxy-guard");
  };
  const turns = () =>
    [...t.usageLogs, ...t.proxy.logs].filter((l) => / guard o(n|ff)/.test(l)).map((l) => ({
      on: l.includes("guard on"),
      balance: Number(/ balance=(\d+)/.exec(l)![1]),
      cutoff: Number(/ points_cutoff=(\d+)/.exec(l)![1]),
    }));
  assert.equal(await ask(), null);
  await until(() => turns().some((turn) => turn.on));
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
  // The real cost replaced the estimate: spending is allowed again, and the log says so first.
  assert.equal(await ask(), null);
  const seen = turns();
  assert.ok(seen.some((turn) => !turn.on), JSON.stringify(seen));
  for (const turn of seen) {
    assert.equal(turn.cutoff, 100_000);
    assert.equal(turn.on, turn.balance < turn.cutoff, JSON.stringify(seen));
  }
});

Deno.test("cost cap: the retry ladder never drops max_tokens past the cap", async () => {
  // Priced per token only, so every answer token counts: 50 of them are under the cap, the
  // default 1,000 are not.
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - poe_name: GPT-4o\n      per_1k_tokens: 100\n",
    "inline.yaml",
  );
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "50" }, registry });
  const body = (content: string, extra = {}) => ({
    model: "GPT-4o",
    messages: [{ role: "user", content }],
    ...extra,
  });
  // Without max_tokens the estimate (1,000 answer tokens) is over the cap.
  const refused = await post(t.proxy.url, body("Tell me everything."));
  assert.equal(refused.headers.get("x-poe-proxy-guard"), "cost-cap");
  await refused.body?.cancel();
  // With max_tokens 50 it is under; Poe refuses the limit under either name: the same 50 as
  // max_completion_tokens is sent, and the variants without a limit are not.
  const res = await post(
    t.proxy.url,
    body("Tell me everything. [[fake: reject-max-tokens]]", { max_tokens: 50 }),
  );
  assert.equal(res.status, 400);
  assert.equal(
    res.headers.get("x-poe-proxy-attempts"),
    "first:400,max-completion-tokens:400,lowercase-model:400",
  );
  await res.body?.cancel();
  const sent = t.fake.chatRequests().map((r) => r.body as any);
  assert.deepEqual(sent.map((b) => [b.model, b.max_tokens, b.max_completion_tokens]), [
    ["GPT-4o", 50, undefined],
    ["GPT-4o", undefined, 50],
    ["gpt-4o", 50, undefined],
  ]);
});

/** Posts each body, streamed and not, and checks the cost cap refused it pricing 100,000 tokens. */
async function assertCapped(url: string, limits: Record<string, unknown>[]): Promise<void> {
  for (const stream of [false, true]) {
    for (const extra of limits) {
      const res = await post(url, {
        model: "gpt-4o",
        stream,
        messages: [{ role: "user", content: "Hi" }],
        ...extra,
      });
      assert.equal(res.headers.get("x-poe-proxy-guard"), "cost-cap", JSON.stringify(extra));
      assert.match(await res.text(), /up to 100,000 answer tokens/);
    }
  }
}

Deno.test("cost cap prices the larger of max_tokens and max_completion_tokens", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "1000" } });
  // GPT-4o: 140 + 35 per 1k tokens; 100,000 answer tokens are about 3,640 points.
  await assertCapped(t.proxy.url, [
    { max_completion_tokens: 1, max_tokens: 100_000 },
    { max_tokens: 1, max_completion_tokens: 100_000 },
  ]);
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("cost cap prices answer limits in a literal extra_body, which Poe reads too", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "1000" } });
  await assertCapped(t.proxy.url, [
    { extra_body: { max_tokens: 100_000 } },
    { extra_body: { max_completion_tokens: 100_000 } },
    { max_completion_tokens: 1, extra_body: { max_tokens: 100_000, reasoning_effort: "low" } },
  ]);
  assert.equal(t.fake.chatRequests().length, 0);
  // A limit that cannot be priced is refused before anything else.
  const bad = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
    extra_body: { max_tokens: "100000" },
  });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.param, "extra_body.max_tokens");
  // Small limits everywhere go through, passed to Poe as sent.
  const ok = await post(t.proxy.url, {
    model: "gpt-4o",
    max_tokens: 100,
    messages: [{ role: "user", content: "Hi" }],
    extra_body: { max_completion_tokens: 200 },
  });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  const sent = t.fake.chatRequests()[0].body as any;
  assert.equal(sent.max_tokens, 100);
  assert.deepEqual(sent.extra_body, { max_completion_tokens: 200 });
});

Deno.test("cost cap: a request without an answer limit is sent the most the cap leaves, and its answer stops there", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300", FOOTER: "on" } });
  // GPT-4o: 140 + 35 per 1k tokens, the first 1,000 answer tokens in the base: the 160 points left
  // pay for about 4,570 answer tokens more. The story would be about 11,000.
  for (const stream of [false, true]) {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      stream,
      messages: [{ role: "user", content: "A long story, please. [[fake: words=8000]]" }],
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    const limit = (t.fake.chatRequests().at(-1)!.body as any).max_tokens;
    assert.ok(limit > 5_500 && limit < 5_580, `max_tokens ${limit}`);
    const choices = stream ? chunks(text).flatMap((c) => c.choices) : JSON.parse(text).choices;
    const content = choices.map((c: any) => c.message?.content ?? c.delta?.content ?? "").join("");
    assert.equal(choices.find((c: any) => c.finish_reason)?.finish_reason, "length");
    assert.ok(
      content.includes(
        `\n⛔ Answer stopped at ${
          grouped(limit)
        } tokens, as far as MAX_POINTS_PER_MESSAGE (300 points) allows.`,
      ),
      content.slice(-300),
    );
    assert.ok(stripFooter(content).length <= limit * 4, "cut at the limit");
  }
  // An answer within the limit says nothing of it; a limit of the request's own is sent as it is.
  const short = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  });
  assert.doesNotMatch(await short.text(), /Answer stopped/);
  const own = await post(t.proxy.url, {
    model: "gpt-4o",
    max_completion_tokens: 300,
    messages: [{ role: "user", content: "Hi" }],
  });
  await own.text();
  const sent = t.fake.chatRequests().at(-1)!.body as any;
  assert.equal(sent.max_completion_tokens, 300);
  assert.equal("max_tokens" in sent, false);
});

Deno.test("cost cap: a model that refuses the answer limit's field is answered without it, and sent none again", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
  // "Unsupported parameter: 'max_tokens' is not supported with this model", as OpenAI words it.
  const ask = async (words = 0) => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{
        role: "user",
        content: `${"lorem ipsum dolor sit amet ".repeat(words)}Hi [[fake: reject-max-tokens]]`,
      }],
    });
    assert.equal(res.status, 200);
    await res.text();
  };
  await ask();
  const first = t.fake.chatRequests().map((r) => r.body as any);
  assert.ok(first.length >= 2, `${first.length} calls`);
  assert.equal(typeof first[0].max_tokens, "number");
  const last = first.at(-1);
  assert.equal("max_tokens" in last || "max_completion_tokens" in last, false);
  // The next turns, the same or longer (a smaller limit each), are sent none: one call each.
  for (const words of [0, 500]) {
    const before = t.fake.chatRequests().length;
    await ask(words);
    const calls = t.fake.chatRequests().slice(before).map((r) => r.body as any);
    assert.equal(calls.length, 1);
    assert.equal("max_tokens" in calls[0], false);
  }
  assert.equal(t.usageLogs.filter((l) => l.includes("answer limit refused")).length, 1);
});

Deno.test("cost cap: a limit refused as too large is not sent again, smaller ones are", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
  const tooLarge = "status=400,message=max_tokens is too large: this model supports at most 100 " +
    "completion tokens.";
  const ask = async (words: number) => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: `${"lorem ipsum dolor sit amet ".repeat(words)}Hi` }],
    });
    assert.equal(res.status, 200);
    await res.text();
  };
  // Refused as max_tokens, then as max_completion_tokens, then answered without a limit.
  t.fake.script(tooLarge, tooLarge, "");
  await ask(0);
  const first = t.fake.chatRequests().map((r) => r.body as any);
  assert.equal(first.length, 3);
  const refused = first[0].max_tokens;
  // As large again (two requests refused at once learn nothing more): not sent.
  let before = t.fake.chatRequests().length;
  await ask(0);
  let calls = t.fake.chatRequests().slice(before).map((r) => r.body as any);
  assert.equal(calls.length, 1);
  assert.equal("max_tokens" in calls[0], false);
  // A longer chat leaves a smaller limit: sent, refused as too large again, and learnt.
  before = t.fake.chatRequests().length;
  t.fake.script(tooLarge, tooLarge, "");
  await ask(200);
  calls = t.fake.chatRequests().slice(before).map((r) => r.body as any);
  assert.equal(calls.length, 3);
  const smaller = calls[0].max_tokens;
  assert.ok(smaller < refused, `${smaller} < ${refused}`);
  // Longer still: a smaller limit again, sent and accepted; a second size refusal did not stop
  // the cap's limits for the model.
  before = t.fake.chatRequests().length;
  await ask(500);
  calls = t.fake.chatRequests().slice(before).map((r) => r.body as any);
  assert.equal(calls.length, 1);
  assert.ok(calls[0].max_tokens < smaller, `${calls[0].max_tokens} < ${smaller}`);
});

/** GPT-4o with a 6,000-token window and cheap tokens: the cap alone would allow far more. */
const SMALL_WINDOW = ModelRegistry.parse(
  "models:\n  text:\n    - {poe_name: GPT-4o, max_tokens: 6000, base: 10, per_1k_tokens: 10}\n",
  "window.yaml",
);

Deno.test("cost cap: how a refusal is learnt: a field then a size, a field in other words, and words it does not know", async () => {
  const ask = async (t: { proxy: { url: string } }, words: number) => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: `${"lorem ipsum dolor sit amet ".repeat(words)}Hi` }],
    });
    assert.equal(res.status, 200);
    await res.text();
  };
  const turn = async (t: Awaited<ReturnType<typeof setup>>, words: number) => {
    const before = t.fake.chatRequests().length;
    await ask(t, words);
    return t.fake.chatRequests().slice(before).map((r) => r.body as any);
  };
  {
    // OpenAI's reasoning models: max_tokens refused by name, max_completion_tokens for its size.
    await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
    t.fake.script(
      "status=400,message=Unsupported parameter: 'max_tokens' is not supported with this model.",
      "status=400,message=max_completion_tokens is too large: at most 100 tokens.",
      "",
    );
    const first = await turn(t, 0);
    assert.equal(first.length, 3);
    const next = await turn(t, 300);
    assert.equal(next.length, 1);
    assert.ok(next[0].max_completion_tokens < first[0].max_tokens, JSON.stringify(next[0]));
    assert.equal("max_tokens" in next[0], false);
  }
  {
    // Anthropic's (pydantic's) words for a field not taken: learnt at once.
    await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
    const extra = "status=400,message=max_tokens: Extra inputs are not permitted";
    t.fake.script(extra, extra, "");
    assert.equal((await turn(t, 0)).length, 3);
    const next = await turn(t, 300);
    assert.equal(next.length, 1);
    assert.equal(answerLimitOf(next[0]), null);
  }
  {
    // Words it does not know, each turn a smaller limit refused: after three, no more limits.
    await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
    const odd = "status=400,message=Bad request: check max_tokens";
    for (let i = 0; i < 3; i++) {
      t.fake.script(odd, odd, "");
      assert.equal((await turn(t, 100 * i)).length, 3, `turn ${i}`);
    }
    const next = await turn(t, 400);
    assert.equal(next.length, 1);
    assert.equal(answerLimitOf(next[0]), null);
  }
});

Deno.test("cost cap: a field refused is learnt when the limit sent was the window's room too", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "1000" }, registry: SMALL_WINDOW });
  const ask = async () => {
    const before = t.fake.chatRequests().length;
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{
        role: "user",
        content: `${"lorem ipsum dolor sit amet ".repeat(500)} [[fake: reject-max-tokens]]`,
      }],
    });
    assert.equal(res.status, 200);
    await res.text();
    return t.fake.chatRequests().length - before;
  };
  assert.ok(await ask() >= 2);
  assert.equal(await ask(), 1, "learnt: no limit, one call");
});

Deno.test("cost cap: a large body's 400 naming nothing drops the limit the cap added, and only that", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
  t.fake.script("status=400,message=Value out of range.", "");
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{
      role: "user",
      content: [{ type: "text", text: "What is this?" }, {
        type: "image_url",
        image_url: { url: `data:image/png;base64,${"A".repeat(1_500_000)}` },
      }],
    }],
  });
  assert.equal(res.status, 200);
  await res.text();
  const calls = t.fake.chatRequests().map((r) => r.body as any);
  assert.equal(calls.length, 2);
  assert.equal(typeof calls[0].max_tokens, "number");
  assert.equal("max_tokens" in calls[1], false);
  assert.equal(calls[1].model, calls[0].model, "not lowercased: one upload more, not three");
});

Deno.test("cost cap: a model that takes the cap's limit only as max_completion_tokens is sent it so", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
  const ask = async () => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi [[fake: reject-field=max_tokens]]" }],
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("x-poe-proxy-answer-limit") ?? "", /^\d+$/);
    await res.text();
  };
  await ask();
  const first = t.fake.chatRequests().map((r) => r.body as any);
  assert.equal(first.length, 2);
  assert.equal(typeof first[0].max_tokens, "number");
  assert.equal(first[1].max_completion_tokens, first[0].max_tokens);
  await ask();
  const second = t.fake.chatRequests().slice(2).map((r) => r.body as any);
  assert.equal(second.length, 1, "no refused call first");
  assert.equal(second[0].max_completion_tokens, first[0].max_tokens);
  assert.equal("max_tokens" in second[0], false);
});

Deno.test("cost cap: the answer limit leaves the input its room in the context window", async () => {
  // A small window and cheap tokens: the cap alone would allow far more than the window holds.
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "1000" }, registry: SMALL_WINDOW });
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "lorem ipsum dolor sit amet ".repeat(500) }],
  });
  assert.equal(res.status, 200);
  await res.text();
  const sent = t.fake.chatRequests()[0].body as any;
  const limit = Number(res.headers.get("x-poe-proxy-answer-limit"));
  assert.equal(sent.max_tokens, limit);
  // About 3,000 input tokens: some 3,000 left of the 6,000 window.
  assert.ok(limit > 2_000 && limit < 3_500, `${limit}`);
});

Deno.test("cost cap: the window's room is counted in tokens, not bytes, when clipping did not count", async () => {
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - {poe_name: GPT-4o, max_tokens: 200000, base: 10, per_1k_tokens: 1}\n",
    "window.yaml",
  );
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "130", FOOTER: "on" }, registry });
  // About 148,500 bytes and 27,000 tokens: under the window by bytes alone, so not counted.
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "lorem ipsum dolor sit amet ".repeat(5_500) }],
  });
  assert.equal(res.status, 200);
  await res.text();
  const limit = Number(res.headers.get("x-poe-proxy-answer-limit"));
  // The cap's room, about 94,000 tokens, not the window less the bytes (51,500).
  assert.ok(limit > 85_000 && limit < 100_000, `${limit}`);
});

Deno.test("cost cap prices a thinking budget on top of the answer, at the top level or in extra_body", async () => {
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "300" } });
  // GPT-4o: 140 + 35 per 1k tokens; a short question with 1,000 answer tokens is about 176 points,
  // with a thinking budget of 8,000 tokens on top about 455.
  for (const stream of [false, true]) {
    for (const extra of [{ thinking_budget: 8_000 }, { extra_body: { thinking_budget: 8_000 } }]) {
      const res = await post(t.proxy.url, {
        model: "gpt-4o",
        stream,
        messages: [{ role: "user", content: "Hi" }],
        ...extra,
      });
      assert.equal(res.headers.get("x-poe-proxy-guard"), "cost-cap", JSON.stringify(extra));
      assert.match(
        await res.text(),
        /up to 9,000 answer tokens \(a thinking budget of 8,000 and 1,000 assumed for the answer\)/,
      );
    }
  }
  assert.equal(t.fake.chatRequests().length, 0);
  const ok = await post(t.proxy.url, {
    model: "gpt-4o",
    max_tokens: 200,
    thinking_budget: 1_000,
    messages: [{ role: "user", content: "Hi" }],
  });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("x-poe-proxy-guard"), null);
  await ok.body?.cancel();
  assert.equal((t.fake.chatRequests()[0].body as any).thinking_budget, 1_000);
});

Deno.test("cost cap: a ladder variant that keeps an extra_body limit is priced by it", async () => {
  // Priced per token only: 50 answer tokens are under the cap, the default 1,000 are not.
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - poe_name: GPT-4o\n      per_1k_tokens: 100\n",
    "inline.yaml",
  );
  await using t = await setup({ env: { MAX_POINTS_PER_MESSAGE: "50" }, registry });
  const res = await post(t.proxy.url, {
    model: "GPT-4o",
    max_tokens: 50,
    extra_body: { max_tokens: 50 },
    messages: [{ role: "user", content: "Tell me everything. [[fake: reject-max-tokens]]" }],
  });
  assert.equal(res.status, 400);
  await res.body?.cancel();
  const sent = t.fake.chatRequests().map((r) => r.body as any);
  // Without its top-level max_tokens the variant still carries extra_body's 50: it may be sent,
  // and every body Poe got is bounded by 50 answer tokens.
  assert.ok(sent.some((b) => !("max_tokens" in b)), JSON.stringify(sent));
  assert.ok(sent.every((b) => b.extra_body.max_tokens === 50 && (b.max_tokens ?? 50) === 50));
});

Deno.test("paused: a tool request gets a 402 with code points_paused", async () => {
  await using t = await setup({ fake: { balance: 50_000 } });
  const res = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
    tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
  });
  assert.equal(res.status, 402);
  assert.equal(res.headers.get("x-poe-proxy-guard"), "paused");
  assert.equal((await res.json()).error.code, "points_paused");
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("guards refuse legacy functions, forced calls and answers that land in place with a 402 error, not prose", async () => {
  await using t = await setup({ fake: { balance: 50_000 } });
  // instructor's FUNCTIONS mode and older LangChain agents use the legacy API.
  const fn = { name: "extract_person", parameters: { type: "object", properties: {} } };
  const requests = [
    { functions: [fn] },
    { functions: [fn], function_call: { name: "extract_person" }, stream: true },
    { function_call: { name: "extract_person" } },
    { tool_choice: "required" },
    { tool_choice: { type: "function", function: { name: "extract_person" } } },
    // Answers that land in place, as no footer does: an inline edit, a commit message, a title,
    // a prefill's continuation.
    { stop: ["```"], stream: true },
    { max_tokens: 60 },
    { max_completion_tokens: 6, stream: true },
    { continues: true },
  ];
  for (const { continues, ...extra } of requests as Record<string, unknown>[]) {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [
        { role: "user", content: "John is 30." },
        ...(continues ? [{ role: "assistant", content: "{" }] : []),
      ],
      ...extra,
    });
    assert.equal(res.status, 402, JSON.stringify(extra));
    assert.equal(res.headers.get("x-poe-proxy-guard"), "paused");
    assert.equal((await res.json()).error.code, "points_paused");
  }
  // Choices that force nothing, and an empty list, are a person's request: a friendly answer.
  for (const extra of [{ functions: [] }, { function_call: "auto" }, { tool_choice: "none" }]) {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
      ...extra,
    });
    assert.equal(res.status, 200, JSON.stringify(extra));
    assert.equal(res.headers.get("x-poe-proxy-guard"), "paused");
    assert.match((await res.json()).choices[0].message.content, /paused/);
  }
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("without a balance yet, requests go through and one warning is logged", async () => {
  await using t = await setup({ poll: false, fake: { balance: 10 } });
  for (let i = 0; i < 3; i++) {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      messages: [{ role: "user", content: "x" }],
    });
    const body = await res.json();
    assert.match(body.choices[0].message.content, /🏦 Current balance: unknown$/);
  }
  assert.equal(t.fake.chatRequests().length, 3);
  assert.equal(t.usageLogs.filter((l) => l.includes("no balance yet")).length, 1);
});

/** Sends `total` chat requests, `concurrency` at a time; counts Usage API calls and real costs. */
async function load(t: Awaited<ReturnType<typeof setup>>, total: number, concurrency: number) {
  const before = t.fake.usageCalls();
  let next = 0;
  let real = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const res = await post(t.proxy.url, {
        model: i % 2 ? "GPT-4o" : "Gemini-2.5-Pro",
        messages: [{ role: "user", content: `Load ${i} ${"x ".repeat(i % 37)}` }],
      });
      const body = await res.json();
      if (body.usage.points_estimated === false) real++;
    }
  }));
  const ms = performance.now() - started;
  const calls = t.fake.usageCalls() - before;
  const ratio = calls / total;
  printLine(
    `  load: ${total} requests at concurrency ${concurrency} in ${Math.round(ms)} ms: ` +
      `${calls} Usage API calls (${ratio.toFixed(3)} per request), ${real} real costs`,
  );
  return { ratio, real };
}

Deno.test("load: Usage API calls per chat request at concurrency 1, 20 and 32", async () => {
  await using t = await setup();
  // One at a time, each answer's history is read at once: about one call per request.
  const single = await load(t, 50, 1);
  assert.equal(single.real, 50);
  assert.ok(single.ratio <= 1.1, `ratio ${single.ratio}`);
  for (const concurrency of [20, 32]) {
    const { ratio, real } = await load(t, 400, concurrency);
    assert.equal(real, 400);
    assert.ok(ratio < 0.25, `ratio ${ratio}`);
  }
});

Deno.test("poe-proxy usage prints the balance, next grant and points per model", async () => {
  await using fake = await FakePoe.start({ balance: 765_432 });
  fake.addHistory({ bot_name: "GPT-4o", cost_points: 339 });
  fake.addHistory({ bot_name: "Claude-Sonnet-4.6", cost_points: 1200 });
  const run = async (args: string[], key = fake.apiKey) => {
    const out = await mainCommand(["usage", ...args], {
      POE_API_KEY: key,
      POE_BASE_URL: fake.url,
    }, { cwd: new URL("..", import.meta.url) }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
  };
  const table = await run([]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^Balance: 765,432 points\n/);
  assert.match(table.stdout, /Next (daily|monthly) grant: /);
  assert.match(table.stdout, /Claude-Sonnet-4\.6\s+1,200\s+1,200\s+1,200/);
  assert.match(table.stdout, /Total\s+1,539\s+1,539\s+1,539/);
  const json = await run(["--json"]);
  assert.equal(JSON.parse(json.stdout).total.points_30d, 1539);
  const denied = await run([], "wrong-key");
  assert.equal(denied.code, 2);
  assert.match(
    denied.stderr,
    /^Cannot read Poe's usage: Poe's \/usage\/\w+ answered 401/,
  );
  assert.ok(!denied.stderr.includes("wrong-key"));
});

Deno.test("footer balance: answers in quick succession show a balance that only goes down", async () => {
  await using t = await setup({ env: { FOOTER: "on" } });
  // The balance is not read again in between (Poe's Usage API lags or fails): the footers count
  // from the one snapshot.
  t.fake.balanceErrorStatus = 503;
  const balances: number[] = [];
  for (let i = 0; i < 6; i++) {
    const completion = await t.client.chat.completions.create({
      model: "gpt-4o",
      // Answers of different lengths cost different points.
      messages: [{ role: "user", content: `Hi ${"more ".repeat((5 - i) * 40)}` }],
    });
    balances.push((completion.usage as unknown as { balance_points: number }).balance_points);
  }
  for (let i = 1; i < balances.length; i++) {
    assert.ok(balances[i] <= balances[i - 1], `balances went up: ${balances.join(", ")}`);
  }
  assert.ok(balances.at(-1)! < balances[0]);
});

Deno.test("FOOTER=stream (the default): streamed answers get the footer, a program's non-streamed ones the points only", async () => {
  await using t = await setup({ env: { FOOTER: "stream" } });
  const ask = async (stream: boolean, header?: string) => {
    const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(header ? { "x-poe-proxy-footer": header } : {}),
      },
      body: JSON.stringify({
        model: "gpt-4o",
        stream,
        messages: [{ role: "system", content: "Write a one-line commit message." }, {
          role: "user",
          content: "diff --git a/x b/x",
        }],
      }),
    });
    return { headers: res.headers, text: await res.text() };
  };
  // A commit message: no footer, but the points in usage and headers.
  const plain = await ask(false);
  assert.doesNotMatch(plain.text, /📊 Tokens/);
  assert.ok(Number(plain.headers.get("x-poe-points")) > 0);
  assert.ok(typeof JSON.parse(plain.text).usage.cost_points === "number");
  // A chat streams: footer.
  assert.match((await ask(true)).text, /📊 Tokens/);
  // The header asks for it, or turns it off, either way.
  assert.match((await ask(false, "on")).text, /📊 Tokens/);
  for (const off of ["off", "false", "no", "0"]) {
    assert.doesNotMatch((await ask(true, off)).text, /📊 Tokens/, off);
  }
});

Deno.test("FOOTER=stream: a request with stop gets no footer unless its header asks; its points still come", async () => {
  await using t = await setup({ env: { FOOTER: "stream", FOOTER_WAIT_MS: "0" } });
  const ask = async (body: Record<string, unknown>, header?: string) => {
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "Complete: const x =" }],
      ...body,
    }, header ? { "x-poe-proxy-footer": header } : {});
    const events = chunks(await res.text());
    return {
      text: events.map((c) => c.choices[0]?.delta?.content ?? "").join(""),
      usage: events.at(-1).usage,
    };
  };
  for (const stop of ["\n", ["\n", ";"]]) {
    const answer = await ask({ stop });
    assert.equal(answer.text, DEFAULT_REPLY, JSON.stringify(stop));
    assert.equal(typeof answer.usage.cost_points, "number");
    assert.equal(typeof answer.usage.balance_points, "number");
    assert.match((await ask({ stop }, "on")).text, /📊 Tokens/, "the header forces it on");
  }
  // An empty stop sets no sequence.
  assert.match((await ask({ stop: [] })).text, /📊 Tokens/);
  assert.match((await ask({})).text, /📊 Tokens/);
});

Deno.test("an answer without text gets no footer, streamed or not: its content stays empty, its points come", async () => {
  await using t = await setup({ env: { FOOTER: "on", FOOTER_WAIT_MS: "0" } });
  for (const directives of ["reply=", "reply=,reasoning", "reply=%20%0A"]) {
    const messages = [{ role: "user", content: `Hi [[fake: ${directives}]]` }];
    const res = await post(t.proxy.url, {
      model: "gpt-4o",
      stream: true,
      stream_options: { include_usage: true },
      messages,
    });
    const events = chunks(await res.text());
    const text = events.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text.trim(), "", `${directives}: ${JSON.stringify(text)}`);
    assert.equal(typeof events.at(-1).usage.cost_points, "number", directives);
    const plain = await post(t.proxy.url, { model: "gpt-4o", messages });
    const answer = await plain.json();
    assert.equal(answer.choices[0].message.content.trim(), "", directives);
    assert.equal(typeof answer.usage.cost_points, "number", directives);
    assert.ok(Number(plain.headers.get("x-poe-points")) > 0);
  }
});

Deno.test("an answer counted at its estimate is corrected when its real cost lands: the next balance is right", async () => {
  await using t = await setup({ env: { FOOTER: "stream" } });
  // One snapshot for the whole test: the balances count from it.
  t.fake.balanceErrorStatus = 503;
  const ask = async () => {
    const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] }),
    });
    assert.equal(res.headers.get("x-poe-points-estimated"), "true");
    return (await res.json()).usage as { cost_points: number; balance_points: number };
  };
  const first = await ask();
  assert.ok(Number.isInteger(first.balance_points), String(first.balance_points));
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")));
  const real = Number(
    /late cost .*\bpoints=(\d+)/.exec(
      t.proxy.logs.find((l) => l.includes("late cost"))!,
    )![1],
  );
  assert.notEqual(real, first.cost_points, "the fake bills other than the estimate");
  const second = await ask();
  // The first answer counts at its real cost now, the second at its estimate.
  assert.equal(first.balance_points - second.balance_points, Math.round(real));
});

Deno.test("usage=none: a stream left by its client takes no later answer's entry, and no answer shows another's cost", async () => {
  await using t = await setup();
  // A stream its client leaves after the first chunk: Poe (here) does not bill it.
  await answerWith(t.proxy.url, {
    text: "abandon me",
    reply: "never read",
    directives: "stall=300,chunks=10",
    stream: true,
    leave: true,
  });
  await until(() => t.proxy.logs.some((l) => l.includes("status=499")));
  // Two answers without usage: the second ends while the first may still wait for its cost.
  const first = answerWith(t.proxy.url, {
    text: "y".repeat(400),
    reply: "first",
    directives: "usage=none",
    stream: false,
  });
  await until(() => t.fake.historyEntries().length === 1);
  await new Promise((r) => setTimeout(r, 100));
  const second = await answerWith(t.proxy.url, {
    text: "short",
    reply: "second",
    directives: "usage=none",
    stream: false,
  });
  const answers = [await first, second];
  const billed = t.fake.historyEntries().map((e) => e.cost_points).reverse();
  assert.deepEqual(billed, answers.map((a) => a.own), "billed: the two answers, not the left one");
  for (const a of answers) {
    assert.ok(a.estimated || a.points === a.own, `shown ${a.points} as real, cost ${a.own}`);
  }
  // The left answer is watched for, as Poe may bill it: neither answer's cost is logged as its.
  await new Promise((r) => setTimeout(r, 600));
  assert.deepEqual(lateCosts(t.proxy.logs), []);
});

Deno.test("usage=none: concurrent answers, one left by its client, never show another's cost as real", async () => {
  await using t = await setup();
  const answers = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    // Replies end in a shuffled order, 80 ms apart; the left one goes first.
    const stall = 150 + ((i * 3) % 8) * 80;
    return await answerWith(t.proxy.url, {
      text: "z".repeat(40 * (i + 1)),
      reply: `r${i}`,
      directives: `usage=none,chunks=3,stall=${i === 5 ? 400 : stall / 3}`,
      stream: i % 2 === 1,
      leave: i === 5,
    });
  }));
  await until(() => t.fake.historyEntries().length === 7);
  const billed = new Set(t.fake.historyEntries().map((e) => e.cost_points));
  assert.equal(billed.size, 7, "each answer costs its own amount");
  for (const a of answers) if (!a.left) assert.ok(billed.has(a.own));
  const wrong = answers.filter((a) => !a.left && !a.estimated && a.points !== a.own);
  assert.deepEqual(wrong, [], "shown as real: another answer's cost");
  await new Promise((r) => setTimeout(r, 600));
  const late = lateCosts(t.proxy.logs).map(Number);
  for (const points of late) {
    assert.ok(!answers.some((a) => !a.left && a.own === points), `late cost ${points}`);
  }
});

Deno.test("usage=none: a Poe that stamps entries when requests arrive does not swap two overlapping answers' costs", async () => {
  await using t = await setup();
  // The fake bills an answer not streamed with a stall when its headers go out, before its body:
  // the long one's entry is older than the short one's, which ends first.
  const long = answerWith(t.proxy.url, {
    text: "long ".repeat(80),
    reply: "long",
    directives: "usage=none,stall=700",
    stream: false,
  });
  await until(() => t.fake.historyEntries().length === 1);
  const short = await answerWith(t.proxy.url, {
    text: "short",
    reply: "short",
    directives: "usage=none",
    stream: false,
  });
  const answers = [await long, short];
  for (const a of answers) {
    assert.ok(a.estimated || a.points === a.own, `shown ${a.points} as real, cost ${a.own}`);
  }
});

Deno.test("usage=none: answers one after another keep their real costs", async () => {
  await using t = await setup();
  for (let i = 0; i < 3; i++) {
    const a = await answerWith(t.proxy.url, {
      text: "w".repeat(100 * (i + 1)),
      reply: `reply ${i}`,
      directives: "usage=none",
      stream: i % 2 === 0,
    });
    assert.deepEqual([a.points, a.estimated], [a.own, false]);
  }
});

Deno.test("usage=none: answers one after another, their entries shown after FOOTER_WAIT_MS, get their own late costs", async () => {
  await using t = await setup({ fake: { historyDelayMs: 700 }, env: { FOOTER_WAIT_MS: "200" } });
  const answers = [];
  for (let i = 0; i < 3; i++) {
    answers.push(
      await answerWith(t.proxy.url, {
        text: "v".repeat(150 * (i + 1)),
        reply: `reply ${i}`,
        directives: "usage=none",
        stream: false,
      }),
    );
  }
  assert.ok(answers.every((a) => a.estimated));
  await until(() => lateCosts(t.proxy.logs).length === 3);
  for (const a of answers) {
    const line = t.proxy.logs.find((l) => l.includes("late cost") && l.includes(a.id!))!;
    assert.match(line, new RegExp(`\\bpoints=${a.own}\\b`));
  }
});

Deno.test("points: a balance read before Poe debits an answer does not drop its cost from POINTS_CUTOFF", async () => {
  // Poe's entry shows 0 points for 3 s, then its final cost, debited only then. The footer waits
  // 1 s: the answer settles at its estimate, and the poller's reading 1.5 s after it predates
  // the debit.
  await using t = await setup({
    fake: { balance: 100_010, zeroCostMs: 3000 },
    env: { FOOTER: "on", FOOTER_WAIT_MS: "1000", POINTS_CUTOFF: "100000" },
  });
  const first = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  });
  assert.equal((await first.json()).usage.points_estimated, true);
  await until(() => t.proxy.logs.some((l) => l.includes("late cost")), 8000);
  assert.ok(t.fake.balance < 100_000, `Poe's balance ${t.fake.balance} is under the cutoff`);
  const second = await post(t.proxy.url, {
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  });
  await second.body?.cancel();
  assert.equal(second.headers.get("x-poe-proxy-guard"), "paused");
  assert.equal(t.fake.chatRequests().length, 1, "the second request never reached Poe");
});

Deno.test("POE_BASE_URL as Poe's docs give it, with /v1, reaches both the chat and the Usage API", async () => {
  await using fake = await FakePoe.start();
  await using proxy = await startProxy({
    poeUrl: `${fake.url}/v1/`,
    env: { FOOTER_WAIT_MS: "1500" },
  });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  let text = "";
  for await (
    const chunk of await client.chat.completions.create({
      model: "GPT-4o",
      stream: true,
      messages: [{ role: "user", content: "Hi" }],
    })
  ) text += chunk.choices[0]?.delta?.content ?? "";
  assert.match(text, /💰 Points: \d+\n/, "the real cost, read from the points history");
  // (The harness's app runs no balance poller: the history read is the Usage API's call here.)
  assert.deepEqual(
    [...new Set(fake.requests.map((r) => r.path))].sort(),
    ["/usage/points_history", "/v1/chat/completions"],
  );
});

/** The answer limit a body sent to Poe carries, in either field, or null. */
function answerLimitOf(body: any): number | null {
  return body.max_tokens ?? body.max_completion_tokens ?? null;
}
