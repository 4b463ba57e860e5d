/** @module Tests of one call's tries: retries and their backoff, the 400 ladder, final errors. */
import assert from "node:assert/strict";
import { ProxyError } from "../lib/errors.ts";
import { BodyDrains } from "../lib/body_drain.ts";
import type { ChatRequest } from "../lib/openai_types.ts";
import type { SendOptions } from "../lib/upstream_call.ts";
import { Tries } from "../lib/upstream_tries.ts";

/** Tries of `body` with `retries`, whose sleeps are only recorded in `slept`. */
function tries(body: ChatRequest, retries: number, options: Partial<SendOptions> = {}) {
  const slept: number[] = [];
  const drains = new BodyDrains();
  const rules = {
    retries,
    sleep: (ms: number) => {
      slept.push(ms);
      return Promise.resolve();
    },
    random: () => 0,
    drains,
  };
  const signal = new AbortController().signal;
  return { tries: new Tries(body, { signal, ...options }, rules), slept, drains };
}

const request: ChatRequest = { model: "GPT-X", messages: [], max_tokens: 100 };

function poeAnswer(status: number, error: object, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify({ error }), { status, headers });
}

Deno.test("Tries.retry: backs off and sets the reason while retries are left, then throws final", async () => {
  const t = tries(request, 2);
  const failure = { error: new ProxyError(502, "down"), retry: true };
  await t.tries.retry(failure, "retry-network");
  assert.equal(t.tries.reason, "retry-network");
  await t.tries.retry(failure, "retry-html");
  assert.equal(t.tries.reason, "retry-html");
  // Exponential from 250 ms, half of each step at least (random: 0).
  assert.deepEqual(t.slept, [125, 250]);
  await assert.rejects(t.tries.retry(failure, "retry-network"), (err) => err === failure.error);
  assert.equal(failure.error.headers["x-should-retry"], "false");
  assert.equal(t.tries.body, request, "the body is sent again as it was");
  t.drains.close();
});

Deno.test("Tries.retry: a failure not worth another try is thrown at once", async () => {
  const t = tries(request, 2);
  const error = new ProxyError(502, "held");
  await assert.rejects(t.tries.retry({ error, retry: false }, "retry-network"), (e) => e === error);
  assert.deepEqual(t.slept, []);
  assert.equal(error.headers["x-should-retry"], "false");
  t.drains.close();
});

Deno.test("Tries.refused: the 400 ladder's variants in turn, then Poe's 400", async () => {
  const t = tries(request, 2);
  const reasons = [];
  for (let i = 0; i < 3; i++) {
    await t.tries.refused(poeAnswer(400, { message: "bad", param: null }));
    reasons.push(t.tries.reason);
  }
  assert.deepEqual(reasons, ["drop-max-tokens", "lowercase-model", "both"]);
  assert.deepEqual(t.tries.body, { model: "gpt-x", messages: [] });
  await assert.rejects(
    t.tries.refused(poeAnswer(400, { message: "still bad" })),
    (err) => err instanceof ProxyError && err.status === 400 && /still bad/.test(err.message),
  );
  assert.deepEqual(t.slept, [], "a ladder step does not wait");
  t.drains.close();
});

Deno.test("Tries.refused: a 400 on another field, or a variant not allowed, ends the tries", async () => {
  const other = tries(request, 2);
  await assert.rejects(
    other.tries.refused(poeAnswer(400, { message: "no", param: "reasoning_effort" })),
    (err) => err instanceof ProxyError && err.param === "reasoning_effort",
  );
  assert.equal(other.tries.reason, "first");
  other.drains.close();
  // Only the variants the caller allows: none keeps max_tokens but the lowercased model.
  const capped = tries(request, 2, { allowVariant: (body) => "max_tokens" in body });
  await capped.tries.refused(poeAnswer(400, { message: "bad" }));
  assert.equal(capped.tries.reason, "lowercase-model");
  await assert.rejects(capped.tries.refused(poeAnswer(400, { message: "bad" })));
  capped.drains.close();
  const refused = tries(request, 2, { mayRetry: () => false });
  await assert.rejects(refused.tries.refused(poeAnswer(400, { message: "bad" })));
  refused.drains.close();
});

Deno.test("Tries.refused: a transient status waits out Retry-After; a longer one is passed on", async () => {
  const t = tries(request, 2);
  await t.tries.refused(poeAnswer(503, { message: "busy" }, { "retry-after": "2" }));
  assert.equal(t.tries.reason, "retry-503");
  assert.deepEqual(t.slept, [2000]);
  await assert.rejects(
    t.tries.refused(poeAnswer(429, { message: "slow down" }, { "retry-after": "120" })),
    (err) =>
      err instanceof ProxyError && err.status === 429 &&
      err.headers["retry-after"] === "120" && err.headers["x-should-retry"] === "false",
  );
  // Out of retries: Poe's error, final.
  await t.tries.refused(poeAnswer(502, { message: "bad gateway" }));
  await assert.rejects(
    t.tries.refused(poeAnswer(502, { message: "bad gateway" })),
    (err) =>
      err instanceof ProxyError && err.status === 502 && err.headers["x-should-retry"] === "false",
  );
  assert.equal(t.slept.length, 2);
  t.drains.close();
});

Deno.test("Tries.final: only with no retries is a transient failure left to the client's retries", () => {
  const none = tries(request, 0).tries;
  assert.equal(none.final(new ProxyError(503, "busy"), true).headers["x-should-retry"], undefined);
  assert.equal(none.final(new ProxyError(504, "late"), false).headers["x-should-retry"], "false");
  const some = tries(request, 2).tries;
  assert.equal(some.final(new ProxyError(503, "busy"), true).headers["x-should-retry"], "false");
  // A status the SDKs do not retry needs no header.
  assert.equal(some.final(new ProxyError(400, "bad"), false).headers["x-should-retry"], undefined);
});
