/**
 * @module Many deadlines of one length on a single platform timer. Every request arms a few
 * timeouts (body, first byte, answer) and nearly all are cancelled within milliseconds; a platform
 * timer each cost about as much as the rest of a small request's own work.
 */

/** Timer functions, injectable so tests drive time by hand. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The platform's timers. */
export const REAL_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** A pending deadline; `cancel()` is cheap and idempotent. */
export interface Deadline {
  cancel(): void;
}

interface Entry extends Deadline {
  at: number;
  fn: (() => void) | null;
  /** Still in the queue (not yet taken out to fire). */
  queued: boolean;
}

/** Below this many entries the queue is never compacted: the sweep would cost more than it saves. */
const COMPACT_FROM = 256;

/**
 * Deadlines that all last `ms`. They are kept in a queue in the order they were set, which is also
 * the order they expire in, with one platform timer armed for the oldest one still pending:
 * setting and cancelling are O(1); each deadline fires exactly `ms` after it was set, as its own
 * `setTimeout` would. Cancelled entries are dropped when the timer passes them, or in one sweep
 * when they are most of a long queue (long deadlines, many short requests). The timer is left
 * armed when the last deadline is cancelled (disarming and re-arming it for every request is what
 * this saves); it then fires once for nothing. {@linkcode Deadlines.clear} stops it.
 */
export class Deadlines {
  readonly ms: number;
  readonly #timers: Timers;
  readonly #now: () => number;
  #queue: Entry[] = [];
  #head = 0;
  #cancelled = 0;
  #timer: unknown = null;

  constructor(ms: number, options: { timers?: Timers; now?: () => number } = {}) {
    this.ms = Math.max(0, ms);
    this.#timers = options.timers ?? REAL_TIMERS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Deadlines set and not yet fired or cancelled. */
  get pending(): number {
    return this.#queue.length - this.#head - this.#cancelled;
  }

  /** Entries held in memory: pending, cancelled and not yet dropped, fired and not yet let go. */
  get size(): number {
    return this.#queue.length;
  }

  /** Calls `fn` once, `ms` from now, unless cancelled first. */
  add(fn: () => void): Deadline {
    const entry: Entry = {
      at: this.#now() + this.ms,
      fn,
      queued: true,
      cancel: () => {
        if (entry.fn === null) return;
        entry.fn = null;
        // Taken out to fire in this turn: cancelled by one that fired just before it.
        if (!entry.queued) return;
        this.#cancelled++;
        this.#dropCancelledTail();
        this.#maybeCompact();
      },
    };
    this.#queue.push(entry);
    if (this.#timer === null) this.#arm(entry.at);
    return entry;
  }

  #arm(at: number): void {
    this.#timer = this.#timers.setTimeout(() => this.#fire(), Math.max(0, at - this.#now()));
  }

  #fire(): void {
    this.#timer = null;
    const now = this.#now();
    const due: Entry[] = [];
    const queue = this.#queue;
    while (this.#head < queue.length && queue[this.#head].at <= now) {
      const entry = queue[this.#head++];
      entry.queued = false;
      if (entry.fn === null) this.#cancelled--;
      else due.push(entry);
    }
    this.#skipCancelled();
    if (this.#head === queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else {
      // Entries that fired are let go once they are most of the array (the queue may never
      // empty under steady load).
      if (this.#head >= COMPACT_FROM && this.#head * 2 >= queue.length) {
        this.#queue = queue.slice(this.#head);
        this.#head = 0;
      }
      this.#arm(this.#queue[this.#head].at);
    }
    for (const entry of due) {
      const fn = entry.fn;
      entry.fn = null;
      fn?.();
    }
  }

  /** Drops cancelled entries at the head, so the timer is armed for a live one. */
  #skipCancelled(): void {
    const queue = this.#queue;
    while (this.#head < queue.length && queue[this.#head].fn === null) {
      queue[this.#head++].queued = false;
      this.#cancelled--;
    }
  }

  /**
   * Drops cancelled entries at the end of the queue: one request's deadline is usually cancelled
   * before the next is set, and an entry let go at once dies young instead of being kept (and
   * promoted to the old generation) until the timer or a sweep passes it.
   */
  #dropCancelledTail(): void {
    const queue = this.#queue;
    while (queue.length > this.#head && queue[queue.length - 1].fn === null) {
      queue.pop()!.queued = false;
      this.#cancelled--;
    }
  }

  #maybeCompact(): void {
    const size = this.#queue.length - this.#head;
    if (size < COMPACT_FROM || this.#cancelled * 2 < size) return;
    const live: Entry[] = [];
    for (let i = this.#head; i < this.#queue.length; i++) {
      const entry = this.#queue[i];
      if (entry.fn !== null) live.push(entry);
      else entry.queued = false;
    }
    this.#queue = live;
    this.#head = 0;
    this.#cancelled = 0;
  }

  /** Cancels every pending deadline and the timer. */
  clear(): void {
    for (let i = this.#head; i < this.#queue.length; i++) {
      this.#queue[i].fn = null;
      this.#queue[i].queued = false;
    }
    this.#queue = [];
    this.#head = 0;
    this.#cancelled = 0;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
