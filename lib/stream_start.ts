/**
 * @module The opening of Poe's streamed answer, read before the client is sent a status: a stream
 * that opens with an error event is a failed call, which can still get its own status and a retry
 * (a JSON body that is an error: `json_start.ts`).
 */
import { createParser } from "eventsource-parser";

/**
 * What the relay reads Poe's body through. A chunk read is valid until the next read: its memory
 * may be reused for it.
 */
export interface BodyReader {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(reason?: unknown): Promise<void>;
}

/**
 * What a {@linkcode BodyReader} yields for a piece of the answer that is no event yet (a JSON
 * answer's body, made events once it is whole): the relay times the pauses after it as the
 * answer's own (`IDLE_TIMEOUT_SECONDS`), and keeps the client's keep-alives going.
 */
export const UNDER_WAY: ReadableStreamReadResult<Uint8Array> = {
  done: false,
  value: new Uint8Array(),
};

/** Bytes asked of Poe's body per read; events are far smaller. */
const READ_BYTES = 16 * 1024;

/**
 * A reader that reads into small buffers where the stream allows it: a default read of Deno's
 * fetch body allocates 64 KiB, and while Poe thinks that buffer waits in every open stream. The
 * buffer of one read is the next read's (a new 16 KiB buffer for each event cost more than the
 * relay's own work on it).
 */
export function smallReader(stream: ReadableStream<Uint8Array>): BodyReader {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream (a converted JSON answer, a test's stream): read it as it comes.
    return stream.getReader();
  }
  let spare: ArrayBuffer | null = null;
  return {
    async read() {
      const buffer = spare ?? new ArrayBuffer(READ_BYTES);
      spare = null;
      const result = await byob.read(new Uint8Array(buffer));
      if (result.value) spare = result.value.buffer as ArrayBuffer;
      return result as ReadableStreamReadResult<Uint8Array>;
    },
    cancel: (reason) => byob.cancel(reason),
  };
}

/** How a stream opened. */
export type StreamStart =
  /** With its answer (or silence past the wait): `body` reads it from its first byte. */
  | { kind: "answer"; body: BodyReader }
  /** With an error event before any of the answer; the body is let go. */
  | { kind: "error"; error: Record<string, unknown> }
  /** With no event at all before its end. */
  | { kind: "empty" };

/** Past this much without a verdict the opening is handed on as it is (a hostile upstream). */
const MAX_HEAD_BYTES = 1024 * 1024;

/** Options of {@linkcode readStreamStart}. */
export interface StreamStartOptions {
  /**
   * Takes a body that opened with an error or `[DONE]`, whose end should follow soon. Default:
   * the body is cancelled.
   */
  drain?: (body: BodyReader) => void;
}

/**
 * Reads the opening of an SSE body until it shows the answer (content, reasoning, a tool call, a
 * finish or usage), an error event, or its end; or until `wait` ends, for a model that thinks in
 * silence must not keep the client without headers. Events with nothing in them (the role
 * chunk) are read past: an error may follow them. Nothing is lost: the returned body yields what
 * was read, then the rest. A failed read rejects, as the body's own read would.
 */
export async function readStreamStart(
  stream: ReadableStream<Uint8Array>,
  wait: Promise<void>,
  options: StreamStartOptions = {},
): Promise<StreamStart> {
  const reader = smallReader(stream);
  const letGo = async () => {
    if (options.drain) options.drain(reader);
    else await reader.cancel().catch(() => {});
  };
  const decoder = new TextDecoder();
  const head: Uint8Array[] = [];
  let size = 0;
  let events = 0;
  let verdict: "answer" | "error" | "done" | null = null;
  let error: Record<string, unknown> = {};
  const parser = createParser({
    onEvent(event) {
      if (verdict !== null) return;
      if (event.data === "[DONE]") {
        verdict = "done";
        return;
      }
      // deno-lint-ignore no-explicit-any
      let chunk: any = null;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        // Not JSON: the relay drops it, unless it is a named error event.
      }
      if (event.event === "error" || (chunk?.error && typeof chunk === "object")) {
        verdict = "error";
        error = errorObject(chunk?.error ?? chunk ?? event.data);
        return;
      }
      if (chunk === null || typeof chunk !== "object") return;
      events++;
      if (opensAnswer(chunk)) verdict = "answer";
    },
  });
  const waited = wait.then(() => null);
  for (;;) {
    const read = reader.read();
    const result = await Promise.race([read, waited]);
    if (result === null) return { kind: "answer", body: resumed(head, read, reader) };
    if (result.done) {
      parser.feed(decoder.decode() + "\n\n");
      if (verdict === "error") return { kind: "error", error };
      if (events > 0) return { kind: "answer", body: resumed(head, null, reader) };
      const bare = bareError(head);
      return bare === null ? { kind: "empty" } : { kind: "error", error: bare };
    }
    // Kept past the next read, which may reuse its memory.
    head.push(result.value.slice());
    size += result.value.byteLength;
    parser.feed(decoder.decode(result.value, { stream: true }));
    if (verdict === "error") {
      await letGo();
      return { kind: "error", error };
    }
    if (verdict === "done" && events === 0) {
      await letGo();
      return { kind: "empty" };
    }
    if (verdict !== null || size > MAX_HEAD_BYTES) {
      return { kind: "answer", body: resumed(head, null, reader) };
    }
  }
}

/**
 * The error of a body that held no event but is Poe's JSON error, sent without `data:` under an
 * SSE content type; else null.
 */
function bareError(head: Uint8Array[]): Record<string, unknown> | null {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(concat(head)));
    return parsed?.error ? errorObject(parsed.error) : null;
  } catch {
    return null;
  }
}

/** Poe's error as an object: a bare message (a string error, a named event's text) gets one. */
export function errorObject(e: unknown): Record<string, unknown> {
  return e && typeof e === "object" ? e as Record<string, unknown> : { message: String(e) };
}

/**
 * Whether a chunk carries any of the answer: text, reasoning, a tool call, a finish or usage. A
 * role chunk does not: a model may think in silence after it.
 */
// deno-lint-ignore no-explicit-any
export function opensAnswer(chunk: any): boolean {
  if (chunk.usage) return true;
  const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined;
  if (!choice || typeof choice !== "object") return false;
  if (choice.finish_reason) return true;
  const delta = choice.delta;
  if (!delta || typeof delta !== "object") return false;
  for (const [key, value] of Object.entries(delta)) {
    if (key === "role" || value === null || value === undefined || value === "") continue;
    if (Array.isArray(value) && value.length === 0) continue;
    return true;
  }
  return false;
}

/** A reader that yields the bytes read already (as one chunk), a read in flight, then the rest. */
function resumed(
  head: Uint8Array[],
  pending: Promise<ReadableStreamReadResult<Uint8Array>> | null,
  reader: BodyReader,
): BodyReader {
  let first: Uint8Array | null = head.length === 0
    ? null
    : head.length === 1
    ? head[0]
    : concat(head);
  return {
    read() {
      if (first !== null) {
        const value = first;
        first = null;
        return Promise.resolve({ done: false, value });
      }
      if (pending !== null) {
        const read = pending;
        pending = null;
        return read;
      }
      return reader.read();
    },
    cancel: (reason) => reader.cancel(reason),
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
