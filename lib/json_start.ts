/**
 * @module A JSON answer to a streamed request, read within its timeouts and size limit and told as
 * a stream's opening would be: a completion becomes its events, an `error` object an error.
 */
import { completionToSse, isCompletion } from "./completion_events.ts";
import { type BodyReader, errorObject, type StreamStart, UNDER_WAY } from "./stream_start.ts";

/** Options of {@linkcode readJsonStart}. */
export interface JsonStartOptions {
  /** Milliseconds the body's first bytes may take. */
  firstByteMs: number;
  /** Milliseconds the body may then stay silent between reads. */
  idleMs: number;
  /** Bytes past which the body is not read on (it could not be relayed as one event). */
  maxBytes: number;
  /**
   * When it ends before the body does, the answer is handed on as it is: the client gets its
   * headers and keep-alives while the relay reads the rest (as for a stream's opening).
   */
  wait?: Promise<void>;
}

/** How a JSON answer to a streamed request began: as a stream would have, or not at all. */
export type JsonStart =
  | StreamStart
  /** A body that holds no completion: `parsed` is its JSON, `undefined` when it is not JSON. */
  | { kind: "no-answer"; parsed: unknown }
  /** The body did not come in time: its first bytes (`started` false), or the rest. */
  | { kind: "timeout"; started: boolean }
  /** The body is larger than `maxBytes`. */
  | { kind: "too-large" };

const encoder = new TextEncoder();

/** A JSON body read piece by piece, within a size limit. */
export class JsonText {
  #decoder = new TextDecoder();
  #parts: string[] = [];
  size = 0;

  constructor(readonly maxBytes: number) {}

  /** Adds a piece; false past the size limit. */
  add(bytes: Uint8Array): boolean {
    this.size += bytes.byteLength;
    if (this.size > this.maxBytes) return false;
    this.#parts.push(this.#decoder.decode(bytes, { stream: true }));
    return true;
  }

  /** The whole body's text. Call it once, after the last piece. */
  text(): string {
    this.#parts.push(this.#decoder.decode());
    return this.#parts.join("");
  }

  /** The whole body parsed: `undefined` when it is not JSON. Call it once, after the last piece. */
  parse(): unknown {
    try {
      return JSON.parse(this.text());
    } catch {
      return undefined;
    }
  }
}

/**
 * Reads the whole of a body as text, up to `maxBytes`: null past them, the body then cancelled (so
 * an endless body is not read on, nor held). A failed read rejects, as the body's own read would.
 */
export async function readCappedText(
  stream: ReadableStream<Uint8Array> | null,
  maxBytes: number,
): Promise<string | null> {
  if (stream === null) return "";
  const reader = stream.getReader();
  const text = new JsonText(maxBytes);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text.text();
    if (!text.add(value)) {
      await reader.cancel().catch(() => {});
      return null;
    }
  }
}

/** A `Content-Encoding` that leaves the body as it is: none named, or only `identity`. */
const IDENTITY = /^\s*(identity\s*)?$/i;

/**
 * {@linkcode readCappedText} of a response's body. One whose `Content-Length` fits is read by the
 * platform in one go, cheaper than a piece at a time (nearly every answer; the HTTP client stops
 * at that length); one that declares more is not read at all. Not a compressed one: its length is
 * the compressed size, and `fetch` inflates it (a few hundred KB of gzip make hundreds of MB), so
 * it is read piece by piece, counting what it inflates to.
 */
export async function readCappedResponse(
  response: Response,
  maxBytes: number,
): Promise<string | null> {
  const declared = response.headers.get("content-length");
  const encoding = response.headers.get("content-encoding") ?? "";
  if (declared !== null && /^\d+$/.test(declared) && IDENTITY.test(encoding)) {
    if (Number(declared) <= maxBytes) return await response.text();
    await response.body?.cancel().catch(() => {});
    return null;
  }
  return await readCappedText(response.body, maxBytes);
}

/**
 * Poe's error in a whole JSON body (its `error`, as an object), or null when it holds none: such
 * a 200 is Poe's refusal of the call, not an answer. A body with an answer is one, whatever else
 * it holds: its model ran, and asking again would bill it again.
 */
export function errorIn(parsed: unknown): Record<string, unknown> | null {
  if (parsed === null || typeof parsed !== "object" || isCompletion(parsed)) return null;
  const found = (parsed as { error?: unknown }).error;
  return found ? errorObject(found) : null;
}

/** What a whole JSON body is, as a stream's opening would tell it. */
function verdictOf(parsed: unknown): JsonStart {
  const error = errorIn(parsed);
  if (error) return { kind: "error", error };
  if (!isCompletion(parsed)) return { kind: "no-answer", parsed };
  const events = encoder.encode(completionToSse(parsed as Record<string, unknown>));
  return { kind: "answer", body: ReadableStream.from([events]).getReader() };
}

/**
 * Reads the whole of a JSON answer Poe sent to a streamed request, within the timeouts and the
 * size limit, and tells it as a stream's opening: a completion is an answer whose `body` yields
 * its events ({@linkcode completionToSse}), an `error` object is an error, as an opening error
 * event is. Past `wait` it is an answer whose `body` reads the rest, then yields its events or
 * its error as events. The body is cancelled unless read to its end. A failed read rejects, as
 * the body's own read would.
 */
export async function readJsonStart(
  stream: ReadableStream<Uint8Array>,
  options: JsonStartOptions,
): Promise<JsonStart> {
  const reader = stream.getReader();
  const text = new JsonText(options.maxBytes);
  const waited = options.wait?.then(() => "waited" as const) ?? new Promise<never>(() => {});
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(
        () => resolve("late"),
        text.size === 0 ? options.firstByteMs : options.idleMs,
      );
    });
    const read = reader.read();
    let result: ReadableStreamReadResult<Uint8Array> | "late" | "waited";
    try {
      result = await Promise.race([read, late, waited]);
    } finally {
      clearTimeout(timer);
    }
    if (result === "waited") {
      // Awaited by the relay's first pull; a failure before then must not go unhandled.
      read.catch(() => {});
      return { kind: "answer", body: jsonRest(reader, read, text) };
    }
    if (result === "late") {
      await reader.cancel().catch(() => {});
      return { kind: "timeout", started: text.size > 0 };
    }
    if (result.done) break;
    if (!text.add(result.value)) {
      await reader.cancel().catch(() => {});
      return { kind: "too-large" };
    }
  }
  return verdictOf(text.parse());
}

/**
 * The rest of a JSON answer handed on before it was whole. Each piece of it is reported as
 * {@linkcode UNDER_WAY}, so that the relay times the pauses between them (`IDLE_TIMEOUT_SECONDS`)
 * and keeps the client's keep-alives going; at its end come its events, or its error as an error
 * event (the client has its status by then).
 */
function jsonRest(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pending: Promise<ReadableStreamReadResult<Uint8Array>>,
  text: JsonText,
): BodyReader {
  let next = pending;
  // The body began before the hand-over: the relay times its pauses from the start.
  let started = text.size > 0;
  let ended = false;
  return {
    async read() {
      if (ended) return { done: true, value: undefined };
      if (started) {
        started = false;
        return UNDER_WAY;
      }
      const r = await next;
      if (!r.done) {
        if (!text.add(r.value)) {
          ended = true;
          await reader.cancel().catch(() => {});
          return sseOf({
            message:
              `Poe answered with a body larger than ${text.maxBytes} bytes, too large to relay.`,
            type: "upstream_error",
            code: "upstream_bad_body",
          });
        }
        next = reader.read();
        next.catch(() => {});
        return UNDER_WAY;
      }
      ended = true;
      const verdict = verdictOf(text.parse());
      if (verdict.kind === "answer") return await verdict.body.read();
      // An error, or no answer at all (the relay then says the stream ended without one).
      return verdict.kind === "error" ? sseOf(verdict.error) : { done: true, value: undefined };
    },
    cancel: (reason) => reader.cancel(reason),
  };
}

function sseOf(error: Record<string, unknown>): ReadableStreamReadResult<Uint8Array> {
  const event = `data: ${JSON.stringify({ error })}\n\ndata: [DONE]\n\n`;
  return { done: false, value: encoder.encode(event) };
}
