/** @module readJsonBody: content types, size cap, deadlines, strict UTF-8, nesting depth, JSON. */
import assert from "node:assert/strict";
import { ProxyError } from "../lib/errors.ts";
import { Deadlines } from "../lib/deadlines.ts";
import { readJsonBody, readJsonBodyRaw } from "../lib/request_body.ts";
import { ManualClock } from "./manual_clock.ts";
import { BodyBudget, MEMORY_PER_BODY_BYTE } from "../lib/body_budget.ts";

const encoder = new TextEncoder();

/** Deadlines on a manual clock: nothing fires until the test moves time. */
function manualDeadlines(ms = 10_000): { clock: ManualClock; deadlines: Deadlines } {
  const clock = new ManualClock();
  return { clock, deadlines: new Deadlines(ms, { timers: clock, now: clock.now }) };
}

function post(body: BodyInit | null, headers: Record<string, string> = {}): Request {
  return new Request("http://127.0.0.1/v1/chat/completions", { method: "POST", body, headers });
}

/** Reads `req` with a 1 MiB cap and a deadline that never fires on its own. */
function read(req: Request, maxBytes = 1024 * 1024): Promise<unknown> {
  return readJsonBody(req, { maxBytes, deadlines: manualDeadlines().deadlines });
}

/** The ProxyError `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<ProxyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ProxyError, `not a ProxyError: ${err}`);
    return err;
  }
  throw new assert.AssertionError({ message: "the body was accepted" });
}

/** A body stream that records how far it was read, cancelled or not. */
class SourceBody {
  pulls = 0;
  cancelled = false;
  readonly stream: ReadableStream<Uint8Array>;
  constructor(chunk: Uint8Array, chunks = Infinity) {
    this.stream = new ReadableStream({
      pull: (c) => {
        if (this.pulls++ < chunks) c.enqueue(chunk);
        else c.close();
      },
      cancel: () => {
        this.cancelled = true;
      },
    }, { highWaterMark: 0 });
  }
}

/** A body the test feeds by hand. */
function handFed(): {
  stream: ReadableStream<Uint8Array>;
  feed: ReadableStreamDefaultController<Uint8Array>;
  cancelled: () => boolean;
} {
  let feed!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => {
      feed = c;
    },
    cancel: () => {
      cancelled = true;
    },
  });
  return { stream, feed, cancelled: () => cancelled };
}

Deno.test("readJsonBody parses a JSON object, and hands arrays and scalars on for the caller to judge", async () => {
  const message = { model: "gpt-4o", messages: [{ role: "user", content: "héllo 👋" }] };
  assert.deepEqual(await read(post(JSON.stringify(message))), message);
  assert.deepEqual(await read(post("[1, 2]")), [1, 2]);
  assert.equal(await read(post(" 42 ")), 42);
  assert.equal(await read(post("null")), null);
});

Deno.test("readJsonBody accepts JSON types with parameters in any casing, +json types and text/plain", async () => {
  for (
    const type of [
      "application/json",
      "application/json; charset=utf-8",
      "Application/JSON;charset=UTF-8",
      "application/json ;charset=utf-8",
      "application/vnd.api+json",
      "application/merge-patch+json",
      // What fetch sends for a string body, and what curl sends with -d and no -H.
      "text/plain;charset=UTF-8",
      "TEXT/PLAIN",
    ]
  ) {
    assert.deepEqual(await read(post('{"a":1}', { "content-type": type })), { a: 1 }, type);
  }
  // No Content-Type at all is taken as JSON too.
  assert.deepEqual(await read(post(encoder.encode('{"a":1}'))), { a: 1 });
});

Deno.test("readJsonBody refuses other content types with 415 unsupported_media_type, unread", async () => {
  for (
    const type of [
      "multipart/form-data; boundary=x",
      "text/html",
      "application/jsonl",
      "application/json-seq",
      "application/xml",
      "text/plainx",
      "",
    ]
  ) {
    const source = new SourceBody(encoder.encode("{}"), 1);
    const req = post(source.stream, { "content-type": type });
    const err = await refusal(read(req));
    assert.equal(err.status, 415, type);
    assert.equal(err.code, "unsupported_media_type");
    assert.equal(err.message, `Content-Type must be application/json: got ${JSON.stringify(type)}`);
    assert.equal(source.pulls, 0, "the body is not read");
  }
});

Deno.test("readJsonBody refuses a compressed body with 415 unsupported_content_encoding, unread", async () => {
  const gzipped = await new Response(
    new Blob(['{"model":"gpt-4o","messages":[]}']).stream()
      .pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  for (const encoding of ["gzip", "GZIP", "br", "deflate", "zstd", "gzip, identity", "x-gzip"]) {
    const source = new SourceBody(gzipped, 1);
    const err = await refusal(read(post(source.stream, { "content-encoding": encoding })));
    assert.equal(err.status, 415, encoding);
    assert.equal(err.type, "invalid_request_error");
    assert.equal(err.code, "unsupported_content_encoding");
    assert.equal(err.param, null);
    assert.equal(
      err.message,
      `Content-Encoding ${JSON.stringify(encoding)} is not supported: send the request body ` +
        "uncompressed.",
    );
    assert.equal(source.pulls, 0, "the body is not read");
  }
  // identity is no encoding at all.
  for (const encoding of ["identity", " Identity ", "identity, identity", ""]) {
    assert.deepEqual(await read(post('{"a":1}', { "content-encoding": encoding })), { a: 1 });
  }
});

Deno.test("readJsonBody: a form's 415 says how to fix curl; a long type is cut in the message", async () => {
  const form = await refusal(
    read(post("a=1", { "content-type": "application/x-www-form-urlencoded" })),
  );
  assert.equal(form.status, 415);
  assert.match(form.message, /with curl, add -H "Content-Type: application\/json"/);
  const long = "application/" + "x".repeat(500);
  const err = await refusal(read(post("{}", { "content-type": long })));
  assert.ok(err.message.length < 200, err.message);
  assert.ok(err.message.includes(JSON.stringify(long.slice(0, 100))));
});

Deno.test("readJsonBody: a declared Content-Length over maxBytes is 413 before any byte is read", async () => {
  const source = new SourceBody(new Uint8Array(1024));
  const req = post(source.stream, { "content-length": String(50 * 1024 * 1024) });
  const err = await refusal(read(req, 1000));
  assert.equal(err.status, 413);
  assert.equal(err.type, "request_too_large");
  assert.equal(err.code, "request_too_large");
  assert.equal(err.message, "The request body is larger than MAX_BODY_BYTES (1000 bytes).");
  assert.equal(source.pulls, 0);
  assert.equal(req.bodyUsed, false);
});

Deno.test("readJsonBody: a body without a length is 413 once it passes maxBytes; the rest is never read", async () => {
  // An endless body of 1 KiB chunks, against a 10 KiB cap.
  const source = new SourceBody(new Uint8Array(1024).fill(0x20));
  const err = await refusal(read(post(source.stream), 10 * 1024));
  assert.equal(err.status, 413);
  assert.equal(err.code, "request_too_large");
  assert.equal(source.pulls, 11, "read up to the first chunk past the cap");
  assert.equal(source.cancelled, true, "the rest of the upload is cancelled");
});

Deno.test("readJsonBody: a body of exactly maxBytes is read, declared or not", async () => {
  const text = `{"a":"${"x".repeat(92)}"}`;
  assert.equal(text.length, 100);
  const declared = post(text, { "content-length": "100" });
  assert.deepEqual(await read(declared, 100), JSON.parse(text));
  // The same bytes one at a time, without a length.
  const bytes = encoder.encode(text);
  const chunked = ReadableStream.from(Array.from(bytes, (b) => Uint8Array.of(b)));
  assert.deepEqual(await read(post(chunked), 100), JSON.parse(text));
  assert.equal((await refusal(read(post(text), 99))).status, 413);
  // One byte more than the cap, declared: refused unread.
  const source = new SourceBody(new Uint8Array(101), 1);
  const over = await refusal(read(post(source.stream, { "content-length": "101" }), 100));
  assert.equal(over.status, 413);
  assert.equal(source.pulls, 0);
});

Deno.test("readJsonBody: invalid UTF-8 is 400 invalid_encoding, never replacement characters", async () => {
  const bad = [
    Uint8Array.of(0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d), // {"a":"\xff"}
    Uint8Array.of(0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x22, 0x7d), // a cut é
    Uint8Array.of(0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d), // a surrogate
  ];
  for (const bytes of bad) {
    for (
      const headers of [{}, { "content-length": String(bytes.length) }] as Record<string, string>[]
    ) {
      const err = await refusal(read(post(bytes, headers)));
      assert.equal(err.status, 400);
      assert.equal(err.code, "invalid_encoding");
      assert.equal(err.message, "The request body is not valid UTF-8.");
    }
  }
});

Deno.test("readJsonBody: a replacement character the client sent is its own, not an invalid byte", async () => {
  // U+FFFD sent as its UTF-8 bytes (EF BF BD), beside invalid bytes in another body above.
  assert.deepEqual(await read(post(encoder.encode('{"a":"x\uFFFDy"}'))), { a: "x\uFFFDy" });
  assert.deepEqual(await read(post(encoder.encode('{"a":"\\ufffd"}'))), { a: "\uFFFD" });
  const mixed = new Uint8Array([...encoder.encode('{"a":"\uFFFD'), 0xff, ...encoder.encode('"}')]);
  assert.equal((await refusal(read(post(mixed)))).code, "invalid_encoding");
});

Deno.test("readJsonBody: a character split across chunks is joined, and a UTF-8 BOM is skipped", async () => {
  const bytes = encoder.encode('{"a":"é👋"}');
  // Cut inside both the two-byte é and the four-byte emoji.
  const pieces = [bytes.slice(0, 7), bytes.slice(7, 10), bytes.slice(10)];
  assert.deepEqual(await read(post(ReadableStream.from(pieces))), { a: "é👋" });
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...bytes]);
  assert.deepEqual(await read(post(bom)), { a: "é👋" });
});

Deno.test("readJsonBody: an empty or blank body is 400 invalid_json that says it is empty", async () => {
  const bodies: (BodyInit | null)[] = [null, "", "  \r\n\t", new Uint8Array()];
  for (const body of bodies) {
    const err = await refusal(read(post(body)));
    assert.equal(err.status, 400);
    assert.equal(err.code, "invalid_json");
    assert.equal(err.message, "The request body is empty; send a JSON object.");
  }
  const declaredEmpty = await refusal(read(post("", { "content-length": "0" })));
  assert.equal(declaredEmpty.code, "invalid_json");
});

Deno.test("readJsonBody: text that is not JSON is 400 invalid_json with the parser's reason", async () => {
  for (const text of ["{", "{'model': 'gpt-4o'}", '{"a":1,}', "model=gpt-4o", '{"a":1}{"b":2}']) {
    const err = await refusal(read(post(text)));
    assert.equal(err.status, 400, text);
    assert.equal(err.code, "invalid_json");
    assert.match(err.message, /^The request body is not valid JSON: \S/);
  }
});

Deno.test("readJsonBody: nesting up to 128 levels is read; deeper is 400 nesting_too_deep", async () => {
  const arrays = (n: number) => "[".repeat(n) + "]".repeat(n);
  const objects = (n: number) => '{"a":'.repeat(n - 1) + "{}" + "}".repeat(n - 1);
  assert.ok(Array.isArray(await read(post(arrays(128)))));
  assert.equal(typeof await read(post(objects(128))), "object");
  for (const text of [arrays(129), objects(129), `{"a":[${objects(128)}]}`]) {
    const err = await refusal(read(post(text)));
    assert.equal(err.status, 400);
    assert.equal(err.code, "nesting_too_deep");
    assert.equal(
      err.message,
      "The request body nests arrays and objects deeper than 128 levels.",
    );
  }
  // Depth, not count: many shallow siblings are fine.
  assert.equal(((await read(post(`[${"[],".repeat(10_000)}[]]`))) as unknown[]).length, 10_001);
});

Deno.test("readJsonBody: brackets inside strings do not count, escaped quotes and backslashes included", async () => {
  const brackets = "[{".repeat(300);
  // In a string; after an escaped quote inside it; after an escaped backslash and quote.
  for (const value of [brackets, `\\"${brackets}`, `\\\\\\"${brackets}`]) {
    const text = `{"content":"${value}"}`;
    assert.deepEqual(await read(post(text)), JSON.parse(text));
  }
  // An escaped backslash ends with the string's quote: what follows is structure again.
  const deep = `{"a":"\\\\","b":${"[".repeat(129)}${"]".repeat(129)}}`;
  assert.equal((await refusal(read(post(deep)))).code, "nesting_too_deep");
  // An unterminated string is the parser's to report.
  assert.equal((await refusal(read(post(`{"a":"${brackets}`)))).code, "invalid_json");
});

Deno.test("readJsonBody: a small body that stops arriving is 408 body_timeout at its deadline", async () => {
  const { clock, deadlines } = manualDeadlines(30_000);
  const body = handFed();
  body.feed.enqueue(encoder.encode('{"model":'));
  const req = post(body.stream, { "content-length": "200" });
  let settled = false;
  const reading = readJsonBody(req, { maxBytes: 1024 * 1024, deadlines });
  const outcome = reading.then(() => null, (err) => err).finally(() => settled = true);
  await clock.advance(29_999);
  assert.equal(settled, false);
  await clock.advance(1);
  assert.equal(settled, true);
  const err = await refusal(reading);
  assert.equal(await outcome, err);
  assert.equal(err.status, 408);
  assert.equal(err.type, "timeout_error");
  assert.equal(err.code, "body_timeout");
  assert.equal(
    err.message,
    "The request body did not arrive in time (BODY_TIMEOUT_SECONDS, 30 s).",
  );
  assert.equal(clock.timers, 0, "no deadline left behind");
});

Deno.test("readJsonBody: a small declared body must arrive whole within one deadline, however it trickles", async () => {
  const { clock, deadlines } = manualDeadlines(10_000);
  const body = handFed();
  const reading = readJsonBody(post(body.stream, { "content-length": "200" }), {
    maxBytes: 1024 * 1024,
    deadlines,
  });
  reading.catch(() => {}); // Refused while time moves; looked at below.
  // A byte every 4 s: each pause is shorter than the deadline, the whole is not.
  for (let i = 0; i < 3; i++) {
    body.feed.enqueue(encoder.encode(" "));
    await clock.advance(4_000);
  }
  const err = await refusal(reading);
  assert.equal(err.status, 408);
  assert.equal(err.code, "body_timeout");
});

Deno.test("readJsonBody: a small body that arrives in time leaves no deadline pending", async () => {
  const { clock, deadlines } = manualDeadlines(30_000);
  const req = post('{"a":1}', { "content-length": "7" });
  assert.deepEqual(await readJsonBody(req, { maxBytes: 1000, deadlines }), { a: 1 });
  assert.equal(deadlines.pending, 0);
  await clock.advance(60_000);
});

Deno.test("readJsonBody: a large body may take long while it keeps arriving, and is 408 once it pauses", async () => {
  const { clock, deadlines } = manualDeadlines(10_000);
  const piece = encoder.encode(" ".repeat(8192));
  // Keeps arriving: each pause is a little shorter than the deadline, 40 s in all.
  const steady = handFed();
  const reading = readJsonBody(post(steady.stream), { maxBytes: 1024 * 1024, deadlines });
  steady.feed.enqueue(encoder.encode("["));
  for (let i = 0; i < 4; i++) {
    await clock.advance(9_999);
    steady.feed.enqueue(piece);
  }
  steady.feed.enqueue(encoder.encode("1]"));
  steady.feed.close();
  assert.deepEqual(await reading, [1]);
  // Pauses for the deadline's length: refused, and the upload cancelled.
  const stalled = handFed();
  const stalling = readJsonBody(post(stalled.stream), { maxBytes: 1024 * 1024, deadlines });
  stalling.catch(() => {}); // Refused while time moves; looked at below.
  stalled.feed.enqueue(piece);
  await clock.advance(9_999);
  stalled.feed.enqueue(piece);
  await clock.advance(10_000);
  const err = await refusal(stalling);
  assert.equal(err.status, 408);
  assert.equal(err.code, "body_timeout");
  assert.equal(stalled.cancelled(), true);
  assert.equal(deadlines.pending, 0);
});

Deno.test("readJsonBody: a large body trickling in slower than 8 KiB/s past its deadline is 408", async () => {
  // Real time: the average rate is measured with the wall clock. Every pause (10 ms) is shorter
  // than the deadline (200 ms), but 1 byte in 10 ms is far below the least rate: refused soon
  // after the deadline's length, though it would have ended as valid JSON.
  const deadlines = new Deadlines(200);
  try {
    const trickle = handFed();
    const reading = readJsonBody(post(trickle.stream), { maxBytes: 1024 * 1024, deadlines });
    let refused = false;
    reading.catch(() => refused = true);
    const started = Date.now();
    while (!refused && Date.now() - started < 2_000) {
      try {
        trickle.feed.enqueue(encoder.encode(" "));
      } catch {
        break; // Cancelled by the refusal.
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    if (!refused) {
      trickle.feed.enqueue(encoder.encode("[]"));
      trickle.feed.close();
    }
    const err = await refusal(reading);
    assert.equal(err.status, 408);
    assert.equal(err.code, "body_timeout");
    assert.equal(trickle.cancelled(), true);
  } finally {
    deadlines.clear();
  }
});

Deno.test("readJsonBody: a body that breaks off is 400 invalid_body, declared or not", async () => {
  for (const headers of [{ "content-length": "100" }, {}] as Record<string, string>[]) {
    const body = handFed();
    body.feed.enqueue(encoder.encode('{"a":'));
    const cause = new Error("connection reset");
    const reading = read(post(body.stream, headers));
    body.feed.error(cause);
    const err = await refusal(reading);
    assert.equal(err.status, 400);
    assert.equal(err.code, "invalid_body");
    assert.equal(err.message, "The request body could not be read.");
    assert.ok(err.cause instanceof Error);
  }
});

Deno.test("readJsonBody: a body whose connection ended is 499 client_closed_request, declared or not", async () => {
  // What Deno 2.9.6 throws for a connection the client closed, and for one it reset.
  const ended = [
    () =>
      new Deno.errors.BadResource("Cannot read request body as underlying resource unavailable"),
    () => new Deno.errors.Http("unexpected EOF while reading HTTP/1 body"),
  ];
  for (const error of ended) {
    for (const headers of [{ "content-length": "100" }, {}] as Record<string, string>[]) {
      const body = handFed();
      body.feed.enqueue(encoder.encode('{"a":'));
      const reading = read(post(body.stream, headers));
      body.feed.error(error());
      const err = await refusal(reading);
      assert.equal(err.status, 499, `${error().name}, ${JSON.stringify(headers)}`);
      assert.equal(err.code, "client_closed_request");
      assert.ok(err.cause instanceof Error);
    }
  }
  // A malformed body (a bad chunk) is the client's error, with the client still there.
  const body = handFed();
  const reading = read(post(body.stream));
  body.feed.error(new Error("invalid HTTP/1 request: Invalid"));
  assert.equal((await refusal(reading)).status, 400);
});

Deno.test("readJsonBody: a large body's 408 says connection: close; a small one's leaves it to Deno", async () => {
  const { clock, deadlines } = manualDeadlines(10_000);
  for (const headers of [{}, { "content-length": "200" }] as Record<string, string>[]) {
    const body = handFed();
    body.feed.enqueue(encoder.encode('{"model":'));
    const reading = readJsonBody(post(body.stream, headers), { maxBytes: 1024 * 1024, deadlines });
    reading.catch(() => {}); // Refused while time moves; looked at below.
    await clock.advance(10_000);
    const err = await refusal(reading);
    assert.equal(err.status, 408);
    assert.deepEqual(err.headers, "content-length" in headers ? {} : { connection: "close" });
  }
});

Deno.test("readJsonBodyRaw: a large ASCII body's long strings are found in its bytes, chunked or declared", async () => {
  const url = "data:image/png;base64," + "QUJD".repeat(400_000);
  const body = {
    model: "m",
    messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }],
  };
  const text = JSON.stringify(body);
  const whole = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(encoder.encode(text.slice(0, 1000)));
      c.enqueue(encoder.encode(text.slice(1000)));
      c.close();
    },
  });
  const options = { maxBytes: 4 * 1024 * 1024, deadlines: manualDeadlines().deadlines };
  const got = await readJsonBodyRaw(post(whole), options);
  assert.deepEqual(got.json, body);
  assert.ok(got.raw);
  assert.equal(got.raw.size, 1);
  const sent = got.raw.serialize(got.json);
  assert.ok(sent instanceof Uint8Array);
  assert.ok(sent.length === text.length && sent.every((b, i) => b === text.charCodeAt(i)));
  const declared = await readJsonBodyRaw(
    post(text, { "content-length": String(text.length) }),
    options,
  );
  assert.equal(declared.raw?.size, 1);
  // Not all ASCII, or small: nothing is kept.
  const accented = await readJsonBodyRaw(post(text.replace('"m"', '"é"')), options);
  assert.equal(accented.raw, null);
  const small = await readJsonBodyRaw(post(JSON.stringify({ model: "m", messages: [] })), options);
  assert.equal(small.raw, null);
  assert.deepEqual(small.json, { model: "m", messages: [] });
});

/** A budget for one body of `bodyBytes` at a time, on `deadlines`. */
function oneAtATime(bodyBytes: number, deadlines: Deadlines): BodyBudget {
  return new BodyBudget(bodyBytes * MEMORY_PER_BODY_BYTE, deadlines);
}

/** A JSON body of about `size` bytes. */
function jsonOf(size: number): string {
  return JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(size) }] });
}

Deno.test("readJsonBodyRaw: a declared large body waits for its share before it is read, and hands it on", async () => {
  const { deadlines } = manualDeadlines();
  const text = jsonOf(2 * 1024 * 1024);
  const budget = oneAtATime(text.length, deadlines);
  const other = await budget.take(text.length);
  const source = new SourceBody(encoder.encode(text), 1);
  const reading = readJsonBodyRaw(post(source.stream, { "content-length": String(text.length) }), {
    maxBytes: 4 * 1024 * 1024,
    deadlines,
    budget,
  });
  await new Promise((r) => setTimeout(r, 10));
  // One read stands pending on it, to notice a client that leaves; no more.
  assert.equal(source.pulls, 1);
  assert.equal(budget.waiting, 1);
  other.release();
  const got = await reading;
  assert.equal((got.json as { model: string }).model, "m");
  assert.ok(got.lease);
  assert.equal(budget.held, text.length * MEMORY_PER_BODY_BYTE);
  got.lease.release();
  assert.equal(budget.held, 0);
  // A small body takes no share, even when none is left.
  const blocker = await budget.take(text.length);
  const small = await readJsonBodyRaw(post(jsonOf(10)), { maxBytes: 1000, deadlines, budget });
  assert.equal(small.lease, null);
  blocker.release();
});

Deno.test("readJsonBodyRaw: a chunked body takes its share past 1 MiB, counted at the largest, then at its size", async () => {
  const { deadlines } = manualDeadlines();
  const maxBytes = 8 * 1024 * 1024;
  const budget = new BodyBudget(maxBytes * MEMORY_PER_BODY_BYTE, deadlines);
  const text = jsonOf(1024 * 1024 + 1000);
  const body = handFed();
  const reading = readJsonBodyRaw(post(body.stream), { maxBytes, deadlines, budget });
  body.feed.enqueue(encoder.encode(text.slice(0, 1024 * 1024)));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(budget.held, 0, "not past 1 MiB yet");
  body.feed.enqueue(encoder.encode(text.slice(1024 * 1024)));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(budget.held, maxBytes * MEMORY_PER_BODY_BYTE);
  body.feed.close();
  const got = await reading;
  assert.equal(budget.held, text.length * MEMORY_PER_BODY_BYTE);
  got.lease!.release();
  assert.equal(budget.held, 0);
});

Deno.test("readJsonBodyRaw: a large body's share comes back when it is refused", async () => {
  const { deadlines } = manualDeadlines();
  const text = jsonOf(2 * 1024 * 1024);
  const budget = oneAtATime(text.length, deadlines);
  const invalidUtf8 = encoder.encode(text);
  invalidUtf8[100] = 0xff;
  const cases: [string, Uint8Array<ArrayBuffer>][] = [
    ["invalid JSON", encoder.encode(text.slice(0, -1))],
    ["too deep", encoder.encode("[".repeat(200) + text.slice(200))],
    ["invalid UTF-8", invalidUtf8],
  ];
  for (const [what, bytes] of cases) {
    const reading = readJsonBodyRaw(post(bytes, { "content-length": String(bytes.length) }), {
      maxBytes: 4 * 1024 * 1024,
      deadlines,
      budget,
    });
    assert.equal((await refusal(reading)).status, 400, what);
    assert.equal(budget.held, 0, what);
  }
  // Held from before its first byte is read to the refusal.
  const bytes = encoder.encode(text.slice(0, -1));
  const fed = handFed();
  const refused = readJsonBodyRaw(post(fed.stream, { "content-length": String(bytes.length) }), {
    maxBytes: 4 * 1024 * 1024,
    deadlines,
    budget,
  });
  refused.catch(() => {});
  fed.feed.enqueue(bytes);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(budget.held, bytes.length * MEMORY_PER_BODY_BYTE);
  fed.feed.close();
  assert.equal((await refusal(refused)).status, 400);
  assert.equal(budget.held, 0);
  // Past MAX_BODY_BYTES in chunks, after its share was taken.
  const reading = readJsonBodyRaw(post(new SourceBody(new Uint8Array(1024 * 1024)).stream), {
    maxBytes: 3 * 1024 * 1024,
    deadlines,
    budget,
  });
  assert.equal((await refusal(reading)).status, 413);
  assert.equal(budget.held, 0);
});

Deno.test("readJsonBodyRaw: a body still waiting for its share at the deadline is 503, unread, with connection: close", async () => {
  const { clock, deadlines } = manualDeadlines(10_000);
  const text = jsonOf(2 * 1024 * 1024);
  const budget = oneAtATime(text.length, deadlines);
  const other = await budget.take(text.length);
  const source = new SourceBody(encoder.encode(text), 1);
  const reading = readJsonBodyRaw(post(source.stream, { "content-length": String(text.length) }), {
    maxBytes: 4 * 1024 * 1024,
    deadlines,
    budget,
  });
  reading.catch(() => {});
  await clock.advance(10_000);
  const err = await refusal(reading);
  assert.equal(err.status, 503);
  assert.equal(err.code, "server_busy");
  assert.equal(err.headers.connection, "close");
  assert.ok(source.cancelled);
  assert.deepEqual([budget.held, budget.waiting], [text.length * MEMORY_PER_BODY_BYTE, 0]);
  other.release();
});

Deno.test("readJsonBodyRaw: a body whose read fails while it waits leaves the queue at once", async () => {
  const { deadlines } = manualDeadlines();
  const text = jsonOf(2 * 1024 * 1024);
  const budget = oneAtATime(text.length, deadlines);
  const other = await budget.take(text.length);
  const body = handFed();
  const reading = readJsonBodyRaw(post(body.stream, { "content-length": String(text.length) }), {
    maxBytes: 4 * 1024 * 1024,
    deadlines,
    budget,
  });
  reading.catch(() => {});
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(budget.waiting, 1);
  body.feed.error(new Deno.errors.BadResource("connection closed"));
  const err = await refusal(reading);
  assert.equal(err.status, 499);
  assert.equal(budget.waiting, 0);
  other.release();
  assert.equal(budget.held, 0);
});
