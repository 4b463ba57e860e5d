/**
 * @module Lets go of upstream bodies that are nearly over by reading them to their end: `fetch`
 * throws away a keep-alive connection whose body was cancelled before its last chunk, and the next
 * call to Poe then pays a new TCP and TLS handshake.
 */
import { Deadlines, type Timers } from "./deadlines.ts";
import type { BodyReader } from "./stream_start.ts";

/** Options of {@linkcode BodyDrains}. */
export interface BodyDrainsOptions {
  /** A body not over within this is cancelled. Default: 2000. */
  ms?: number;
  /** A body with more than this left is cancelled. Default: 64 KiB. */
  maxBytes?: number;
  /** Default: the platform's timers. */
  timers?: Timers;
  /** Milliseconds, for the deadlines. Default: `performance.now`. */
  now?: () => number;
}

/**
 * Bodies read to their end in the background, within bounds of time and size; past them a body is
 * cancelled, as it would have been at once. Nothing read is kept.
 */
export class BodyDrains {
  readonly #deadlines: Deadlines;
  readonly #maxBytes: number;
  readonly #open = new Set<BodyReader>();
  #closed = false;

  constructor(options: BodyDrainsOptions = {}) {
    this.#deadlines = new Deadlines(options.ms ?? 2000, options);
    this.#maxBytes = options.maxBytes ?? 64 * 1024;
  }

  /** Bodies being read now. */
  get size(): number {
    return this.#open.size;
  }

  /** Reads the rest of `body` and drops it; the caller must not use `body` again. Bound. */
  readonly drain = (body: BodyReader | ReadableStream<Uint8Array>): void => {
    const reader = body instanceof ReadableStream ? body.getReader() : body;
    if (this.#closed) {
      reader.cancel().catch(() => {});
      return;
    }
    this.#open.add(reader);
    const deadline = this.#deadlines.add(() => reader.cancel().catch(() => {}));
    void this.#readToEnd(reader).finally(() => {
      deadline.cancel();
      this.#open.delete(reader);
    });
  };

  /** Cancels the bodies still being read: a shutdown does not wait for them. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const reader of this.#open) reader.cancel().catch(() => {});
    this.#open.clear();
    this.#deadlines.clear();
  }

  /** Same as {@linkcode BodyDrains.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  async #readToEnd(reader: BodyReader): Promise<void> {
    let left = this.#maxBytes;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        left -= value.byteLength;
        if (left < 0) {
          await reader.cancel();
          return;
        }
      }
    } catch {
      // Cancelled, aborted or broken: the connection is lost either way, as before.
    }
  }
}
