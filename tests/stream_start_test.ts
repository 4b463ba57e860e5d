/** @module Reading a stream's opening for an error, without losing a byte of the answer. */
import assert from "node:assert/strict";
import { readStreamStart } from "../lib/stream_start.ts";
import { readAll, streamOf } from "./body_streams.ts";

const enc = new TextEncoder();
const never = new Promise<void>(() => {});

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

Deno.test("readStreamStart: a body that is Poe's JSON error without data: is that error", async () => {
  const body = '{"error":{"message":"Rate limit reached.","type":"rate_limit_error"}}';
  for (const pieces of [[body], [body.slice(0, 10), body.slice(10), "\n"]]) {
    assert.deepEqual(await readStreamStart(streamOf(pieces), never), {
      kind: "error",
      error: { message: "Rate limit reached.", type: "rate_limit_error" },
    });
  }
  assert.deepEqual(await readStreamStart(streamOf(['{"error":"Overloaded."}']), never), {
    kind: "error",
    error: { message: "Overloaded." },
  });
  // Other JSON is no error: empty, as before.
  assert.deepEqual(await readStreamStart(streamOf(['{"ok":true}']), never), { kind: "empty" });
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
