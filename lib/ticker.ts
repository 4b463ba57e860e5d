/**
 * @module One interval for many watchers of the same period: every open stream checks its
 * timeouts and keep-alives a few times a second, and a platform interval each made a thousand
 * open streams a thousand timers.
 */

/** Watchers called together every `ms`, on one interval that runs only while there are some. */
export class Ticker {
  readonly ms: number;
  readonly #watchers = new Set<() => void>();
  #interval: ReturnType<typeof setInterval> | null = null;

  constructor(ms: number) {
    this.ms = ms;
  }

  /** Watchers registered now. */
  get size(): number {
    return this.#watchers.size;
  }

  /** Calls `fn` every `ms` from now on until the returned function is called. */
  add(fn: () => void): () => void {
    // A wrapper per call, so the same function added twice is two watchers.
    const watcher = () => fn();
    this.#watchers.add(watcher);
    this.#interval ??= setInterval(() => this.#tick(), this.ms);
    return () => {
      this.#watchers.delete(watcher);
      if (this.#watchers.size === 0 && this.#interval !== null) {
        clearInterval(this.#interval);
        this.#interval = null;
      }
    };
  }

  #tick(): void {
    // A watcher may remove itself or others; a Set's iteration allows that.
    for (const watcher of this.#watchers) watcher();
  }
}

const tickers = new Map<number, Ticker>();

/** The shared {@linkcode Ticker} of period `ms`. */
export function tickerOf(ms: number): Ticker {
  let ticker = tickers.get(ms);
  if (!ticker) {
    ticker = new Ticker(ms);
    tickers.set(ms, ticker);
  }
  return ticker;
}
