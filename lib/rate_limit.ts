/** @module Token buckets per key with an injectable clock and bounded memory; no timers. */
import { ProxyError } from "./errors.ts";

/** Options of a {@linkcode RateLimiter}. */
export interface RateLimiterOptions {
  /** Tokens added per minute, continuously. `0` disables the limiter: every take is allowed. */
  perMinute: number;
  /** Capacity of a bucket: how many requests may arrive at once. At least 1 when enabled. */
  burst: number;
  /** Most buckets kept; the least recently used is evicted first. Default: `10000`. */
  maxClients?: number;
  /** Clock in milliseconds. Default: `Date.now`. */
  now?: () => number;
}

/** The outcome of {@linkcode RateLimiter.take} or {@linkcode RateLimiter.peek}. */
export interface RateDecision {
  /** Whether the request may proceed. */
  allowed: boolean;
  /** Capacity of the bucket (the burst); `0` when the limiter is disabled. */
  limit: number;
  /** Whole tokens left after this decision, `0 <= remaining <= limit`. */
  remaining: number;
  /** Whole seconds until the bucket is full again; `0` when it is full. */
  resetSeconds: number;
  /** `0` when allowed; when refused, whole seconds (at least 1) until the request would succeed. */
  retryAfterSeconds: number;
}

/** Token units per token: one token is `60000` units, and a bucket gains `perMinute` units a ms. */
const UNITS = 60_000;
/** Buckets examined at the least recently used end on each take, to drop full idle ones. */
const OPPORTUNISTIC_SWEEP = 2;

interface Bucket {
  /** Token units at `updated`. */
  units: number;
  /** Clock value of the last refill, in ms. */
  updated: number;
}

/**
 * Token buckets keyed by client. Each bucket refills continuously at `perMinute / 60` tokens a
 * second up to `burst`. Memory is bounded: at most `maxClients` buckets, least recently used
 * evicted first, and buckets that have refilled to full are dropped (a missing bucket is a full
 * one, so dropping changes no decision). There are no timers: {@linkcode take} drops full idle
 * buckets opportunistically, and {@linkcode sweep} may be called from any existing interval.
 *
 * A single global bucket (such as one in front of Poe) is a limiter with `maxClients: 1` and a
 * constant key. In any 60-second window it lets through at most `burst + perMinute` requests, so
 * to stay under a hard limit of 500 a minute at 450 a minute, use `burst: 50`.
 *
 * @example
 * ```ts
 * const limiter = new RateLimiter({ perMinute: 60, burst: 20 });
 * const decision = limiter.take("203.0.113.7");
 * if (!decision.allowed) throw rateLimitError(decision);
 * ```
 */
export class RateLimiter {
  /** False when `perMinute` is 0: every take is allowed and nothing is tracked. */
  readonly enabled: boolean;
  /** Tokens added per minute. */
  readonly perMinute: number;
  /** Bucket capacity. */
  readonly burst: number;
  /** Most buckets kept. */
  readonly maxClients: number;
  #capacity: number;
  #now: () => number;
  /** Insertion order is recency order: the first entry is the least recently used. */
  #buckets = new Map<string, Bucket>();

  /** Validates `options`; throws a `RangeError` naming the bad value. */
  constructor(options: RateLimiterOptions) {
    const { perMinute, burst, maxClients = 10_000 } = options;
    if (!Number.isFinite(perMinute) || perMinute < 0) {
      throw new RangeError(`Rate limit per minute must be a number >= 0: got ${perMinute}`);
    }
    this.enabled = perMinute > 0;
    if (this.enabled && (!Number.isFinite(burst) || burst < 1)) {
      throw new RangeError(`Rate limit burst must be a number >= 1: got ${burst}`);
    }
    if (!Number.isInteger(maxClients) || maxClients < 1) {
      throw new RangeError(`Maximum tracked clients must be an integer >= 1: got ${maxClients}`);
    }
    this.perMinute = perMinute;
    this.burst = this.enabled ? burst : 0;
    this.maxClients = maxClients;
    this.#capacity = this.burst * UNITS;
    this.#now = options.now ?? Date.now;
  }

  /** Number of buckets currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes `cost` tokens (default 1) from the bucket of `key`, if it holds that many. A refused
   * take consumes nothing. A cost above the burst is always refused.
   */
  take(key: string, cost = 1): RateDecision {
    if (!Number.isFinite(cost) || cost < 0) {
      throw new RangeError(`Rate limit cost must be a number >= 0: got ${cost}`);
    }
    if (!this.enabled) return DISABLED;
    const now = this.#now();
    this.#sweepOldest(now, key);
    const bucket = this.#touch(key, now);
    const need = cost * UNITS;
    if (bucket.units >= need) {
      bucket.units -= need;
      return this.#decision(bucket.units, 0);
    }
    // Never satisfiable when cost > burst; report the time until the bucket is full.
    const missing = Math.min(need, this.#capacity) - bucket.units;
    return this.#decision(bucket.units, Math.max(1, this.#seconds(missing)));
  }

  /**
   * Takes `cost` tokens (default 1) from the bucket of `key` whether it holds them or not: for a
   * call that is made anyway. What it lacks is owed, up to a whole burst, and refills first: takes
   * are refused until it is repaid, so takes and charges together keep to the rate.
   */
  charge(key: string, cost = 1): void {
    if (!this.enabled || !(cost > 0)) return;
    const now = this.#now();
    this.#sweepOldest(now, key);
    const bucket = this.#touch(key, now);
    bucket.units = Math.max(-this.#capacity, bucket.units - cost * UNITS);
  }

  /**
   * Gives back `cost` tokens (default 1) taken from the bucket of `key` for a request that was
   * then refused elsewhere; never past the burst.
   */
  refund(key: string, cost = 1): void {
    const bucket = this.#buckets.get(key);
    if (!this.enabled || !bucket) return;
    bucket.units = Math.min(this.#capacity, this.#refilled(bucket, this.#now()) + cost * UNITS);
    bucket.updated = this.#now();
  }

  /** Whole seconds until the bucket of `key` holds a token again; 0 when it holds one. */
  waitSeconds(key: string): number {
    const bucket = this.enabled ? this.#buckets.get(key) : undefined;
    if (!bucket) return 0;
    const units = this.#refilled(bucket, this.#now());
    return units >= UNITS ? 0 : Math.max(1, this.#seconds(UNITS - units));
  }

  /** The state of the bucket of `key` without consuming, creating or touching it (for headers). */
  peek(key: string): RateDecision {
    if (!this.enabled) return DISABLED;
    const bucket = this.#buckets.get(key);
    const units = bucket ? this.#refilled(bucket, this.#now()) : this.#capacity;
    return this.#decision(units, 0);
  }

  /** Drops every bucket that has refilled to full. Returns how many were dropped. */
  sweep(): number {
    const now = this.#now();
    let dropped = 0;
    for (const [key, bucket] of this.#buckets) {
      if (this.#refilled(bucket, now) >= this.#capacity) {
        this.#buckets.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Forgets every bucket. */
  clear(): void {
    this.#buckets.clear();
  }

  /** Token units of `bucket` at `now`, without changing it. A clock that goes back adds nothing. */
  #refilled(bucket: Bucket, now: number): number {
    const elapsed = Math.max(0, now - bucket.updated);
    return Math.min(this.#capacity, bucket.units + elapsed * this.perMinute);
  }

  /** The bucket of `key`, refilled to `now` and moved to the most recently used end. */
  #touch(key: string, now: number): Bucket {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      bucket.units = this.#refilled(bucket, now);
      bucket.updated = now;
      this.#buckets.delete(key);
    } else {
      while (this.#buckets.size >= this.maxClients) {
        const oldest = this.#buckets.keys().next().value as string;
        this.#buckets.delete(oldest);
      }
      bucket = { units: this.#capacity, updated: now };
    }
    this.#buckets.set(key, bucket);
    return bucket;
  }

  /** Drops full buckets at the least recently used end; a few per call keeps takes O(1). */
  #sweepOldest(now: number, except: string): void {
    for (let i = 0; i < OPPORTUNISTIC_SWEEP; i++) {
      const first = this.#buckets.entries().next();
      if (first.done) return;
      const [key, bucket] = first.value;
      if (key === except || this.#refilled(bucket, now) < this.#capacity) return;
      this.#buckets.delete(key);
    }
  }

  /** Whole seconds, rounded up, for the bucket to gain `units`. */
  #seconds(units: number): number {
    return units <= 0 ? 0 : Math.ceil(units / this.perMinute / 1000);
  }

  #decision(units: number, retryAfterSeconds: number): RateDecision {
    return {
      allowed: retryAfterSeconds === 0,
      limit: this.burst,
      remaining: Math.max(0, Math.floor(units / UNITS)),
      resetSeconds: this.#seconds(this.#capacity - units),
      retryAfterSeconds,
    };
  }
}

const DISABLED: RateDecision = Object.freeze({
  allowed: true,
  limit: 0,
  remaining: 0,
  resetSeconds: 0,
  retryAfterSeconds: 0,
});

/**
 * The `x-ratelimit-*-requests` response headers of a decision, plus `Retry-After` when it was
 * refused. The reset is a duration in OpenAI's style (`"20s"`, `"1m5s"`). Returns no headers for
 * a disabled limiter (`limit` 0).
 */
export function rateLimitHeaders(decision: RateDecision): Record<string, string> {
  if (decision.limit === 0) return {};
  const headers: Record<string, string> = {
    "x-ratelimit-limit-requests": String(decision.limit),
    "x-ratelimit-remaining-requests": String(decision.remaining),
    "x-ratelimit-reset-requests": formatDuration(decision.resetSeconds),
  };
  if (!decision.allowed) headers["retry-after"] = String(decision.retryAfterSeconds);
  return headers;
}

/** Options of {@linkcode rateLimitError}. */
export interface RateLimitErrorOptions {
  /** Message shown to the client. Default: a message that says when to retry. */
  message?: string;
  /** Machine-readable code. Default: `"rate_limit_exceeded"`. */
  code?: string;
}

/** The 429 `rate_limit_error` for a refused decision, carrying its headers and `Retry-After`. */
export function rateLimitError(
  decision: RateDecision,
  options: RateLimitErrorOptions = {},
): ProxyError {
  const seconds = Math.max(1, decision.retryAfterSeconds);
  const message = options.message ??
    `Rate limit reached for requests: limit ${decision.limit}, retry after ${seconds} s.`;
  return new ProxyError(429, message, {
    type: "rate_limit_error",
    code: options.code ?? "rate_limit_exceeded",
    headers: { ...rateLimitHeaders(decision), "retry-after": String(seconds) },
  });
}

/** Whole seconds as a Go-style duration: `"0s"`, `"45s"`, `"1m5s"`, `"2h0m0s"`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${m}m${s % 60}s`;
  if (m > 0) return `${m}m${s % 60}s`;
  return `${s}s`;
}
