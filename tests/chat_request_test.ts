// deno-lint-ignore-file no-explicit-any
/** @module Validation of chat requests, the body sent to Poe, and the request size cap. */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startFakeAndProxy as setup } from "./harness.ts";
import {
  clientWantsUsage,
  describe,
  upstreamBody,
  validateChatRequest,
} from "../lib/chat_request.ts";
import { ProxyError } from "../lib/errors.ts";

async function postRaw(
  url: string,
  body: BodyInit,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers, body });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

// --- validation over the wire --------------------------------------------------------------------

const INVALID: [string, string, string | null, RegExp][] = [
  ["malformed JSON", '{"model": "gpt-4o", "messages": [', null, /not valid JSON/],
  ["a body that is an array", "[1, 2]", null, /must be a JSON object: got an array/],
  ["a body that is a string", '"hello"', null, /must be a JSON object/],
  ["an empty body", "", null, /empty/],
  ["missing messages", '{"model":"gpt-4o"}', "messages", /Missing required field: messages/],
  [
    "messages not an array",
    '{"model":"gpt-4o","messages":{"role":"user"}}',
    "messages",
    /messages must be an array: got an object/,
  ],
  ["empty messages", '{"model":"gpt-4o","messages":[]}', "messages", /at least one/],
  [
    "missing model",
    '{"messages":[{"role":"user","content":"Hi"}]}',
    "model",
    /Missing required field: model/,
  ],
  [
    "model not a string",
    '{"model":4,"messages":[{"role":"user","content":"Hi"}]}',
    "model",
    /model must be a string: got 4\./,
  ],
  [
    "a role that is not a string",
    '{"model":"gpt-4o","messages":[{"role":"user","content":"a"},{"role":7,"content":"b"}]}',
    "messages[1].role",
    /messages\[1\]\.role must be a string: got 7\./,
  ],
  [
    "a message that is not an object",
    '{"model":"gpt-4o","messages":["Hi"]}',
    "messages[0]",
    /messages\[0\] must be an object/,
  ],
  [
    "content of the wrong type",
    '{"model":"gpt-4o","messages":[{"role":"user","content":5}]}',
    "messages[0].content",
    /content must be a string, an array of parts or null/,
  ],
  [
    "a model in extra_body",
    '{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"extra_body":{"model":"o3-pro"}}',
    "extra_body.model",
    /extra_body\.model is not supported: set model at the top level/,
  ],
  [
    "a stream in extra_body",
    '{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"extra_body":{"stream":true}}',
    "extra_body.stream",
    /extra_body\.stream is not supported/,
  ],
  [
    "stream not a boolean",
    '{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"stream":"yes"}',
    "stream",
    /stream must be a boolean: got "yes"\.$/,
  ],
  [
    "a message without a role",
    '{"model":"gpt-4o","messages":[{"content":"hi"}]}',
    "messages[0].role",
    /^messages\[0\]\.role must be a string: got nothing\.$/,
  ],
  [
    "a role that is null",
    '{"model":"gpt-4o","messages":[{"role":null,"content":"hi"}]}',
    "messages[0].role",
    /^messages\[0\]\.role must be a string: got null\.$/,
  ],
  ...partCases(),
];

/** Malformed content parts of OpenAI's types, each in the third part of a message. */
function partCases(): [string, string, string, RegExp][] {
  const cases: [string, unknown, string, RegExp][] = [
    [
      "a text part without text",
      { type: "text" },
      "text",
      /^Missing required parameter: P\.text\.$/,
    ],
    [
      "a text part whose text is a number",
      { type: "text", text: 5 },
      "text",
      /text must be a string: got 5\./,
    ],
    [
      "an image part without image_url",
      { type: "image_url" },
      "image_url",
      /^Missing required parameter: P\.image_url\.$/,
    ],
    [
      "an image part whose image_url is null",
      { type: "image_url", image_url: null },
      "image_url",
      /image_url must be an object with a url: got null\./,
    ],
    [
      "an image part without a url",
      { type: "image_url", image_url: { detail: "low" } },
      "image_url.url",
      /^Missing required parameter: P\.image_url\.url\.$/,
    ],
    [
      "an image part whose url is an object",
      { type: "image_url", image_url: { url: {} } },
      "image_url.url",
      /url must be a string: got an empty object\./,
    ],
    [
      "an audio part without input_audio",
      { type: "input_audio" },
      "input_audio",
      /^Missing required parameter/,
    ],
    [
      "an audio part without data",
      { type: "input_audio", input_audio: { format: "wav" } },
      "input_audio.data",
      /^Missing required parameter/,
    ],
    [
      "an audio part whose format is a number",
      { type: "input_audio", input_audio: { data: "AAAA", format: 3 } },
      "input_audio.format",
      /format must be a string: got 3\./,
    ],
    [
      "a file part whose file is a string",
      { type: "file", file: "a.pdf" },
      "file",
      /file must be an object with file_data or a file_id: got "a\.pdf"\./,
    ],
    [
      "a file part with neither file_data nor file_id",
      { type: "file", file: { filename: "a.pdf" } },
      "file",
      /file must hold a string file_data or file_id\./,
    ],
    [
      "a file part whose file_id is a number",
      { type: "file", file: { file_id: 7 } },
      "file.file_id",
      /file_id must be a string: got 7\./,
    ],
  ];
  const part = "messages[1].content[2]";
  return cases.map(([what, bad, at, message]) => [
    what,
    JSON.stringify({
      model: "gpt-4o",
      messages: [
        { role: "system", content: "Be brief." },
        {
          role: "user",
          content: [{ type: "text", text: "Look:" }, { type: "text", text: "" }, bad],
        },
      ],
    }),
    `${part}.${at}`,
    new RegExp(message.source.replaceAll("P\\.", "messages\\[1\\]\\.content\\[2\\]\\.")),
  ]);
}

Deno.test("POST /v1/chat/completions refuses invalid bodies with 400, param and message", async () => {
  await using t = await setup();
  for (const [what, body, param, message] of INVALID) {
    const res = await postRaw(t.proxy.url, body);
    assert.equal(res.status, 400, what);
    assert.equal(res.body.error.type, "invalid_request_error", what);
    assert.equal(res.body.error.param, param, what);
    assert.match(res.body.error.message, message, what);
    assert.ok(res.headers.get("x-request-id"));
  }
  assert.equal(t.fake.chatRequests().length, 0, "Poe is never called for an invalid body");
});

Deno.test("openai SDK: a malformed image part in a large body is refused at once, with its param; Poe is not called", async () => {
  await using t = await setup();
  // A Poe that refused it would name no field: the 400 ladder would upload the body 3 more times.
  for (let i = 0; i < 4; i++) t.fake.script("status=400,message=Invalid image");
  const client = new OpenAI({ baseURL: `${t.proxy.url}/v1`, apiKey: "k", maxRetries: 2 });
  const image = `data:image/png;base64,${"A".repeat(2_000_000)}`;
  await assert.rejects(
    client.chat.completions.create({
      model: "gpt-4o",
      max_tokens: 100,
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "what is this" },
          { type: "image_url", image_url: { url: image } },
          { type: "image_url" } as any,
        ],
      }],
    }),
    (err: unknown) =>
      err instanceof OpenAI.BadRequestError && err.param === "messages[0].content[2].image_url" &&
      err.type === "invalid_request_error" && err.code === "missing_required_parameter",
  );
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("a large body Poe refuses with a 400 naming no field is not uploaded again by the ladder", async () => {
  await using t = await setup();
  const image = `data:image/png;base64,${"A".repeat(2_000_000)}`;
  const ask = (content: unknown) =>
    fetch(`${t.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o",
        max_tokens: 100,
        messages: [{ role: "user", content }],
      }),
    });
  t.fake.script("status=400,message=Invalid image data.");
  const res = await ask([{ type: "text", text: "what is this" }, {
    type: "image_url",
    image_url: { url: image },
  }]);
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /Invalid image data/);
  assert.equal(t.fake.chatRequests().length, 1, "one upload");
  // A small body still climbs the ladder: its variants cost little.
  for (let i = 0; i < 4; i++) t.fake.script("status=400,message=Invalid.");
  const small = await ask("hi");
  assert.equal(small.status, 400);
  await small.body?.cancel();
  assert.equal(t.fake.chatRequests().length, 5);
});

Deno.test("content parts of OpenAI's types in each valid form, and parts of other types, reach Poe as sent", async () => {
  await using t = await setup();
  const content = [
    { type: "text", text: "" },
    { type: "image_url", image_url: { url: "https://example.com/a.png", detail: "low" } },
    // The first vision API's bare URL: Poe judges it.
    { type: "image_url", image_url: "https://example.com/b.png" },
    { type: "input_audio", input_audio: { data: "UklGRg==", format: "wav" } },
    { type: "input_audio", input_audio: { data: "UklGRg==" } },
    { type: "file", file: { file_id: "file-1" } },
    { type: "file", file: { filename: "a.pdf", file_data: "data:application/pdf;base64,JVBE" } },
    // Kinds OpenAI does not define, which Poe may read.
    { type: "video_url", video_url: { url: "https://example.com/v.mp4" } },
    { type: "refusal", refusal: "No." },
  ];
  const res = await postRaw(
    t.proxy.url,
    JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content }] }),
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual((t.fake.chatRequests()[0].body as any).messages[0].content, content);
});

Deno.test("describe: every kind of value reads well in an error message", () => {
  const cases: [unknown, string][] = [
    [undefined, "nothing"],
    [null, "null"],
    [7, "7"],
    [1.5, "1.5"],
    [false, "false"],
    ["", "an empty string"],
    ["user", '"user"'],
    ['say "hi"\n', '"say \\"hi\\"\\n"'],
    ["x".repeat(41), `"${"x".repeat(40)}"... (41 characters)`],
    [[], "an empty array"],
    [["a"], "an array of 1 item"],
    [[1, 2], "an array of 2 items"],
    [{}, "an empty object"],
    [{ role: "user" }, "an object with 1 key"],
    [{ a: 1, b: 2 }, "an object with 2 keys"],
  ];
  for (const [value, text] of cases) assert.equal(describe(value), text, String(value));
  // A pasted document is cut: the message stays short.
  assert.ok(describe("word ".repeat(10_000)).length < 80);
});

Deno.test("POST /v1/chat/completions refuses a non-JSON content type with 415", async () => {
  await using t = await setup();
  const res = await postRaw(t.proxy.url, "model=gpt-4o", {
    "content-type": "application/x-www-form-urlencoded",
  });
  assert.equal(res.status, 415);
  assert.match(res.body.error.message, /curl, add -H "Content-Type: application\/json"/);
});

Deno.test("POST /v1/chat/completions refuses a gzipped body with 415 unsupported_content_encoding", async () => {
  await using t = await setup();
  const json = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi" }] });
  const gzipped = await new Response(
    new Blob([json]).stream().pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  const res = await postRaw(t.proxy.url, gzipped, {
    "content-type": "application/json",
    "content-encoding": "gzip",
  });
  assert.equal(res.status, 415);
  assert.deepEqual(res.body, {
    error: {
      message: 'Content-Encoding "gzip" is not supported: send the request body uncompressed.',
      type: "invalid_request_error",
      param: null,
      code: "unsupported_content_encoding",
    },
  });
  assert.equal(t.fake.chatRequests().length, 0);
  // The same body uncompressed is answered.
  const plain = await postRaw(t.proxy.url, json);
  assert.equal(plain.status, 200);
});

Deno.test("an unknown model is 404 naming up to three close matches; Poe is not called", async () => {
  await using t = await setup();
  const res = await postRaw(
    t.proxy.url,
    JSON.stringify({ model: "gpt-4", messages: [{ role: "user", content: "Hi" }] }),
  );
  assert.equal(res.status, 404);
  assert.equal(res.body.error.param, "model");
  assert.equal(res.body.error.code, "model_not_found");
  assert.equal(res.body.error.type, "invalid_request_error", "as OpenAI's model_not_found");
  const match = /Did you mean: (.*)\?/.exec(res.body.error.message);
  assert.ok(match, res.body.error.message);
  const names = match[1].split(", ");
  assert.ok(names.length >= 1 && names.length <= 3, match[1]);
  assert.ok(names.includes("GPT-4o"));
  assert.match(res.body.error.message, /"gpt-4"/);

  const far = await postRaw(
    t.proxy.url,
    JSON.stringify({ model: "zzzzzzzzzzzzzzzz", messages: [{ role: "user", content: "Hi" }] }),
  );
  assert.equal(far.status, 404);
  assert.match(far.body.error.message, /GET \/v1\/models/);
  assert.equal(t.fake.chatRequests().length, 0);
});

// --- the size cap --------------------------------------------------------------------------------

/** Sends raw bytes to the proxy and reads until the response's head and JSON body are in. */
async function rawExchange(
  url: string,
  head: string,
  bodyParts: Uint8Array[],
): Promise<{ status: number; body: any; sentAll: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  const encoder = new TextEncoder();
  let sentAll = true;
  const writing = (async () => {
    try {
      await conn.write(encoder.encode(head));
      for (const part of bodyParts) await conn.write(part);
    } catch {
      sentAll = false; // The proxy closed the connection before the whole body went out.
    }
  })();
  let text = "";
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
    const split = text.indexOf("\r\n\r\n");
    if (split < 0) continue;
    const length = /\r\ncontent-length: (\d+)/i.exec(text.slice(0, split));
    if (length && text.length - split - 4 >= Number(length[1])) break;
  }
  conn.close();
  await writing;
  const [headText, bodyText] = text.split("\r\n\r\n", 2);
  return {
    status: Number(headText.split(" ")[1]),
    body: JSON.parse(bodyText),
    sentAll,
  };
}

Deno.test("a body declared larger than MAX_BODY_BYTES is 413 before it is read", async () => {
  await using t = await setup({ MAX_BODY_BYTES: "1000" });
  const res = await rawExchange(
    t.proxy.url,
    "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
      "Content-Length: 1000000000\r\n\r\n",
    [new TextEncoder().encode('{"model":"gpt-4o","messages":[')],
  );
  assert.equal(res.status, 413);
  assert.equal(res.body.error.type, "request_too_large");
  assert.match(res.body.error.message, /MAX_BODY_BYTES \(1000 bytes\)/);
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("a chunked body that grows past MAX_BODY_BYTES is 413 without reading the rest", async () => {
  await using t = await setup({ MAX_BODY_BYTES: "1000" });
  const chunk = (text: string) =>
    new TextEncoder().encode(`${text.length.toString(16)}\r\n${text}\r\n`);
  const parts = [chunk('{"model":"gpt-4o","messages":[{"role":"user","content":"')];
  for (let i = 0; i < 4; i++) parts.push(chunk("x".repeat(400)));
  const res = await rawExchange(
    t.proxy.url,
    "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n",
    parts, // never terminated: the proxy must answer without waiting for the end
  );
  assert.equal(res.status, 413);
  assert.equal(res.body.error.code, "request_too_large");
  assert.equal(t.fake.chatRequests().length, 0);
});

Deno.test("a body just under MAX_BODY_BYTES goes through", async () => {
  await using t = await setup({ MAX_BODY_BYTES: "2000" });
  const body = JSON.stringify({
    model: "gpt-4o",
    messages: [{ role: "user", content: "x".repeat(1900) }],
  });
  assert.ok(body.length < 2000);
  const res = await postRaw(t.proxy.url, body);
  assert.equal(res.status, 200);
});

// --- validateChatRequest and upstreamBody --------------------------------------------------------

Deno.test("validateChatRequest keeps the body as given, unknown fields included", () => {
  const body = {
    model: "GPT-4o",
    messages: [{ role: "user", content: null }, { role: "tool", content: [], x: 1 }],
    weird: { deep: [1] },
  };
  assert.equal(validateChatRequest(body), body);
  assert.throws(
    () => validateChatRequest({ model: "a\nb", messages: [{ role: "user" }] }),
    (err: ProxyError) => err.status === 400 && err.param === "model",
  );
  assert.throws(
    () => validateChatRequest({ model: "m", messages: [{ role: "user" }], max_tokens: 0 }),
    (err: ProxyError) => err.param === "max_tokens",
  );
});

Deno.test("validateChatRequest: answer limits in extra_body must be positive integers too", () => {
  const messages = [{ role: "user", content: "Hi" }];
  for (const field of ["max_tokens", "max_completion_tokens"]) {
    for (const bad of ["100000", 0, 1.5, -1, [5]]) {
      assert.throws(
        () => validateChatRequest({ model: "m", messages, extra_body: { [field]: bad } }),
        (err: ProxyError) =>
          err.status === 400 && err.param === `extra_body.${field}` &&
          err.message.startsWith(`extra_body.${field} must be a positive integer`),
      );
    }
    validateChatRequest({ model: "m", messages, extra_body: { [field]: 100, other: "x" } });
    validateChatRequest({ model: "m", messages, extra_body: { [field]: null } });
  }
  for (const field of ["model", "messages", "stream"]) {
    assert.throws(
      () => validateChatRequest({ model: "m", messages, extra_body: { [field]: "x" } }),
      (err: ProxyError) =>
        err.status === 400 && err.param === `extra_body.${field}` &&
        err.code === "unsupported_parameter",
    );
  }
  // Not an object: nothing in it is an answer limit Poe could read.
  for (const extra_body of ["max_tokens=5", [1], null]) {
    validateChatRequest({ model: "m", messages, extra_body });
  }
});

Deno.test("validateChatRequest: a thinking budget must be a whole number of tokens, wherever it is", () => {
  // The cost cap prices it: a value it cannot price is refused, as an answer limit's is.
  const messages = [{ role: "user", content: "Hi" }];
  for (const bad of ["8000", 1.5, -1, [5], { tokens: 5 }]) {
    assert.throws(
      () => validateChatRequest({ model: "m", messages, thinking_budget: bad }),
      (err: ProxyError) =>
        err.status === 400 && err.param === "thinking_budget" &&
        err.message.startsWith("thinking_budget must be a whole number of tokens"),
    );
    assert.throws(
      () => validateChatRequest({ model: "m", messages, extra_body: { thinking_budget: bad } }),
      (err: ProxyError) => err.status === 400 && err.param === "extra_body.thinking_budget",
    );
  }
  for (const good of [0, 1, 32_000, null]) {
    validateChatRequest({ model: "m", messages, thinking_budget: good });
    validateChatRequest({ model: "m", messages, extra_body: { thinking_budget: good } });
  }
});

Deno.test("validateChatRequest: fields Poe reads must have OpenAI's types; null passes", () => {
  const messages = [{ role: "user", content: "Hi" }];
  const bad: [string, unknown, RegExp][] = [
    ["temperature", "hot", /^temperature must be a number: got "hot"\.$/],
    ["top_p", [0.5], /^top_p must be a number: got an array of 1 item\.$/],
    ["tools", { type: "function" }, /^tools must be an array of tool definitions: got an object/],
    ["parallel_tool_calls", "yes", /^parallel_tool_calls must be a boolean/],
    ["stream_options", true, /^stream_options must be an object: got true\.$/],
    ["tool_choice", 1, /^tool_choice must be "auto", "none", "required" or an object/],
    ["stop", 5, /^stop must be a string or an array of strings: got 5\.$/],
    ["stop", ["\n", 7], /^stop must be a string or an array of strings: got an array of 2/],
    ["temperature", 5, /^temperature must be between 0 and 2: got 5\.$/],
    ["temperature", -0.1, /^temperature must be between 0 and 2: got -0\.1\.$/],
    ["top_p", 1.5, /^top_p must be between 0 and 1: got 1\.5\.$/],
  ];
  for (const [field, value, message] of bad) {
    assert.throws(
      () => validateChatRequest({ model: "m", messages, [field]: value }),
      (err: ProxyError) =>
        err.status === 400 && err.param === field && err.code === "invalid_value" &&
        message.test(err.message),
      `${field}: ${JSON.stringify(value)}`,
    );
  }
  const good: Record<string, unknown>[] = [
    { temperature: 0.7, top_p: 1, stop: "\n", tool_choice: "auto", parallel_tool_calls: false },
    { tools: [{ type: "function", function: { name: "f" } }], tool_choice: { type: "function" } },
    { stop: ["a", "b"], stream_options: { include_usage: true } },
    { temperature: null, top_p: null, tools: null, tool_choice: null, stop: null },
    { temperature: 0, top_p: 0 },
    { temperature: 2, top_p: 1 },
  ];
  for (const fields of good) validateChatRequest({ model: "m", messages, ...fields });
});

Deno.test("validateChatRequest: n other than 1 is refused (Poe answers one choice); null and 1 pass", () => {
  const messages = [{ role: "user", content: "Hi" }];
  for (const n of [2, 0, "1", 1.5]) {
    assert.throws(
      () => validateChatRequest({ model: "m", messages, n }),
      (err: ProxyError) =>
        err.status === 400 && err.param === "n" && err.code === "unsupported_value" &&
        /n must be 1/.test(err.message),
    );
  }
  for (const n of [1, null, undefined]) validateChatRequest({ model: "m", messages, n });
  assert.equal("n" in upstreamBody({ model: "m", messages, n: null }, "M", messages), false);
});

Deno.test("upstreamBody: poe_name, stream explicit, developer as system, rest untouched", () => {
  const messages = [
    { role: "developer", content: "Be brief.", name: "dev" },
    { role: "user", content: [{ type: "text", text: "Hi" }] },
  ];
  const req = { model: "gpt-4o", messages, n: 1, extra_body: { a: 1 }, aspect: "1:1" };
  const out = upstreamBody(req, "GPT-4o", messages);
  assert.deepEqual(out, {
    model: "GPT-4o",
    messages: [{ role: "system", content: "Be brief.", name: "dev" }, messages[1]],
    n: 1,
    extra_body: { a: 1 },
    aspect: "1:1",
    stream: false,
  });
  assert.equal(out.messages[1], messages[1], "other messages are not copied");
  assert.equal(messages[0].role, "developer", "the client's body is not mutated");
  assert.equal("n" in upstreamBody({ model: "m", messages }, "M", messages), false);
  assert.equal("stream_options" in out, false);
});

Deno.test("upstreamBody asks Poe for usage when streaming, keeping the client's stream_options", () => {
  const messages = [{ role: "user", content: "Hi" }];
  const asked = {
    model: "m",
    messages,
    stream: true,
    stream_options: { include_usage: false, x: 1 },
  };
  assert.deepEqual(upstreamBody(asked, "M", messages).stream_options, {
    include_usage: true,
    x: 1,
  });
  assert.equal(clientWantsUsage(asked), false);
  assert.equal(clientWantsUsage({ ...asked, stream_options: { include_usage: true } }), true);
  assert.equal(clientWantsUsage({ model: "m", messages }), false);
  const plain = { model: "m", messages, stream_options: { include_usage: true } };
  assert.deepEqual(upstreamBody(plain, "M", messages).stream_options, { include_usage: true });
});
