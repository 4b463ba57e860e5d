/**
 * @module How long a client waits for a non-streamed answer, as the OpenAI SDKs say it: past that
 * they give up and send the request again (twice by default), and Poe may bill every call. The
 * proxy answers a little before, with an error the SDKs do not retry.
 */
import { ProxyError } from "./errors.ts";
import { NO_CLIENT_RETRY } from "./poe_errors.ts";

/**
 * The headers that carry it, in seconds: the `openai` npm client's whole timeout (600 by default),
 * and the Python client's read timeout (the longest silence it waits out).
 */
const WAIT_HEADERS = ["x-stainless-timeout", "x-stainless-read-timeout"];

const MAX_SECONDS = 2_147_483;

/** Milliseconds the client says it waits for an answer, or null when it does not say. */
export function clientWaitMs(headers: Headers): number | null {
  for (const name of WAIT_HEADERS) {
    const value = headers.get(name);
    if (value === null) continue;
    const seconds = Number(value.trim());
    // Past a timer's longest delay (24.8 days) a wait is no limit: such a timer fires at once.
    if (Number.isFinite(seconds) && seconds > 0) {
      return seconds <= MAX_SECONDS ? seconds * 1000 : null;
    }
  }
  return null;
}

/** When the proxy answers instead: up to 2 s before the client gives up. */
export function answerBeforeMs(waitMs: number): number {
  return waitMs - Math.min(2000, waitMs / 4);
}

/** The error the client gets then: a 504 it does not retry on its own. */
export function clientWaitError(waitMs: number): ProxyError {
  const seconds = Math.round(waitMs / 100) / 10;
  return new ProxyError(
    504,
    `Poe had not answered when the client's timeout (${seconds} s) was about to end, so the call ` +
      "was stopped: its retry would have been billed again. Stream the request, or raise the " +
      "client's timeout, for answers that take longer.",
    { type: "timeout_error", code: "upstream_timeout", headers: NO_CLIENT_RETRY },
  );
}
