/** @module Stream shaping: the role of the first delta and tool call indexes. */
import assert from "node:assert/strict";
import { StreamShaper } from "../lib/stream_shape.ts";
import { relaySse } from "../lib/sse.ts";

// deno-lint-ignore no-explicit-any
const chunk = (delta: Record<string, unknown>): any => ({
  id: "c",
  object: "chat.completion.chunk",
  created: 1,
  model: "m",
  choices: [{ index: 0, delta, finish_reason: null }],
});

function indexes(deltas: Record<string, unknown>[][]): number[][] {
  const shaper = new StreamShaper();
  return deltas.map((calls) => {
    const c = chunk({ tool_calls: calls });
    shaper.shape(c);
    return c.choices[0].delta.tool_calls.map((t: { index: number }) => t.index);
  });
}

Deno.test("StreamShaper: the first delta gets role assistant, also over a null role", () => {
  for (const delta of [{ content: "Hi" }, { role: null, content: "Hi" }]) {
    const shaper = new StreamShaper();
    const first = chunk(delta);
    assert.equal(shaper.shape(first), true);
    assert.deepEqual(first.choices[0].delta, { role: "assistant", content: "Hi" });
    const next = chunk({ content: "!" });
    assert.equal(shaper.shape(next), false);
    assert.deepEqual(next.choices[0].delta, { content: "!" });
  }
  const given = chunk({ role: "assistant", content: "" });
  assert.equal(new StreamShaper().shape(given), false);
});

Deno.test("StreamShaper: tool call deltas without index are numbered by id, name and position", () => {
  const fn = (name: string, args = "") => ({ name, arguments: args });
  // OpenAI style without index: a new id opens a call, pieces without id continue it.
  assert.deepEqual(
    indexes([
      [{ id: "a", type: "function", function: fn("one") }],
      [{ function: { arguments: "{}" } }],
      [{ id: "b", type: "function", function: fn("two") }],
      [{ function: { arguments: "{}" } }],
    ]),
    [[0], [0], [1], [1]],
  );
  // Gemini: whole calls with id "" and a name each.
  assert.deepEqual(
    indexes([
      [{ id: "", type: "function", function: fn("glob", "{}") }],
      [{ id: "", type: "function", function: fn("read", "{}") }],
    ]),
    [[0], [1]],
  );
  // Several calls in one delta, without ids.
  assert.deepEqual(indexes([[{ function: fn("a", "{}") }, { function: fn("b", "{}") }]]), [[0, 1]]);
  // Given indexes are kept, and counting goes on after them.
  assert.deepEqual(
    indexes([[{ index: 0, id: "x", function: fn("x") }], [{ id: "y", function: fn("y") }]]),
    [[0], [1]],
  );
});

/** The tool call deltas of `deltas`, each one chunk's, after shaping. */
function shaped(deltas: Record<string, unknown>[][]): Record<string, unknown>[][] {
  const shaper = new StreamShaper();
  return deltas.map((calls) => {
    const c = chunk({ tool_calls: calls });
    shaper.shape(c);
    return c.choices[0].delta.tool_calls;
  });
}

Deno.test("StreamShaper: a call without an id gets one in its first delta; later empty ids are left out", () => {
  const made = /^call_[A-Za-z0-9]{24}$/;
  const fn = (name: string) => ({ name, arguments: "" });
  // Gemini: every delta of every call says id "", without index.
  const gemini = shaped([
    [{ id: "", type: "function", function: fn("glob") }],
    [{ id: "", function: { arguments: "{}" } }],
    [{ id: "", type: "function", function: fn("read") }],
    [{ id: null, function: { arguments: "{}" } }],
  ]);
  assert.match(String(gemini[0][0].id), made);
  assert.match(String(gemini[2][0].id), made);
  assert.notEqual(gemini[0][0].id, gemini[2][0].id);
  assert.ok(!("id" in gemini[1][0]) && !("id" in gemini[3][0]));
  assert.deepEqual(gemini.map((d) => d[0].index), [0, 0, 1, 1]);
  // With indexes, and with no id at all; two calls in one delta.
  const indexed = shaped([
    [{ index: 0, function: fn("a") }, { index: 1, id: "", function: fn("b") }],
    [{ index: 1, id: "", function: { arguments: "{}" } }],
  ]);
  assert.match(String(indexed[0][0].id), made);
  assert.match(String(indexed[0][1].id), made);
  assert.notEqual(indexed[0][0].id, indexed[0][1].id);
  assert.deepEqual(indexed[1][0], { index: 1, function: { arguments: "{}" } });
  // A given id is kept, and so is its repetition in a later delta.
  const given = shaped([
    [{ index: 0, id: "call_x", type: "function", function: fn("a") }],
    [{ index: 0, id: "call_x", function: { arguments: "{}" } }],
  ]);
  assert.equal(given[0][0].id, "call_x");
  assert.equal(given[1][0].id, "call_x");
});

Deno.test("StreamShaper: a call with its id, index and type is left as it came", () => {
  const shaper = new StreamShaper();
  shaper.shape(chunk({ role: "assistant", content: "" }));
  const call = { index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } };
  const first = chunk({ tool_calls: [call] });
  assert.equal(shaper.shape(first), false);
  assert.equal(first.choices[0].delta.tool_calls[0], call);
  assert.equal(
    shaper.shape(chunk({ tool_calls: [{ index: 0, function: { arguments: "{}" } }] })),
    false,
  );
});

Deno.test("relaySse: empty tool_calls arrays do not make a text answer a tool call", async () => {
  const events = [
    chunk({ role: "assistant", content: "Hi", tool_calls: [] }),
    chunk({ content: " there", tool_calls: [] }),
  ].map((c) => `data: ${JSON.stringify(c)}\n\n`).join("");
  const upstream = ReadableStream.from([new TextEncoder().encode(events)]);
  let finish: string | null = null;
  const relay = relaySse(upstream, {
    keepaliveMs: 60_000,
    firstByteTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    includeUsage: false,
    finish: (summary) => {
      finish = summary.finishReason;
      return null;
    },
    abortUpstream: () => {},
  });
  const text = await new Response(relay).text();
  assert.equal(finish, "stop");
  assert.match(text, /"finish_reason":"stop"/);
});
