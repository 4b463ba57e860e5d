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
