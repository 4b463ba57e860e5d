/** @module Reading a stream's opening for an error, without losing a byte of the answer. */
import assert from "node:assert/strict";
import {
  type BodyReader,
  type JsonStartOptions,
  readJsonStart,
  readStreamStart,
} from "../lib/stream_start.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const never = new Promise<void>(() => {});

/** A byte stream of these pieces, each a read of its own. */
function streamOf(pieces: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    type: "bytes",
    pull(c) {
      if (i < pieces.length) return c.enqueue(enc.encode(pieces[i++]));
      c.close();
      // A read into the reader's own buffer waits for this to end.
      c.byobRequest?.respond(0);
    },
  });
}

async function readAll(body: BodyReader): Promise<string> {
  let text = "";
  for (;;) {
    const { done, value } = await body.read();
    if (done) return text + dec.decode();
    text += dec.decode(value, { stream: true });
  }
}

const ROLE =
  `data: {"id":"a","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n`;
const HELLO = `data: {"id":"a","choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n`;
const DONE = "data: [DONE]\n\n";

Deno.test("readStreamStart: an error event after the role chunk is the stream's verdict", async () => {
  const start = await readStreamStart(
    streamOf([
      ROLE,
      `data: {"error":{"message":"Overloaded.","type":"overloaded_error"}}\n\n`,
      DONE,
    ]),
    never,
  );
  assert.deepEqual(start, {
    kind: "error",
    error: { message: "Overloaded.", type: "overloaded_error" },
  });
});

Deno.test("readStreamStart: a body that opened with an error or [DONE] is handed to drain with its rest", async () => {
  const ERROR = `data: {"error":{"message":"Overloaded."}}\n\n`;
  const cases: [string[], string, string][] = [
    [[ROLE, ERROR, DONE], "error", DONE],
    [[DONE, ": end\n\n"], "empty", ": end\n\n"],
  ];
  for (const [pieces, kind, rest] of cases) {
    const rests: Promise<string>[] = [];
    const start = await readStreamStart(streamOf(pieces), never, {
      drain: (body) => rests.push(readAll(body)),
    });
    assert.equal(start.kind, kind);
    assert.equal(rests.length, 1);
    // Nothing was cancelled: the rest of the body is still there to be read to its end.
    assert.equal(await rests[0], rest);
  }
});

Deno.test("readStreamStart: a named error event with a bare message", async () => {
  const start = await readStreamStart(streamOf(["event: error\ndata: Model is down\n\n"]), never);
  assert.deepEqual(start, { kind: "error", error: { message: "Model is down" } });
});

Deno.test("readStreamStart: an answer is handed on whole, however its bytes were split", async () => {
  const whole = ": ping\n\n" + ROLE + "data: not json\n\n" + HELLO + DONE;
  for (const size of [1, 3, 7, 64, whole.length]) {
    const pieces: string[] = [];
    for (let i = 0; i < whole.length; i += size) pieces.push(whole.slice(i, i + size));
    const start = await readStreamStart(streamOf(pieces), never);
    assert.equal(start.kind, "answer", `pieces of ${size}`);
    if (start.kind !== "answer") continue;
    assert.equal(await readAll(start.body), whole, `pieces of ${size}`);
  }
});

Deno.test("readStreamStart: past the wait, the answer is handed on with the read in flight", async () => {
  let release!: () => void;
  const later = new Promise<void>((r) => release = r);
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      pulls++;
      if (pulls === 1) return c.enqueue(enc.encode(ROLE));
      if (pulls === 2) {
        await later;
        return c.enqueue(enc.encode(HELLO));
      }
      c.enqueue(enc.encode(DONE));
      c.close();
    },
  });
  let endWait!: () => void;
  const wait = new Promise<void>((r) => endWait = r);
  const started = readStreamStart(stream, wait);
  await new Promise((r) => setTimeout(r, 10));
  endWait();
  const start = await started;
  assert.equal(start.kind, "answer");
  if (start.kind !== "answer") return;
  release();
  assert.equal(await readAll(start.body), ROLE + HELLO + DONE);
});

Deno.test("readStreamStart: a stream with no event before its end is empty", async () => {
  for (const pieces of [[], [": keep-alive\n\n"], [DONE], ["data: 42\n\n", DONE]]) {
    assert.deepEqual(await readStreamStart(streamOf(pieces), never), { kind: "empty" });
  }
  // Empty lists in the first delta are not yet the answer: an error may follow.
  const EMPTY =
    `data: {"id":"a","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[],"annotations":[]}}]}\n\n`;
  const failed = await readStreamStart(
    streamOf([EMPTY, `data: {"error":{"message":"Down."}}\n\n`]),
    never,
  );
  assert.equal(failed.kind, "error");
  // A role chunk alone is an (empty) answer: the relay gives it its finish.
  const start = await readStreamStart(streamOf([ROLE]), never);
  assert.equal(start.kind, "answer");
});

Deno.test("readStreamStart: a broken body rejects, as its own read would", async () => {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulls++ === 0) c.enqueue(enc.encode(ROLE));
      else c.error(new Error("reset"));
    },
  });
  await assert.rejects(readStreamStart(stream, never), /reset/);
});

// --- a JSON answer to a streamed request ----------------------------------------------------------

const JSON_OPTIONS: JsonStartOptions = { firstByteMs: 1000, idleMs: 1000, maxBytes: 1024 };
const COMPLETION = JSON.stringify({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model: "GPT-4o",
  choices: [{ index: 0, message: { role: "assistant", content: "Hi." }, finish_reason: "stop" }],
});

/** A stream that gives these pieces, then stays silent, never ending. */
function silentAfter(pieces: string[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i >= pieces.length) return new Promise<void>(() => {});
      c.enqueue(enc.encode(pieces[i++]));
      return Promise.resolve();
    },
  });
}

Deno.test("readJsonStart: a completion, read in pieces, is an answer that yields its events", async () => {
  const half = COMPLETION.length >> 1;
  const start = await readJsonStart(
    streamOf([COMPLETION.slice(0, half), COMPLETION.slice(half)]),
    JSON_OPTIONS,
  );
  assert.equal(start.kind, "answer");
  const text = await readAll((start as { body: BodyReader }).body);
  const data = text.split("\n\n").filter(Boolean).map((e) => e.replace(/^data: /, ""));
  assert.equal(data.at(-1), "[DONE]");
  assert.equal(JSON.parse(data[0]).choices[0].delta.content, "Hi.");
  assert.equal(JSON.parse(data[1]).choices[0].finish_reason, "stop");
});

Deno.test("readJsonStart: an error body is an error, as an opening error event is", async () => {
  const start = await readJsonStart(
    streamOf([`{"error":{"code":529,"type":"overloaded_error","message":"Busy."}}`]),
    JSON_OPTIONS,
  );
  assert.deepEqual(start, {
    kind: "error",
    error: { code: 529, type: "overloaded_error", message: "Busy." },
  });
  const bare = await readJsonStart(streamOf([`{"error":"Down."}`]), JSON_OPTIONS);
  assert.deepEqual(bare, { kind: "error", error: { message: "Down." } });
});

Deno.test("readJsonStart: a body that is not JSON, or has no choices, holds no answer", async () => {
  for (const [body, parsed] of [["<html>", undefined], ["{}", {}], ["null", null]] as const) {
    assert.deepEqual(await readJsonStart(streamOf([body]), JSON_OPTIONS), {
      kind: "no-answer",
      parsed,
    });
  }
  assert.deepEqual(await readJsonStart(streamOf(['{"choices":[]}']), JSON_OPTIONS), {
    kind: "no-answer",
    parsed: { choices: [] },
  });
});

Deno.test("readJsonStart: a body past maxBytes is not read on, and is cancelled", async () => {
  let cancelled = false;
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      pulls++;
      c.enqueue(new Uint8Array(400));
    },
    cancel() {
      cancelled = true;
    },
  });
  assert.deepEqual(await readJsonStart(stream, JSON_OPTIONS), { kind: "too-large" });
  assert.ok(cancelled);
  assert.ok(pulls <= 4, `read ${pulls} pieces of a 1024-byte limit`);
});

Deno.test("readJsonStart: a body late to start, or silent once started, times out", async () => {
  const late = await readJsonStart(silentAfter([]), { ...JSON_OPTIONS, firstByteMs: 20 });
  assert.deepEqual(late, { kind: "timeout", started: false });
  const began = Date.now();
  const silent = await readJsonStart(silentAfter(['{"choices":']), {
    ...JSON_OPTIONS,
    firstByteMs: 5000,
    idleMs: 20,
  });
  assert.deepEqual(silent, { kind: "timeout", started: true });
  assert.ok(Date.now() - began < 2000, "the idle wait, not the first-byte one");
});

Deno.test("readJsonStart: a broken body rejects, as its own read would", async () => {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulls++ === 0) c.enqueue(enc.encode('{"choices":'));
      else c.error(new Error("reset"));
    },
  });
  await assert.rejects(readJsonStart(stream, JSON_OPTIONS), /reset/);
});
