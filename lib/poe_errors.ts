/**
 * @module Poe's failed answers as ProxyErrors: error statuses and bodies in either of Poe's shapes,
 * streams and JSON bodies that open with an error, 200s that hold no answer, and the headers that
 * keep the OpenAI SDKs from retrying what the proxy retried already.
 */
import { ProxyError } from "./errors.ts";
import type { JsonStart } from "./json_start.ts";
import { MAX_EVENT_CHARS } from "./sse.ts";
import { TimeoutError, timeoutError } from "./upstream_timeouts.ts";

/**
 * Statuses the OpenAI SDKs retry on their own (twice, by default) unless told not to. The proxy
 * has retried already: another layer of retries would multiply the calls to Poe (nine for one).
 */
export function sdkRetries(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}
/** The header the OpenAI SDKs obey over their own judgement of a status. */
export const NO_CLIENT_RETRY = { "x-should-retry": "false" } as const;

/** Poe's error body, in either of its shapes, as message, type, param and code. */
export async function readPoeError(
  response: Response,
): Promise<{ message: string; type: string | null; param: string | null; code: string | null }> {
  const text = await errorBodyText(response);
  try {
    const parsed = JSON.parse(text);
    // `{"error": "Model is overloaded"}`: a gateway's or a bot's own shape.
    if (typeof parsed?.error === "string") {
      return { message: parsed.error.slice(0, 500), type: null, param: null, code: null };
    }
    const e = parsed?.error ?? parsed;
    if (e && typeof e === "object") {
      const message = typeof e.message === "string"
        ? e.message
        : typeof parsed.detail === "string"
        ? parsed.detail
        : detailMessages(parsed.detail);
      return {
        message,
        type: typeof e.type === "string" ? e.type : null,
        param: typeof e.param === "string" ? e.param : null,
        code: typeof e.code === "string" ? e.code : null,
      };
    }
  } catch {
    // Not JSON: a proxy's HTML page or plain text; keep a short excerpt.
  }
  // A gateway's HTML page: its title says it (`502 Bad Gateway`), its markup is noise.
  const page = text;
  const title = /<title[^<>]*>([^<]*)<\/title>/i.exec(page)?.[1].trim();
  const message = title || page.replace(/<[^<>]*>/g, " ").replace(/\s+/g, " ").trim();
  return { message: message.slice(0, 200), type: null, param: null, code: null };
}

/**
 * A validation error's `detail` list (FastAPI's `[{"loc": [...], "msg": "..."}]`) as one line:
 * `body.messages: field required; ...`. Empty when it is no such list.
 */
function detailMessages(detail: unknown): string {
  if (!Array.isArray(detail)) return "";
  const lines: string[] = [];
  for (const item of detail.slice(0, 5)) {
    if (typeof item?.msg !== "string") continue;
    const loc = Array.isArray(item.loc) ? item.loc.join(".") : "";
    lines.push(loc ? `${loc}: ${item.msg}` : item.msg);
  }
  return lines.join("; ").slice(0, 500);
}

/** An error body past this is not read on: Poe's errors are a few hundred bytes. */
const ERROR_BODY_BYTES = 64 * 1024;
/** Poe's error bodies come with their headers; a gateway's that stalls is given up after this. */
const ERROR_BODY_MS = 5_000;

/**
 * The start of an error answer's body, as text: at most {@linkcode ERROR_BODY_BYTES}, within
 * {@linkcode ERROR_BODY_MS}. A broken gateway's endless or stalled body must neither fill the
 * memory nor hold the client's request.
 */
export async function errorBodyText(
  response: Response,
  limits: { bytes?: number; ms?: number } = {},
): Promise<string> {
  if (!response.body) return "";
  const maxBytes = limits.bytes ?? ERROR_BODY_BYTES;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), limits.ms ?? ERROR_BODY_MS);
  });
  try {
    while (size < maxBytes) {
      const result = await Promise.race([reader.read(), late]);
      if (result === null || result.done) break;
      const chunk = result.value.subarray(0, maxBytes - size);
      size += chunk.byteLength;
      text += decoder.decode(chunk, { stream: true });
    }
    return text + decoder.decode();
  } catch {
    return text;
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
  }
}

const HINTS: Record<number, string> = {
  401: "Poe refused the key: check POE_API_KEY (keys are at https://poe.com/api/keys).",
  402: "The Poe account is out of points: wait for the next grant or buy more.",
  403: "Poe refused this request for this account or model.",
  404: "Poe does not know this model or endpoint: check the model's poe_name in models.yaml, " +
    "and POE_BASE_URL (Poe's is https://api.poe.com).",
  408: "The model did not start answering in time; try again.",
  413: "The request is larger than the model's context window; shorten the conversation.",
  429: "Poe's limit of 500 requests a minute was reached; slow down.",
};

/** Headers of Poe's error answers that the client should see. */
const ERROR_HEADERS = [
  "retry-after",
  "retry-after-ms",
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
];

/** The status an error event's `type` stands for, as Poe's error statuses have them. */
const TYPE_STATUS: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  insufficient_credits: 402,
  moderation_error: 403,
  not_found_error: 404,
  timeout_error: 408,
  request_too_large: 413,
  rate_limit_error: 429,
  provider_error: 500,
  upstream_error: 502,
  overloaded_error: 529,
};

/**
 * Error answers made from a 200 that was an error (a stream's opening error event, a JSON error
 * body), not sent by Poe as such: how Poe answered, for the message.
 */
const STREAM_ERRORS = new WeakMap<Response, string>();

/**
 * The error answer Poe's 200 stands for when it is an error (a stream's opening error event, or a
 * JSON body, to a request streamed or not): the status of its numeric `code` (Poe's documented shape), else
 * of its `type`, else 502. It then takes the path of Poe's own error answers: the same retries,
 * ladder and message.
 */
export function streamErrorAnswer(
  error: Record<string, unknown>,
  from: {
    /** Poe's headers; those the client should see on an error are kept. */
    headers: Headers;
    /** How Poe answered, for the message: `Poe answered 200 with an error`. */
    answered: string;
  },
): Response {
  const code = Number(error.code);
  const status = Number.isInteger(code) && code >= 400 && code <= 599
    ? code
    : TYPE_STATUS[String(error.type)] ?? 502;
  const headers = new Headers(ERROR_HEADERS.flatMap((n) => {
    const value = from.headers.get(n);
    return value === null ? [] : [[n, value] as [string, string]];
  }));
  headers.set("content-type", "application/json");
  const response = new Response(JSON.stringify({ error }), { status, headers });
  STREAM_ERRORS.set(response, from.answered);
  return response;
}

/** Turns Poe's error answer into a ProxyError with Poe's status, message and a hint. */
export async function poeError(response: Response): Promise<ProxyError> {
  const poe = await readPoeError(response);
  const status = response.status;
  const hint = HINTS[status] ??
    (status >= 500 ? "Poe or the model's provider failed; try again later." : "");
  const said = poe.message ? `: ${poe.message}${/[.!?]$/.test(poe.message) ? "" : "."}` : ".";
  const answered = STREAM_ERRORS.get(response) ?? `Poe answered ${status}`;
  const message = [`${answered}${said}`, hint]
    .filter(Boolean).join(" ");
  const headers: Record<string, string> = {};
  for (const name of ERROR_HEADERS) {
    const value = response.headers.get(name);
    if (value) headers[name] = value;
  }
  if (status === 413) {
    // Poe's "tokens over the context window": clients that trim the conversation look for
    // OpenAI's form of it, the one the proxy's own clipping answers with too.
    return new ProxyError(400, message, {
      type: "invalid_request_error",
      param: "messages",
      code: "context_length_exceeded",
      headers,
    });
  }
  return new ProxyError(status, message, {
    type: poe.type ?? undefined,
    param: poe.param,
    // OpenAI's code for it, which clients look for.
    code: poe.code ?? (status === 429 ? "rate_limit_exceeded" : null),
    headers,
  });
}

/**
 * The error for a 200 from Poe that holds no answer: not JSON, or no choices (one holding Poe's
 * error is that error: {@linkcode streamErrorAnswer}). The SDKs would read `choices[0]` of it and
 * fail far from the cause. Poe may have billed the attempt, so the client is told not to retry it
 * on its own.
 */
export function notAnAnswer(parsed: unknown): ProxyError {
  const headers = { ...NO_CLIENT_RETRY };
  return new ProxyError(
    502,
    parsed === undefined
      ? "Poe answered with a body that is not JSON."
      : "Poe answered with a body that holds no answer (no choices).",
    { type: "upstream_error", code: "upstream_bad_body", headers },
  );
}

/** The longest `Retry-After` the OpenAI SDKs wait out; past it they retry within a second. */
export const SDK_MAX_WAIT_SECONDS = 60;

/**
 * A transient failure whose `Retry-After` is too long to wait out here: passed on with Poe's status
 * and the wait said in words. The SDKs wait out up to 60 s themselves, as they would against
 * OpenAI; a longer wait they would not, retrying within a second: they are told not to retry.
 */
export function tooLongToWait(err: ProxyError, seconds: number): ProxyError {
  err.message += ` Poe asked to wait ${Math.ceil(seconds)} s before trying again.`;
  err.headers["retry-after"] ??= String(Math.ceil(seconds));
  if (seconds > SDK_MAX_WAIT_SECONDS) Object.assign(err.headers, NO_CLIENT_RETRY);
  return err;
}

/**
 * The error for a 200 to a streamed request that holds no answer, nor an error of Poe's; `slow` for
 * a media model's call.
 */
export function noAnswerError(
  start: Exclude<JsonStart, { kind: "answer" | "error" }>,
  slow = false,
): ProxyError {
  switch (start.kind) {
    case "empty":
      return new ProxyError(502, "Poe's stream ended without an answer.", {
        type: "upstream_error",
        code: "upstream_empty",
      });
    case "no-answer":
      return notAnAnswer(start.parsed);
    case "timeout":
      return timeoutError(new TimeoutError(start.started ? "idle" : "first-byte"), slow);
    case "too-large":
      return new ProxyError(
        502,
        `Poe answered with a body larger than ${MAX_EVENT_CHARS} bytes, too large to relay.`,
        { type: "upstream_error", code: "upstream_bad_body" },
      );
  }
}

/** Codes of the errors for an answer Poe began and may have billed: its read broke, timed out or held none. */
const UNREAD_ANSWER_CODES: ReadonlySet<string> = new Set([
  "upstream_disconnected",
  "upstream_timeout",
  "upstream_bad_body",
]);

/**
 * Whether a call's error may come after an answer Poe billed: its connection broke after Poe's
 * 200, or before Poe's headers once Poe had held the call (`upstream_disconnected` either way); a
 * body without an answer, when the last call's status, `lastStatus`, was 200 (pass 200 for an
 * answer in hand); Poe's gateway timed out (504, 524: not retried for that reason); or the proxy's
 * own deadline ended the call, before or after Poe's headers. Not a 200 web page, which is a
 * failed call (status 0).
 */
export function mayBeBilled(err: ProxyError, lastStatus: number | undefined): boolean {
  if (err.code === "upstream_disconnected" || err.code === "upstream_timeout") return true;
  if (lastStatus === 504 || lastStatus === 524) return true;
  return err.code !== null && UNREAD_ANSWER_CODES.has(err.code) && lastStatus === 200;
}
