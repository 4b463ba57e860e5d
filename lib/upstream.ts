/** @module The Poe client: request building, the layered retry ladder, timeouts and error parsing. */
import { ProxyError } from "./errors.ts";
import type { ChatRequest } from "./openai_types.ts";
import type { Logger } from "./log.ts";
import { BodyDrains } from "./body_drain.ts";
import { type Deadline, Deadlines, sleep } from "./deadlines.ts";
import { type BodyReader, type JsonStart, readJsonStart, readStreamStart } from "./stream_start.ts";
import { MAX_EVENT_CHARS } from "./sse.ts";

/**
 * Statuses worth another try after a pause. Not 504 and Cloudflare's 524: the model may have run
 * (and been billed) behind a gateway that gave up waiting for it.
 */
const TRANSIENT = new Set([408, 429, 500, 502, 503, 520, 521, 522, 523, 529]);
/**
 * Statuses the OpenAI SDKs retry on their own (twice, by default) unless told not to. The proxy
 * has retried already: another layer of retries would multiply the calls to Poe (nine for one).
 */
function sdkRetries(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}
/** The header the OpenAI SDKs obey over their own judgement of a status. */
export const NO_CLIENT_RETRY = { "x-should-retry": "false" } as const;
/** A `Retry-After` longer than this is passed to the client instead of waited out. */
const MAX_WAIT_SECONDS = 30;
const BACKOFF_BASE_MS = 250;

/** The fields the 400 ladder changes: a 400 naming any other is not worth a variant. */
const LADDER_PARAMS = new Set(["max_tokens", "max_completion_tokens", "model"]);

/** Request headers a client may send that are meant for Poe. */
const FORWARDED_REQUEST_HEADERS = ["poe-feature"];

/** Options of {@linkcode UpstreamClient}. */
export interface UpstreamOptions {
  /** Poe's base URL without a trailing slash, e.g. `https://api.poe.com`. */
  baseUrl: string;
  /** The Poe key; `null` sends no Authorization (the request then fails at Poe with 401). */
  apiKey: string | null;
  /** More tries on transient failures. Default: 2. */
  retries?: number;
  /** How long to wait for a TCP connection before calling Poe unreachable. Default: 10 s. */
  connectTimeoutMs?: number;
  /** How long to wait for Poe's response headers. Default: 300 s. */
  firstByteTimeoutMs?: number;
  /** The same, for calls marked `slow` (image, video and audio models). Default: 900 s. */
  slowFirstByteTimeoutMs?: number;
  /**
   * How long a JSON answer to a streamed request may stay silent once its body began (for `slow`
   * calls: `slowFirstByteTimeoutMs`). Default: 120 s.
   */
  idleTimeoutMs?: number;
  /**
   * How long a stream's opening is read for an error before the answer is passed on as it is
   * (the client then gets its headers). Default: 5 s.
   */
  streamStartMs?: number;
  /** `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
  /** Sleeps that end early when the signal aborts. Default: timers. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Randomness for jitter, in [0, 1). Default: `Math.random`. */
  random?: () => number;
  /** Where attempts are logged. */
  logger?: Logger;
  /** The `User-Agent` sent to Poe. */
  userAgent?: string;
}

/** One try at Poe, and why it was made. */
export interface Attempt {
  /** Why this try was made: `first`, `drop-max-tokens`, `lowercase-model`, `both`, or `retry-<status|network>`. */
  reason: string;
  /** Poe's status; 0 for a network failure or timeout, 499 when the client left before Poe's headers. */
  status: number;
  /** Milliseconds until Poe's headers (a stream's: until its opening was read), or the failure. */
  ms: number;
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
}

/** A successful answer from Poe: headers arrived with a 2xx status. */
export interface UpstreamAnswer {
  response: Response;
  /** Every try, the last one being the success. */
  attempts: Attempt[];
  /** The body that Poe accepted (after the ladder's changes). */
  sent: ChatRequest;
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
}

/** The 400 ladder: the variants of a request to try in order, each only if it changes the request. */
export function ladderVariants(body: ChatRequest): { reason: string; body: ChatRequest }[] {
  const withoutMax = (b: ChatRequest): ChatRequest => {
    const { max_tokens: _a, max_completion_tokens: _b, ...rest } = b;
    return rest as ChatRequest;
  };
  const lower = (b: ChatRequest): ChatRequest => ({ ...b, model: b.model.toLowerCase() });
  const candidates = [
    { reason: "drop-max-tokens", body: withoutMax(body) },
    { reason: "lowercase-model", body: lower(body) },
    { reason: "both", body: lower(withoutMax(body)) },
  ];
  const seen = [body];
  const out: { reason: string; body: ChatRequest }[] = [];
  for (const c of candidates) {
    if (seen.some((s) => sameLadderFields(s, c.body))) continue;
    seen.push(c.body);
    out.push(c);
  }
  return out;
}

function sameLadderFields(a: ChatRequest, b: ChatRequest): boolean {
  return a.model === b.model && ("max_tokens" in a) === ("max_tokens" in b) &&
    ("max_completion_tokens" in a) === ("max_completion_tokens" in b);
}

/**
 * Seconds Poe asked to wait: `Retry-After` (seconds or an HTTP date), else `retry-after-ms`; null
 * when neither says. Not `x-ratelimit-reset-requests`: it tells when the rate-limit window ends, on
 * every answer, and Poe's documentation asks for exponential backoff from 250 ms instead.
 */
export function retryAfterOf(response: Response, now = Date.now()): number | null {
  const seconds = parseRetryAfter(response.headers.get("retry-after"), now);
  if (seconds !== null) return seconds;
  const ms = Number(response.headers.get("retry-after-ms") ?? NaN);
  return Number.isFinite(ms) && ms >= 0 ? ms / 1000 : null;
}

/** Seconds from a `Retry-After` header (seconds or an HTTP date), or null. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000);
}

/** Poe's error body, in either of its shapes, as message, type, param and code. */
export async function readPoeError(
  response: Response,
): Promise<{ message: string; type: string | null; param: string | null; code: string | null }> {
  const text = await errorBodyText(response);
  try {
    const parsed = JSON.parse(text);
    const e = parsed?.error ?? parsed;
    if (e && typeof e === "object") {
      const message = typeof e.message === "string"
        ? e.message
        : typeof parsed.detail === "string"
        ? parsed.detail
        : "";
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
  404: "Poe does not know this model or endpoint: check the model's poe_name in models.yaml.",
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
 * The error answer a streamed request's 200 stands for when it is an error (its stream's opening
 * error event, or its JSON body): the status of its numeric `code` (Poe's documented shape), else
 * of its `type`, else 502. It then takes the path of Poe's own error answers: the same retries,
 * ladder and message.
 */
function streamErrorAnswer(
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
 * The error for a 200 from Poe that holds no answer: not JSON, no choices, or an error object. The
 * SDKs would read `choices[0]` of it and fail far from the cause. Poe may have billed the attempt,
 * so the client is told not to retry it on its own.
 */
// deno-lint-ignore no-explicit-any
export function notAnAnswer(parsed: any): ProxyError {
  const headers = { ...NO_CLIENT_RETRY };
  const poe = parsed?.error;
  if (poe && typeof poe === "object") {
    const message = typeof poe.message === "string" ? poe.message.slice(0, 1000) : "";
    return new ProxyError(502, `Poe answered 200 with an error${message ? `: ${message}` : "."}`, {
      type: typeof poe.type === "string" ? poe.type : "upstream_error",
      code: typeof poe.code === "string" ? poe.code : "upstream_error",
      headers,
    });
  }
  return new ProxyError(
    502,
    parsed === undefined
      ? "Poe answered with a body that is not JSON."
      : "Poe answered with a body that holds no answer (no choices).",
    { type: "upstream_error", code: "upstream_bad_body", headers },
  );
}

/**
 * A transient failure whose `Retry-After` is too long to wait out: passed on with Poe's status, and
 * the wait said in words, as the SDKs retry within a second when a wait is over their 60 s.
 */
function tooLongToWait(err: ProxyError, seconds: number): ProxyError {
  err.message += ` Poe asked to wait ${Math.ceil(seconds)} s before trying again.`;
  err.headers["retry-after"] ??= String(Math.ceil(seconds));
  Object.assign(err.headers, NO_CLIENT_RETRY);
  return err;
}

/**
 * The deadlines of one first-byte timeout: the connect deadline (or the first-byte one, when
 * shorter), then the rest of the first-byte one. Deadlines of one length share a timer.
 */
interface Phases {
  first: Deadlines;
  second: Deadlines;
  firstByteMs: number;
}

function phases(connectMs: number, firstByteMs: number): Phases {
  return {
    first: new Deadlines(Math.min(connectMs, firstByteMs)),
    second: new Deadlines(Math.max(0, firstByteMs - connectMs)),
    firstByteMs,
  };
}

class TimeoutError extends Error {
  constructor(readonly phase: "connect" | "first-byte" | "idle") {
    super(`${phase} timeout`);
  }
}

/**
 * The Poe client. One instance serves every request; it keeps no per-request state but the bodies
 * of answers that are over, read to their end so that their connections are kept.
 */
export class UpstreamClient {
  #options: Required<Omit<UpstreamOptions, "logger" | "apiKey">> & {
    logger?: Logger;
    apiKey: string | null;
  };
  #chatUrl: string;
  /** The connect deadline (or the first-byte one, when shorter), then the rest of the first-byte one. */
  #phases: Phases;
  #slowPhases: Phases;
  #streamStart: Deadlines;
  #drains = new BodyDrains();

  constructor(options: UpstreamOptions) {
    // An option given as `undefined` keeps its default rather than erasing it.
    const given = Object.fromEntries(
      Object.entries(options).filter(([, value]) => value !== undefined),
    ) as UpstreamOptions;
    this.#options = {
      retries: 2,
      connectTimeoutMs: 10_000,
      firstByteTimeoutMs: 300_000,
      slowFirstByteTimeoutMs: 900_000,
      idleTimeoutMs: 120_000,
      fetch: globalThis.fetch,
      sleep,
      random: Math.random,
      userAgent: "poe-proxy",
      streamStartMs: 5_000,
      ...given,
    };
    this.#chatUrl = `${options.baseUrl}/v1/chat/completions`;
    const { connectTimeoutMs, firstByteTimeoutMs, slowFirstByteTimeoutMs } = this.#options;
    this.#phases = phases(connectTimeoutMs, firstByteTimeoutMs);
    this.#slowPhases = phases(connectTimeoutMs, slowFirstByteTimeoutMs);
    this.#streamStart = new Deadlines(this.#options.streamStartMs);
  }

  /**
   * Sends a chat request to Poe, running the retry ladder until Poe answers with a 2xx, and
   * returns that answer with its body unread. Throws a ProxyError otherwise.
   */
  async send(body: ChatRequest, options: SendOptions): Promise<UpstreamAnswer> {
    const attempts = options.attempts ?? [];
    // Built at the first 400 only: nearly every request is accepted as sent.
    let variants: ReturnType<typeof ladderVariants> | null = null;
    let current = body;
    let reason = "first";
    const transient = { left: this.#options.retries, made: 0 };
    /** Waits out the backoff before another try, when one is left and allowed. */
    const pause = async (
      retryAfter: number | null = null,
      failed?: Response,
    ): Promise<boolean> => {
      if (transient.left <= 0 || !(options.mayRetry?.() ?? true)) return false;
      // The failed answer's body ends during the wait: its connection then serves the retry.
      if (failed?.body) this.#drains.drain(failed.body);
      transient.left--;
      await this.#options.sleep(this.#backoff(transient.made++, retryAfter), options.signal);
      return true;
    };
    for (;;) {
      if (options.signal.aborted) throw options.signal.reason;
      const started = performance.now();
      let response: Response;
      const controller = new AbortController();
      const onClientAbort = () => controller.abort(options.signal.reason);
      options.signal.addEventListener("abort", onClientAbort, { once: true });
      try {
        response = await this.#fetchWithTimeouts(
          current,
          controller,
          options.slow ? this.#slowPhases : this.#phases,
          options.headers,
        );
      } catch (err) {
        options.signal.removeEventListener("abort", onClientAbort);
        if (options.signal.aborted) {
          // The call reached Poe all the same: it is counted, as the client's leaving.
          attempts.push({ reason, status: 499, ms: performance.now() - started });
          throw options.signal.reason;
        }
        const attempt = { reason, status: 0, ms: performance.now() - started };
        attempts.push(attempt);
        this.#logAttempt(attempt, options, err);
        // A model that stayed silent for FIRST_BYTE_TIMEOUT_SECONDS is not worth another wait.
        const slowModel = err instanceof TimeoutError && err.phase === "first-byte";
        if (!slowModel && await pause()) {
          reason = "retry-network";
          continue;
        }
        throw this.#final(this.#networkError(err, attempts, options.slow), !slowModel);
      }
      const attempt = { reason, status: response.status, ms: performance.now() - started };
      attempts.push(attempt);
      // A 200 web page is a captive portal's or a broken gateway's, not Poe's answer: for a stream
      // it would become a 200 with an error inside, so it fails here, where it can be retried.
      if (response.ok && response.headers.get("content-type")?.includes("text/html")) {
        options.signal.removeEventListener("abort", onClientAbort);
        this.#logAttempt(attempt, options);
        if (response.body) this.#drains.drain(response.body);
        if (await pause()) {
          reason = "retry-html";
          continue;
        }
        throw this.#final(
          new ProxyError(502, "Poe answered 200 with a web page instead of an answer.", {
            type: "upstream_error",
            code: "upstream_bad_body",
          }),
          true,
        );
      }
      let opened: BodyReader | null = null;
      const type = response.ok && current.stream === true && response.body !== null
        ? response.headers.get("content-type") ?? ""
        : "";
      const events = type.includes("text/event-stream");
      if (events || type.includes("json")) {
        // Nothing has reached the client yet: a stream that opens with an error, or a JSON answer
        // that is one (some bots answer a stream with JSON), is still a failed call, with its own
        // status and retries.
        let start: JsonStart;
        try {
          const phases = options.slow ? this.#slowPhases : this.#phases;
          const leftMs = phases.firstByteMs - (performance.now() - started);
          const opening = this.#openingWait(leftMs);
          try {
            start = events
              ? await readStreamStart(response.body!, opening.wait, { drain: this.#drains.drain })
              : await readJsonStart(response.body!, {
                firstByteMs: leftMs,
                idleMs: options.slow ? phases.firstByteMs : this.#options.idleTimeoutMs,
                maxBytes: MAX_EVENT_CHARS,
                // Past the first-byte budget the body times out here, with its own status.
                wait: leftMs > this.#streamStart.ms ? opening.wait : undefined,
              });
          } finally {
            opening.cancel();
          }
        } catch (err) {
          options.signal.removeEventListener("abort", onClientAbort);
          attempt.ms = performance.now() - started;
          // Poe accepted the call and its model runs: it stays a 200, as a relayed stream's does.
          if (options.signal.aborted) throw options.signal.reason;
          attempt.status = 0;
          this.#logAttempt(attempt, options, err);
          if (!events) {
            // Poe sends a JSON answer once the model is done: billed, so it is not asked again.
            throw this.#final(
              new ProxyError(502, "The connection to Poe broke before the answer was complete.", {
                type: "upstream_error",
                code: "upstream_disconnected",
                cause: err,
              }),
              false,
            );
          }
          if (await pause()) {
            reason = "retry-network";
            continue;
          }
          throw this.#final(
            new ProxyError(502, "The connection to Poe broke before the answer began.", {
              type: "upstream_error",
              code: "upstream_disconnected",
              cause: err,
            }),
            true,
          );
        }
        attempt.ms = performance.now() - started;
        if (start.kind === "answer") opened = start.body;
        else if (start.kind === "error") {
          response = streamErrorAnswer(start.error, {
            headers: response.headers,
            answered: events
              ? "Poe answered 200, and its stream opened with an error"
              : "Poe answered 200 with an error",
          });
          attempt.status = response.status;
        } else {
          options.signal.removeEventListener("abort", onClientAbort);
          const err = this.#noAnswer(start, options.slow);
          this.#logAttempt(attempt, options, err);
          // Like a 200 without choices: Poe may have billed it, and it is not retried.
          throw this.#final(err, false);
        }
      }
      if (response.ok) {
        // The client's abort keeps reaching the upstream body until the answer is done.
        const release = () => options.signal.removeEventListener("abort", onClientAbort);
        const abort = (why?: unknown) => {
          release();
          controller.abort(why);
        };
        if (attempts.length > 1) this.#logAttempt(attempt, options);
        const drain = this.#drains.drain;
        return { response, attempts, sent: current, abort, release, drain, body: opened };
      }
      options.signal.removeEventListener("abort", onClientAbort);
      this.#logAttempt(attempt, options);
      const status = response.status;
      variants ??= status === 400
        ? ladderVariants(body).filter((v) => options.allowVariant?.(v.body) ?? true)
        : null;
      if (status === 400 && variants !== null && variants.length > 0) {
        // Poe named another field it refuses (`reasoning_effort`, say): no variant changes it.
        const error = await poeError(response);
        if (error.param !== null && !LADDER_PARAMS.has(error.param)) throw error;
        if (!(options.mayRetry?.() ?? true)) throw error;
        const next = variants.shift()!;
        current = next.body;
        reason = next.reason;
        continue;
      }
      if (TRANSIENT.has(status) && transient.left > 0) {
        const retryAfter = retryAfterOf(response);
        if (retryAfter !== null && retryAfter > MAX_WAIT_SECONDS) {
          throw tooLongToWait(await poeError(response), retryAfter);
        }
        if (await pause(retryAfter, response)) {
          reason = `retry-${status}`;
          continue;
        }
      }
      throw this.#final(await poeError(response), TRANSIENT.has(status));
    }
  }

  /**
   * Marks an error the client should not retry: the proxy retried it already, or retrying would
   * start the work (and the bill) again. Only with `UPSTREAM_RETRIES=0` are transient failures
   * left to the client's own retries.
   */
  #final(err: ProxyError, transient: boolean): ProxyError {
    if (sdkRetries(err.status) && (!transient || this.#options.retries > 0)) {
      Object.assign(err.headers, NO_CLIENT_RETRY);
    }
    return err;
  }

  /** The error for a 200 to a streamed request that holds no answer, nor an error of Poe's. */
  #noAnswer(
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
        return this.#timeoutError(new TimeoutError(start.started ? "idle" : "first-byte"), slow);
      case "too-large":
        return new ProxyError(
          502,
          `Poe answered with a body larger than ${MAX_EVENT_CHARS} bytes, too large to relay.`,
          { type: "upstream_error", code: "upstream_bad_body" },
        );
    }
  }

  /** Bodies of answers that are over, still being read to their end. */
  get draining(): number {
    return this.#drains.size;
  }

  /**
   * Stops the timer of its timeouts, and cancels the bodies being read to their end; requests
   * still in flight lose their timeouts. Idempotent.
   */
  close(): void {
    for (const p of [this.#phases, this.#slowPhases]) {
      p.first.clear();
      p.second.clear();
    }
    this.#streamStart.clear();
    this.#drains.close();
  }

  /**
   * How long a stream's opening is read before the answer is passed on as it is: `streamStartMs`,
   * or what is left of the first-byte timeout when that is less (the relay then times the answer
   * out at once).
   */
  #openingWait(leftMs: number): { wait: Promise<void>; cancel: () => void } {
    let deadline: Deadline | undefined;
    const wait = new Promise<void>((resolve) => {
      if (leftMs >= this.#streamStart.ms) deadline = this.#streamStart.add(resolve);
      else {
        const timer = setTimeout(resolve, Math.max(0, leftMs));
        deadline = { cancel: () => clearTimeout(timer) };
      }
    });
    return { wait, cancel: () => deadline!.cancel() };
  }

  /** Exponential backoff from 250 ms with full jitter, or Poe's `Retry-After` when it said one. */
  #backoff(n: number, retryAfterSeconds: number | null): number {
    if (retryAfterSeconds !== null) return retryAfterSeconds * 1000;
    const ceiling = BACKOFF_BASE_MS * 2 ** n;
    return ceiling / 2 + this.#options.random() * ceiling / 2;
  }

  async #fetchWithTimeouts(
    body: ChatRequest,
    controller: AbortController,
    phases: Phases,
    clientHeaders?: Headers,
  ): Promise<Response> {
    const { connectTimeoutMs } = this.#options;
    // A list, not a Headers object: fetch converts it once, without sorting and combining.
    const headers: [string, string][] = [
      ["content-type", "application/json"],
      ["accept", body.stream ? "text/event-stream" : "application/json"],
      ["user-agent", this.#options.userAgent],
    ];
    if (this.#options.apiKey) headers.push(["authorization", `Bearer ${this.#options.apiKey}`]);
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = clientHeaders?.get(name);
      if (value) headers.push([name, value]);
    }
    // fetch has no connect phase of its own: when headers are slow, a TCP probe tells an
    // unreachable Poe (connect timeout) from a slow model (first-byte timeout).
    // One deadline at a time: the connect deadline first, then the rest of the first-byte one.
    const firstByte = () => controller.abort(new TimeoutError("first-byte"));
    let deadline = phases.first.add(() => {
      if (phases.firstByteMs <= connectTimeoutMs) return firstByte();
      this.#probe(connectTimeoutMs).then((reachable) => {
        if (!reachable) controller.abort(new TimeoutError("connect"));
      });
      deadline = phases.second.add(firstByte);
    });
    try {
      return await this.#options.fetch(this.#chatUrl, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (err) {
      if (controller.signal.reason instanceof TimeoutError) throw controller.signal.reason;
      throw err;
    } finally {
      deadline.cancel();
    }
  }

  async #probe(timeoutMs: number): Promise<boolean> {
    const url = new URL(this.#chatUrl);
    const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const conn = await Promise.race([
        Deno.connect({ hostname: url.hostname, port }),
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), timeoutMs)),
      ]);
      if (!conn) return false;
      conn.close();
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  #timeoutError(err: TimeoutError, slow: boolean): ProxyError {
    if (err.phase === "idle") {
      const setting = slow ? "MEDIA_TIMEOUT_SECONDS" : "IDLE_TIMEOUT_SECONDS";
      return new ProxyError(504, `Poe went silent for longer than ${setting}.`, {
        type: "timeout_error",
        code: "upstream_timeout",
      });
    }
    const setting = slow ? "MEDIA_TIMEOUT_SECONDS" : "FIRST_BYTE_TIMEOUT_SECONDS";
    return err.phase === "first-byte"
      ? new ProxyError(504, `Poe did not start answering within ${setting}.`, {
        type: "timeout_error",
        code: "upstream_timeout",
      })
      : new ProxyError(504, "Could not connect to Poe within CONNECT_TIMEOUT_SECONDS.", {
        type: "timeout_error",
        code: "upstream_connect_timeout",
      });
  }

  #networkError(err: unknown, attempts: Attempt[], slow = false): ProxyError {
    if (err instanceof TimeoutError) return this.#timeoutError(err, slow);
    return new ProxyError(
      502,
      `Could not reach Poe after ${attempts.length} attempt(s): ${
        err instanceof Error ? err.message : String(err)
      }`,
      { type: "upstream_error", code: "upstream_unreachable", cause: err },
    );
  }

  #logAttempt(attempt: Attempt, options: SendOptions, err?: unknown): void {
    this.#options.logger?.info("upstream attempt", {
      request_id: options.requestId,
      reason: attempt.reason,
      status: attempt.status,
      ms: Math.round(attempt.ms),
      error: err instanceof Error ? err.message : undefined,
    });
  }
}
