import assert from "node:assert/strict";
import { completionToSse } from "../lib/completion_events.ts";
import { startProxy } from "./harness.ts";

const COMPLETION = {
  id: "chatcmpl-706de75e5d1b8d5c74d93e10",
  object: "chat.completion",
  created: 1774577726,
  model: "GPT-4o",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "Hello there." },
    finish_reason: "stop",
  }],
  usage: { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 },
};

function events(sse: string): unknown[] {
  return sse.split("\n\n").filter(Boolean).map((e) => e.slice("data: ".length)).map((d) =>
    d === "[DONE]" ? d : JSON.parse(d)
  );
}

Deno.test("completionToSse: message, finish and usage chunks, then one [DONE]", () => {
  const out = events(completionToSse(COMPLETION));
  assert.deepEqual(out, [
    {
      id: COMPLETION.id,
      object: "chat.completion.chunk",
      created: COMPLETION.created,
      model: "GPT-4o",
      choices: [{
        index: 0,
        delta: { role: "assistant", content: "Hello there." },
        finish_reason: null,
      }],
    },
    {
      id: COMPLETION.id,
      object: "chat.completion.chunk",
      created: COMPLETION.created,
      model: "GPT-4o",
      choices: [{ index: 0, delta: {}, finish_reason: "stop" }],
    },
    {
      id: COMPLETION.id,
      object: "chat.completion.chunk",
      created: COMPLETION.created,
      model: "GPT-4o",
      choices: [],
      usage: COMPLETION.usage,
    },
    "[DONE]",
  ]);
});

Deno.test("completionToSse: tool calls get their index", () => {
  const call = { id: "call_1", type: "function", function: { name: "f", arguments: "{}" } };
  const out = events(completionToSse({
    ...COMPLETION,
    choices: [{
      index: 0,
      message: { role: "assistant", content: "", tool_calls: [call] },
      finish_reason: "tool_calls",
    }],
  })) as { choices: { delta: { tool_calls?: unknown[] } }[] }[];
  assert.deepEqual(out[0].choices[0].delta.tool_calls, [{ index: 0, ...call }]);
});

Deno.test("a streamed request that Poe answers with JSON still reaches the client as a stream", async () => {
  const upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json(COMPLETION),
  );
  await using proxy = await startProxy({
    poeUrl: `http://127.0.0.1:${upstream.addr.port}`,
    env: { FOOTER: "off" },
  });
  try {
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /text\/event-stream/);
    const out = events(await res.text()) as { choices?: { delta?: { content?: string } }[] }[];
    assert.equal(out[0].choices?.[0].delta?.content, "Hello there.");
    assert.equal(out.at(-1) as unknown, "[DONE]");
    assert.equal(out.filter((e) => (e as unknown) === "[DONE]").length, 1);
  } finally {
    await upstream.shutdown();
  }
});
