/**
 * @module What one call of the Poe client is given and gives back: its options, the answer it
 * ends in, and the record of its tries at Poe (with the `attempts` log field metrics parse).
 */
import type { ChatRequest } from "./openai_types.ts";
import type { BodyReader } from "./stream_start.ts";
import type { JsonBody } from "./json_answer.ts";
import type { RawStrings } from "./upstream_bytes.ts";
import type { LimitRefusal } from "./upstream_tries.ts";

/** One try at Poe, and why it was made. */
export interface Attempt {
  /** Why this try was made: `first`, `drop-max-tokens`, `lowercase-model`, `both`, or `retry-<status|network>`. */
  reason: string;
  /** Poe's status; 0 for a network failure or timeout, 499 when the client left before Poe's headers. */
  status: number;
  /**
   * `status` is that of an error in Poe's 200 body (a stream that opened with an error event, a
   * JSON error), not of its HTTP answer: Poe refused the call, its gateway did not give up.
   */
  inBody?: true;
  /**
   * Milliseconds until Poe's headers (a stream's: until its opening was read; a JSON answer's:
   * until its body was), or the failure.
   */
  ms: number;
}

/** The `attempts` log field: `reason:status,...`, the form metrics parse. */
export function attemptsField(attempts: Attempt[]): string {
  // Nearly every request is one call: no array of strings built for it.
  if (attempts.length === 1) return `${attempts[0].reason}:${attempts[0].status}`;
  return attempts.map((a) => `${a.reason}:${a.status}`).join(",");
}

/** Options of one call. */
export interface SendOptions {
  /** Aborts the call: the client went away. */
  signal: AbortSignal;
  /** The client's request headers, for the few meant for Poe. */
  headers?: Headers;
  /** Request id, for log lines. */
  requestId?: string;
  /**
   * Whether a variant of the 400 ladder may be sent: without `max_tokens` an answer may run
   * longer, so the cost cap checks it again. Default: every variant.
   */
  allowVariant?: (body: ChatRequest) => boolean;
  /** A media model's call: `slowFirstByteTimeoutMs` applies. */
  slow?: boolean;
  /**
   * Asked before each further call to Poe (a retry or a ladder step): false ends the tries with
   * the last error. The global limit in front of Poe takes a token here, so retries count too.
   */
  mayRetry?: () => boolean;
  /**
   * Where each try is recorded as it is made: a call that ends in an error (thrown) made calls to
   * Poe too, and the caller's metrics and log line count them. Default: a new array.
   */
  attempts?: Attempt[];
  /** A large body's long strings in the client's bytes, spliced into each call's body. */
  raw?: RawStrings | null;
  /**
   * The client's body size: past `LARGE_BODY_BYTES` (an image, a PDF) a 400 that names no field
   * gets none of the ladder's variants, each an upload of it again, which no limit or spelling
   * of the model would cure. Default: 0.
   */
  bodyBytes?: number;
  /** The request's answer limit is the proxy's own (the cost cap's). Default: false. */
  addedLimit?: boolean;
  /**
   * Called when Poe's 200 is JSON (every answer to a non-streamed request, and one to a streamed
   * request that is not a stream), before its body is read: Poe sends such an answer once its
   * model is done, so it may be billed from then on.
   */
  onJsonAnswer?: () => void;
}

/** A successful answer from Poe: headers arrived with a 2xx status. */
export interface UpstreamAnswer {
  response: Response;
  /** Every try, the last one being the success. */
  attempts: Attempt[];
  /** The body that Poe accepted (after the ladder's changes). */
  sent: ChatRequest;
  /** Poe's 400s of tries that carried an answer limit, before the ladder's variant it took. */
  limitRefusals?: LimitRefusal[];
  /** Aborts the upstream request (and its body stream). */
  abort: (reason?: unknown) => void;
  /** Lets go of the client's signal once the answer is read; nothing is aborted. */
  release: () => void;
  /**
   * Takes the answer's body once its `[DONE]` was read and reads what is left of it in the
   * background (bounded, then cancelled), so that its connection serves the next call.
   */
  drain: (body: BodyReader) => void;
  /**
   * A streamed answer's body from its first byte, when its opening was read for an error (then
   * `response.body` is locked): Poe's events, or those of the JSON completion Poe sent instead
   * (then `response.body` is read); null otherwise.
   */
  body: BodyReader | null;
  /**
   * A non-streamed answer's body, read whole and parsed (`response.body` is read): it held no
   * error of Poe's, but may hold no answer either. Null for a streamed request.
   */
  json: JsonBody | null;
}
