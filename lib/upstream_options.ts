/** @module The Poe client's options, and their defaults, resolved once when the client is built. */
import type { Logger } from "./log.ts";
import { sleep } from "./deadlines.ts";

/** Options of {@linkcode UpstreamClient}. */
export interface UpstreamOptions {
  /** Poe's base URL without a trailing slash, e.g. `https://api.poe.com`. */
  baseUrl: string;
  /** The Poe key; `null` sends no Authorization (the request then fails at Poe with 401). */
  apiKey: string | null;
  /** More tries on transient failures. Default: 2. */
  retries?: number;
  /**
   * How long to wait for a TCP connection before calling Poe unreachable. Default: 10 s. A network
   * failure within the lesser of this and 1 s is retried; a later one, not to Poe's connection,
   * is a connection that broke while Poe held the call, and is not.
   */
  connectTimeoutMs?: number;
  /**
   * How long to wait for Poe's response headers, and then for the whole body of an answer to a
   * non-streamed request. Default: 300 s.
   */
  firstByteTimeoutMs?: number;
  /** The same, for calls marked `slow` (image, video and audio models). Default: 900 s. */
  slowFirstByteTimeoutMs?: number;
  /**
   * How long a JSON answer to a streamed request may stay silent once its body began (for `slow`
   * calls: `slowFirstByteTimeoutMs`). Default: 120 s.
   */
  idleTimeoutMs?: number;
  /**
   * How long a stream's opening is read for an error before the answer is passed on as it is
   * (the client then gets its headers). Default: 5 s.
   */
  streamStartMs?: number;
  /** `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
  /** Sleeps that end early when the signal aborts. Default: timers. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Randomness for jitter, in [0, 1). Default: `Math.random`. */
  random?: () => number;
  /** Where attempts are logged. */
  logger?: Logger;
  /** The `User-Agent` sent to Poe. */
  userAgent?: string;
}

/** {@linkcode UpstreamOptions} with every default filled in. */
export type UpstreamSettings = Required<Omit<UpstreamOptions, "logger" | "apiKey">> & {
  logger?: Logger;
  apiKey: string | null;
};

/** The settings `options` stand for: each option left out, or given as `undefined`, at its default. */
export function upstreamSettings(options: UpstreamOptions): UpstreamSettings {
  // An option given as `undefined` keeps its default rather than erasing it.
  const given = Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as UpstreamOptions;
  return {
    retries: 2,
    connectTimeoutMs: 10_000,
    firstByteTimeoutMs: 300_000,
    slowFirstByteTimeoutMs: 900_000,
    idleTimeoutMs: 120_000,
    fetch: globalThis.fetch,
    sleep,
    random: Math.random,
    userAgent: "poe-proxy",
    streamStartMs: 5_000,
    ...given,
  };
}
