import assert from "node:assert/strict";
import {
  formatDuration,
  type RateDecision,
  RateLimiter,
  rateLimitError,
  rateLimitHeaders,
} from "../lib/rate_limit.ts";

/** A clock that only moves when told to. */
function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function takeN(limiter: RateLimiter, key: string, n: number): RateDecision[] {
  return Array.from({ length: n }, () => limiter.take(key));
}

Deno.test("RateLimiter.take allows a burst, then refuses with retryAfter", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 3, now: clock.now });
  const [a, b, c] = takeN(limiter, "k", 3);
  assert.deepEqual(a, {
    allowed: true,
    limit: 3,
    remaining: 2,
    resetSeconds: 1,
    retryAfterSeconds: 0,
  });
  assert.equal(b.remaining, 1);
  assert.deepEqual(c, {
    allowed: true,
    limit: 3,
    remaining: 0,
    resetSeconds: 3,
    retryAfterSeconds: 0,
  });
  const refused = limiter.take("k");
  assert.deepEqual(refused, {
    allowed: false,
    limit: 3,
    remaining: 0,
    resetSeconds: 3,
    retryAfterSeconds: 1,
  });
});

Deno.test("RateLimiter.charge takes what the bucket lacks as a debt, repaid before any take", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 2, now: clock.now });
  limiter.charge("k");
  assert.equal(limiter.take("k").allowed, true);
  assert.equal(limiter.take("k").allowed, false, "one charge and one take: the burst of 2 is gone");
  // Charged anyway: two owed, refilled at a token a second before a take passes again.
  limiter.charge("k");
  limiter.charge("k");
  const owed = limiter.take("k");
  assert.equal(owed.allowed, false);
  assert.equal(owed.retryAfterSeconds, 3);
  assert.equal(owed.remaining, 0);
  clock.advance(2_000);
  assert.equal(limiter.take("k").allowed, false);
  clock.advance(1_000);
  assert.equal(limiter.take("k").allowed, true);
  // The debt stops at a whole burst, however many calls are charged.
  for (let i = 0; i < 100; i++) limiter.charge("k");
  clock.advance(2_000);
  assert.equal(limiter.take("k").allowed, false);
  clock.advance(1_000);
  assert.equal(limiter.take("k").allowed, true);
  const off = new RateLimiter({ perMinute: 0, burst: 1 });
  off.charge("k");
  assert.equal(off.take("k").allowed, true);
});

Deno.test("RateLimiter.take refills continuously at perMinute / 60 a second", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 2, now: clock.now });
  takeN(limiter, "k", 2);
  clock.advance(999);
  const early = limiter.take("k");
  assert.equal(early.allowed, false);
  assert.equal(early.retryAfterSeconds, 1);
  clock.advance(1);
  assert.equal(limiter.take("k").allowed, true);
  assert.equal(limiter.take("k").allowed, false);
  // Half a token accumulates and is not lost by a refused take.
  clock.advance(500);
  assert.equal(limiter.take("k").allowed, false);
  clock.advance(500);
  assert.equal(limiter.take("k").allowed, true);
});

Deno.test("RateLimiter.take retryAfter rounds up to whole seconds, at least 1", () => {
  const clock = fakeClock();
  // 6 a minute: one token every 10 s.
  const limiter = new RateLimiter({ perMinute: 6, burst: 1, now: clock.now });
  assert.equal(limiter.take("k").allowed, true);
  assert.equal(limiter.take("k").retryAfterSeconds, 10);
  clock.advance(2_500);
  assert.equal(limiter.take("k").retryAfterSeconds, 8);
  clock.advance(7_499);
  assert.equal(limiter.take("k").retryAfterSeconds, 1);
  clock.advance(1);
  assert.equal(limiter.take("k").allowed, true);
});

Deno.test("RateLimiter.take never exceeds burst after a long idle", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 5, now: clock.now });
  takeN(limiter, "k", 5);
  clock.advance(24 * 3600_000);
  const decisions = takeN(limiter, "k", 6);
  assert.deepEqual(decisions.map((d) => d.allowed), [true, true, true, true, true, false]);
  assert.equal(decisions[0].remaining, 4);
});

Deno.test("RateLimiter.take keeps keys independent", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 1, now: clock.now });
  assert.equal(limiter.take("a").allowed, true);
  assert.equal(limiter.take("a").allowed, false);
  assert.equal(limiter.take("b").allowed, true);
});

Deno.test("RateLimiter.take with a cost consumes several tokens; over burst always refused", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 5, now: clock.now });
  assert.equal(limiter.take("k", 3).remaining, 2);
  const refused = limiter.take("k", 3);
  assert.equal(refused.allowed, false);
  assert.equal(refused.remaining, 2);
  assert.equal(refused.retryAfterSeconds, 1);
  const tooBig = limiter.take("other", 6);
  assert.equal(tooBig.allowed, false);
  assert.ok(tooBig.retryAfterSeconds >= 1);
  assert.throws(() => limiter.take("k", -1), RangeError);
  assert.throws(() => limiter.take("k", NaN), RangeError);
});

Deno.test("RateLimiter.take is unaffected by a clock that goes backwards", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 1, now: clock.now });
  limiter.take("k");
  clock.advance(-60_000);
  assert.equal(limiter.take("k").allowed, false);
  clock.advance(1_000);
  assert.equal(limiter.take("k").allowed, true);
});

Deno.test("RateLimiter with perMinute 0 is disabled and always allows", () => {
  const limiter = new RateLimiter({ perMinute: 0, burst: 0 });
  assert.equal(limiter.enabled, false);
  for (let i = 0; i < 1000; i++) assert.equal(limiter.take(`k${i % 3}`).allowed, true);
  assert.equal(limiter.size, 0);
  assert.deepEqual(limiter.peek("k"), {
    allowed: true,
    limit: 0,
    remaining: 0,
    resetSeconds: 0,
    retryAfterSeconds: 0,
  });
  assert.deepEqual(rateLimitHeaders(limiter.take("k")), {});
});

Deno.test("RateLimiter constructor rejects invalid options with the value", () => {
  assert.throws(() => new RateLimiter({ perMinute: -1, burst: 1 }), /got -1/);
  assert.throws(() => new RateLimiter({ perMinute: 60, burst: 0 }), /burst.*got 0/);
  assert.throws(() => new RateLimiter({ perMinute: 60, burst: 1, maxClients: 0 }), /got 0/);
  assert.throws(() => new RateLimiter({ perMinute: Infinity, burst: 1 }), RangeError);
});

Deno.test("RateLimiter.peek reports without consuming or creating a bucket", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 4, now: clock.now });
  assert.deepEqual(limiter.peek("new"), {
    allowed: true,
    limit: 4,
    remaining: 4,
    resetSeconds: 0,
    retryAfterSeconds: 0,
  });
  assert.equal(limiter.size, 0);
  limiter.take("k");
  assert.equal(limiter.peek("k").remaining, 3);
  assert.equal(limiter.peek("k").remaining, 3);
  clock.advance(1_000);
  assert.equal(limiter.peek("k").remaining, 4);
  assert.equal(limiter.peek("k").resetSeconds, 0);
});

Deno.test("RateLimiter evicts the least recently used bucket at maxClients", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 1, maxClients: 3, now: clock.now });
  limiter.take("a");
  limiter.take("b");
  limiter.take("c");
  // Touch "a" so that "b" is now the least recently used.
  limiter.take("a");
  limiter.take("d");
  assert.equal(limiter.size, 3);
  // "b" was evicted: it gets a fresh, full bucket; "a", "c", "d" are still empty.
  assert.equal(limiter.peek("b").remaining, 1);
  assert.equal(limiter.peek("a").remaining, 0);
  assert.equal(limiter.peek("c").remaining, 0);
  assert.equal(limiter.peek("d").remaining, 0);
});

Deno.test("RateLimiter.sweep drops buckets that refilled to full and keeps the rest", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 2, now: clock.now });
  limiter.take("idle");
  clock.advance(500);
  limiter.take("busy");
  limiter.take("busy");
  assert.equal(limiter.sweep(), 0);
  clock.advance(500);
  // "idle" is full again (1 token in 1 s); "busy" has refilled half a token of 2.
  assert.equal(limiter.sweep(), 1);
  assert.equal(limiter.size, 1);
  assert.equal(limiter.peek("busy").remaining, 0);
  clock.advance(1_000);
  assert.equal(limiter.peek("busy").remaining, 1);
  assert.equal(limiter.sweep(), 0);
  clock.advance(500);
  assert.equal(limiter.sweep(), 1);
  assert.equal(limiter.size, 0);
});

Deno.test("RateLimiter.take drops full idle buckets opportunistically", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 1, now: clock.now });
  for (let i = 0; i < 100; i++) limiter.take(`k${i}`);
  assert.equal(limiter.size, 100);
  clock.advance(1_000);
  // Each take drops up to two full buckets at the old end and adds at most one.
  for (let i = 0; i < 100; i++) limiter.take("steady");
  assert.ok(limiter.size <= 2, `size ${limiter.size}`);
});

Deno.test("RateLimiter memory stays bounded under a flood of distinct keys", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 20, maxClients: 1000, now: clock.now });
  for (let i = 0; i < 200_000; i++) {
    limiter.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:${i}`);
    if (i % 1000 === 0) clock.advance(1);
  }
  assert.ok(limiter.size <= 1000, `size ${limiter.size}`);
  assert.equal(limiter.size, 1000);
  // A legitimate client is still limited correctly during the flood.
  const own = takeN(limiter, "me", 21);
  assert.equal(own.filter((d) => d.allowed).length, 20);
});

Deno.test("RateLimiter as a global bucket keyed by a constant", () => {
  const clock = fakeClock();
  const poe = new RateLimiter({ perMinute: 450, burst: 50, maxClients: 1, now: clock.now });
  let allowed = 0;
  // 1000 requests spread over one minute: at most burst + perMinute pass.
  for (let i = 0; i < 1000; i++) {
    if (poe.take("poe").allowed) allowed++;
    clock.advance(60);
  }
  assert.ok(allowed <= 500, `allowed ${allowed}`);
  assert.ok(allowed >= 490, `allowed ${allowed}`);
  assert.equal(poe.size, 1);
});

Deno.test("rateLimitHeaders gives x-ratelimit headers and Retry-After when refused", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 1, burst: 2, now: clock.now });
  assert.deepEqual(rateLimitHeaders(limiter.take("k")), {
    "x-ratelimit-limit-requests": "2",
    "x-ratelimit-remaining-requests": "1",
    "x-ratelimit-reset-requests": "1m0s",
  });
  limiter.take("k");
  assert.deepEqual(rateLimitHeaders(limiter.take("k")), {
    "x-ratelimit-limit-requests": "2",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "2m0s",
    "retry-after": "60",
  });
});

Deno.test("rateLimitError is a 429 rate_limit_error with Retry-After", () => {
  const clock = fakeClock();
  const limiter = new RateLimiter({ perMinute: 60, burst: 1, now: clock.now });
  limiter.take("k");
  const err = rateLimitError(limiter.take("k"));
  assert.equal(err.status, 429);
  assert.equal(err.type, "rate_limit_error");
  assert.equal(err.code, "rate_limit_exceeded");
  assert.equal(err.headers["retry-after"], "1");
  assert.match(err.message, /retry after 1 s/);
  const custom = rateLimitError(limiter.take("k"), { message: "Poe is busy." });
  assert.equal(custom.message, "Poe is busy.");
});

Deno.test("formatDuration writes Go-style durations", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(45), "45s");
  assert.equal(formatDuration(65), "1m5s");
  assert.equal(formatDuration(7200), "2h0m0s");
  assert.equal(formatDuration(0.2), "1s");
});
