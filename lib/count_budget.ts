/**
 * @module A request's allowance of tokenizing: what its counts may tokenize exactly, then on
 * samples, before the rest is estimated, so one request's counting costs a bounded time whatever
 * its shape.
 */

import type { ChatMessage } from "./openai_types.ts";
import { messageTextChars } from "./token_bounds.ts";

/**
 * UTF-8 bytes a request's counts tokenize exactly. The tokenizer needs 0.1 to 0.4 µs a byte of
 * English, code and Chinese, and 1.2 to 1.8 µs a byte of text whose pieces are not whole
 * vocabulary entries (base64, random letters): measured here, this much took 0.15 s of base64 and
 * 0.25 s of random letters. `countText`'s own bound (`EXACT_TEXT_BYTES`) held each text, not the
 * request: 450 text parts of 60 KB of base64 in one message (27 MB) took 46 s, serving nobody
 * else meanwhile. A cold history larger than this is partly estimated, and exact a turn or two
 * later (the counter remembers estimates as such).
 */
export const REQUEST_EXACT_BYTES = 128 * 1024;

/**
 * How much less of the exact allowance a byte of plain ASCII text with spaces (prose, code) takes
 * than one of base64, hashes or CJK: the tokenizer's merge cache serves most of its pieces, and
 * 1 MB of English takes 2 to 4 ms. A cold history of prose stays exact up to 1 MiB (about 250,000
 * tokens, more than any model's context).
 */
export const PLAIN_TEXT_DISCOUNT = 8;

/**
 * Milliseconds a request's exact counting may take, whatever its bytes: text that looks plain may
 * still miss the merge cache (random words), and no byte rule can tell. Past it, the rest is
 * sampled. Ordinary requests never come near it; figures then depend on the machine only for
 * input that slow.
 */
export const REQUEST_EXACT_MS = 400;

/**
 * UTF-8 bytes tokenized in samples once the exact allowance is spent: a few segments of each text
 * counted then, spread over the rest of the request's text ({@linkcode CountBudget}).
 */
export const REQUEST_SAMPLE_BYTES = 32 * 1024;

/**
 * What an estimate from a sample is raised by: a sample misses some of what its text holds, and
 * context clipping must keep Poe under the cap, so an estimate errs high. Measured here, requests
 * of this repository's files, of Chinese and of base64 came out 6 to 11 % high with it (a single
 * message up to 15 % low: clipping compares sums of many).
 */
export const ESTIMATE_MARGIN = 1.1;

/** Tokens a byte guessed before anything was tokenized: high, as a byte of base64 is 0.68. */
const FIRST_GUESS = 0.5;

/** Options of a {@linkcode CountBudget}. */
export interface CountBudgetOptions {
  /** Bytes tokenized exactly. Default: {@linkcode REQUEST_EXACT_BYTES}. */
  exactBytes?: number;
  /** Milliseconds of exact counting. Default: {@linkcode REQUEST_EXACT_MS}. */
  exactMs?: number;
  /** Bytes tokenized in samples after that. Default: {@linkcode REQUEST_SAMPLE_BYTES}. */
  sampleBytes?: number;
  /**
   * Characters of text the request holds in all (`messageTextChars`, tool definitions): the
   * samples are spread over what the exact allowance leaves of it. Default: unknown, and each text
   * is then sampled at a sixteenth.
   */
  textChars?: number;
}

/**
 * What one request's token counts may tokenize: {@linkcode REQUEST_EXACT_BYTES} of text counted
 * exactly (newest first, as clipping counts), then {@linkcode REQUEST_SAMPLE_BYTES} of evenly
 * spread segments that estimate each further text, then nothing: a text is estimated from the
 * tokens a byte of everything counted under the budget. Estimates are raised by
 * {@linkcode ESTIMATE_MARGIN} and never exceed a token a byte. Deterministic: it counts bytes, not
 * time, so a request's figures do not depend on the machine's load.
 */
export class CountBudget {
  #exact: number;
  #sample: number;
  /** Segments sampled a character of text, once the exact allowance is spent. */
  readonly #density: number;
  #tokens = 0;
  #bytes = 0;
  #estimates = 0;
  #tokenized = 0;
  readonly #exactMs: number;
  /** When the first exact count began: {@linkcode REQUEST_EXACT_MS} is counted from it. */
  #startedAt: number | undefined;

  constructor(options: CountBudgetOptions = {}) {
    this.#exact = options.exactBytes ?? REQUEST_EXACT_BYTES;
    this.#sample = options.sampleBytes ?? REQUEST_SAMPLE_BYTES;
    this.#exactMs = options.exactMs ?? REQUEST_EXACT_MS;
    const chars = options.textChars;
    // Segments of 128 characters (`SEGMENT_LENGTH`) of ASCII that the sample allowance holds.
    const segments = this.#sample / 128;
    const rest = chars === undefined ? undefined : chars - this.#exact;
    this.#density = rest === undefined ? 1 / (16 * 128) : rest <= 0 ? 1 : segments / rest;
  }

  /**
   * Takes `bytes` of the exact allowance, when that much is left. The caller tokenizes them, then
   * reports what it found with {@linkcode CountBudget.observe}.
   */
  takeExact(bytes: number, plain = false): boolean {
    const cost = plain ? bytes / PLAIN_TEXT_DISCOUNT : bytes;
    if (cost > this.#exact) return false;
    const now = performance.now();
    this.#startedAt ??= now;
    if (now - this.#startedAt > this.#exactMs) {
      this.#exact = 0;
      return false;
    }
    this.#exact -= cost;
    return true;
  }

  /**
   * How many segments to sample of a text of `chars` characters and `bytes` UTF-8 bytes: at least
   * one while the sample allowance lasts, else 0 (the text is then estimated without
   * tokenizing); no more than what is left of it holds.
   */
  sampleSegments(chars: number, bytes: number): number {
    if (this.#sample <= 0) return 0;
    const fit = Math.floor(this.#sample / (128 * bytes / chars));
    return Math.max(1, Math.min(fit, Math.round(chars * this.#density)));
  }

  /** Takes `bytes` of the sample allowance (a sample once taken may overdraw it by its last). */
  takeSample(bytes: number): void {
    this.#sample -= bytes;
  }

  /** Records that `bytes` of text were tokenized into `tokens`: what later estimates go by. */
  observe(tokens: number, bytes: number): void {
    this.#tokens += tokens;
    this.#bytes += bytes;
    this.#tokenized += bytes;
  }

  /**
   * An estimate of a text of `bytes` UTF-8 bytes that `tokens` tokens of `sampled` of its bytes
   * stand for (by default: everything counted under this budget so far), raised by
   * {@linkcode ESTIMATE_MARGIN}, at most a token a byte. It counts as an estimate made.
   */
  estimate(bytes: number, tokens = this.#tokens, sampled = this.#bytes): number {
    this.#estimates++;
    const rate = sampled > 0 ? tokens / sampled : FIRST_GUESS;
    return Math.min(bytes, Math.ceil(bytes * rate * ESTIMATE_MARGIN));
  }

  /** Records that a figure was taken from an estimate made before (the counter's cache). */
  reuseEstimate(): void {
    this.#estimates++;
  }

  /** Bytes of the exact allowance left. */
  get exactLeft(): number {
    return this.#exact;
  }

  /** How many estimates counts under this budget made or used: 0 means every count was exact. */
  get estimates(): number {
    return this.#estimates;
  }

  /** UTF-8 bytes tokenized under this budget, exactly or in samples (for tests and metrics). */
  get tokenized(): number {
    return this.#tokenized;
  }
}

/**
 * A budget for counting a request's `messages` and `definitions` (`definitionsText`), whose
 * samples are spread over all their text.
 */
export function requestBudget(
  messages: readonly ChatMessage[],
  definitions = "",
  options: Omit<CountBudgetOptions, "textChars"> = {},
): CountBudget {
  let chars = definitions.length;
  for (const message of messages) chars += messageTextChars(message);
  return new CountBudget({ ...options, textChars: chars });
}

/**
 * Whether a text looks like plain ASCII prose or code, which tokenizes fast: on up to 1,024 of its
 * characters (its start and middle), at most one in 16 outside ASCII and at least one in 20 a
 * space or line break. Base64, hashes, minified data and CJK are not.
 */
export function plainText(text: string): boolean {
  if (text.length < 64) return false;
  let chars = 0;
  let spaces = 0;
  let other = 0;
  const half = text.length >> 1;
  for (const from of [0, half]) {
    const to = Math.min(text.length, from + 512, from === 0 ? half : text.length);
    for (let i = from; i < to; i++) {
      const c = text.charCodeAt(i);
      chars++;
      if (c === 32 || c === 10 || c === 9 || c === 13) spaces++;
      else if (c >= 128) other++;
    }
  }
  return other * 16 <= chars && spaces * 20 >= chars;
}
