import assert from "node:assert/strict";
import {
  answerTextOf,
  chunkBase,
  dataEvent,
  DONE,
  errorEvent,
  footerChunk,
  isPlainDelta,
  KEEPALIVE,
  openAiErrorEvent,
} from "../lib/sse_events.ts";

const delta = (fields: string) =>
  `{"id":"c1","choices":[{"index":0,"delta":{${fields}},"finish_reason":null}]}`;

Deno.test("dataEvent gives each line of a multi-line event its own data field", () => {
  assert.equal(dataEvent('{"a":1}'), 'data: {"a":1}\n\n');
  assert.equal(dataEvent("one\ntwo\nthree"), "data: one\ndata: two\ndata: three\n\n");
});

Deno.test("DONE and KEEPALIVE are the stream's end and an SSE comment", () => {
  assert.equal(DONE, "data: [DONE]\n\n");
  assert.equal(new TextDecoder().decode(KEEPALIVE), ": keep-alive\n\n");
});

Deno.test("errorEvent is an OpenAI error body in one data event, param null by default", () => {
  assert.equal(
    errorEvent("gone", "server_error", "x_code"),
    'data: {"error":{"message":"gone","type":"server_error","param":null,"code":"x_code"}}\n\n',
  );
  const withParam = JSON.parse(errorEvent("bad", "invalid_request_error", null, "model").slice(6));
  assert.deepEqual(withParam, {
    error: { message: "bad", type: "invalid_request_error", param: "model", code: null },
  });
});

Deno.test("openAiErrorEvent makes Poe's numeric code a string and fills what is missing", () => {
  const parse = (event: string) => JSON.parse(event.slice("data: ".length));
  assert.deepEqual(
    parse(openAiErrorEvent({ code: 429, type: "rate_limit_error", message: "slow", metadata: {} })),
    { error: { message: "slow", type: "rate_limit_error", param: null, code: "429" } },
  );
  assert.deepEqual(parse(openAiErrorEvent({ code: 0, param: "messages" })), {
    error: {
      message: "Poe reported an error in the stream.",
      type: "upstream_error",
      param: "messages",
      code: "0",
    },
  });
  // Fields of the wrong type are not passed on.
  assert.deepEqual(parse(openAiErrorEvent({ message: 5, type: {}, param: 1, code: null })), {
    error: {
      message: "Poe reported an error in the stream.",
      type: "upstream_error",
      param: null,
      code: null,
    },
  });
  assert.deepEqual(
    parse(openAiErrorEvent(null)).error.message,
    "Poe reported an error in the stream.",
  );
});

Deno.test("openAiErrorEvent applies redact to the whole event", () => {
  const event = openAiErrorEvent(
    { message: "bad key sk-secret", code: "sk-secret" },
    (t) => t.replaceAll("sk-secret", "[redacted]"),
  );
  assert.ok(!event.includes("sk-secret"), event);
  assert.deepEqual(JSON.parse(event.slice(6)).error.code, "[redacted]");
});

Deno.test("isPlainDelta accepts an ordinary delta, even one whose text quotes the watched keys", () => {
  assert.equal(isPlainDelta(delta('"content":"Hi"')), true);
  // Inside a JSON string every quote is escaped: "usage" in the text is not the key.
  assert.equal(isPlainDelta(delta(String.raw`"content":"the \"usage\" and \"error\" keys"`)), true);
});

Deno.test("isPlainDelta refuses what the relay must parse: finish, usage, tool calls, errors, several choices, none", () => {
  // No choices: the relay drops it (the SDKs cannot read it).
  assert.equal(isPlainDelta(`{"type":"ping","finish_reason":null}`), false);
  assert.equal(isPlainDelta(`{"choices":[{"delta":{},"finish_reason":"stop"}]}`), false);
  assert.equal(isPlainDelta(`{"choices":[{"delta":{}}]}`), false);
  assert.equal(isPlainDelta(delta('"content":"x"').replace("}]}", '}],"usage":{}}')), false);
  assert.equal(isPlainDelta(delta('"tool_calls":[]')), false);
  assert.equal(isPlainDelta(`{"error":{},"finish_reason":null}`), false);
  const two = `{"choices":[{"delta":{},"finish_reason":null},{"delta":{},"finish_reason":null}]}`;
  assert.equal(isPlainDelta(two), false);
  const laterFinish =
    `{"choices":[{"delta":{},"finish_reason":null},{"delta":{},"finish_reason":"stop"}]}`;
  assert.equal(isPlainDelta(laterFinish), false);
  // A finish_reason before the null one.
  assert.equal(
    isPlainDelta(`{"choices":[{"finish_reason":"stop"},{"finish_reason":null}]}`),
    false,
  );
});

Deno.test("answerTextOf joins the content, reasoning and tool calls of kept events, skipping broken ones", () => {
  const events = [
    delta('"reasoning_content":"hmm "'),
    delta('"content":"Hel"'),
    "not json",
    delta('"content":"lo"'),
    delta('"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]'),
    "{}",
  ];
  assert.equal(answerTextOf(events), "hmm Hello" + "f{}");
  assert.equal(answerTextOf([]), "");
});

Deno.test("chunkBase repeats the answer's id, created and model, and makes up what Poe never sent", () => {
  assert.deepEqual(chunkBase({ id: "c1", model: "m", created: 7 }), {
    id: "c1",
    object: "chat.completion.chunk",
    created: 7,
    model: "m",
  });
  const before = Math.floor(Date.now() / 1000);
  const made = chunkBase({ id: null, model: null, created: null });
  assert.match(made.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(made.model, "");
  assert.ok(made.created >= before && made.created <= Math.floor(Date.now() / 1000) + 1);
});

Deno.test("footerChunk is an unfinished content chunk of the answer carrying the footer", () => {
  assert.deepEqual(footerChunk({ id: "c1", model: "m", created: 7 }, "\n\n(3 points)"), {
    id: "c1",
    object: "chat.completion.chunk",
    created: 7,
    model: "m",
    choices: [{ index: 0, delta: { content: "\n\n(3 points)" }, finish_reason: null }],
  });
});
