/** @module Context clipping that keeps system messages, tool-call pairs and the newest turn whole. */

import type { ChatMessage } from "./openai_types.ts";
import { tokenBoundWithin, utf8Length } from "./token_bounds.ts";
import {
  type AnswerReserve,
  figureText,
  MessageCounts,
  tokensOfMessages,
  tooLong,
} from "./clip_figures.ts";
import { nearestUserUnit, PINNED_ROLES, type Unit, unitsOf } from "./clip_units.ts";
import { type CountBudget, requestBudget } from "./count_budget.ts";
import { loadTokenizer, type TokenCounter, tokenizerLoaded } from "./tokens.ts";

/** Options of {@linkcode clipMessages}. */
export interface ClipOptions {
  /**
   * The model's context cap in tokens (`ModelRegistry.contextCap`). `null`, `0` or a negative
   * value means no cap: nothing is counted or dropped. A cap of zero therefore disables clipping,
   * as `0` does for the other limits in the config, rather than refusing every request.
   */
  cap: number | null;
  /**
   * The largest answer limit the request sets (`answerLimit`: `max_tokens`,
   * `max_completion_tokens`, in `extra_body` too), whose tokens are left free for the answer; null
   * when it sets none: {@linkcode DEFAULT_ANSWER_RESERVE} is left free then, plus `thinking`, so the
   * answer is not cut off and a provider that checks the input plus the answer against its window
   * does not refuse it. `0` leaves no room. Default: null. A thinking budget is not added to a
   * limit: Anthropic's must be below `max_tokens` and OpenAI's reasoning is counted within
   * `max_completion_tokens`, so the limit already holds it, and reserving it twice would drop
   * history that fits. (The cost cap adds it: over-pricing refuses with a message, over-reserving
   * drops context silently.) At most half the cap is reserved: clients send large defaults (8k to
   * 64k) while a cap lowered to save points may be smaller, and a reserve the size of the cap would
   * refuse every request. Were the answer really too long for the model, Poe would refuse it and
   * the retry ladder drops `max_tokens`.
   */
  reserve?: number | null;
  /**
   * The request's thinking budget (`thinkingBudget`), or null: added to the default reserve of a
   * request without an answer limit, as the model thinks before it answers. Default: null.
   */
  thinking?: number | null;
  /** The counter whose per-message cache makes a resent history cheap. */
  counter: TokenCounter;
  /**
   * The request's allowance of tokenizing, shared with the cost cap's count. Default: one for
   * these messages and definitions (`requestBudget`).
   */
  budget?: CountBudget;
  /**
   * What the request sends besides its messages (`definitionsText`: tools, a response_format
   * schema): it takes room in the context first. Default: none.
   */
  definitions?: string;
}

/** What {@linkcode clipMessages} kept. */
export interface ClipResult {
  /** The kept messages: the same objects as in the input, in their original order. */
  messages: ChatMessage[];
  /** Whether any message was dropped. */
  clipped: boolean;
  /** How many messages were dropped. */
  dropped: number;
  /**
   * Tokens of the input. When `counted` is false this is the UTF-8 upper bound that let clipping
   * skip counting, not a count. Beyond the request's `CountBudget` messages are estimated from
   * samples of their text, and beyond 2,000 dropped messages (`clip_figures.ts`) they are not
   * counted at all (a history of 100,000 messages would block the event loop for a second) but
   * guessed at a token per four bytes; `approximate` is set then.
   */
  tokensBefore: number;
  /** Whether `tokensBefore` is partly an estimate: shown as `about` and `tokens=~`. */
  approximate: boolean;
  /**
   * Tokens of the kept messages (the same bound as `tokensBefore` when `counted` is false). Both
   * include the definitions.
   */
  tokensAfter: number;
  /** Whether `tokensAfter` is partly an estimate (a kept message the budget estimated). */
  approximateAfter: boolean;
  /** Whether messages were tokenized; false when there was no cap or the byte shortcut applied. */
  counted: boolean;
}

/**
 * Drops the oldest turns of a conversation until it fits `cap - reserve - definitions` tokens.
 * Keeps every `system` and `developer` message in place; always the newest user message and the
 * last tool round after it; then the run of user messages right before it, newest first, as far as
 * it fits; then the newest other turns that fit, as one run up to the question. When that run holds
 * no user message, the nearest earlier user message that fits opens it and its oldest turns make the
 * room. Never separates an assistant's `tool_calls` from their results, and never lets the kept
 * history open with an assistant or tool message. The input is not mutated.
 *
 * Small requests cost almost nothing: when the UTF-8 size of the text (plus fixed estimates) is
 * within the budget, nothing is tokenized, since every token covers at least one byte.
 *
 * @throws {ProxyError} 400 `context_length_exceeded` when the system messages and what is always
 * kept exceed the budget.
 */
export async function clipContext(
  messages: readonly ChatMessage[],
  options: ClipOptions,
): Promise<ClipResult> {
  if (!tokenizerLoaded() && needsCounting(messages, options)) await loadTokenizer();
  return clipMessages(messages, options);
}

/** Whether clipping must tokenize: there is a cap and the byte shortcut does not settle it. */
function needsCounting(messages: readonly ChatMessage[], options: ClipOptions): boolean {
  const { cap } = options;
  if (cap === null || !(cap > 0)) return false;
  const budget = cap - reserveWithin(cap, options).tokens -
    utf8Length(options.definitions ?? "");
  return budget <= 0 || tokenBoundWithin(messages, budget) === null;
}

/**
 * Clips like {@linkcode clipContext} once the tokenizer is loaded; it throws if counting is needed
 * before {@linkcode loadTokenizer} resolved.
 */
export function clipMessages(
  messages: readonly ChatMessage[],
  options: ClipOptions,
): ClipResult {
  const { cap, counter } = options;
  const unchanged = (tokens: number, counted: boolean): ClipResult => ({
    messages: [...messages],
    clipped: false,
    dropped: 0,
    tokensBefore: tokens,
    approximate: false,
    tokensAfter: tokens,
    approximateAfter: false,
    counted,
  });
  if (cap === null || !(cap > 0)) return unchanged(0, false);
  const reserve = reserveWithin(cap, options);
  const definitionsBound = utf8Length(options.definitions ?? "");
  const boundBudget = cap - reserve.tokens - definitionsBound;
  const bound = boundBudget > 0 ? tokenBoundWithin(messages, boundBudget) : null;
  if (bound !== null) return unchanged(bound + definitionsBound, false);
  const allowance = options.budget ?? requestBudget(messages, options.definitions);
  // Counted: they take their room first, like the system messages.
  const definitions = counter.countDefinitions(options.definitions ?? "", allowance);
  const budget = cap - reserve.tokens - definitions;

  // Messages are counted lazily, newest first: only what could be kept is tokenized.
  const counts = new MessageCounts(messages, counter, allowance);
  const isPinned = (i: number) => PINNED_ROLES.has(messages[i].role);
  /** Counts a unit; once over `room`, the rest of it is estimated untokenized. */
  const tokensOf = (unit: Unit, room = Infinity): number => {
    if (unit.tokens < 0) {
      let sum = 0;
      for (const i of unit.indices) sum += counts.count(i, room - sum);
      unit.tokens = sum;
    }
    return unit.tokens;
  };
  const unitEstimated = (unit: Unit) => unit.indices.some((i) => counts.estimated(i));

  // Counted up to the budget: past it the request is refused, and the refusal counts them all.
  let pinned = 0;
  for (let i = 0; i < messages.length && pinned <= budget; i++) {
    if (isPinned(i)) pinned += counts.count(i, budget - pinned);
  }
  const units = unitsOf(messages);
  let newestUser = -1;
  for (let u = units.length - 1; u >= 0 && newestUser < 0; u--) {
    if (units[u].opensHistory) newestUser = u;
  }
  if (newestUser < 0) {
    // Nothing may be dropped without a user message to open the history: all of it fits or none.
    let all = pinned;
    for (let u = units.length - 1; u >= 0 && all <= budget; u--) {
      all += tokensOf(units[u], budget - all);
    }
    if (all <= budget) return unchanged(all + definitions, true);
    throw tooLong(
      `there is no user message to open a shorter history, and the whole conversation needs ` +
        `more than ${Math.max(0, budget)} tokens`,
      cap,
      reserve,
      definitions,
    );
  }
  // Always kept: the newest user message, and the newest unit after it (the last tool round of an
  // agent). Dropping the tool result the model just asked for would make it ask again, and pay
  // again, in a loop.
  const pinnedUnits = new Set<number>([newestUser]);
  if (units.length - 1 > newestUser) pinnedUnits.add(units.length - 1);
  let turnTokens = 0;
  for (const u of pinnedUnits) turnTokens += tokensOf(units[u], budget - pinned - turnTokens);
  if (pinned + turnTokens > budget) {
    const turn = {
      tokens: turnTokens,
      exact: ![...pinnedUnits].some((u) => unitEstimated(units[u])),
    };
    const what = `the newest user message${
      units.length - 1 > newestUser ? " and the last tool round after it" : ""
    } (${figureText(turn)} tokens)`;
    // All of them, where the loop above stopped at the budget (ten system messages of 900 tokens
    // were reported as three): a bounded count, else partly estimated and said so.
    const system = tokensOfMessages(messages, counts, isPinned);
    const need = { tokens: system.tokens + turnTokens, exact: system.exact && turn.exact };
    throw tooLong(
      `the system messages (${figureText(system)} tokens) and ${what} need ${
        figureText(need)
      } tokens`,
      cap,
      reserve,
      definitions,
    );
  }

  let used = pinned + turnTokens;
  const kept = new Set<number>(pinnedUnits);
  // Next, the user messages right before the question (a document, then the question), newest
  // first, as far as they fit: an agent's tool rounds after the question must not crowd out what
  // the user asked about. Units are kept whole, so no tool call leaves its results behind.
  for (let u = newestUser - 1; u >= 0 && units[u].opensHistory; u--) {
    if (used + tokensOf(units[u]) > budget) break;
    used += units[u].tokens;
    kept.add(u);
  }
  // Then the rest, newest first, while whole units fit. A unit of that run left out stops it too,
  // as it cannot fit now: what is kept before the question stays one run up to it.
  let fitsWhole = true;
  for (let u = units.length - 1; u >= 0; u--) {
    if (kept.has(u)) continue;
    if (used + tokensOf(units[u]) > budget) {
      fitsWhole = false;
      break;
    }
    used += units[u].tokens;
    kept.add(u);
  }
  if (fitsWhole) return unchanged(used + definitions, true);
  // The input's total: exact when the uncounted rest is small, else partly estimated.
  const total = tokensOfMessages(messages, counts);
  // The kept history must open with a user message. What is kept before the question is one run
  // up to it; the part of that run before its first user message (an agent's tool rounds, the
  // answer the next message replies to: all of it when the run holds no user message) cannot open
  // it. The nearest earlier user message that fits opens it instead (the task, the request those
  // rounds work on), and that part's oldest units make its room. Dropping the part instead sent a
  // follow-up such as "yes", or a nudge in the middle of an agent's run, without the task and
  // every round before it. An empty run is anchored too: else an answer too long to keep would
  // leave the question with less context than a shorter one whose run is given up for the anchor.
  let start = newestUser;
  while (start > 0 && kept.has(start - 1)) start--;
  let firstUser = start;
  while (firstUser < newestUser && !units[firstUser].opensHistory) firstUser++;
  if (firstUser > start || start === newestUser) {
    let headTokens = 0;
    for (let u = start; u < firstUser; u++) headTokens += units[u].tokens;
    for (let u = start; u < firstUser; u++) kept.delete(u);
    used -= headTokens;
    const anchor = nearestUserUnit(units, start, {
      room: budget - used,
      tokensOf,
      counted: (i) => counts.has(i),
    });
    // No user message before the run fits: the part goes, and the run's user message (or the
    // question) opens the history.
    if (anchor >= 0) {
      used += units[anchor].tokens;
      kept.add(anchor);
      // Newest first and whole, as before: the part's newest units stay, its oldest go.
      for (let u = firstUser - 1; u > anchor && used + tokensOf(units[u]) <= budget; u--) {
        used += units[u].tokens;
        kept.add(u);
      }
    }
  }

  const keep = new Uint8Array(messages.length);
  for (let i = 0; i < messages.length; i++) keep[i] = PINNED_ROLES.has(messages[i].role) ? 1 : 0;
  for (const u of kept) for (const i of units[u].indices) keep[i] = 1;
  const result = messages.filter((_, i) => keep[i] === 1);
  let approximateAfter = false;
  for (let i = 0; i < messages.length && !approximateAfter; i++) {
    approximateAfter = keep[i] === 1 && counts.estimated(i);
  }
  return {
    messages: result,
    clipped: result.length < messages.length,
    dropped: messages.length - result.length,
    tokensBefore: total.tokens + definitions,
    approximate: !total.exact,
    tokensAfter: used + definitions,
    approximateAfter,
    counted: true,
  };
}

/**
 * The `x-poe-proxy-clipped` header and `clipped` log field, `dropped=N tokens=BEFORE->AFTER`, or
 * null when nothing was dropped. `~` marks a figure that is partly estimated (`tokens=~BEFORE`,
 * `->~AFTER`).
 */
export function clippedField(clip: ClipResult): string | null {
  if (!clip.clipped) return null;
  const before = `${clip.approximate ? "~" : ""}${clip.tokensBefore}`;
  const after = `${clip.approximateAfter ? "~" : ""}${clip.tokensAfter}`;
  return `dropped=${clip.dropped} tokens=${before}->${after}`;
}

/**
 * Tokens left free for the answer when a request sets no answer limit. Without one, the answer may
 * run to the provider's own default or the model's maximum (16k for GPT-4o, 64k for Claude
 * Sonnet): no room reserved clipped a 30-turn chat to GPT-4o's 128,000-token cap at 127,763 tokens,
 * 237 left for the answer, which was cut off or refused by a provider that checks the input plus
 * the answer against its window. 4,096 is the output ceiling of GPT-4 Turbo and the Claude 3
 * models: about 3,000 words, more than most chat answers need, and 3 % of a 128k cap (2 % of the
 * 200k default), so little history is given up.
 * Reserving a model's whole output ceiling (up to 64k) would drop half a chat for answers that
 * rarely come. Under a small cap (one lowered to save points) it is at most an eighth of the cap
 * ({@linkcode DEFAULT_RESERVE_SHARE}), not the half a limit the client sets may take: a message
 * that fits such a cap is not refused for room nobody asked for.
 */
export const DEFAULT_ANSWER_RESERVE = 4096;

/** The share of the cap {@linkcode DEFAULT_ANSWER_RESERVE} may take at most: an eighth. */
export const DEFAULT_RESERVE_SHARE = 1 / 8;

/**
 * The tokens reserved for the answer: the limit the client asked for, else the default plus the
 * thinking budget; at most half the cap.
 */
function reserveWithin(cap: number, options: ClipOptions): AnswerReserve {
  const asked = options.reserve ?? null;
  const wanted = asked ??
    Math.min(DEFAULT_ANSWER_RESERVE, Math.floor(cap * DEFAULT_RESERVE_SHARE)) +
      Math.max(0, options.thinking ?? 0);
  return { tokens: Math.min(Math.max(0, wanted), Math.floor(cap / 2)), asked: asked !== null };
}
