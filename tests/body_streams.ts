/** @module Byte streams and body readers for the tests of reading Poe's bodies. */
import type { BodyReader } from "../lib/stream_start.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A byte stream of these pieces, each a read of its own. */
export function streamOf(pieces: string[]): ReadableStream<Uint8Array> {
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

export async function readAll(body: BodyReader): Promise<string> {
  let text = "";
  for (;;) {
    const { done, value } = await body.read();
    if (done) return text + dec.decode();
    text += dec.decode(value, { stream: true });
  }
}

/**
 * A body of `whitespace` bytes of JSON whitespace, then `tail`: a JSON document read whole, and
 * too large. `sent` counts the bytes enqueued so far; `ended` says whether the reader cancelled it
 * or it was sent whole.
 */
export function paddedJson(whitespace: number, tail: string, chunkBytes = 1024 * 1024) {
  const chunk = new Uint8Array(chunkBytes).fill(0x20);
  const { promise: ended, resolve: end } = Promise.withResolvers<"cancelled" | "sent whole">();
  const state = { sent: 0, ended };
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (state.sent >= whitespace) {
        c.enqueue(enc.encode(tail));
        c.close();
        end("sent whole");
        return;
      }
      state.sent += chunk.byteLength;
      c.enqueue(chunk);
    },
    cancel: () => end("cancelled"),
  });
  return Object.assign(state, { body });
}
