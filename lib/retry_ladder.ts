/**
 * @module The layered retry ladder's rules: which of Poe's statuses are worth another try, how long
 * to wait before it, and which variants of a request to send after a 400.
 */
import type { ChatRequest } from "./openai_types.ts";

/**
 * Statuses worth another try after a pause. Not 504 and Cloudflare's 524: the model may have run
 * (and been billed) behind a gateway that gave up waiting for it.
 */
export const TRANSIENT = new Set([408, 429, 500, 502, 503, 520, 521, 522, 523, 529]);

/** A `Retry-After` longer than this is passed to the client instead of waited out. */
export const MAX_WAIT_SECONDS = 30;
const BACKOFF_BASE_MS = 250;

/** The fields the 400 ladder changes: a 400 naming any other is not worth a variant. */
export const LADDER_PARAMS = new Set(["max_tokens", "max_completion_tokens", "model"]);

/** What the ladder reads of Poe's 400. */
export interface RefusalFacts {
  param: string | null;
  code: string | null;
  message: string;
}

/**
 * The field of `body` Poe's 400 refuses: its `param`, or else, as Poe's documented error shape has
 * none, a field of the request its message names (the limits first, which the ladder may cure).
 * A name with an underscore (`reasoning_effort`) counts as a word of its own; a plain word (`n`,
 * `user`, `stop`, `tools`) only when quoted. Null when it names none; never `model`, which most
 * messages say.
 */
export function refusedField(error: RefusalFacts, body: ChatRequest): string | null {
  if (error.param !== null) return error.param;
  const message = error.message;
  for (const key of ["max_tokens", "max_completion_tokens"]) if (names(message, key)) return key;
  for (const key of Object.keys(body)) {
    if (key !== "model" && key !== "messages" && key !== "stream" && names(message, key)) {
      return key;
    }
  }
  return null;
}

/** Whether `message` names the field `key`, as {@linkcode refusedField} reads it. */
function names(message: string, key: string): boolean {
  const bare = key.includes("_");
  for (let at = message.indexOf(key); at !== -1; at = message.indexOf(key, at + 1)) {
    const before = message[at - 1] ?? " ";
    const after = message[at + key.length] ?? " ";
    // A full stop ends the sentence ("argument supplied: max_tokens."), not a dotted path.
    const continues = after === "."
      ? /\w/.test(message[at + key.length + 1] ?? " ")
      : FIELD_CHAR.test(after);
    if (
      bare ? !FIELD_CHAR.test(before) && !continues : QUOTE.test(before) && QUOTE.test(after)
    ) {
      return true;
    }
  }
  return false;
}

/** A character that continues a field name (or a dotted path), around a bare name. */
const FIELD_CHAR = /[\w.]/;
/** Quotes around a plain-word field name. */
const QUOTE = /['"`]/;

/**
 * Whether a variant of the request could cure Poe's 400: not when it refuses a field the ladder
 * does not change, nor a feature the model lacks (`unsupported_feature_for_model`: images for a
 * model without vision, say), which no spelling of its name or limit gives it.
 */
export function ladderMayCure(error: RefusalFacts, named: string | null): boolean {
  if (error.code === "unsupported_feature_for_model") return false;
  return named === null || LADDER_PARAMS.has(named);
}

/**
 * The most variants the 400 ladder tries after a request's own call: `max_completion_tokens` in
 * place of `max_tokens`, then without either, then the model lowercased, then both.
 */
export const LADDER_STEPS = 4;

/**
 * The 400 ladder: the variants of a request to try in order, each only if it changes the request.
 * `named` is the field Poe's first 400 names (its `param`), which picks where the ladder starts:
 * - `max_tokens`, on a request without `max_completion_tokens`: that limit under its newer name
 *   first, as OpenAI's reasoning models ask ("Use 'max_completion_tokens' instead"), so the answer
 *   keeps the client's bound; only then without a limit.
 * - `model`: the steps that send the model as it was are left out; they cannot cure it.
 * - anything else (or nothing): without a limit, then the model lowercased, then both.
 */
export function ladderVariants(
  body: ChatRequest,
  named: string | null = null,
): { reason: string; body: ChatRequest }[] {
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
  const limit = body.max_tokens;
  if (named === "max_tokens" && typeof limit === "number" && body.max_completion_tokens == null) {
    const { max_tokens: _, ...rest } = body;
    candidates.unshift({
      reason: "max-completion-tokens",
      body: { ...rest, max_completion_tokens: limit } as ChatRequest,
    });
  }
  const seen = [body];
  const out: { reason: string; body: ChatRequest }[] = [];
  for (const c of candidates) {
    if (named === "model" && c.body.model === body.model) continue;
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
  // Every HTTP date names its month; V8 would also read "-1" or "1,5" as dates long past.
  if (!/[a-z]{3}/i.test(trimmed)) return null;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000);
}

/** Options of {@linkcode backoffMs}. */
export interface BackoffOptions {
  /** Seconds Poe asked to wait (see {@linkcode retryAfterOf}); null when it did not say. */
  retryAfterSeconds: number | null;
  /** Randomness for jitter, in [0, 1). */
  random: () => number;
}

/**
 * Milliseconds to wait before the retry after `n` earlier ones: exponential backoff from 250 ms,
 * each wait half its step plus up to half again at random (so retries never come at once), or
 * Poe's `Retry-After` when it said one.
 */
export function backoffMs(n: number, options: BackoffOptions): number {
  if (options.retryAfterSeconds !== null) return options.retryAfterSeconds * 1000;
  const ceiling = BACKOFF_BASE_MS * 2 ** n;
  return ceiling / 2 + options.random() * ceiling / 2;
}
