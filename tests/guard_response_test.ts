// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { guardResponse } from "../lib/guard_response.ts";
import { body } from "./guards_fixture.ts";

Deno.test("guardResponse answers a non-streamed request with a complete chat.completion", async () => {
  // A balance less fractional spending (estimates) is shown whole, as the footers show it.
  const res = guardResponse({ guard: "paused", message: "Paused.", balance: 5.4 }, body());
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-poe-proxy-guard"), "paused");
  assert.equal(res.headers.get("content-type"), "application/json");
  const json: any = await res.json();
  assert.match(json.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(json.object, "chat.completion");
  assert.equal(json.model, "gpt-4o");
  assert.deepEqual(json.choices, [{
    index: 0,
    message: { role: "assistant", content: "Paused." },
    finish_reason: "stop",
  }]);
  assert.equal(json.usage.balance_points, 5);
  assert.equal(json.usage.cost_points, 0);
});

Deno.test("guardResponse streams role, content, stop, usage when asked, then [DONE]", async () => {
  const res = guardResponse(
    { guard: "cost-cap", message: "Too dear.", balance: null },
    body({ stream: true, stream_options: { include_usage: true } }),
  );
  assert.equal(res.headers.get("x-poe-proxy-guard"), "cost-cap");
  assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
  const events = (await res.text()).split("\n\n").filter(Boolean).map((e) => e.slice(6));
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "Too dear." });
  assert.equal(chunks[1].choices[0].finish_reason, "stop");
  assert.deepEqual(chunks[2].choices, []);
  assert.equal(chunks[2].usage.total_tokens, 0);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id));
  const plain = guardResponse(
    { guard: "paused", message: "x", balance: 1 },
    body({ stream: true }),
  );
  const plainEvents = (await plain.text()).split("\n\n").filter(Boolean);
  assert.equal(plainEvents.length, 3);
});

Deno.test("guardResponse answers a client that asks for no footer with the 402 error, not prose", async () => {
  // Cline and Continue users send the header: their answers land in commit messages and summaries.
  for (const value of ["off", "false", "0", "No"]) {
    const res = guardResponse(
      { guard: "paused", message: "Paused.", balance: 1 },
      body({ stream: true }),
      new Headers({ "x-poe-proxy-footer": value }),
    );
    assert.equal(res.status, 402, value);
    assert.equal(res.headers.get("x-poe-proxy-guard"), "paused");
    const json = await res.json();
    assert.equal(json.error.code, "points_paused");
    assert.equal(json.error.message, "Paused.");
  }
  const person = guardResponse(
    { guard: "cost-cap", message: "Too dear.", balance: 1 },
    body(),
    new Headers({ "x-poe-proxy-footer": "on" }),
  );
  assert.equal(person.status, 200);
  await person.body?.cancel();
});
