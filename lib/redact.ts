/** @module Keeps the Poe key out of every text that leaves the process: log lines, errors, pages. */

/** What replaces a secret. */
export const HIDDEN = "(hidden)";

/**
 * A shortened key as services print it: a head, an ellipsis or stars, a tail (`sk-p...3456`,
 * `sk-p…56`, `sk-****3456`). A match is hidden only when its head starts a secret and its tail
 * ends the same secret.
 */
// The lookbehind starts a match only at the start of a word: without it, a long word made the
// search quadratic (a 64 KB path in a log line took 3 s).
const SHORTENED = /(?<![\w-])([\w-]{2,})(?:\.{2,}|…|\*{2,})([\w-]{2,})/g;
/** A cheap test before the regular expression: most texts have no ellipsis or stars at all. */
const ELLIPSIS = /\.\.|…|\*\*/;

/** Hides the given secrets, whole or shortened, in any text. */
export class Redactor {
  #secrets: string[];
  /** The shortest secret's length: a shorter text cannot hold one whole (most model names, paths). */
  #shortest: number;

  /** @param secrets the values to hide; empty and very short ones (under 8 characters) are ignored. */
  constructor(secrets: readonly (string | null | undefined)[]) {
    this.#secrets = secrets.filter((s): s is string => typeof s === "string" && s.length >= 8);
    this.#shortest = Math.min(...this.#secrets.map((s) => s.length));
  }

  /** `text` with every secret, whole or shortened, replaced by `(hidden)`. */
  redact(text: string): string {
    if (this.#secrets.length === 0) return text;
    if (text.length >= this.#shortest) {
      for (const secret of this.#secrets) {
        if (text.includes(secret)) text = text.replaceAll(secret, HIDDEN);
      }
    }
    if (!ELLIPSIS.test(text)) return text;
    return text.replace(
      SHORTENED,
      (match, head: string, tail: string) =>
        this.#secrets.some((s) => s.startsWith(head) && s.endsWith(tail)) ? HIDDEN : match,
    );
  }

  /** Whether `text` holds a secret, whole. */
  holdsSecret(text: string): boolean {
    return this.#secrets.some((s) => text.includes(s));
  }
}
