/** @module Re-reading the inbound keys on reload: a valid file replaces them, a bad one is only logged. */
import type { ApiKeys } from "./api_keys.ts";
import type { Logger } from "./log.ts";
import { warnShortKeys } from "./startup_warnings.ts";

/** Options of {@linkcode KeysReloader}. */
export interface KeysReloaderOptions {
  /** The keys in use, replaced in place: everything that checks or hides keys sees the new set. */
  keys: ApiKeys;
  /**
   * Reads `PROXY_API_KEYS_FILE` again and merges it with `PROXY_API_KEYS`, as at startup; throws
   * when startup would refuse the result (unreadable, a line of two words, no key at all).
   */
  load: () => Promise<string[]>;
  logger: Logger;
}

/**
 * Replaces the inbound keys on {@linkcode reload}: a key taken out of the file is refused from the
 * next request on. Requests already let in run to their end.
 */
export class KeysReloader {
  readonly #keys: ApiKeys;
  readonly #load: () => Promise<string[]>;
  readonly #logger: Logger;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: KeysReloaderOptions) {
    this.#keys = options.keys;
    this.#load = options.load;
    this.#logger = options.logger;
  }

  /**
   * Reads the keys again. On success they serve every request that starts afterwards and `true`
   * is returned; on any failure the current keys stay, the reason is logged at error level and
   * `false` is returned. Never throws. Reloads run one after another, so the newest file wins.
   */
  reload(): Promise<boolean> {
    const next = this.#queue.then(() => this.#reloadOnce());
    this.#queue = next;
    return next;
  }

  async #reloadOnce(): Promise<boolean> {
    const previous = this.#keys.size;
    try {
      const keys = await this.#load();
      this.#keys.replace(keys);
      // The count only: never a key, nor a part of one.
      this.#logger.info("keys reloaded", { keys: keys.length, previous });
      warnShortKeys(keys, this.#logger);
      return true;
    } catch (err) {
      this.#logger.error("keys reload failed; keeping the previous keys", {
        error: err instanceof Error ? err.message : String(err),
        keys: previous,
      });
      return false;
    }
  }
}
