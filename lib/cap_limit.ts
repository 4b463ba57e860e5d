/**
 * @module The answer limit the cost cap sends Poe for a request that sets none: how large (the
 * cap's room within the context window's), in which field, and what Poe's refusals of it teach.
 */
import { answerLimit } from "./answer_limit.ts";
import type { ProxyError } from "./errors.ts";
import type { CapCheck, Guards } from "./guards.ts";
import type { ModelEntry } from "./models.ts";
import type { UpstreamAnswer } from "./upstream_call.ts";

/**
 * The limit to send: the cap's (`CapCheck.answerLimit`), within what `contextCap` leaves
 * `inputTokens` (a provider refuses the input and the limit together over the window); null
 * when the cap sets none.
 */
export function capLimitOf(
  cap: CapCheck | undefined,
  contextCap: number | null,
  inputTokens: number,
): number | null {
  if (cap?.answerLimit == null) return null;
  if (contextCap === null) return cap.answerLimit;
  return Math.max(1, Math.min(cap.answerLimit, contextCap - inputTokens));
}

/**
 * Learns from the call Poe answered what the limit sent (`limit`, the cap's own when `capOwn`,
 * else the window's room) met: dropped by the 400 ladder (`Guards.limitRefused`: the field, or
 * its size), or taken as `max_completion_tokens` (`Guards.limitTakenAsCompletion`).
 */
export function learnFromAnswer(
  guards: Guards,
  entry: ModelEntry,
  limit: { tokens: number; field: "max_tokens" | "max_completion_tokens"; capOwn: boolean },
  answer: UpstreamAnswer,
): void {
  const sent = answer.sent;
  if (answerLimit(sent) !== null) {
    // The ladder's first step: later requests send it so at once, not after a refusal.
    if (limit.field === "max_tokens" && sent.max_tokens === undefined) {
      guards.limitTakenAsCompletion(entry);
    }
    return;
  }
  const refusals = answer.limitRefusals ?? [];
  const ofField = refusals.map((r) => refusesField(r.error));
  const fieldRefused = refusals.length > 0 && ofField.every(Boolean);
  // A size refused is learnt of the cap's own limit only: a refusal of the window's room is the
  // provider counting the input otherwise.
  if (fieldRefused || limit.capOwn) guards.limitRefused(entry, limit.tokens, fieldRefused);
  // `max_tokens` refused by name, `max_completion_tokens` for its size: the latter it is.
  const tookCompletion = refusals.some((r, i) => r.field === "max_tokens" && ofField[i]) &&
    refusals.some((r, i) => r.field === "max_completion_tokens" && !ofField[i]);
  if (tookCompletion) guards.limitTakenAsCompletion(entry);
}

/**
 * Whether Poe's refusal says an answer limit is not taken at all ("Unsupported parameter:
 * 'max_tokens' is not supported with this model"), not that it is too large.
 */
function refusesField(refusal: ProxyError): boolean {
  if (refusal.code === "unsupported_parameter") return true;
  return FIELD_REFUSED.test(refusal.message);
}

/** OpenAI's, Anthropic's (pydantic's) and Google's words for a field not taken. */
const FIELD_REFUSED =
  /\b(?:not supported|unsupported|not allowed|not permitted|unrecognized|unknown (?:parameter|field|argument|name)|cannot find field|extra (?:inputs|fields))\b/i;
