// deno-lint-ignore-file no-explicit-any
/** @module Legacy function calling: sent to Poe as tools, answered as a `function_call`. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FakePoe } from "./fake_poe.ts";
import { startProxy } from "./harness.ts";
import {
  functionCallAnswer,
  functionCallDelta,
  toolsFromFunctions,
  usesLegacyFunctions,
} from "../lib/legacy_functions.ts";

const WEATHER = {
  name: "get_weather",
  description: "Weather of a city.",
  parameters: {
    type: "object",
    properties: { city: { type: "string" }, days: { type: "integer" } },
    required: ["city"],
  },
};

Deno.test("toolsFromFunctions: functions, function_call and the legacy history become tools", () => {
  const body = {
    model: "GPT-4o",
    functions: [WEATHER],
    function_call: { name: "get_weather" },
    messages: [
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        content: null,
        function_call: { name: "get_weather", arguments: '{"city":"Paris"}' },
      },
      { role: "function", name: "get_weather", content: '{"temp":21}' },
      { role: "user", content: "And Oslo?" },
    ],
  };
  const out = toolsFromFunctions(body) as any;
  assert.deepEqual(out.tools, [{ type: "function", function: WEATHER }]);
  assert.deepEqual(out.tool_choice, { type: "function", function: { name: "get_weather" } });
  assert.ok(!("parallel_tool_calls" in out), "reasoning models refuse it: not set");
  assert.ok(!("functions" in out) && !("function_call" in out));
  assert.deepEqual(out.messages[1], {
    role: "assistant",
    content: null,
    tool_calls: [{
      id: "call_legacy_1",
      type: "function",
      function: { name: "get_weather", arguments: '{"city":"Paris"}' },
    }],
  });
  assert.deepEqual(out.messages[2], {
    role: "tool",
    tool_call_id: "call_legacy_1",
    content: '{"temp":21}',
  });
  assert.deepEqual(out.messages[3], body.messages[3]);
  assert.equal((body as any).functions.length, 1, "the request itself is not changed");
  assert.ok("function_call" in body.messages[1]);
  for (const choice of ["auto", "none"]) {
    assert.equal(
      (toolsFromFunctions({ ...body, function_call: choice }) as any).tool_choice,
      choice,
    );
  }
  assert.ok(usesLegacyFunctions(body));
  // With tools as well, the request is a tools one: functions are dropped, nothing translated.
  const both = { ...body, tools: [{ type: "function", function: WEATHER }] };
  assert.ok(!usesLegacyFunctions(both));
  const plain = { model: "GPT-4o", messages: [{ role: "user", content: "Hi" }] };
  assert.equal(toolsFromFunctions(plain), plain, "nothing legacy: the same body");
});

Deno.test("toolsFromFunctions: a function result no call asked for gets the call written before it", () => {
  const out = toolsFromFunctions({
    model: "GPT-4o",
    functions: [WEATHER],
    messages: [
      { role: "user", content: "Hi" },
      { role: "function", name: "get_weather", content: '{"temp":21}' },
      { role: "user", content: "And?" },
      { role: "assistant", content: null, function_call: { name: "get_weather", arguments: "{}" } },
      { role: "function", name: "get_weather", content: "1" },
      { role: "user", content: "Again" },
      { role: "function", name: "get_weather", content: "2" },
    ],
  }) as any;
  assert.deepEqual(out.messages.map((m: any) => m.role), [
    "user",
    "assistant",
    "tool",
    "user",
    "assistant",
    "tool",
    "user",
    "assistant",
    "tool",
  ]);
  // Each tool result follows the call it answers, by its id.
  for (const i of [2, 5, 8]) {
    assert.equal(out.messages[i].tool_call_id, out.messages[i - 1].tool_calls[0].id, `${i}`);
  }
  assert.equal(out.messages[1].tool_calls[0].function.name, "get_weather");
  assert.equal(new Set([2, 5, 8].map((i) => out.messages[i].tool_call_id)).size, 3);
});

Deno.test("functionCallAnswer and functionCallDelta give the first tool call as a function_call", () => {
  const choice: any = {
    index: 0,
    finish_reason: "tool_calls",
    message: {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
    },
  };
  assert.ok(functionCallAnswer(choice));
  assert.deepEqual(choice, {
    index: 0,
    finish_reason: "function_call",
    message: { role: "assistant", content: null, function_call: { name: "f", arguments: "{}" } },
  });
  assert.ok(!functionCallAnswer({ message: { content: "Hi" }, finish_reason: "stop" }));
  const first: any = {
    delta: {
      role: "assistant",
      tool_calls: [
        { index: 0, id: "c1", type: "function", function: { name: "f", arguments: "" } },
      ],
    },
  };
  assert.ok(functionCallDelta(first));
  assert.deepEqual(first.delta, { role: "assistant", function_call: { name: "f", arguments: "" } });
  const piece: any = { delta: { tool_calls: [{ index: 0, function: { arguments: '{"a"' } }] } };
  functionCallDelta(piece);
  assert.deepEqual(piece.delta, { function_call: { arguments: '{"a"' } });
  const other: any = { delta: { tool_calls: [{ index: 1, function: { arguments: "x" } }] } };
  functionCallDelta(other);
  assert.deepEqual(other.delta, {}, "a second call is dropped");
  const end: any = { delta: {}, finish_reason: "tool_calls" };
  assert.ok(functionCallDelta(end));
  assert.equal(end.finish_reason, "function_call");
  assert.ok(!functionCallDelta({ delta: { content: "Hi" }, finish_reason: null }));
});

async function setup() {
  const fake = await FakePoe.start();
  const proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER: "off" } });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  return {
    fake,
    client,
    sent: (): any => fake.chatRequests().at(-1)!.body,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await fake.close();
    },
  };
}

Deno.test("openai SDK, legacy functions: Poe gets tools, the client a function_call, not streamed and streamed", async () => {
  await using t = await setup();
  const request = {
    model: "gpt-4o",
    messages: [{ role: "user" as const, content: "Weather in Paris? [[fake: tools]]" }],
    functions: [WEATHER],
    function_call: { name: "get_weather" },
  };
  const answer = await t.client.chat.completions.create(request);
  const choice = answer.choices[0] as any;
  assert.equal(choice.finish_reason, "function_call");
  assert.equal(choice.message.tool_calls, undefined);
  assert.equal(choice.message.function_call.name, "get_weather");
  assert.deepEqual(JSON.parse(choice.message.function_call.arguments), { city: "Paris", days: 1 });
  const sent = t.sent();
  assert.deepEqual(sent.tools, [{ type: "function", function: WEATHER }]);
  assert.deepEqual(sent.tool_choice, { type: "function", function: { name: "get_weather" } });
  assert.equal(sent.functions, undefined);

  const stream = await t.client.chat.completions.create({ ...request, stream: true });
  let name = "";
  let args = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0] as any;
    if (!c) continue;
    assert.equal(c.delta?.tool_calls, undefined);
    name += c.delta?.function_call?.name ?? "";
    args += c.delta?.function_call?.arguments ?? "";
    finish = c.finish_reason ?? finish;
  }
  assert.equal(name, "get_weather");
  assert.deepEqual(JSON.parse(args), { city: "Paris", days: 1 });
  assert.equal(finish, "function_call");

  // The next turn sends the call and its result back in the legacy form: Poe gets a tool round.
  await t.client.chat.completions.create({
    model: "gpt-4o",
    functions: [WEATHER],
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: null, function_call: choice.message.function_call },
      { role: "function", name: "get_weather", content: '{"temp":21}' },
    ],
  });
  const next = t.sent();
  assert.deepEqual(next.messages.map((m: any) => m.role), ["user", "assistant", "tool"]);
  assert.equal(next.messages[2].tool_call_id, next.messages[1].tool_calls[0].id);
});

Deno.test("openai SDK, legacy functions: an answer Poe sent no usage for counts its call", async () => {
  await using t = await setup();
  const ask = async (legacy: boolean) =>
    (await t.client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Weather in Paris? [[fake: tools,usage=none]]" }],
      ...(legacy ? { functions: [WEATHER] } : { tools: [{ type: "function", function: WEATHER }] }),
    })).usage!;
  const tools = await ask(false);
  const legacy = await ask(true);
  assert.ok(tools.completion_tokens > 0);
  // Counted as the same call (its made-up id aside): not 0.
  assert.ok(
    Math.abs(legacy.completion_tokens - tools.completion_tokens) <= 4,
    `${legacy.completion_tokens}`,
  );
  assert.ok(legacy.completion_tokens > 0);
});

Deno.test("openai SDK: a tools request is answered with tool_calls as before", async () => {
  await using t = await setup();
  const answer = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Weather in Paris? [[fake: tools]]" }],
    tools: [{ type: "function", function: WEATHER }],
  });
  assert.equal(answer.choices[0].finish_reason, "tool_calls");
  assert.equal(answer.choices[0].message.tool_calls?.length, 1);
  assert.equal((answer.choices[0].message as any).function_call, undefined);
});
