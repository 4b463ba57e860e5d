/** @module Reads a request body with a size cap and a deadline, and parses it as JSON once. */
import { ProxyError } from "./errors.ts";
import type { Deadline, Deadlines } from "./deadlines.ts";
import { LARGE_BODY_BYTES, RawStrings } from "./upstream_bytes.ts";
import type { BodyBudget, BodyLease } from "./body_budget.ts";

/** Options of {@linkcode readJsonBody}. */
export interface ReadBodyOptions {
  /** Larger bodies are refused with 413 before they are read in full. */
  maxBytes: number;
  /**
   * Their length (`BODY_TIMEOUT_SECONDS`) is the longest a body may pause, or, for a small one, take
   * in all; else 408.
   */
  deadlines: Deadlines;
  /**
   * Shared by every request: a body over `LARGE_BODY_BYTES` (declared, or once a chunked one grows
   * past it) takes its share before it is read on, or waits for it. Default: none.
   */
  budget?: BodyBudget | null;
}

/** Types a JSON body may arrive with: JSON itself, or plain text as `fetch` sends a string. */
const JSON_TYPE = /^(application\/([\w.+-]+\+)?json|text\/plain)\s*(;|$)/i;

/** A `Content-Encoding` that leaves the body as it is: none named, or only `identity`. */
const IDENTITY = /^\s*(identity\s*(,\s*identity\s*)*)?$/i;

/** Strict UTF-8: invalid bytes are an error, not replacement characters. Stateless without `stream`. */
const UTF8 = new TextDecoder("utf-8", { fatal: true });
/**
 * UTF-8 with invalid bytes made U+FFFD: V8's own decoder, which takes an ASCII body (an image's
 * base64, most chats) a hundred times faster than the strict one (2 ms against 140 ms for 20 MB).
 */
const LOOSE_UTF8 = new TextDecoder();

/** Reads and parses a JSON request body. Throws a ProxyError for every way it can be wrong. */
export async function readJsonBody(req: Request, options: ReadBodyOptions): Promise<unknown> {
  return (await readJsonBodyRaw(req, options)).json;
}

/** A request body parsed, and the long strings of its messages where its bytes hold them. */
export interface ReadBody {
  json: unknown;
  /** Only for a large, all-ASCII body (an image, a PDF): see {@linkcode RawStrings.find}. */
  raw: RawStrings | null;
  /**
   * A large body's share of the budget, for the caller to shrink once Poe has the body and to
   * release when the request ends; null for a small body or no budget.
   */
  lease: BodyLease | null;
  /** The body's size in bytes. */
  bytes: number;
}

/**
 * {@linkcode readJsonBody}, and where a large body's long strings stand in its bytes, so that the
 * body sent to Poe reuses them (`upstream_bytes.ts`). The decoded text is not kept.
 */
export async function readJsonBodyRaw(req: Request, options: ReadBodyOptions): Promise<ReadBody> {
  const type = req.headers.get("content-type");
  if (type !== null && !JSON_TYPE.test(type)) {
    throw new ProxyError(
      415,
      `Content-Type must be application/json: got ${JSON.stringify(type.slice(0, 100))}${
        type.startsWith("application/x-www-form-urlencoded")
          ? ' (with curl, add -H "Content-Type: application/json")'
          : ""
      }`,
      {
        code: "unsupported_media_type",
      },
    );
  }
  const encoding = req.headers.get("content-encoding");
  if (encoding !== null && !IDENTITY.test(encoding)) {
    // Undecoded, a compressed body would be reported as invalid UTF-8, which misleads.
    throw new ProxyError(
      415,
      `Content-Encoding ${
        JSON.stringify(encoding.slice(0, 100))
      } is not supported: send the request body uncompressed.`,
      { code: "unsupported_content_encoding" },
    );
  }
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > options.maxBytes) throw tooLarge(options.maxBytes);
  let bytes: Uint8Array;
  let lease: BodyLease | null = null;
  // A small body is read before `req.body` is looked at: looking makes a stream of the bytes Deno
  // already holds, and reading them through it costs every request a few microseconds.
  if (declared !== null && Number(declared) <= SMALL_BODY_BYTES) {
    bytes = await readSmall(req, options);
  } else if (!req.body) bytes = new Uint8Array();
  else ({ bytes, lease } = await readLarge(req.body, declared, options));
  try {
    return parse(bytes, lease);
  } catch (err) {
    lease?.release();
    throw err;
  }
}

/** The body's bytes decoded, checked and parsed. */
function parse(bytes: Uint8Array, lease: BodyLease | null): ReadBody {
  let text = LOOSE_UTF8.decode(bytes);
  // A replacement character is the client's own or an invalid byte's: only then is the body
  // decoded strictly, to tell which. Decoding blocks every other request meanwhile.
  if (text.includes("\uFFFD")) {
    try {
      text = UTF8.decode(bytes);
    } catch {
      throw new ProxyError(400, "The request body is not valid UTF-8.", {
        code: "invalid_encoding",
      });
    }
  }
  if (text.trim() === "") {
    throw new ProxyError(400, "The request body is empty; send a JSON object.", {
      code: "invalid_json",
    });
  }
  if (nestingExceeds(text, MAX_DEPTH)) {
    throw new ProxyError(
      400,
      `The request body nests arrays and objects deeper than ${MAX_DEPTH} levels.`,
      { code: "nesting_too_deep" },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ProxyError(400, `The request body is not valid JSON: ${(err as Error).message}`, {
      code: "invalid_json",
    });
  }
  const raw = bytes.length > LARGE_BODY_BYTES ? RawStrings.find(text, bytes, json) : null;
  return { json, raw, lease, bytes: bytes.length };
}

/**
 * Deepest nesting of arrays and objects accepted. Real requests (tool schemas included) stay far
 * below it; V8 parses deep JSON without a stack overflow, but slowly (2 MB of `[` took 0.6 s,
 * 20 MB took 7 s) and `JSON.stringify` of it on the way to Poe took 86 s, all on the event loop.
 */
const MAX_DEPTH = 128;

/**
 * Whether `text` nests `[` and `{` deeper than `max`, outside strings. One pass, no recursion, no
 * allocation; strings (base64 images are most of a large body) are skipped with `indexOf`.
 */
function nestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i = closingQuote(text, i + 1);
      // Unterminated: JSON.parse reports it.
      if (i < 0) return false;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** The index of the quote that ends the string starting at `from`, or -1. */
function closingQuote(text: string, from: number): number {
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (quote - backslashes - 1 >= from && text.charCodeAt(quote - backslashes - 1) === 0x5c) {
      backslashes++;
    }
    if (backslashes % 2 === 0) return quote;
    from = quote + 1;
  }
}

/** Bodies up to this size are read in one go, within one deadline. */
const SMALL_BODY_BYTES = 64 * 1024;
/** The slowest average upload a large body may arrive at once its deadline is over: 64 kbit/s. */
const MIN_BYTES_PER_SECOND = 8 * 1024;

function tooLarge(maxBytes: number): ProxyError {
  return new ProxyError(
    413,
    `The request body is larger than MAX_BODY_BYTES (${maxBytes} bytes).`,
    {
      code: "request_too_large",
    },
  );
}

/**
 * The 408 of a body that did not arrive in time. Deno 2.9.6 keeps the connection open after it
 * until the client closes it or sends the rest of the body, whatever the proxy does: a `connection:
 * close` of its own, cancelling the body, an error thrown or a response body that fails all leave
 * it open (README, "Security notes"). `close` adds `connection: close`, which a client that honours
 * it closes the connection on; Deno adds it itself while the body's read is still pending.
 */
function bodyTimeout(deadlines: Deadlines, close: boolean): ProxyError {
  return new ProxyError(
    408,
    `The request body did not arrive in time (BODY_TIMEOUT_SECONDS, ${deadlines.ms / 1000} s).`,
    { type: "timeout_error", code: "body_timeout", headers: close ? { connection: "close" } : {} },
  );
}

/**
 * The error of a body whose read failed: 499 when the client's connection ended before the body
 * did, else 400. `req.signal` cannot tell: Deno 2.9.6 does not abort it for a connection closed
 * mid-body (not within seconds, with `--unstable-no-legacy-abort` or without), so awaiting it after
 * the failed read would only delay every such 400 by the wait. The error Deno throws tells instead:
 * a connection the client closed is a `BadResource` ("Cannot read request body as underlying
 * resource unavailable"), one it reset an `Http` error of an unexpected EOF, while a malformed body
 * (a bad chunk) is a plain `Error` ("invalid HTTP/1 request"). Anything else stays the 400 it was.
 * A client that only shut down its sending side mid-body (still reading) gets the 499 too: Deno
 * reports it as it does a close, and that body can never be completed.
 */
function unreadable(err: unknown): ProxyError {
  if (connectionEnded(err)) {
    return new ProxyError(499, "The client closed the request before its body was complete.", {
      code: "client_closed_request",
      cause: err,
    });
  }
  return new ProxyError(400, "The request body could not be read.", {
    code: "invalid_body",
    cause: err,
  });
}

/** Whether a body's read failed because its connection ended: see {@linkcode unreadable}. */
function connectionEnded(err: unknown): boolean {
  if (err instanceof Deno.errors.BadResource) return true;
  return err instanceof Deno.errors.Http && /\b(EOF|reset|closed|broken pipe)\b/i.test(err.message);
}

/** A small declared body (nearly every chat request): read in one go, far cheaper than by chunks. */
async function readSmall(req: Request, options: ReadBodyOptions): Promise<Uint8Array> {
  // It must arrive within the deadline. A trickling client is answered 408 at the deadline and its
  // read left pending: Deno ends it, and closes the connection, only once the client sends the
  // rest of the body or closes the connection itself (see bodyTimeout).
  let deadline: Deadline | undefined;
  const read = req.bytes();
  try {
    return await Promise.race([
      read,
      new Promise<never>((_, reject) => {
        deadline = options.deadlines.add(() => reject(bodyTimeout(options.deadlines, false)));
      }),
    ]);
  } catch (err) {
    if (err instanceof ProxyError) {
      read.catch(() => {});
      throw err;
    }
    throw unreadable(err);
  } finally {
    deadline?.cancel();
  }
}

/**
 * A larger body (an image, a PDF), a chunk at a time. It may take minutes on a slow uplink: it
 * fails when it stops arriving for the deadline's length, as with nginx's `client_body_timeout`,
 * or when it arrives slower than MIN_BYTES_PER_SECOND on average after the deadline (a trickle
 * holding a connection). Once it is known to be over LARGE_BODY_BYTES (declared, or grown past it
 * in chunks) it takes its share of the budget before it is read on: see {@linkcode waitForShare}.
 */
async function readLarge(
  body: ReadableStream<Uint8Array>,
  declared: string | null,
  options: ReadBodyOptions,
): Promise<{ bytes: Uint8Array; lease: BodyLease | null }> {
  let started = performance.now();
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timedOut = false;
  const onTimeout = () => {
    timedOut = true;
    reader.cancel().catch(() => {});
  };
  const budget = options.budget ?? null;
  // The size it is counted at: its declared one, or, sent in chunks, the largest it may grow to.
  const counted = declared === null ? options.maxBytes : Number(declared);
  /** The share is taken once `size` reaches this. */
  let shareAt = budget === null || counted <= LARGE_BODY_BYTES
    ? Infinity
    : declared === null
    ? LARGE_BODY_BYTES + 1
    : 0;
  let lease: BodyLease | null = null;
  let deadline = options.deadlines.add(onTimeout);
  try {
    for (;;) {
      const next = reader.read();
      if (size >= shareAt) {
        shareAt = Infinity;
        deadline.cancel();
        const since = performance.now();
        lease = await waitForShare(budget!, counted, next, reader);
        // The wait is not the upload's: its average rate is measured without it.
        started += performance.now() - since;
        deadline = options.deadlines.add(onTimeout);
      }
      const { done, value } = await next;
      if (done) break;
      deadline.cancel();
      size += value.byteLength;
      if (performance.now() - started > options.deadlines.ms + size * 1000 / MIN_BYTES_PER_SECOND) {
        onTimeout();
        break;
      }
      deadline = options.deadlines.add(onTimeout);
      if (size > options.maxBytes) {
        reader.cancel().catch(() => {});
        throw tooLarge(options.maxBytes);
      }
      chunks.push(value);
    }
    // Cancelled, the body no longer makes Deno send `connection: close`: it is said here.
    if (timedOut) throw bodyTimeout(options.deadlines, true);
  } catch (err) {
    lease?.release();
    if (err instanceof ProxyError) throw err;
    if (timedOut) throw bodyTimeout(options.deadlines, true);
    throw unreadable(err);
  } finally {
    deadline.cancel();
  }
  // Sent in chunks, it was counted at the largest it could grow to.
  lease?.resize(size);
  if (chunks.length === 1) return { bytes: chunks[0], lease };
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.byteLength;
  }
  return { bytes: all, lease };
}

/**
 * Waits for a body's share of the budget with one read of it pending (`next`): Deno 2.9.6 tells of
 * a connection closed mid-body to a pending read only, not to `req.signal`, so a client that
 * leaves before that read got bytes (one waiting for a 100 Continue, say) frees its place at once.
 * What that read brings (64 KiB, as measured) is all the body holds until its turn; the client's further
 * bytes wait in the network's buffers, and a client that leaves after sending them is found gone
 * when its turn comes, its reads failing at once. A body still waiting at the deadline gets the
 * budget's 503 with `connection: close`, its body left unread.
 */
async function waitForShare(
  budget: BodyBudget,
  bodyBytes: number,
  next: Promise<unknown>,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<BodyLease> {
  const gone = new AbortController();
  next.catch((err) => gone.abort(err));
  try {
    return await budget.take(bodyBytes, gone.signal);
  } catch (err) {
    if (err instanceof ProxyError) {
      reader.cancel().catch(() => {});
      err.headers.connection = "close";
    }
    throw err;
  }
}
