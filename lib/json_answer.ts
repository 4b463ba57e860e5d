/**
 * @module Poe's answer to a non-streamed request, read whole within its deadline and size limit
 * and parsed once, before the call is taken as answered: a 200 whose body is Poe's error is then a
 * failed call, with its own status and retries, as a stream's opening error is.
 */
import { ProxyError } from "./errors.ts";
import type { Deadlines } from "./deadlines.ts";
import { errorIn, readCappedResponse } from "./json_start.ts";
import { noAnswerError } from "./poe_errors.ts";
import { MAX_EVENT_CHARS } from "./sse.ts";

/** A non-streamed answer's body, read whole: what is relayed, and what is checked. */
export interface JsonBody {
  /** The body as Poe sent it. */
  text: string;
  /** `text` parsed; `undefined` when it is not JSON. */
  parsed: unknown;
}

/** What a non-streamed answer's body is: an answer to check and relay, or Poe's error. */
export type JsonVerdict =
  | { kind: "answer"; body: JsonBody }
  | { kind: "error"; error: Record<string, unknown> };

/** Options of {@linkcode readJsonAnswer}. */
export interface JsonAnswerOptions {
  /**
   * The body must arrive within one of these from Poe's headers (`FIRST_BYTE_TIMEOUT_SECONDS`, or
   * `MEDIA_TIMEOUT_SECONDS`): Poe may send its headers at once and the answer when it is whole.
   */
  deadline: Deadlines;
  /** Ends the read (aborts the call) when the deadline passes. */
  abort: (reason: unknown) => void;
  /** A media model's call: the deadline is `MEDIA_TIMEOUT_SECONDS`. */
  slow: boolean;
}

/**
 * Reads the whole of Poe's answer to a non-streamed request, at most `MAX_EVENT_CHARS` bytes, and
 * parses it once. Throws a ProxyError when the read breaks (502 `upstream_disconnected`), outlasts
 * the deadline (504 `upstream_timeout`) or the size limit (502 `upstream_bad_body`; an endless
 * body once grew the proxy to 8 GB within the deadline): Poe may have billed each of them.
 */
export async function readJsonAnswer(
  response: Response,
  options: JsonAnswerOptions,
): Promise<JsonVerdict> {
  // At the deadline the read is aborted, which ends it with an error.
  let timedOut = false;
  const deadline = options.deadline.add(() => {
    timedOut = true;
    options.abort(new Error("timeout"));
  });
  let text: string | null;
  try {
    text = await readCappedResponse(response, MAX_EVENT_CHARS);
  } catch (err) {
    if (timedOut) {
      const setting = options.slow ? "MEDIA_TIMEOUT_SECONDS" : "FIRST_BYTE_TIMEOUT_SECONDS";
      throw new ProxyError(504, `Poe did not finish its answer within ${setting}.`, {
        type: "timeout_error",
        code: "upstream_timeout",
        cause: err,
      });
    }
    throw new ProxyError(502, "The connection to Poe broke before the answer was complete.", {
      type: "upstream_error",
      code: "upstream_disconnected",
      cause: err,
    });
  } finally {
    deadline.cancel();
  }
  if (text === null) throw noAnswerError({ kind: "too-large" });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = errorIn(parsed);
  return error ? { kind: "error", error } : { kind: "answer", body: { text, parsed } };
}
