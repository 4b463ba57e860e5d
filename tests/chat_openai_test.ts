// deno-lint-ignore-file no-explicit-any
/** @module The chat pipeline as the official `openai` client sees it, against the fake Poe. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { DEFAULT_REASONING, DEFAULT_REPLY, FakePoe } from "./fake_poe.ts";
import { startFakeAndProxy, startProxy } from "./harness.ts";

/** The fake, the proxy wired to it, and an SDK client pointed at the proxy. */
async function setup(env: Record<string, string> = {}) {
  const fake = await FakePoe.start();
  const proxy = await startProxy({ poeUrl: fake.url, env: { FOOTER: "off", ...env } });
  const client = new OpenAI({
    baseURL: `${proxy.url}/v1`,
    apiKey: "client-secret-key",
    maxRetries: 0,
  });
  return {
    fake,
    proxy,
    client,
    /** The body of the last chat request the fake received. */
    sent: (): any => fake.chatRequests().at(-1)!.body,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await fake.close();
    },
  };
}

const WEATHER_TOOL = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "Weather of a city.",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "integer" } },
      required: ["city"],
    },
  },
};

Deno.test("openai SDK: a plain answer comes back as Poe sent it", async () => {
  await using t = await setup();
  const answer = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi" }],
  });
  assert.equal(answer.choices[0].message.content, DEFAULT_REPLY);
  assert.equal(answer.choices[0].finish_reason, "stop");
  assert.match(answer.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.ok(answer.usage && answer.usage.total_tokens > 0);
  const sent = t.sent();
  assert.equal(sent.model, "GPT-4o", "the registry's poe_name goes upstream");
  assert.equal(sent.stream, false, "stream absent means false upstream");
});

Deno.test("openai SDK: streamed text arrives in pieces and ends once", async () => {
  await using t = await setup();
  const stream = await t.client.chat.completions.create({
    model: "Claude-Sonnet-4.6",
    messages: [{ role: "user", content: "Hi [[fake: chunks=5]]" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let pieces = 0;
  let finish: string | null = null;
  let usage: any = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta.content) {
      text += choice.delta.content;
      pieces++;
    }
    finish = choice.finish_reason ?? finish;
  }
  assert.equal(text, DEFAULT_REPLY);
  assert.equal(pieces, 5);
  assert.equal(finish, "stop");
  assert.ok(usage.completion_tokens > 0, "the client asked for usage and got it");
  const sent = t.sent();
  assert.equal(sent.stream, true);
  assert.equal(sent.stream_options.include_usage, true);
});

Deno.test("openai SDK: streamed tool call arguments are reassembled by the SDK", async () => {
  await using t = await setup();
  const runner = t.client.chat.completions.stream({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Weather in Paris? [[fake: tools]]" }],
    tools: [WEATHER_TOOL],
  });
  const final = await runner.finalChatCompletion();
  const message = final.choices[0].message;
  assert.equal(final.choices[0].finish_reason, "tool_calls");
  assert.equal(message.tool_calls?.length, 1);
  const call = message.tool_calls![0] as any;
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris", days: 1 });
  assert.match(call.id, /^call_/);
  assert.deepEqual(t.sent().tools, [WEATHER_TOOL], "tools reach Poe unchanged");
});

/** OpenAI's form of a tool call id, as the proxy makes one. */
const MADE_ID = /^call_[A-Za-z0-9]{24}$/;

Deno.test("raw stream: tool calls Poe sent with an empty id or none each get their own id, once", async () => {
  await using t = await setup();
  for (const model of ["gpt-4o", "Gemini-2.5-Pro"]) {
    for (const toolId of ["empty", "none"]) {
      const what = `${model} tool-id=${toolId}`;
      const res = await fetch(`${t.proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model,
          stream: true,
          messages: [{
            role: "user",
            content: `Weather? [[fake: tool-calls=3,tool-id=${toolId}]]`,
          }],
          tools: [WEATHER_TOOL],
        }),
      });
      const deltas = (await res.text()).split("\n\n")
        .filter((e) => e.startsWith("data: {"))
        .flatMap((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.tool_calls ?? []);
      const ids = new Map<number, string>();
      for (const call of deltas) {
        if (!ids.has(call.index)) {
          assert.match(call.id, MADE_ID, what);
          ids.set(call.index, call.id);
        } else {
          // A later delta says nothing of the id: no "" that a raw reader could take for it.
          assert.ok(!("id" in call), `${what}: ${JSON.stringify(call)}`);
        }
      }
      assert.deepEqual([...ids.keys()], [0, 1, 2], what);
      assert.equal(new Set(ids.values()).size, 3, `${what}: every call its own id`);
    }
  }
  // The SDK's stream helper assembles the same calls, each with its id.
  const final = await t.client.chat.completions.stream({
    model: "Gemini-2.5-Pro",
    messages: [{ role: "user", content: "Weather? [[fake: tool-calls=2,tool-id=empty]]" }],
    tools: [WEATHER_TOOL],
  }).finalChatCompletion();
  const calls = final.choices[0].message.tool_calls as any[];
  assert.equal(calls.length, 2);
  for (const call of calls) {
    assert.match(call.id, MADE_ID);
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris", days: 1 });
  }
  assert.notEqual(calls[0].id, calls[1].id);
});

Deno.test("openai SDK: a tool-call answer not streamed has content null, and every call an id", async () => {
  await using t = await setup();
  const ask = async (directives: string) =>
    (await t.client.chat.completions.create({
      model: "Gemini-2.5-Pro",
      messages: [{ role: "user", content: `Weather? [[fake: ${directives}]]` }],
      tools: [WEATHER_TOOL],
    })).choices[0].message;
  for (const toolId of ["empty", "none"]) {
    const message = await ask(`tool-calls=2,tool-id=${toolId}`);
    assert.equal(message.content, null, "Poe's content: \"\" is OpenAI's null");
    const ids = message.tool_calls!.map((c) => c.id);
    assert.equal(ids.length, 2);
    for (const id of ids) assert.match(id, MADE_ID, toolId);
    assert.notEqual(ids[0], ids[1]);
  }
  // Poe's own ids are kept.
  const given = await ask("tools");
  assert.equal(given.content, null);
  assert.match(given.tool_calls![0].id, /^call_[0-9a-f]{24}$/);
  // A text answer keeps its text, and an empty one its "".
  const text = await ask("reply=Sunny.");
  assert.equal(text.content, "Sunny.");
  assert.equal((await ask("reply=")).content, "");
});

Deno.test("openai SDK: tool calls Poe sent without a type get one, streamed or not, so parse() takes them", async () => {
  await using t = await setup();
  const request = {
    model: "Gemini-2.5-Pro",
    messages: [{ role: "user" as const, content: "Weather? [[fake: tool-calls=2,tool-no-type]]" }],
    // parse() reads only strict tools.
    tools: [{ ...WEATHER_TOOL, function: { ...WEATHER_TOOL.function, strict: true } }],
  };
  const plain = await t.client.chat.completions.create(request);
  const streamed = await t.client.chat.completions.stream(request).finalChatCompletion();
  // parse() refuses a call without its type ("only 'function' and 'custom' tool calls").
  const parsed = await t.client.chat.completions.parse(request);
  for (const [what, completion] of [["plain", plain], ["streamed", streamed], ["parse", parsed]]) {
    const calls = (completion as typeof plain).choices[0].message.tool_calls as any[];
    assert.equal(calls.length, 2, what as string);
    for (const call of calls) {
      assert.equal(call.type, "function", what as string);
      assert.match(call.id, /^call_/, what as string);
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris", days: 1 });
    }
  }
  assert.equal(t.sent().messages[0].content, request.messages[0].content);
});

Deno.test("openai SDK: a JSON completion to a streamed request arrives as a stream its helpers accept", async () => {
  await using t = await setup();
  const stream = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Hi [[fake: json]]" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let finish: string | null = null;
  let usage: any = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  assert.equal(text, DEFAULT_REPLY);
  assert.equal(finish, "stop");
  assert.ok(usage.total_tokens > 0);
  assert.equal(t.sent().stream, true);
  const done = await t.client.chat.completions.stream({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Weather in Paris? [[fake: json,tools]]" }],
    tools: [WEATHER_TOOL],
  }).finalChatCompletion();
  assert.equal(done.choices[0].finish_reason, "tool_calls");
  const call = done.choices[0].message.tool_calls![0] as any;
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris", days: 1 });
});

Deno.test("openai SDK: tool call deltas without index (Google style) get one, helpers work", async () => {
  await using t = await setup();
  const stream = await t.client.chat.completions.create({
    model: "Gemini-2.5-Pro",
    messages: [{
      role: "user",
      content: "Weather? [[fake: tools,tool-args=%7B%22city%22:%22Oslo%22%7D]]",
    }],
    tools: [WEATHER_TOOL],
    stream: true,
  });
  let args = "";
  let name = "";
  for await (const chunk of stream) {
    for (const call of chunk.choices[0]?.delta.tool_calls ?? []) {
      assert.equal(call.index, 0);
      name += call.function?.name ?? "";
      args += call.function?.arguments ?? "";
    }
  }
  assert.equal(name, "get_weather");
  assert.deepEqual(JSON.parse(args), { city: "Oslo" });
  // The SDK's stream helper refuses a tool call delta without index, and a stream without role.
  const helper = t.client.chat.completions.stream({
    model: "Gemini-2.5-Pro",
    messages: [{ role: "user", content: "Weather? [[fake: tools,no-role]]" }],
    tools: [WEATHER_TOOL],
  });
  const done = await helper.finalChatCompletion();
  assert.equal(done.choices[0].finish_reason, "tool_calls");
  assert.equal(done.choices[0].message.role, "assistant");
  assert.equal((done.choices[0].message.tool_calls?.[0] as any).function.name, "get_weather");
});

/**
 * The SDK's stream helper's final completion of a stream of tool call deltas (`calls`, each one
 * delta's `tool_calls[0]`) that a scripted Poe sends through the proxy.
 */
async function toolCallsThroughHelper(calls: unknown[]): Promise<any[]> {
  const head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",';
  const event = (delta: unknown, finish: string | null = null) =>
    `data: ${head}"choices":[{"index":0,"delta":${JSON.stringify(delta)},"finish_reason":${
      JSON.stringify(finish)
    }}]}\n\n`;
  const body = [
    ...calls.map((call) => event({ tool_calls: [call] })),
    event({}, "tool_calls"),
    "data: [DONE]\n\n",
  ].join("");
  await using upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(body, { headers: { "content-type": "text/event-stream" } }),
  );
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${upstream.addr.port}`,
    env: { FOOTER: "off" },
  });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  const done = await client.chat.completions.stream({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Two calls." }],
    tools: [WEATHER_TOOL],
  }).finalChatCompletion();
  return done.choices[0].message.tool_calls!;
}

Deno.test("openai SDK: parallel tool calls without index are numbered by their ids", async () => {
  const calls = await toolCallsThroughHelper([
    { id: "a", type: "function", function: { name: "one", arguments: "" } },
    { function: { arguments: '{"x":' } },
    { function: { arguments: "1}" } },
    { id: "b", type: "function", function: { name: "two", arguments: "{}" } },
  ]);
  assert.deepEqual(calls.map((c) => [c.id, c.function.name, c.function.arguments]), [
    ["a", "one", '{"x":1}'],
    ["b", "two", "{}"],
  ]);
});

Deno.test("openai SDK: tool call deltas without type get one, and the stream helper accepts them", async () => {
  const calls = await toolCallsThroughHelper([
    // With an index, and without (Gemini's habit): neither names the type.
    { index: 0, id: "a", function: { name: "one", arguments: '{"x":' } },
    { index: 0, function: { arguments: "1}" } },
    { id: "", function: { name: "two", arguments: "{}" } },
  ]);
  assert.deepEqual(calls.map((c) => [c.type, c.function.name, c.function.arguments]), [
    ["function", "one", '{"x":1}'],
    ["function", "two", "{}"],
  ]);
});

Deno.test("openai SDK: reasoning_content and reasoning deltas pass through", async () => {
  await using t = await setup();
  const stream = await t.client.chat.completions.create({
    model: "o3-mini",
    messages: [{ role: "user", content: "Think." }],
    stream: true,
  });
  let reasoningContent = "";
  let reasoning = "";
  let content = "";
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta as any;
    if (!delta) continue;
    reasoningContent += delta.reasoning_content ?? "";
    reasoning += delta.reasoning ?? "";
    content += delta.content ?? "";
  }
  assert.equal(reasoningContent, DEFAULT_REASONING);
  assert.equal(reasoning, DEFAULT_REASONING);
  assert.equal(content, DEFAULT_REPLY);

  const plain = await t.client.chat.completions.create({
    model: "o3-mini",
    messages: [{ role: "user", content: "Think." }],
  });
  const message = plain.choices[0].message as any;
  assert.equal(message.reasoning_content, DEFAULT_REASONING);
  assert.equal(message.reasoning, DEFAULT_REASONING);
});

Deno.test("openai SDK: an image part reaches Poe unchanged", async () => {
  await using t = await setup();
  const png = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(3000))));
  const content = [
    { type: "text" as const, text: "What is in this image?" },
    {
      type: "image_url" as const,
      image_url: { url: `data:image/png;base64,${png}`, detail: "high" as const },
    },
    {
      type: "file" as const,
      file: { filename: "a.pdf", file_data: "data:application/pdf;base64,JVBERi0xLjQK" },
    },
  ];
  const answer = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content }],
  });
  assert.equal(answer.choices[0].message.content, DEFAULT_REPLY);
  assert.deepEqual(t.sent().messages, [{ role: "user", content }]);
});

Deno.test("openai SDK: model-specific and unknown fields reach Poe unchanged", async () => {
  await using t = await setup();
  const params: any = {
    model: "claude-sonnet",
    messages: [{ role: "user", content: "Hi" }],
    reasoning_effort: "low",
    thinking_budget: 2048,
    aspect: "16:9",
    web_search: true,
    extra_body: { quality: "high", nested: { a: [1, 2, { b: null }] } },
    temperature: 0.3,
    top_p: 0.9,
    stop: ["\n\n"],
    max_tokens: 100,
    max_completion_tokens: 120,
    seed: 7,
    user: "someone",
    metadata: { k: "v" },
    response_format: { type: "text" },
    n: 1,
    tool_choice: "auto",
    parallel_tool_calls: false,
    logprobs: true,
    top_logprobs: 2,
  };
  await t.client.chat.completions.create(params);
  const sent = t.sent();
  const { model, n, stream, ...rest } = sent;
  const { model: _m, n: _n, ...expected } = params;
  assert.deepEqual(rest, expected);
  assert.equal(model, "Claude-Sonnet-4.6", "an alias resolves to the poe_name");
  assert.equal(n, 1);
  assert.equal(stream, false);
});

Deno.test("openai SDK: messages keep name, tool_calls, tool_call_id and null content", async () => {
  await using t = await setup();
  const messages: any[] = [
    { role: "developer", content: "Be brief." },
    { role: "system", content: "You are a weather bot.", name: "rules" },
    { role: "user", content: "Weather in Paris?", name: "alice" },
    {
      role: "assistant",
      content: null,
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "get_weather", arguments: '{"city":"Paris"}' },
      }],
    },
    { role: "tool", tool_call_id: "call_1", content: '{"temp":21}' },
    { role: "assistant", content: "", refusal: null, audio: null },
    { role: "user", content: [{ type: "text", text: "Thanks" }] },
  ];
  await t.client.chat.completions.create({ model: "gpt-4o", messages, tools: [WEATHER_TOOL] });
  const sent = t.sent().messages;
  assert.deepEqual(sent, [{ role: "system", content: "Be brief." }, ...messages.slice(1)]);
  assert.equal(sent[3].content, null, "null content stays null, not a string");
});

Deno.test("openai SDK: Poe's error reaches the SDK as an APIError with status and message", async () => {
  await using t = await setup();
  await assert.rejects(
    t.client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi [[fake: status=402,message=No points left.]]" }],
    }),
    (err: any) => {
      assert.ok(err instanceof OpenAI.APIError);
      assert.equal(err.status, 402);
      assert.match(err.message, /No points left\./);
      assert.match(err.message, /out of points/);
      return true;
    },
  );
});

Deno.test("openai SDK: a base URL without /v1, or with a trailing slash, works; other APIs get a 404 that says why", async () => {
  await using t = await startFakeAndProxy();
  for (const baseURL of [t.proxy.url, `${t.proxy.url}/`, `${t.proxy.url}/v1/`]) {
    const client = new OpenAI({ baseURL, apiKey: "k", maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "Hi" }],
    });
    assert.equal(completion.choices[0].message.role, "assistant", baseURL);
    assert.ok((await client.models.list()).data.length > 0, baseURL);
    assert.equal((await client.models.retrieve("gpt-4o")).id, "GPT-4o", baseURL);
  }
  // What Zed builds from a base URL with a trailing slash.
  const zed = await fetch(`${t.proxy.url}/v1//chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] }),
  });
  assert.equal(zed.status, 200);
  await zed.body?.cancel();
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 0 });
  await assert.rejects(
    client.responses.create({ model: "gpt-4o", input: "Hi" }),
    (err: unknown) =>
      err instanceof OpenAI.NotFoundError && /Chat Completions API/.test(err.message),
  );
  await assert.rejects(
    client.embeddings.create({ model: "x", input: "Hi" }),
    (err: unknown) =>
      err instanceof OpenAI.NotFoundError && /Poe has no such API/.test(err.message),
  );
});

Deno.test("openai SDK: an answer Poe sent without usage gets counted usage, streamed or not", async () => {
  await using t = await setup({ FOOTER: "on" });
  const messages = [{ role: "user" as const, content: "Hi [[fake: usage=none]]" }];
  const answer = await t.client.chat.completions.create({ model: "gpt-4o", messages });
  const u: any = answer.usage;
  assert.ok(u, "OpenAI's answers always carry usage");
  assert.equal(u.tokens_estimated, true);
  assert.ok(u.prompt_tokens > 0);
  assert.equal(u.completion_tokens, 5, `"${DEFAULT_REPLY}" in o200k_base`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(typeof u.cost_points, "number", "the points extras join it");

  // A tool call's name and arguments are answer tokens too.
  const stream = await t.client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "Weather? [[fake: usage=none,tools]]" }],
    tools: [WEATHER_TOOL],
    stream: true,
    stream_options: { include_usage: true },
  });
  let last: any = null;
  let args = "";
  for await (const chunk of stream) {
    last = chunk;
    args += chunk.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? "";
  }
  assert.ok(args.length > 0);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.tokens_estimated, true);
  assert.ok(last.usage.completion_tokens >= 3, "get_weather and its arguments");
  assert.ok(
    last.usage.prompt_tokens > u.prompt_tokens,
    "the tool's definition counts toward the prompt",
  );
});

Deno.test("openai SDK: Poe's ping events, chunks without id or model and events after [DONE] do not reach it", async () => {
  const bare = (delta: Record<string, unknown>) =>
    `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
  const body = bare({ role: "assistant", content: "" }) +
    `event: ping\ndata: {"type":"ping"}\n\n` + bare({ content: "Hello" }) + `data: {}\n\n` +
    // No finish_reason, no usage: the proxy makes both chunks.
    `data: [DONE]\n\n` + bare({ content: "EXTRA" });
  await using poe = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      await req.body?.cancel();
      if (!req.url.endsWith("/chat/completions")) return new Response(null, { status: 404 });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  );
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${poe.addr.port}`,
    env: { FOOTER: "off" },
  });
  const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "x", maxRetries: 0 });
  const request = {
    model: "gpt-4o",
    messages: [{ role: "user" as const, content: "Hi" }],
    stream_options: { include_usage: true },
  };
  const done = await client.chat.completions.stream(request).finalChatCompletion();
  assert.equal(done.choices[0].message.content, "Hello");
  assert.equal(done.choices[0].finish_reason, "stop");

  const chunks: any[] = [];
  for await (const c of await client.chat.completions.create({ ...request, stream: true })) {
    chunks.push(c);
  }
  // The proxy's own: the finish chunk and the usage chunk, one id and the model asked for.
  const own = chunks.filter((c) => c.id);
  assert.equal(own.length, 2, JSON.stringify(chunks));
  assert.equal(own[0].id, own[1].id);
  assert.deepEqual(own.map((c) => c.model), ["gpt-4o", "gpt-4o"]);
});
