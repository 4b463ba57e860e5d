/**
 * @module The token figures context clipping reports (the input's total, the system messages' in a
 * refusal), bounded in cost, and its `context_length_exceeded` error.
 */
import { ProxyError } from "./errors.ts";
import type { ChatMessage } from "./openai_types.ts";
import type { CountBudget } from "./count_budget.ts";
import { messageTokenGuess } from "./token_bounds.ts";
import type { TokenCounter } from "./tokens.ts";

/**
 * Messages not yet counted are counted for a figure up to this many: counting costs per message
 * too (a hash, the cache, one tokenizer call), so 100,000 short messages (3.7 MB) took about 0.55 s
 * more for an exact figure than for an estimate. It also stays within the counter's cache (4096
 * messages by default), so counting the dropped part does not evict the kept history that the next
 * request resends. What they tokenize is bounded by the request's `CountBudget`.
 */
export const EXACT_TOTAL_MESSAGES = 2_000;

/** A token figure, and whether it was counted or is partly estimated. */
export interface TokenFigure {
  tokens: number;
  /**
   * False when a message in it was estimated: under the request's `CountBudget`, or guessed at a
   * token per four bytes of text beyond {@linkcode EXACT_TOTAL_MESSAGES}.
   */
  exact: boolean;
}

/**
 * The token counts of a request's messages, made when first asked for under the request's
 * `CountBudget`, and whether each is an estimate.
 */
export class MessageCounts {
  readonly #messages: readonly ChatMessage[];
  readonly #counter: TokenCounter;
  readonly #budget: CountBudget;
  readonly #tokens: Float64Array;
  readonly #estimated: Uint8Array;

  constructor(messages: readonly ChatMessage[], counter: TokenCounter, budget: CountBudget) {
    this.#messages = messages;
    this.#counter = counter;
    this.#budget = budget;
    this.#tokens = new Float64Array(messages.length).fill(-1);
    this.#estimated = new Uint8Array(messages.length);
  }

  /** Whether message `i` is counted already. */
  has(i: number): boolean {
    return this.#tokens[i] >= 0;
  }

  /**
   * The tokens of message `i`. Once over `room`, its further texts are estimated untokenized
   * (`CountOptions.room`).
   */
  count(i: number, room?: number): number {
    if (this.#tokens[i] < 0) {
      const estimates = this.#budget.estimates;
      this.#tokens[i] = this.#counter.countMessage(this.#messages[i], {
        budget: this.#budget,
        room,
      });
      if (this.#budget.estimates !== estimates) this.#estimated[i] = 1;
    }
    return this.#tokens[i];
  }

  /** Whether the count of message `i` is (partly) an estimate. */
  estimated(i: number): boolean {
    return this.#estimated[i] === 1;
  }
}

/**
 * The tokens of the messages `wanted` (default: all): those counted already as they are; the
 * others counted when they are few enough, else guessed (`messageTokenGuess`), so the figure costs
 * a bounded time whatever the input.
 */
export function tokensOfMessages(
  messages: readonly ChatMessage[],
  counts: MessageCounts,
  wanted: (i: number) => boolean = () => true,
): TokenFigure {
  let tokens = 0;
  let exact = true;
  const rest: number[] = [];
  for (let i = 0; i < messages.length; i++) {
    if (!wanted(i)) continue;
    if (counts.has(i)) {
      tokens += counts.count(i);
      exact &&= !counts.estimated(i);
    } else rest.push(i);
  }
  const few = rest.length <= EXACT_TOTAL_MESSAGES;
  for (const i of rest) {
    if (!few) tokens += messageTokenGuess(messages[i]);
    else {
      tokens += counts.count(i);
      exact &&= !counts.estimated(i);
    }
  }
  return { tokens, exact: exact && few };
}

/** A figure as text: `1234`, or `about 1234` when it is partly estimated. */
export function figureText(figure: TokenFigure): string {
  return `${figure.exact ? "" : "about "}${figure.tokens}`;
}

/** The tokens context clipping left free for the answer, and whether the request set their limit. */
export interface AnswerReserve {
  tokens: number;
  /** False: the request set no answer limit, and clipping's default (plus thinking) was reserved. */
  asked: boolean;
}

/**
 * The 400 `context_length_exceeded` error: `need` says what does not fit, then the room there is.
 * Room that tool definitions or the reserve took whole is "no room", never a negative number.
 */
export function tooLong(
  need: string,
  cap: number,
  reserve: AnswerReserve,
  definitions: number,
): ProxyError {
  const why = reserve.asked ? "max_tokens" : "no max_tokens set: the default";
  const taken = [
    ...(reserve.tokens > 0 ? [`${reserve.tokens} reserved for the answer (${why})`] : []),
    ...(definitions > 0 ? [`${definitions} for the tool definitions and response_format`] : []),
  ];
  const left = cap - reserve.tokens - definitions;
  const room = taken.length > 0
    ? `the context cap of ${cap} tokens minus ${taken.join(" and ")} leaves ${
      left > 0 ? left : "no room for the messages"
    }`
    : `the context cap is ${cap} tokens`;
  return new ProxyError(
    400,
    `Cannot fit the conversation into the model's context: ${need}, but ${room}.`,
    { code: "context_length_exceeded", param: "messages" },
  );
}
