/**
 * @module What of a chat message is counted, and bounds and guesses of its tokens that need no
 * tokenizer.
 */
import { partTokens } from "./attachment_tokens.ts";
import type { ChatMessage } from "./openai_types.ts";

/**
 * Fixed tokens added to every message for its framing (`<|im_start|>`, the role, the separator and
 * `<|im_end|>`), as in OpenAI's counting recipe (3 per message plus 1 for the role).
 */
export const MESSAGE_OVERHEAD = 4;

/** The exact UTF-8 size of a string in bytes, without encoding it (lone surrogates count 3). */
export function utf8Length(value: string): number {
  let bytes = value.length;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2; // 4 bytes for 2 code units
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

/**
 * Calls `visit` with each piece of text of a message that is counted (`name`, text parts, tool
 * call names and arguments, `tool_call_id`) and returns the estimate of its other parts (images,
 * files, audio: `attachment_tokens.ts`), whose data is never tokenized.
 */
export function visitMessage(message: ChatMessage, visit: (text: string) => void): number {
  let fixed = 0;
  if (typeof message.name === "string") visit(message.name);
  const content = message.content;
  if (typeof content === "string") visit(content);
  else if (Array.isArray(content)) {
    for (const part of content) {
      if (part === null || typeof part !== "object") continue;
      const p = part as Record<string, unknown>;
      if (p.type === "text" || p.type === "refusal") {
        const text = p.type === "text" ? p.text : p.refusal;
        if (typeof text === "string") visit(text);
      } else fixed += partTokens(p);
    }
  }
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      const fn = call?.function;
      if (typeof fn?.name === "string") visit(fn.name);
      if (typeof fn?.arguments === "string") visit(fn.arguments);
    }
  }
  const legacy = message.function_call as { name?: unknown; arguments?: unknown } | undefined;
  if (typeof legacy?.name === "string") visit(legacy.name);
  if (typeof legacy?.arguments === "string") visit(legacy.arguments);
  if (typeof message.tool_call_id === "string") visit(message.tool_call_id);
  return fixed;
}

/**
 * An upper bound of `TokenCounter.countMessage` (tokens.ts) that needs no tokenizer: every token
 * covers at least one UTF-8 byte, so the overhead plus the text's bytes plus the fixed part
 * estimates is never exceeded. Image and file data are not text and do not add bytes.
 */
export function messageTokenBound(message: ChatMessage): number {
  let bytes = 0;
  const fixed = visitMessage(message, (text) => bytes += utf8Length(text));
  return MESSAGE_OVERHEAD + fixed + bytes;
}

/**
 * A guess of `TokenCounter.countMessage` (tokens.ts) without the tokenizer: a token for every four
 * bytes of text (English averages about that), plus the overhead and fixed part estimates.
 */
export function messageTokenGuess(message: ChatMessage): number {
  let bytes = 0;
  const fixed = visitMessage(message, (text) => bytes += utf8Length(text));
  return MESSAGE_OVERHEAD + fixed + Math.ceil(bytes / 4);
}

/**
 * The characters of a message's counted text (as {@linkcode messageTokenGuess} reads it), from
 * each piece's `length`: no pass over the text, for a guess made on every request. Image and file
 * parts add nothing.
 */
export function messageTextChars(message: ChatMessage): number {
  let chars = 0;
  visitMessage(message, (text) => chars += text.length);
  return chars;
}

/**
 * The estimate of a message's images, files and audio ({@linkcode visitMessage}'s), without its
 * text: worked out once a part (`attachment_tokens.ts`), so cheap once a counter has read it.
 */
export function messageAttachmentTokens(message: ChatMessage): number {
  return visitMessage(message, () => {});
}

/**
 * The sum of {@linkcode messageTokenBound} over `messages` when it is at most `limit`, else null:
 * then `messages` certainly fit `limit` tokens without counting. Stops as soon as the bound
 * exceeds the limit, so it reads at most about `limit` characters of text.
 */
export function tokenBoundWithin(messages: readonly ChatMessage[], limit: number): number | null {
  let bound = 0;
  for (const message of messages) {
    bound += messageTokenBound(message);
    if (bound > limit) return null;
  }
  return bound;
}
