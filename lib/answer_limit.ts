/** @module The answer-length limit a request carries, wherever the client put it. */
import type { ChatRequest } from "./openai_types.ts";

/** The fields that bound an answer's length, at the top level or in a literal `extra_body`. */
export const LIMIT_FIELDS = ["max_tokens", "max_completion_tokens"] as const;

/** A request's literal `extra_body` object, which Poe reads as well as the top-level fields. */
export function extraBodyOf(body: Record<string, unknown>): Record<string, unknown> | null {
  const extra = body.extra_body;
  return extra !== null && typeof extra === "object" && !Array.isArray(extra)
    ? extra as Record<string, unknown>
    : null;
}

/**
 * The largest answer-length limit a request carries, or null when it sets none. Which of
 * `max_tokens` and `max_completion_tokens` Poe and each provider obey, and whether one in
 * `extra_body` wins over the top level, is not documented: a client could ask for a long answer
 * in one place and have it priced by a short one in another, so the largest is what may be billed.
 * Values are positive integers once `validateChatRequest` has passed the body.
 */
export function answerLimit(body: ChatRequest): number | null {
  let largest: number | null = null;
  const extra = extraBodyOf(body);
  for (const source of extra ? [body, extra] : [body]) {
    for (const field of LIMIT_FIELDS) {
      const value = source[field];
      if (typeof value === "number" && value > 0 && (largest === null || value > largest)) {
        largest = value;
      }
    }
  }
  return largest;
}
