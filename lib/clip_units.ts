/**
 * @module The units context clipping keeps or drops whole, and the search for a user message to
 * open the kept history with.
 */

import type { ChatMessage } from "./openai_types.ts";
import { EXACT_TOTAL_MESSAGES } from "./clip_figures.ts";

/** Roles that are always kept, in place. */
export const PINNED_ROLES = new Set(["system", "developer"]);

/**
 * A run of messages that is kept or dropped as a whole: a user message, a plain assistant message,
 * or an assistant message with `tool_calls` together with every `tool` result that answers it.
 * Messages that answer nothing (orphaned `tool` or `function` results) join the unit before them.
 */
export interface Unit {
  indices: number[];
  /** Tokens of the unit; `-1` until counted. */
  tokens: number;
  /** Only a user message may open the kept history. */
  opensHistory: boolean;
}

/** Groups the non-pinned messages into units, oldest first, not yet counted. */
export function unitsOf(messages: readonly ChatMessage[]): Unit[] {
  const units: Unit[] = [];
  const byCallId = new Map<string, Unit>();
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (PINNED_ROLES.has(message.role)) continue;
    if (message.role === "tool" || message.role === "function") {
      const id = message.tool_call_id;
      const owner = (typeof id === "string" ? byCallId.get(id) : undefined) ?? units.at(-1);
      if (owner !== undefined) {
        owner.indices.push(i);
        continue;
      }
    }
    const unit = { indices: [i], tokens: -1, opensHistory: message.role === "user" };
    units.push(unit);
    if (message.role === "assistant" && Array.isArray(message.tool_calls)) {
      for (const call of message.tool_calls) {
        if (typeof call?.id === "string") byCallId.set(call.id, unit);
      }
    }
  }
  return units;
}

/** Options of {@linkcode nearestUserUnit}. */
export interface AnchorSearch {
  /** The tokens a user unit may take. */
  room: number;
  /** Counts a unit (cached in it). */
  tokensOf: (unit: Unit) => number;
  /** Whether a message is counted already. */
  counted: (i: number) => boolean;
}

/**
 * The newest user unit before `before` that fits `room`, or -1. It counts no more messages than
 * the input's total may (`EXACT_TOTAL_MESSAGES` not yet counted), so a history of many user
 * messages that do not fit costs a bounded time (and what they tokenize is bounded by the
 * request's `CountBudget`); most often the total has counted them already.
 */
export function nearestUserUnit(
  units: readonly Unit[],
  before: number,
  options: AnchorSearch,
): number {
  const { room, tokensOf, counted } = options;
  let fresh = 0;
  for (let u = before - 1; u >= 0 && room > 0; u--) {
    const unit = units[u];
    if (!unit.opensHistory) continue;
    if (unit.tokens < 0) {
      for (const i of unit.indices) if (!counted(i)) fresh++;
      if (fresh > EXACT_TOTAL_MESSAGES) return -1;
    }
    if (tokensOf(unit) <= room) return u;
  }
  return -1;
}
