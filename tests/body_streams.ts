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
