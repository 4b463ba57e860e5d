/** @module Token counting with a bounded worst case and a per-message LRU cache (o200k_base). */

// The tokenizer is imported with a literal specifier, so it is in the module graph and
// `deno compile` embeds it (nothing is fetched or read at run time), but it is loaded only when a
// request first needs counting: its 2.4 MB rank module takes about 300 ms and 70 MB to load,
// which a proxy serving short conversations never needs to pay at startup.
import type { ChatMessage } from "./openai_types.ts";

/**
 * Fixed tokens added to every message for its framing (`<|im_start|>`, the role, the separator and
 * `<|im_end|>`), as in OpenAI's counting recipe (3 per message plus 1 for the role).
 */
export const MESSAGE_OVERHEAD = 4;

/** Fixed estimate for an `image_url` part: OpenAI's figure for a 1024x1024 high-detail image. */
export const IMAGE_PART_TOKENS = 765;

/** Fixed estimate for an `image_url` part with `detail: "low"` (OpenAI's flat low-detail cost). */
export const IMAGE_LOW_DETAIL_TOKENS = 85;

/**
 * Fixed estimate for a `file` part, and for any other non-text part (audio, newer types). Its data
 * is never tokenized; Poe handles attachments on its side.
 */
export const FILE_PART_TOKENS = 1000;

/**
 * Longest segment handed to the tokenizer, in UTF-16 code units. Its BPE merge is quadratic in the
 * length of one piece, so no piece may be longer than this; 1 MB of anything then counts in linear
 * time. Cuts go before a whitespace character where there is one (which keeps counts exact for
 * ordinary text) and are hard cuts, never inside a surrogate pair, where there is none.
 */
export const SEGMENT_LENGTH = 128;

/**
 * UTF-8 bytes of one text that are tokenized exactly. The library needs about 1 to 2.5 µs per byte
 * of text whose pieces are not whole vocabulary entries (CJK runs, base64, hashes), so a longer
 * text is counted exactly on an evenly spread sample of its segments totalling about this many
 * bytes, and the sample's tokens per byte are scaled to the whole text. That bounds a count at
 * about 200 ms whatever the input (measured here), and stays within a few percent on real text.
 */
export const EXACT_TEXT_BYTES = 64 * 1024;

/** Entries of the tokenizer's own merge cache (library default: 100,000 pieces). */
const MERGE_CACHE_SIZE = 16_384;

/** Special-token text such as `<|endoftext|>` is counted as plain text instead of throwing. */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

let countPlain: ((text: string) => number) | undefined;
let loading: Promise<void> | undefined;

/** Loads the tokenizer once; later calls return the same promise. */
export function loadTokenizer(): Promise<void> {
  loading ??= import("gpt-tokenizer/encoding/o200k_base").then((o200k) => {
    o200k.setMergeCacheSize(MERGE_CACHE_SIZE);
    const countTokens = o200k.countTokens;
    countPlain = (text) => countTokens(text, PLAIN_TEXT);
  });
  return loading;
}

/** Whether counting can run now, without awaiting {@linkcode loadTokenizer}. */
export function tokenizerLoaded(): boolean {
  return countPlain !== undefined;
}

/** The tokenizer's count function. Counting before {@linkcode loadTokenizer} resolved is a bug. */
function tokenizer(): (text: string) => number {
  if (countPlain === undefined) throw new Error("await loadTokenizer() before counting tokens");
  return countPlain;
}

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

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x3000 ||
    (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029;
}

/**
 * Where the segment that starts at `start` ends: before a space (else other whitespace) that
 * follows a non-whitespace character in the second half of the window, else a hard cut that keeps
 * surrogate pairs whole.
 */
export function segmentEnd(text: string, start: number, length = SEGMENT_LENGTH): number {
  const limit = start + length;
  if (limit >= text.length) return text.length;
  const floor = start + (length >> 1);
  // A space that follows a word starts the next piece (" word"), so cutting there is exact;
  // before a newline it may not be (".\n\n" is one piece), so newlines are the second choice.
  for (let p = limit; p > floor; p--) {
    if (text.charCodeAt(p) === 32 && !isSpace(text.charCodeAt(p - 1))) return p;
  }
  for (let p = limit; p > floor; p--) {
    if (isSpace(text.charCodeAt(p)) && !isSpace(text.charCodeAt(p - 1))) return p;
  }
  const before = text.charCodeAt(limit - 1);
  return before >= 0xd800 && before <= 0xdbff ? limit - 1 : limit;
}

/**
 * Calls `visit` with each piece of text of a message that is counted (`name`, text parts, tool
 * call names and arguments, `tool_call_id`) and returns the fixed estimate of its other parts.
 */
function visitMessage(message: ChatMessage, visit: (text: string) => void): number {
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
      } else if (p.type === "image_url") {
        const image = p.image_url as { detail?: unknown } | undefined;
        fixed += image?.detail === "low" ? IMAGE_LOW_DETAIL_TOKENS : IMAGE_PART_TOKENS;
      } else fixed += FILE_PART_TOKENS;
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
 * An upper bound of {@linkcode TokenCounter.countMessage} that needs no tokenizer: every token
 * covers at least one UTF-8 byte, so the overhead plus the text's bytes plus the fixed part
 * estimates is never exceeded. Image and file data are not text and do not add bytes.
 */
export function messageTokenBound(message: ChatMessage): number {
  let bytes = 0;
  const fixed = visitMessage(message, (text) => bytes += utf8Length(text));
  return MESSAGE_OVERHEAD + fixed + bytes;
}

/**
 * A guess of {@linkcode TokenCounter.countMessage} without the tokenizer: a token for every four
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

/** A 53-bit hash of a message's counted content (cyrb53-style, two 32-bit lanes). */
function hashMessage(message: ChatMessage): { key: number; fixed: number } {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  const mix = (text: string) => {
    let a = h1;
    let b = h2;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 2654435761);
      b = Math.imul(b ^ c, 1597334677);
    }
    // The length separates fields: ["ab", "c"] and ["a", "bc"] hash differently.
    a = Math.imul(a ^ text.length, 2246822507);
    b = Math.imul(b ^ (text.length + 0x9e37), 3266489909);
    h1 = a;
    h2 = b;
  };
  mix(typeof message.role === "string" ? message.role : "");
  const fixed = visitMessage(message, mix);
  mix(String(fixed));
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return { key: 4294967296 * (2097151 & h2) + (h1 >>> 0), fixed };
}

/** Options of a {@linkcode TokenCounter}. */
export interface TokenCounterOptions {
  /** Messages whose counts are remembered (least recently used first out). Default: 4096. */
  cacheSize?: number;
}

/** Cache figures of a {@linkcode TokenCounter}, for tests and metrics. */
export interface TokenCounterStats {
  /** Messages answered from the cache. */
  hits: number;
  /** Messages that had to be tokenized. */
  misses: number;
  /** Messages currently cached. */
  entries: number;
}

/**
 * Counts o200k_base tokens of texts and chat messages. Long texts are cut into bounded segments, so
 * the cost is linear in the input; message counts are cached by a hash of their content, so a
 * resent history costs only its new messages.
 */
export class TokenCounter {
  readonly #cacheSize: number;
  readonly #cache = new Map<number, number>();
  #hits = 0;
  #misses = 0;

  constructor(options: TokenCounterOptions = {}) {
    const size = options.cacheSize ?? 4096;
    if (!Number.isInteger(size) || size < 0) {
      throw new RangeError(
        `Cannot create TokenCounter: cacheSize must be an integer >= 0: ${size}`,
      );
    }
    this.#cacheSize = size;
  }

  /**
   * The number of tokens of `text`, counted in segments of at most {@linkcode SEGMENT_LENGTH}:
   * exactly up to {@linkcode EXACT_TEXT_BYTES} of UTF-8, by a scaled even sample beyond. Never
   * more than the text's UTF-8 size.
   */
  countText(text: string): number {
    if (text.length === 0) return 0;
    const count = tokenizer();
    if (text.length <= SEGMENT_LENGTH) return count(text);
    const bytes = text.length * 3 <= EXACT_TEXT_BYTES ? 0 : utf8Length(text);
    const stride = bytes <= EXACT_TEXT_BYTES ? 1 : Math.ceil(bytes / EXACT_TEXT_BYTES);
    let tokens = 0;
    let sampledBytes = 0;
    for (let start = 0, i = 0; start < text.length; i++) {
      const end = segmentEnd(text, start);
      if (i % stride === 0) {
        const segment = text.slice(start, end);
        tokens += count(segment);
        if (stride > 1) sampledBytes += utf8Length(segment);
      }
      start = end;
    }
    return stride === 1 ? tokens : Math.min(bytes, Math.round(tokens * bytes / sampledBytes));
  }

  /**
   * The tokens of one message: {@linkcode MESSAGE_OVERHEAD}, its `name`, text parts, tool call
   * names and arguments, `tool_call_id`, and the fixed estimates of image and file parts.
   */
  countMessage(message: ChatMessage): number {
    const { key, fixed } = hashMessage(message);
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#hits++;
      this.#cache.delete(key);
      this.#cache.set(key, cached);
      return cached;
    }
    this.#misses++;
    let tokens = MESSAGE_OVERHEAD + fixed;
    visitMessage(message, (text) => tokens += this.countText(text));
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) {
        this.#cache.delete(this.#cache.keys().next().value!);
      }
      this.#cache.set(key, tokens);
    }
    return tokens;
  }

  /**
   * The tokens of a request's definitions ({@linkcode definitionsText}), remembered like a
   * message's: agents send the same tools with every request.
   */
  countDefinitions(text: string): number {
    if (text === "") return 0;
    return this.countMessage({ role: "", content: text }) - MESSAGE_OVERHEAD;
  }

  /** The sum of {@linkcode TokenCounter.countMessage} over `messages`. */
  countMessages(messages: readonly ChatMessage[]): number {
    let total = 0;
    for (const message of messages) total += this.countMessage(message);
    return total;
  }

  /** Cache hits, misses and size since construction. */
  stats(): TokenCounterStats {
    return { hits: this.#hits, misses: this.#misses, entries: this.#cache.size };
  }
}

/**
 * What a request sends the model besides its messages, as JSON text: its tool (and older function)
 * definitions and its `response_format` schema; "" when it has none. Agents send 5k to 30k tokens
 * of tools: they take room in the context and are billed as input.
 */
export function definitionsText(body: Record<string, unknown>): string {
  const parts: unknown[] = [];
  for (const field of ["tools", "functions", "response_format"]) {
    const value = body[field];
    if (value !== undefined && value !== null && typeof value === "object") parts.push(value);
  }
  return parts.length === 0 ? "" : JSON.stringify(parts);
}
