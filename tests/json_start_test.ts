/** @module A JSON answer to a streamed request, told as a stream's opening would be. */
import assert from "node:assert/strict";
import {
  type JsonStartOptions,
  readCappedResponse,
  readCappedText,
  readJsonStart,
} from "../lib/json_start.ts";
import type { BodyReader } from "../lib/stream_start.ts";
import { readAll, streamOf } from "./body_streams.ts";

const enc = new TextEncoder();

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

Deno.test("readCappedText: the whole body's text, a character split between pieces kept whole", async () => {
  const bytes = enc.encode('{"a":"héllo"}');
  // The é's two bytes fall in different pieces.
  const stream = ReadableStream.from([bytes.subarray(0, 8), bytes.subarray(8)]);
  assert.equal(await readCappedText(stream, 1024), '{"a":"héllo"}');
  assert.equal(await readCappedText(null, 1024), "");
  // Exactly maxBytes is still read.
  const full = await readCappedText(ReadableStream.from([new Uint8Array(1024)]), 1024);
  assert.equal(full?.length, 1024);
});

Deno.test("readCappedText: past maxBytes it is null, the body cancelled; a broken body rejects", async () => {
  let cancelled = false;
  let pulls = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(c) {
      pulls++;
      c.enqueue(new Uint8Array(400));
    },
    cancel() {
      cancelled = true;
    },
  });
  assert.equal(await readCappedText(endless, 1024), null);
  assert.ok(cancelled);
  assert.ok(pulls <= 4, `read ${pulls} pieces of a 1024-byte limit`);
  const broken = new ReadableStream<Uint8Array>({
    pull(c) {
      c.error(new Error("reset"));
    },
  });
  await assert.rejects(readCappedText(broken, 1024), /reset/);
});

Deno.test("readCappedResponse: a declared length that fits is read whole, one over the cap not at all", async () => {
  const fits = new Response('{"a":1}', { headers: { "content-length": "7" } });
  assert.equal(await readCappedResponse(fits, 7), '{"a":1}');
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
  });
  const declared = new Response(body, { headers: { "content-length": "2048" } });
  assert.equal(await readCappedResponse(declared, 1024), null);
  assert.ok(cancelled);
  // Without a length (chunked), it is read piece by piece within the cap.
  const chunked = new Response(ReadableStream.from([new Uint8Array(2048)]));
  assert.equal(await readCappedResponse(chunked, 1024), null);
});
