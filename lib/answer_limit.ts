/**
 * @module The answer-length limit and thinking budget a request carries, wherever the client put
 * them, and the answer tokens they let Poe bill.
 */
import type { ChatRequest } from "./openai_types.ts";

/** The fields that bound an answer's length, at the top level or in a literal `extra_body`. */
export const LIMIT_FIELDS = ["max_tokens", "max_completion_tokens"] as const;

/** The field that sets a reasoning model's thinking budget, in tokens. */
export const THINKING_FIELDS = ["thinking_budget"] as const;

/** A request's literal `extra_body` object, which Poe reads as well as the top-level fields. */
export function extraBodyOf(body: Record<string, unknown>): Record<string, unknown> | null {
  const extra = body.extra_body;
  return extra !== null && typeof extra === "object" && !Array.isArray(extra)
    ? extra as Record<string, unknown>
    : null;
}

/** The largest positive number among `fields`, at the top level or in a literal `extra_body`. */
function largestOf(body: ChatRequest, fields: readonly string[]): number | null {
  let largest: number | null = null;
  const extra = extraBodyOf(body);
  for (const source of extra ? [body, extra] : [body]) {
    for (const field of fields) {
      const value = (source as Record<string, unknown>)[field];
      if (
        typeof value === "number" && Number.isFinite(value) && value > 0 &&
        (largest === null || value > largest)
      ) {
        largest = value;
      }
    }
  }
  return largest;
}

/**
 * The largest answer-length limit a request carries, or null when it sets none. Which of
 * `max_tokens` and `max_completion_tokens` Poe and each provider obey, and whether one in
 * `extra_body` wins over the top level, is not documented: a client could ask for a long answer
 * in one place and have it priced by a short one in another, so the largest is what may be billed.
 * Values are positive integers once `validateChatRequest` has passed the body.
 */
export function answerLimit(body: ChatRequest): number | null {
  return largestOf(body, LIMIT_FIELDS);
}

/**
 * The thinking budget a request sets for a reasoning model (Poe's `thinking_budget` parameter, at
 * the top level or in `extra_body`), or null. Values are whole numbers once `validateChatRequest`
 * has passed the body; 0 (thinking off) is none.
 */
export function thinkingBudget(body: ChatRequest): number | null {
  return largestOf(body, THINKING_FIELDS);
}

/** The answer tokens a request may be billed for, as the cost cap prices it. */
export interface PricedAnswer {
  /** Answer tokens priced: the limit, or `assumed`, plus the thinking budget. */
  tokens: number;
  /** The answer limit the request set, or null when `assumed` was priced instead. */
  limit: number | null;
  /** The thinking budget the request set, or null. */
  thinking: number | null;
}

/**
 * The answer tokens a request may be billed for: its answer limit (else `assumed`) plus its thinking
 * budget. Whether Poe counts thinking within `max_tokens` (as Anthropic's and OpenAI's APIs do) or
 * on top of it is not documented; a cap must not be passed by the part it left out.
 */
export function pricedAnswer(body: ChatRequest, assumed: number): PricedAnswer {
  const limit = answerLimit(body);
  const thinking = thinkingBudget(body);
  return { tokens: (limit ?? assumed) + (thinking ?? 0), limit, thinking };
}
