/**
 * @module The token figures context clipping reports (the input's total, the system messages' in a
 * refusal), bounded in cost, and its `context_length_exceeded` error.
 */
import { ProxyError } from "./errors.ts";
import type { ChatMessage } from "./openai_types.ts";
import { messageTokenGuess, utf8Length, visitMessage } from "./token_bounds.ts";

/**
 * Messages not yet counted are still tokenized for a figure up to about this many UTF-8 bytes
 * (about 0.15 s of tokenizing); beyond it the figure is an estimate.
 */
export const EXACT_TOTAL_BYTES = 1_000_000;

/**
 * ... and up to this many messages: counting costs per message too (a hash, the cache, one
 * tokenizer call), so 100,000 short messages (3.7 MB) took about 0.55 s more for an exact figure
 * than for an estimate. It also stays within the counter's cache (4096 messages by default), so
 * counting the dropped part does not evict the kept history that the next request resends.
 */
export const EXACT_TOTAL_MESSAGES = 2_000;

/** A token figure, and whether it was counted or is partly estimated. */
export interface TokenFigure {
  tokens: number;
  /**
   * False when messages beyond {@linkcode EXACT_TOTAL_BYTES} or {@linkcode EXACT_TOTAL_MESSAGES}
   * were estimated at a token per four bytes of text instead of counted.
   */
  exact: boolean;
}

/**
 * The tokens of the messages `wanted` (default: all): those already in `counts` (`-1` where not
 * yet counted) as they are; the others counted with `count` when they are few and small enough,
 * else guessed (`messageTokenGuess`), so the figure costs a bounded time whatever the input.
 */
export function tokensOfMessages(
  messages: readonly ChatMessage[],
  counts: Float64Array,
  count: (i: number) => number,
  wanted: (i: number) => boolean = () => true,
): TokenFigure {
  let tokens = 0;
  const rest: number[] = [];
  for (let i = 0; i < messages.length; i++) {
    if (!wanted(i)) continue;
    if (counts[i] >= 0) tokens += counts[i];
    else rest.push(i);
  }
  const exact = rest.length <= EXACT_TOTAL_MESSAGES &&
    textWithin(messages, rest, EXACT_TOTAL_BYTES);
  for (const i of rest) tokens += exact ? count(i) : messageTokenGuess(messages[i]);
  return { tokens, exact };
}

/**
 * Whether the text of the messages at `indices` is at most `limit` UTF-8 bytes: what counting
 * them costs. Images, files and audio are not tokenized: a count and a guess hold the same
 * estimates of them (`attachment_tokens.ts`), made once a part.
 */
function textWithin(messages: readonly ChatMessage[], indices: number[], limit: number): boolean {
  let bytes = 0;
  for (const i of indices) {
    bytes += textBytes(messages[i]);
    if (bytes > limit) return false;
  }
  return true;
}

/** The UTF-8 bytes of a message's counted text: what tokenizing it costs. */
export function textBytes(message: ChatMessage): number {
  let bytes = 0;
  visitMessage(message, (text) => bytes += utf8Length(text));
  return bytes;
}

/** A figure as text: `1234`, or `about 1234` when it is partly estimated. */
export function figureText(figure: TokenFigure): string {
  return `${figure.exact ? "" : "about "}${figure.tokens}`;
}

/**
 * The 400 `context_length_exceeded` error: `need` says what does not fit, then the room there is.
 * Room that tool definitions or the reserve took whole is "no room", never a negative number.
 */
export function tooLong(
  need: string,
  cap: number,
  reserve: number,
  definitions: number,
): ProxyError {
  const taken = [
    ...(reserve > 0 ? [`${reserve} reserved for the answer (max_tokens)`] : []),
    ...(definitions > 0 ? [`${definitions} for the tool definitions and response_format`] : []),
  ];
  const left = cap - reserve - definitions;
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
