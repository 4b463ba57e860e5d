/** @module Swapping the model registry on reload: a valid file replaces it, a bad one is only logged. */
import type { Logger } from "./log.ts";
import type { ModelRegistry } from "./models.ts";
import type { Config } from "./config.ts";
import { warnCheaperFaults, warnIgnoredCaps, warnUnpriced } from "./startup_warnings.ts";

/** A registry and where it came from (a path, or `(embedded models.yaml)`). */
export interface LoadedRegistry {
  registry: ModelRegistry;
  source: string;
}

/** Options of {@linkcode RegistryReloader}. */
export interface RegistryReloaderOptions {
  /** The registry loaded at startup. */
  initial: ModelRegistry;
  /** Reads and validates the models file again, as at startup; throws when it cannot. */
  load: () => Promise<LoadedRegistry>;
  logger: Logger;
  /**
   * The guards that price requests: models without a price are warned about on reload as at
   * startup. Default: none set.
   */
  guards?: Pick<Config, "maxPointsPerMessage" | "pointsCutoff">;
}

/**
 * Holds the current {@linkcode ModelRegistry} and replaces it on {@linkcode reload}. Requests read
 * {@linkcode registry} once when they start, so a reload never changes a request in flight.
 */
export class RegistryReloader {
  #current: ModelRegistry;
  readonly #load: () => Promise<LoadedRegistry>;
  readonly #logger: Logger;
  readonly #guards: Pick<Config, "maxPointsPerMessage" | "pointsCutoff">;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: RegistryReloaderOptions) {
    this.#current = options.initial;
    this.#load = options.load;
    this.#logger = options.logger;
    this.#guards = options.guards ?? { maxPointsPerMessage: 0, pointsCutoff: 0 };
  }

  /** The registry new requests use. */
  get registry(): ModelRegistry {
    return this.#current;
  }

  /**
   * Loads the models file again. On success the new registry serves every request that starts
   * afterwards and `true` is returned; on any failure the current one stays, the reason is logged
   * at error level and `false` is returned. Never throws. Reloads asked for while one runs run
   * one after another, so the newest file wins.
   */
  reload(): Promise<boolean> {
    const next = this.#queue.then(() => this.#reloadOnce());
    this.#queue = next;
    return next;
  }

  async #reloadOnce(): Promise<boolean> {
    try {
      const { registry, source } = await this.#load();
      const previous = this.#current.size;
      this.#current = registry;
      this.#logger.info("models reloaded", { source, models: registry.size, previous });
      warnIgnoredCaps(registry, this.#logger);
      warnCheaperFaults(registry, this.#logger);
      warnUnpriced(registry, this.#guards, this.#logger);
      return true;
    } catch (err) {
      this.#logger.error("models reload failed; keeping the previous models", {
        error: err instanceof Error ? err.message : String(err),
        models: this.#current.size,
      });
      return false;
    }
  }
}
