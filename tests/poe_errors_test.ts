/** @module Tests of Poe's failed answers turned into ProxyErrors. */
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import {
  errorBodyText,
  mayBeBilled,
  NO_CLIENT_RETRY,
  noAnswerError,
  notAnAnswer,
  poeError,
  readPoeError,
  sdkRetries,
  streamErrorAnswer,
  tooLongToWait,
} from "../lib/poe_errors.ts";
import { ProxyError } from "../lib/errors.ts";
import { MAX_EVENT_CHARS } from "../lib/sse.ts";

const enc = new TextEncoder();

/** Poe's error answer: a JSON body with its status and headers. */
function answer(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return new Response(text, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** A body that sends `chunks`, then neither ends nor sends more; `cancelled` tells if it was let go. */
function stalled(
  chunks: Uint8Array[],
): { body: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
    },
    cancel() {
      cancelled = true;
    },
  });
  return { body, cancelled: () => cancelled };
}

Deno.test("sdkRetries: the statuses the OpenAI SDKs retry on their own", () => {
  for (const status of [408, 409, 429, 500, 502, 503, 504, 524, 529]) {
    assert.equal(sdkRetries(status), true, String(status));
  }
  for (const status of [400, 401, 402, 403, 404, 413, 422]) {
    assert.equal(sdkRetries(status), false, String(status));
  }
});

Deno.test("poeError: keeps Poe's status, message, type and param, and adds the status's hint", async () => {
  const err = await poeError(
    answer(401, { error: { message: "Invalid key", type: "authentication_error", param: "key" } }),
  );
  assert.ok(err instanceof ProxyError);
  assert.equal(err.status, 401);
  assert.equal(
    err.message,
    "Poe answered 401: Invalid key. Poe refused the key: check POE_API_KEY (keys are at https://poe.com/api/keys).",
  );
  assert.equal(err.type, "authentication_error");
  assert.equal(err.param, "key");
  assert.equal(err.code, null);
});

Deno.test("poeError: each status with a hint gets its own", async () => {
  const hints: [number, RegExp][] = [
    [402, /out of points/],
    [403, /refused this request for this account or model/],
    [404, /check the model's poe_name in models\.yaml, and POE_BASE_URL/],
    [408, /did not start answering in time/],
    [429, /limit of 500 requests a minute/],
  ];
  for (const [status, hint] of hints) {
    const err = await poeError(answer(status, { error: { message: "no" } }));
    assert.equal(err.status, status);
    assert.match(err.message, new RegExp(`^Poe answered ${status}: no\\. `));
    assert.match(err.message, hint, String(status));
  }
});

Deno.test("poeError: a 5xx gets the provider hint; a 4xx without a hint gets none", async () => {
  for (const status of [500, 502, 503, 529]) {
    const err = await poeError(answer(status, { error: { message: "down" } }));
    assert.equal(err.status, status);
    assert.equal(
      err.message,
      `Poe answered ${status}: down. Poe or the model's provider failed; try again later.`,
    );
  }
  const bad = await poeError(answer(400, { error: { message: "bad thing", param: "tools" } }));
  assert.equal(bad.status, 400);
  assert.equal(bad.message, "Poe answered 400: bad thing.");
  assert.equal(bad.param, "tools");
  assert.equal((await poeError(answer(422, ""))).message, "Poe answered 422.");
});

Deno.test("poeError: a message that ends a sentence gets no second period", async () => {
  assert.equal(
    (await poeError(answer(400, { message: "Stop!" }))).message,
    "Poe answered 400: Stop!",
  );
  assert.equal(
    (await poeError(answer(400, { message: "Done." }))).message,
    "Poe answered 400: Done.",
  );
});

Deno.test("poeError: a 413 becomes OpenAI's context_length_exceeded 400", async () => {
  const err = await poeError(
    answer(413, { error: { message: "too many tokens", type: "request_too_large" } }, {
      "retry-after": "1",
    }),
  );
  assert.equal(err.status, 400);
  assert.equal(err.type, "invalid_request_error");
  assert.equal(err.param, "messages");
  assert.equal(err.code, "context_length_exceeded");
  assert.match(err.message, /^Poe answered 413: too many tokens\. .*context window/);
  assert.deepEqual(err.headers, { "retry-after": "1" });
});

Deno.test("poeError: a 429 without a code gets OpenAI's rate_limit_exceeded; Poe's code wins", async () => {
  assert.equal(
    (await poeError(answer(429, { error: { message: "slow" } }))).code,
    "rate_limit_exceeded",
  );
  const coded = await poeError(answer(429, { error: { message: "slow", code: "poe_limit" } }));
  assert.equal(coded.code, "poe_limit");
  assert.equal((await poeError(answer(503, { error: { message: "x" } }))).code, null);
});

Deno.test("poeError: only the retry and rate-limit headers reach the client", async () => {
  const err = await poeError(
    answer(429, { error: { message: "slow" } }, {
      "retry-after": "3",
      "retry-after-ms": "2500",
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "1s",
      "set-cookie": "a=b",
      "x-request-id": "r1",
    }),
  );
  assert.deepEqual(err.headers, {
    "retry-after": "3",
    "retry-after-ms": "2500",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1s",
  });
});

Deno.test("readPoeError: reads both of Poe's shapes and FastAPI's detail", async () => {
  assert.deepEqual(
    await readPoeError(
      answer(400, { error: { message: "m", type: "t", param: "p", code: "c" } }),
    ),
    { message: "m", type: "t", param: "p", code: "c" },
  );
  assert.deepEqual(await readPoeError(answer(400, { message: "flat", type: "t" })), {
    message: "flat",
    type: "t",
    param: null,
    code: null,
  });
  assert.deepEqual(await readPoeError(answer(422, { detail: "Field required" })), {
    message: "Field required",
    type: null,
    param: null,
    code: null,
  });
  assert.deepEqual(await readPoeError(answer(400, { error: { message: 5, code: 429 } })), {
    message: "",
    type: null,
    param: null,
    code: null,
  });
  // A string error, and FastAPI's list of validation errors: their words, not raw JSON.
  assert.deepEqual(await readPoeError(answer(403, { error: "Model is overloaded" })), {
    message: "Model is overloaded",
    type: null,
    param: null,
    code: null,
  });
  const detail = [
    { loc: ["body", "messages"], msg: "Field required", type: "missing" },
    { loc: ["body", "temperature"], msg: "Input should be a number" },
    { msg: "Odd" },
    "not an item",
  ];
  assert.equal(
    (await readPoeError(answer(422, { detail }))).message,
    "body.messages: Field required; body.temperature: Input should be a number; Odd",
  );
});

Deno.test("readPoeError: a web page is told by its title, else by its text; text is cut short", async () => {
  const page = (html: string) =>
    readPoeError(new Response(html, { status: 502, headers: { "content-type": "text/html" } }));
  assert.equal(
    (await page("<html><head><title> 502 Bad Gateway </title></head><body>nginx</body></html>"))
      .message,
    "502 Bad Gateway",
  );
  assert.equal(
    (await page("<html><body><h1>Bad\n  Gateway</h1><p>cloudflare</p></body></html>")).message,
    "Bad Gateway cloudflare",
  );
  const long = await readPoeError(new Response("x".repeat(500), { status: 500 }));
  assert.equal(long.message, "x".repeat(200));
  assert.equal(long.type, null);
});

Deno.test("errorBodyText: an answer without a body is the empty string", async () => {
  assert.equal(await errorBodyText(new Response(null, { status: 502 })), "");
});

Deno.test("errorBodyText: reads at most 64 KiB by default, or the bytes asked", async () => {
  const big = () => new Response("a".repeat(100 * 1024) + "tail", { status: 500 });
  assert.equal(await errorBodyText(big()), "a".repeat(64 * 1024));
  assert.equal(await errorBodyText(big(), { bytes: 10 }), "a".repeat(10));
  assert.equal(await errorBodyText(new Response("short", { status: 500 })), "short");
});

Deno.test("errorBodyText: a character split between chunks is decoded whole", async () => {
  const bytes = enc.encode('{"error":"€"}');
  const at = bytes.indexOf(0xe2) + 1;
  const body = ReadableStream.from([bytes.subarray(0, at), bytes.subarray(at)]);
  assert.equal(await errorBodyText(new Response(body, { status: 500 })), '{"error":"€"}');
});

Deno.test("errorBodyText: a body that breaks keeps what came, and a read one is let go", async () => {
  const broken = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc.encode("partial"));
    },
    pull(c) {
      c.error(new Error("reset"));
    },
  });
  assert.equal(await errorBodyText(new Response(broken, { status: 500 })), "partial");
  const { body, cancelled } = stalled([enc.encode("x".repeat(20))]);
  assert.equal(await errorBodyText(new Response(body, { status: 500 }), { bytes: 5 }), "xxxxx");
  assert.equal(cancelled(), true);
});

Deno.test("errorBodyText: a stalled error body is given up after its time", async () => {
  await using upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('{"error":{"message":"over'));
          },
        }),
        { status: 500, headers: { "content-type": "application/json" } },
      ),
  );
  const response = await fetch(`http://127.0.0.1:${upstream.addr.port}/`);
  const started = performance.now();
  assert.equal(await errorBodyText(response, { ms: 100 }), '{"error":{"message":"over');
  assert.ok(performance.now() - started < 2000);
});

Deno.test("errorBodyText: by default a stalled body is waited for 5 s, no longer", async () => {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    const { body, cancelled } = stalled([enc.encode("half")]);
    let text: string | null = null;
    const read = errorBodyText(new Response(body, { status: 500 })).then((t) => text = t);
    await clock.tickAsync(4_999);
    assert.equal(text, null);
    await clock.tickAsync(1);
    await read;
    assert.equal(text, "half");
    assert.equal(cancelled(), true);
  } finally {
    clock.uninstall();
  }
});

Deno.test("streamErrorAnswer: the status of the event's numeric code, else of its type, else 502", () => {
  const from = { headers: new Headers(), answered: "Poe answered 200 with an error" };
  const status = (error: Record<string, unknown>) => streamErrorAnswer(error, from).status;
  assert.equal(status({ code: 429, type: "invalid_request_error" }), 429);
  assert.equal(status({ code: "503" }), 503);
  assert.equal(status({ code: 200, type: "rate_limit_error" }), 429);
  assert.equal(status({ code: 600, type: "overloaded_error" }), 529);
  assert.equal(status({ code: "rate_limited", type: "insufficient_credits" }), 402);
  assert.equal(status({ type: "moderation_error" }), 403);
  assert.equal(status({ type: "request_too_large" }), 413);
  assert.equal(status({ type: "provider_error" }), 500);
  assert.equal(status({ type: "something_new" }), 502);
  assert.equal(status({}), 502);
});

Deno.test("streamErrorAnswer: becomes Poe's own error answer, told as how Poe answered", async () => {
  const error = { message: "Slow down", type: "rate_limit_error" };
  const response = streamErrorAnswer(error, {
    headers: new Headers({
      "retry-after": "2",
      "x-request-id": "r1",
      "content-type": "text/plain",
    }),
    answered: "Poe answered 200, and its stream opened with an error",
  });
  assert.equal(response.headers.get("retry-after"), "2");
  assert.equal(response.headers.get("x-request-id"), null);
  assert.equal(response.headers.get("content-type"), "application/json");
  const err = await poeError(response);
  assert.equal(err.status, 429);
  assert.match(
    err.message,
    /^Poe answered 200, and its stream opened with an error: Slow down\. Poe's limit/,
  );
  assert.equal(err.type, "rate_limit_error");
  assert.deepEqual(err.headers, { "retry-after": "2" });
});

Deno.test("notAnAnswer: a body that is not JSON, or holds no choices, is upstream_bad_body", () => {
  const notJson = notAnAnswer(undefined);
  assert.equal(notJson.message, "Poe answered with a body that is not JSON.");
  assert.equal(notJson.code, "upstream_bad_body");
  assert.equal(notJson.type, "upstream_error");
  assert.equal(notJson.headers["x-should-retry"], "false");
  const empty = notAnAnswer({ id: "chatcmpl-1" });
  assert.equal(empty.message, "Poe answered with a body that holds no answer (no choices).");
  assert.equal(empty.code, "upstream_bad_body");
  assert.equal(notAnAnswer(null).message, empty.message);
});

Deno.test("notAnAnswer: each error has headers of its own", () => {
  const err = notAnAnswer(undefined);
  err.headers["retry-after"] = "9";
  assert.deepEqual(NO_CLIENT_RETRY, { "x-should-retry": "false" });
  assert.equal(notAnAnswer(undefined).headers["retry-after"], undefined);
});

Deno.test("tooLongToWait: says the wait in words, passes it on, and stops the SDKs' retries", () => {
  const err = new ProxyError(429, "Poe answered 429.");
  assert.equal(tooLongToWait(err, 90.2), err);
  assert.equal(err.message, "Poe answered 429. Poe asked to wait 91 s before trying again.");
  assert.deepEqual(err.headers, { "retry-after": "91", "x-should-retry": "false" });
  const dated = new ProxyError(503, "Poe answered 503.", {
    headers: { "retry-after": "Wed, 21 Oct 2026 07:28:00 GMT" },
  });
  tooLongToWait(dated, 120);
  assert.equal(dated.headers["retry-after"], "Wed, 21 Oct 2026 07:28:00 GMT");
  assert.equal(dated.headers["x-should-retry"], "false");
});

Deno.test("noAnswerError: each kind of 200 that holds no answer", () => {
  const empty = noAnswerError({ kind: "empty" });
  assert.deepEqual([empty.status, empty.code, empty.message], [
    502,
    "upstream_empty",
    "Poe's stream ended without an answer.",
  ]);
  const none = noAnswerError({ kind: "no-answer", parsed: { id: "x" } });
  assert.deepEqual(none.toBody(), notAnAnswer({ id: "x" }).toBody());
  assert.equal(none.headers["x-should-retry"], "false");
  const large = noAnswerError({ kind: "too-large" });
  assert.equal(large.status, 502);
  assert.equal(large.code, "upstream_bad_body");
  assert.ok(large.message.includes(`larger than ${MAX_EVENT_CHARS} bytes`));
});

Deno.test("noAnswerError: a body that did not come in time, by phase and by kind of model", () => {
  const late = (started: boolean, slow?: boolean) =>
    noAnswerError({ kind: "timeout", started }, slow);
  assert.equal(late(false).status, 504);
  assert.equal(late(false).code, "upstream_timeout");
  assert.equal(
    late(false).message,
    "Poe did not start answering within FIRST_BYTE_TIMEOUT_SECONDS.",
  );
  assert.equal(late(true).message, "Poe went silent for longer than IDLE_TIMEOUT_SECONDS.");
  assert.equal(
    late(false, true).message,
    "Poe did not start answering within MEDIA_TIMEOUT_SECONDS.",
  );
  assert.equal(late(true, true).message, "Poe went silent for longer than MEDIA_TIMEOUT_SECONDS.");
});

Deno.test("mayBeBilled: a read that failed after Poe's 200, a gateway timeout or the first-byte deadline, not a failed call", () => {
  const err = (code: string) => new ProxyError(502, "x", { code });
  // A broken connection is only reported once Poe's 200 came (an unreachable Poe is another code).
  assert.equal(mayBeBilled(err("upstream_disconnected"), 0), true);
  assert.equal(mayBeBilled(err("upstream_timeout"), 200), true);
  assert.equal(mayBeBilled(err("upstream_bad_body"), 200), true);
  // The model may have run: the first-byte deadline ended the call, or Poe's gateway gave up.
  assert.equal(mayBeBilled(err("upstream_timeout"), 0), true);
  assert.equal(mayBeBilled(err("server_error"), 504), true);
  assert.equal(mayBeBilled(new ProxyError(502, "x"), 524), true);
  // A 200 web page (status 0), an unreachable Poe, another error of Poe's: nothing began.
  assert.equal(mayBeBilled(err("upstream_bad_body"), 0), false);
  assert.equal(mayBeBilled(err("upstream_unreachable"), undefined), false);
  assert.equal(mayBeBilled(err("upstream_connect_timeout"), 0), false);
  assert.equal(mayBeBilled(err("server_error"), 200), false);
  assert.equal(mayBeBilled(err("server_error"), 502), false);
  assert.equal(mayBeBilled(new ProxyError(502, "x"), 200), false);
});
