/** @module Which `api_key_name` in the points history is this proxy's key: configured or learnt. */

/**
 * Learns which `api_key_name` is this proxy's from entries paired by their token counts (a match
 * that is almost never chance): a name is trusted after `confirmations` such matches in a row,
 * and forgotten when a token match shows another one (the key was renamed or replaced). A name
 * configured (`POE_API_KEY_NAME`) is trusted from the start and never replaced; token matches
 * with another key's entries only tell that it may be wrong ({@linkcode KeyNameLearner.mismatch}).
 */
export class KeyNameLearner {
  readonly #confirmations: number;
  readonly #configured: string | null;
  #candidate: string | null = null;
  #count = 0;
  /** Entries of another key matched by tokens, in a row, all of `#candidate`'s name. */
  #mismatches = new Set<string>();

  /** Trusts a name after `confirmations` matches in a row (default: 3), or `configured` at once. */
  constructor(confirmations = 3, configured: string | null = null) {
    this.#confirmations = Math.max(1, confirmations);
    this.#configured = configured === "" ? null : configured;
  }

  /** The name trusted, or null. */
  get name(): string | null {
    if (this.#configured !== null) return this.#configured;
    return this.#count >= this.#confirmations ? this.#candidate : null;
  }

  /** The name configured, or null when it is learnt. */
  get configured(): string | null {
    return this.#configured;
  }

  /** Takes the `api_key_name` of an entry paired by its token counts. */
  confirm(name: unknown): void {
    if (typeof name !== "string" || name === "") return;
    if (this.#configured !== null) {
      if (name === this.#configured) this.#mismatches.clear();
      return;
    }
    if (name === this.#candidate) {
      this.#count++;
    } else {
      this.#candidate = name;
      this.#count = 1;
    }
  }

  /**
   * With a configured name: takes an entry of another key whose token counts matched an answer
   * that found none of its own. Returns true from the time `confirmations` different such
   * entries in a row (no token match of the configured name between them) named one other key:
   * the configured name is then most likely not this key's.
   */
  mismatch(name: unknown, queryId: string): boolean {
    if (this.#configured === null || typeof name !== "string" || name === "") return false;
    if (name === this.#configured) return false;
    if (name !== this.#candidate) {
      this.#candidate = name;
      this.#mismatches.clear();
    }
    this.#mismatches.add(queryId);
    return this.#mismatches.size >= this.#confirmations;
  }
}
