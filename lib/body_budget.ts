/**
 * @module The memory budget of large request bodies, shared by every client: a body over
 * `LARGE_BODY_BYTES` takes its share before it is read, holds it until Poe has it, and the part
 * its request keeps until the request ends; bodies that find the budget spent wait their turn,
 * first come first served, within the body's deadline.
 */
import { ProxyError } from "./errors.ts";
import type { Deadline, Deadlines } from "./deadlines.ts";

/**
 * What a body is counted at while it is read, parsed and sent to Poe, per byte of it. One body
 * alone peaks at about 7 times its size (the chunks read, their join, the decoded text, the parsed
 * JSON, the body sent to Poe and `fetch`'s copy: 31 MB bodies took 210 MB each); bodies that follow
 * one another peak higher, at 12 to 13, as each finds the last one's copies not yet collected.
 */
export const MEMORY_PER_BODY_BYTE = 12;

/**
 * What a body is counted at once Poe answered, until the request ends, per byte of it: the request
 * keeps its parsed messages (the usage estimate counts them at the answer's end) and its bytes,
 * measured twice its size after a full collection, whatever the answer's length.
 */
export const KEPT_PER_BODY_BYTE = 4;

/** A body's share of the budget. */
export interface BodyLease {
  /** Counts the body at its real size, once read (a chunked one was counted at the largest). */
  readonly resize: (bodyBytes: number) => void;
  /** Counts only what the request keeps of the body while Poe's answer is relayed. */
  readonly shrink: () => void;
  /** Gives the share back, and lets in the next bodies that now fit; idempotent. */
  readonly release: () => void;
  /** How long the body waited for its share, in milliseconds. */
  readonly waitedMs: number;
}

interface Waiter {
  bodyBytes: number;
  cost: number;
  since: number;
  resolve: (lease: BodyLease) => void;
  reject: (err: unknown) => void;
  deadline: Deadline | null;
  signal?: AbortSignal;
  onAbort: () => void;
}

/**
 * The budget: `MAX_BODY_MEMORY_MB` of memory that large bodies may take at once, each counted as
 * {@linkcode MEMORY_PER_BODY_BYTE} times its size until Poe has it (at most the whole budget: such
 * a body runs alone), then {@linkcode KEPT_PER_BODY_BYTE} times until its request ends. Strictly
 * first come first served: a large body never waits behind smaller ones that keep fitting in
 * before it.
 */
export class BodyBudget {
  /** The budget, in bytes of memory. */
  readonly bytes: number;
  readonly #deadlines: Deadlines;
  #held = 0;
  /** Waiting bodies, in their order of arrival (a Set keeps it, and lets one leave in O(1)). */
  readonly #queue = new Set<Waiter>();

  /** `deadlines`: how long a body may wait for its share (`BODY_TIMEOUT_SECONDS`). */
  constructor(bytes: number, deadlines: Deadlines) {
    this.bytes = bytes;
    this.#deadlines = deadlines;
  }

  /** Memory counted for the bodies holding a share now. */
  get held(): number {
    return this.#held;
  }

  /** Bodies waiting for their share now. */
  get waiting(): number {
    return this.#queue.size;
  }

  /**
   * Takes the share of a body of `bodyBytes` bytes, at once when it fits and nobody waits, else
   * once the bodies before it are done. Rejects with a 503 `server_busy` (with `Retry-After`) when
   * its deadline comes first, and with `signal`'s reason when it aborts (the client left).
   */
  take(bodyBytes: number, signal?: AbortSignal): Promise<BodyLease> {
    const cost = this.#cost(bodyBytes, MEMORY_PER_BODY_BYTE);
    if (this.#queue.size === 0 && this.#held + cost <= this.bytes) {
      return Promise.resolve(this.#lease(bodyBytes, 0));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<BodyLease>();
    const waiter: Waiter = {
      bodyBytes,
      cost,
      since: performance.now(),
      resolve,
      reject,
      deadline: null,
      signal,
      onAbort: () => this.#leave(waiter, signal!.reason),
    };
    this.#queue.add(waiter);
    waiter.deadline = this.#deadlines.add(() => this.#leave(waiter, this.#busy()));
    signal?.addEventListener("abort", waiter.onAbort, { once: true });
    return promise;
  }

  /** What a body of `bodyBytes` is counted at, at `perByte`: at most the whole budget. */
  #cost(bodyBytes: number, perByte: number): number {
    return Math.min(this.bytes, bodyBytes * perByte);
  }

  #lease(bodyBytes: number, waitedMs: number): BodyLease {
    let cost = this.#cost(bodyBytes, MEMORY_PER_BODY_BYTE);
    this.#held += cost;
    /** Counts the body at `to` from now, if that is less (0: released). */
    const recount = (to: number) => {
      if (to >= cost) return;
      this.#held -= cost - to;
      cost = to;
      this.#admit();
    };
    return {
      waitedMs,
      resize: (size) => {
        bodyBytes = Math.min(bodyBytes, size);
        recount(this.#cost(bodyBytes, MEMORY_PER_BODY_BYTE));
      },
      shrink: () => recount(this.#cost(bodyBytes, KEPT_PER_BODY_BYTE)),
      release: () => recount(0),
    };
  }

  /** Lets in the bodies at the head of the queue while they fit. */
  #admit(): void {
    for (const waiter of this.#queue) {
      if (this.#held + waiter.cost > this.bytes) return;
      this.#queue.delete(waiter);
      this.#unwatch(waiter);
      waiter.resolve(this.#lease(waiter.bodyBytes, performance.now() - waiter.since));
    }
  }

  /** A waiter gone before its turn: the ones behind it may fit now. */
  #leave(waiter: Waiter, reason: unknown): void {
    if (!this.#queue.delete(waiter)) return;
    this.#unwatch(waiter);
    waiter.reject(reason);
    this.#admit();
  }

  #unwatch(waiter: Waiter): void {
    waiter.deadline?.cancel();
    waiter.signal?.removeEventListener("abort", waiter.onAbort);
  }

  #busy(): ProxyError {
    // A client told to come back when a waiting body would have given up is not sent straight
    // back into the same queue; the OpenAI SDKs wait up to 60 s on their own.
    const seconds = Math.min(60, Math.max(1, Math.ceil(this.#deadlines.ms / 1000)));
    return new ProxyError(
      503,
      `The proxy is busy with other large request bodies (MAX_BODY_MEMORY_MB, ${
        Math.round(this.bytes / 2 ** 20)
      } MB for them at once); this one waited ${
        this.#deadlines.ms / 1000
      } s (BODY_TIMEOUT_SECONDS). Try again in ${seconds} s.`,
      { type: "server_error", code: "server_busy", headers: { "retry-after": String(seconds) } },
    );
  }
}
