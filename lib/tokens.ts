/** @module Token counting with a bounded worst case and a per-message LRU cache (o200k_base). */

// The tokenizer is imported with a literal specifier, so it is in the module graph and
// `deno compile` embeds it (nothing is fetched or read at run time), but it is loaded only when a
// request first needs counting: its 2.4 MB rank module takes about 300 ms and 70 MB to load,
// which a proxy serving short conversations never needs to pay at startup.
import type { ChatMessage } from "./openai_types.ts";
import { CountBudget, PLAIN_TEXT_DISCOUNT, plainText, requestBudget } from "./count_budget.ts";
import { MESSAGE_OVERHEAD, utf8Length, visitMessage } from "./token_bounds.ts";

/**
 * Longest segment handed to the tokenizer, in UTF-16 code units. Its BPE merge is quadratic in the
 * length of one piece, so no piece may be longer than this; 1 MB of anything then counts in linear
 * time. Cuts go before a whitespace character where there is one (which keeps counts exact for
 * ordinary text) and are hard cuts, never inside a surrogate pair, where there is none.
 */
export const SEGMENT_LENGTH = 128;

/**
 * UTF-8 bytes of one text that are tokenized exactly. The library needs about 1 to 1.8 µs per byte
 * of text whose pieces are not whole vocabulary entries (random letters, base64, hashes), so a
 * longer text is counted on an evenly spread sample of its segments totalling about this many
 * bytes, and the sample's tokens per byte are scaled to the whole text; that stays within a few
 * percent on real text. This bounds one text, not a request of many: what a request's counts
 * tokenize in all is bounded by its `CountBudget` (count_budget.ts).
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

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
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

/** Options of {@linkcode TokenCounter.countMessage}. */
export interface CountOptions {
  /** The request's allowance of tokenizing. Default: a new one for this message alone. */
  budget?: CountBudget;
  /**
   * Tokens the message has room for: once its count is over them, its further texts are
   * estimated without tokenizing (the request is refused, and the figure is all they are for).
   * Default: no limit.
   */
  room?: number;
}

/**
 * Messages a {@linkcode TokenCounter} remembers by default: 16 tokens each would fill a 256k cap.
 * Histories are counted newest first, so one that counts more messages than the cache holds
 * evicts its own newest, and its next turn finds none of them (10,000 short messages took 17-57 ms
 * more each turn with 4,096). About 520 KiB when full.
 */
export const MESSAGE_CACHE_SIZE = 16_384;

/** Options of a {@linkcode TokenCounter}. */
export interface TokenCounterOptions {
  /**
   * Messages whose counts are remembered (least recently used first out). Default:
   * {@linkcode MESSAGE_CACHE_SIZE}.
   */
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
 * the cost is linear in the input, and a request's counts share one `CountBudget`, so their cost
 * is bounded whatever the request holds; message counts are cached by a hash of their content
 * (estimates marked as such), so a resent history costs only its new messages.
 */
export class TokenCounter {
  readonly #cacheSize: number;
  readonly #cache = new Map<number, number>();
  /**
   * The oldest entry's place, kept between evictions: a fresh `keys()` walks past every entry
   * deleted before it (those evicted, those moved to the end when used), which made each miss
   * cost about 1.6 µs with the default size. Entries before it are all gone, so it stays valid.
   */
  #oldest: Iterator<number> = this.#cache.keys();
  #hits = 0;
  #misses = 0;
  #tokenized = 0;

  constructor(options: TokenCounterOptions = {}) {
    const size = options.cacheSize ?? MESSAGE_CACHE_SIZE;
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
   * more than the text's UTF-8 size. Under a `budget` (one request's), a text beyond what is
   * left of its exact allowance is estimated from a few evenly spread segments, or, once its
   * samples are spent too, from what the budget counted before ({@linkcode CountBudget}).
   *
   * @param budget Default: a new {@linkcode CountBudget} for this text alone.
   */
  countText(text: string, budget: CountBudget = new CountBudget()): number {
    if (text.length === 0) return 0;
    const bytes = utf8Length(text);
    const plain = plainText(text);
    if (bytes <= EXACT_TEXT_BYTES) {
      if (budget.takeExact(bytes, plain)) return this.#whole(text, bytes, budget);
    } else if (budget.takeExact(EXACT_TEXT_BYTES, plain)) return this.#strided(text, bytes, budget);
    return this.#sampled(text, bytes, budget);
  }

  /** Tokens of a text of at most {@linkcode EXACT_TEXT_BYTES}, every segment counted. */
  #whole(text: string, bytes: number, budget: CountBudget): number {
    const count = tokenizer();
    let tokens = 0;
    if (text.length <= SEGMENT_LENGTH) tokens = count(text);
    else {
      for (let start = 0; start < text.length;) {
        const end = segmentEnd(text, start);
        tokens += count(text.slice(start, end));
        start = end;
      }
    }
    this.#observe(budget, tokens, bytes);
    return tokens;
  }

  /** Tokens of a longer text, from every `stride`-th segment: about EXACT_TEXT_BYTES of them. */
  #strided(text: string, bytes: number, budget: CountBudget): number {
    const count = tokenizer();
    const stride = Math.ceil(bytes / EXACT_TEXT_BYTES);
    let tokens = 0;
    let sampledBytes = 0;
    for (let start = 0, i = 0; start < text.length; i++) {
      const end = segmentEnd(text, start);
      if (i % stride === 0) {
        const segment = text.slice(start, end);
        tokens += count(segment);
        sampledBytes += utf8Length(segment);
      }
      start = end;
    }
    this.#observe(budget, tokens, sampledBytes);
    return Math.min(bytes, Math.round(tokens * bytes / sampledBytes));
  }

  /**
   * An estimate of a text that the exact allowance no longer holds: from as many evenly spread
   * segments as the budget grants it (a segment starts after a whitespace character near its
   * place, as a cut of the whole text would), or without tokenizing when its samples are spent.
   */
  #sampled(text: string, bytes: number, budget: CountBudget): number {
    const segments = budget.sampleSegments(text.length, bytes);
    if (segments === 0) return budget.estimate(bytes);
    if (segments * SEGMENT_LENGTH >= text.length) {
      // The sample would be the whole text: counted, exactly.
      budget.takeSample(bytes);
      return this.#whole(text, bytes, budget);
    }
    const count = tokenizer();
    let tokens = 0;
    let sampled = 0;
    const step = text.length / segments;
    for (let j = 0; j < segments; j++) {
      let start = Math.floor((j + 0.5) * step);
      const limit = Math.min(text.length, start + (SEGMENT_LENGTH >> 1));
      let p = start;
      while (p < limit && !isSpace(text.charCodeAt(p))) p++;
      if (p < limit) start = p;
      else if (isLowSurrogate(text.charCodeAt(start))) start++;
      const segment = text.slice(start, segmentEnd(text, start));
      tokens += count(segment);
      sampled += utf8Length(segment);
    }
    budget.takeSample(sampled);
    this.#observe(budget, tokens, sampled);
    return budget.estimate(bytes, tokens, sampled);
  }

  /**
   * The tokens of one message: {@linkcode MESSAGE_OVERHEAD}, its `name`, text parts, tool call
   * names and arguments, `tool_call_id`, and the fixed estimates of image and file parts. Counts
   * made under a budget that estimated any of its texts are remembered as estimates: a later
   * request with exact allowance left counts the message again.
   */
  countMessage(message: ChatMessage, options: CountOptions = {}): number {
    const budget = options.budget ?? new CountBudget();
    const { key, fixed } = hashMessage(message);
    const cached = this.#cache.get(key);
    if (cached !== undefined && (cached > 0 || !this.#recount(message, budget))) {
      this.#hits++;
      this.#cache.delete(key);
      this.#cache.set(key, cached);
      if (cached > 0) return cached;
      budget.reuseEstimate();
      return -cached;
    }
    this.#misses++;
    const room = options.room ?? Infinity;
    const estimates = budget.estimates;
    let tokens = MESSAGE_OVERHEAD + fixed;
    visitMessage(message, (text) => {
      // Over its room, the rest needs no count: a figure in the refusal is all it is for. (A
      // short text costs no more counted than estimated: "hi" is not "about 2".)
      tokens += tokens > room && text.length > SEGMENT_LENGTH
        ? budget.estimate(utf8Length(text))
        : this.countText(text, budget);
    });
    if (this.#cacheSize > 0) {
      if (cached !== undefined) this.#cache.delete(key);
      else if (this.#cache.size >= this.#cacheSize) {
        let oldest = this.#oldest.next();
        if (oldest.done) oldest = (this.#oldest = this.#cache.keys()).next();
        this.#cache.delete(oldest.value);
      }
      this.#cache.set(key, budget.estimates === estimates ? tokens : -tokens);
    }
    return tokens;
  }

  /** Whether an estimated message is to be counted again: the exact allowance holds its text. */
  #recount(message: ChatMessage, budget: CountBudget): boolean {
    if (budget.exactLeft <= 0) return false;
    let cost = 0;
    visitMessage(message, (text) => {
      const bytes = Math.min(EXACT_TEXT_BYTES, utf8Length(text));
      cost += plainText(text) ? bytes / PLAIN_TEXT_DISCOUNT : bytes;
    });
    return cost <= budget.exactLeft;
  }

  /**
   * The tokens of a request's definitions ({@linkcode definitionsText}), remembered like a
   * message's: agents send the same tools with every request.
   */
  countDefinitions(text: string, budget?: CountBudget): number {
    if (text === "") return 0;
    return this.countMessage({ role: "", content: text }, { budget }) - MESSAGE_OVERHEAD;
  }

  /**
   * The sum of {@linkcode TokenCounter.countMessage} over `messages`, under one `budget`.
   *
   * @param budget Default: a new {@linkcode CountBudget} for these messages.
   */
  countMessages(
    messages: readonly ChatMessage[],
    budget: CountBudget = requestBudget(messages),
  ): number {
    let total = 0;
    for (const message of messages) total += this.countMessage(message, { budget });
    return total;
  }

  /** Records `bytes` of text tokenized into `tokens`, in the budget and in this counter's total. */
  #observe(budget: CountBudget, tokens: number, bytes: number): void {
    this.#tokenized += bytes;
    budget.observe(tokens, bytes);
  }

  /** UTF-8 bytes of text tokenized since construction (exactly or in samples): for tests. */
  get tokenized(): number {
    return this.#tokenized;
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
