/**
 * @module Poe's 2xx answer before the client sees any of it: what its start is read as, from its
 * content type (a web page, a stream's opening, a JSON answer to a stream, a non-streamed answer
 * read whole), and the errors a start that broke ends in. The reading itself is in
 * `stream_start.ts`, `json_start.ts` and `json_answer.ts`.
 */
import { ProxyError } from "./errors.ts";
import { brokeWhileHeld, type CallFailure, heldBreakError } from "./upstream_timeouts.ts";

/**
 * How an answer's start is read:
 * - `refused`: not a 2xx, Poe's error answer.
 * - `page`: a web page.
 * - `events`: a stream, whose opening is read for an error.
 * - `json`: JSON to a streamed request, read as a stream's opening would be.
 * - `whole`: the answer to a non-streamed request, read whole.
 * - `as-is`: anything else, handed on unread.
 */
export type AnswerForm = "refused" | "page" | "events" | "json" | "whole" | "as-is";

/**
 * How the start of `response`, Poe's answer to a request that asked for a stream or not, is read
 * (see {@linkcode AnswerForm}).
 */
export function answerForm(response: Response, stream: boolean): AnswerForm {
  if (!response.ok) return "refused";
  const type = response.headers.get("content-type");
  // A 200 web page is a captive portal's or a broken gateway's, not Poe's answer: for a stream
  // it would become a 200 with an error inside, so it fails before the client sees it, where it
  // can be retried.
  if (type?.includes("text/html")) return "page";
  if (!stream) return "whole";
  if (type === null || response.body === null) return "as-is";
  if (type.includes("text/event-stream")) return "events";
  // Some bots answer a stream with JSON: an error in it is still a failed call.
  return type.includes("json") ? "json" : "as-is";
}

/** The error a 200 web page ends in once no retry is left. */
export function webPageError(): ProxyError {
  return new ProxyError(502, "Poe answered 200 with a web page instead of an answer.", {
    type: "upstream_error",
    code: "upstream_bad_body",
  });
}

/** Options of {@linkcode startFailure}. */
export interface StartFailureOptions {
  /** The start read was a stream's opening (`events`), not a JSON answer's body. */
  events: boolean;
  /** Milliseconds from the call's start to the failure. */
  ms: number;
  /** See `quickFailureMs` in `upstream_timeouts.ts`. */
  quickMs: number;
}

/**
 * What a call ends in when the read of its 2xx answer's start failed (the connection broke, or
 * the body's read did), and whether it is tried again.
 */
export function startFailure(err: unknown, options: StartFailureOptions): CallFailure {
  // Poe sends a JSON answer once the model is done: billed, so it is not asked again.
  if (!options.events) return { error: disconnected(err, "was complete"), retry: false };
  // Poe's 200 came and the call was held: its model may have run, so it is not sent again.
  if (brokeWhileHeld(err, options.ms, options.quickMs)) {
    return { error: heldBreakError(err, options.ms), retry: false };
  }
  return { error: disconnected(err, "began"), retry: true };
}

function disconnected(err: unknown, before: string): ProxyError {
  return new ProxyError(502, `The connection to Poe broke before the answer ${before}.`, {
    type: "upstream_error",
    code: "upstream_disconnected",
    cause: err,
  });
}
