/** @module Tests of the retry ladder's rules: transient statuses, waits, and the 400 variants. */
import assert from "node:assert/strict";
import {
  backoffMs,
  LADDER_PARAMS,
  LADDER_STEPS,
  ladderMayCure,
  ladderVariants,
  MAX_WAIT_SECONDS,
  parseRetryAfter,
  refusedField,
  retryAfterOf,
  TRANSIENT,
} from "../lib/retry_ladder.ts";
import type { ChatRequest } from "../lib/openai_types.ts";

const messages = [{ role: "user", content: "hi" }];

function reasons(body: ChatRequest): string[] {
  return ladderVariants(body).map((v) => v.reason);
}

Deno.test("TRANSIENT: overloads and gateway failures are retried; gateway timeouts are not", () => {
  for (const status of [408, 429, 500, 502, 503, 520, 521, 522, 523, 529]) {
    assert.ok(TRANSIENT.has(status), String(status));
  }
  // The model may have run, and been billed, behind a gateway that gave up waiting.
  for (const status of [504, 524, 400, 401, 402, 404, 413]) {
    assert.ok(!TRANSIENT.has(status), String(status));
  }
  assert.equal(MAX_WAIT_SECONDS, 30);
});

Deno.test("ladderVariants: drop the token limit, then lowercase the model, then both", () => {
  const body: ChatRequest = { model: "GPT-4o", messages, max_tokens: 100, stream: true };
  const variants = ladderVariants(body);
  assert.deepEqual(variants, [
    { reason: "drop-max-tokens", body: { model: "GPT-4o", messages, stream: true } },
    {
      reason: "lowercase-model",
      body: { model: "gpt-4o", messages, max_tokens: 100, stream: true },
    },
    { reason: "both", body: { model: "gpt-4o", messages, stream: true } },
  ]);
  assert.deepEqual(body, { model: "GPT-4o", messages, max_tokens: 100, stream: true });
});

Deno.test("ladderVariants: a 400 naming max_tokens tries max_completion_tokens, same value, first", () => {
  const body: ChatRequest = { model: "GPT-5", messages, max_tokens: 300 };
  const variants = ladderVariants(body, "max_tokens");
  assert.deepEqual(variants, [
    {
      reason: "max-completion-tokens",
      body: { model: "GPT-5", messages, max_completion_tokens: 300 },
    },
    { reason: "drop-max-tokens", body: { model: "GPT-5", messages } },
    { reason: "lowercase-model", body: { model: "gpt-5", messages, max_tokens: 300 } },
    { reason: "both", body: { model: "gpt-5", messages } },
  ]);
  // The most there can be: what bounds how many calls a request makes, and how long it may hold
  // points.
  assert.equal(variants.length, LADDER_STEPS);
  assert.deepEqual(body, { model: "GPT-5", messages, max_tokens: 300 });
  // Only under that name: a 400 naming nothing, or the other field, keeps the order it had.
  assert.deepEqual(reasons(body), ["drop-max-tokens", "lowercase-model", "both"]);
  assert.deepEqual(ladderVariants(body, "max_completion_tokens"), ladderVariants(body));
});

Deno.test("ladderVariants: no renaming when max_completion_tokens is set already, or max_tokens is not", () => {
  const both: ChatRequest = { model: "m", messages, max_tokens: 1, max_completion_tokens: 2 };
  assert.deepEqual(reasons(both), ["drop-max-tokens"]);
  assert.deepEqual(ladderVariants(both, "max_tokens"), ladderVariants(both));
  const nullLimit: ChatRequest = { model: "m", messages, max_tokens: null as unknown as number };
  assert.deepEqual(reasons({ ...nullLimit }), ["drop-max-tokens"]);
  assert.deepEqual(ladderVariants(nullLimit, "max_tokens"), ladderVariants(nullLimit));
  // A null max_completion_tokens sets no limit: the rename takes its place.
  const [renamed] = ladderVariants(
    { model: "m", messages, max_tokens: 7, max_completion_tokens: null as unknown as number },
    "max_tokens",
  );
  assert.deepEqual(renamed, {
    reason: "max-completion-tokens",
    body: { model: "m", messages, max_completion_tokens: 7 },
  });
});

Deno.test("ladderVariants: a 400 naming the model skips the steps that send it as it was", () => {
  const body: ChatRequest = { model: "GPT-4o", messages, max_tokens: 100 };
  assert.deepEqual(ladderVariants(body, "model"), [
    { reason: "lowercase-model", body: { model: "gpt-4o", messages, max_tokens: 100 } },
    { reason: "both", body: { model: "gpt-4o", messages } },
  ]);
  assert.deepEqual(reasons({ model: "gpt-4o", messages, max_tokens: 5 }), ["drop-max-tokens"]);
  assert.deepEqual(ladderVariants({ model: "gpt-4o", messages, max_tokens: 5 }, "model"), []);
});

Deno.test("ladderVariants: max_completion_tokens is dropped along with max_tokens", () => {
  const [drop] = ladderVariants({
    model: "m",
    messages,
    max_tokens: 1,
    max_completion_tokens: 2,
  });
  assert.deepEqual(drop, { reason: "drop-max-tokens", body: { model: "m", messages } });
  assert.deepEqual(reasons({ model: "m", messages, max_completion_tokens: 2 }), [
    "drop-max-tokens",
  ]);
});

Deno.test("ladderVariants: a variant that changes nothing, or repeats another, is left out", () => {
  assert.deepEqual(reasons({ model: "GPT-4o", messages }), ["lowercase-model"]);
  assert.deepEqual(reasons({ model: "gpt-4o", messages, max_tokens: 5 }), ["drop-max-tokens"]);
  assert.deepEqual(reasons({ model: "gpt-4o", messages }), []);
});

Deno.test("LADDER_PARAMS: exactly the fields the ladder's variants change", () => {
  const both: ChatRequest = { model: "GPT-4o", messages, max_tokens: 1, max_completion_tokens: 2 };
  const one: ChatRequest = { model: "GPT-4o", messages, max_tokens: 1 };
  const changed = new Set<string>();
  for (const named of [null, "max_tokens", "model"]) {
    for (const body of [both, one]) {
      for (const { body: variant } of ladderVariants(body, named)) {
        for (const key of new Set([...Object.keys(body), ...Object.keys(variant)])) {
          if (body[key] !== variant[key]) changed.add(key);
        }
      }
    }
  }
  assert.deepEqual([...changed].sort(), [...LADDER_PARAMS].sort());
});

Deno.test("parseRetryAfter: whole and fractional seconds, trimmed", () => {
  assert.equal(parseRetryAfter("3"), 3);
  assert.equal(parseRetryAfter(" 2 "), 2);
  assert.equal(parseRetryAfter("1.5"), 1.5);
  assert.equal(parseRetryAfter("0"), 0);
});

Deno.test("parseRetryAfter: an HTTP date is the seconds until it, and 0 once past", () => {
  const at = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
  assert.equal(parseRetryAfter("Wed, 21 Oct 2026 07:28:00 GMT", at - 45_000), 45);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2026 07:28:00 GMT", at + 10_000), 0);
  // RFC 9110's obsolete forms are still HTTP dates.
  assert.equal(parseRetryAfter("Wednesday, 21-Oct-26 07:28:00 GMT", at - 45_000), 45);
  const asctime = Date.parse("Wed Oct 21 07:28:00 2026"); // no zone: local time
  assert.equal(parseRetryAfter("Wed Oct 21 07:28:00 2026", asctime - 45_000), 45);
});

Deno.test("parseRetryAfter: missing or unreadable values are null", () => {
  // "-1", "1,5" and "2026-01-01" are dates to V8's lenient parser: read as long past, they would be 0.
  const values = [null, "", "soon", "1e3", "Infinity", "3 s", "0x10", "Mon, 99 Foo 2020"];
  for (const value of [...values, "-1", "1,5", "2026-01-01", "12 30"]) {
    assert.equal(parseRetryAfter(value), null, JSON.stringify(value));
  }
});

Deno.test("retryAfterOf: Retry-After first, else retry-after-ms, else null", () => {
  const of = (headers: Record<string, string>, now?: number) =>
    retryAfterOf(new Response(null, { status: 429, headers }), now);
  assert.equal(of({ "retry-after": "5", "retry-after-ms": "100" }), 5);
  assert.equal(of({ "retry-after-ms": "2500" }), 2.5);
  assert.equal(of({ "retry-after": "soon", "retry-after-ms": "100" }), 0.1);
  assert.equal(of({ "retry-after-ms": "-5" }), null);
  assert.equal(of({ "retry-after-ms": "abc" }), null);
  assert.equal(of({ "retry-after-ms": "Infinity" }), null);
  assert.equal(of({ "x-ratelimit-reset-requests": "10" }), null);
  assert.equal(of({}), null);
  const at = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
  assert.equal(of({ "retry-after": "Wed, 21 Oct 2026 07:28:00 GMT" }, at - 2_000), 2);
});

Deno.test("backoffMs: Poe's Retry-After, when it said one, even 0", () => {
  const random = () => {
    throw new Error("no jitter when Poe said how long");
  };
  assert.equal(backoffMs(0, { retryAfterSeconds: 2, random }), 2000);
  assert.equal(backoffMs(3, { retryAfterSeconds: 0, random }), 0);
});

Deno.test("backoffMs: doubles from 250 ms, between half the ceiling and the ceiling", () => {
  const at = (n: number, r: number) => backoffMs(n, { retryAfterSeconds: null, random: () => r });
  assert.deepEqual([0, 1, 2, 3].map((n) => at(n, 0)), [125, 250, 500, 1000]);
  assert.deepEqual([0, 1, 2, 3].map((n) => at(n, 0.5)), [187.5, 375, 750, 1500]);
  assert.ok(at(0, 0.999) < 250);
});

Deno.test("refusedField: Poe's param, else a field of the request its message names; ladderMayCure", () => {
  const body = { model: "GPT-4o", messages: [], max_tokens: 9, top_k: 5 } as unknown as ChatRequest;
  const facts = (message: string, param: string | null = null, code: string | null = null) => ({
    message,
    param,
    code,
  });
  assert.equal(refusedField(facts("anything", "temperature"), body), "temperature");
  assert.equal(refusedField(facts("top_k is not supported by this model."), body), "top_k");
  assert.equal(refusedField(facts("'max_tokens' is too large: 9."), body), "max_tokens");
  // A full stop after the name ends the sentence; a dotted path is another field.
  assert.equal(
    refusedField(facts("Unrecognized request argument supplied: max_tokens."), body),
    "max_tokens",
  );
  assert.equal(refusedField(facts("Bad body.max_tokens.value here"), body), null);
  // A field the request does not carry, a word inside another, or the model: not named.
  assert.equal(refusedField(facts("seed is not supported."), body), null);
  assert.equal(refusedField(facts("my_top_k_value is odd."), body), null);
  assert.equal(refusedField(facts("This model does not support it."), body), null);
  // A plain word is a field only when quoted; a name with signs in it is read as it is.
  const plain = { ...body, n: 1, user: "u", "(x": 1 } as unknown as ChatRequest;
  assert.equal(refusedField(facts("Too long: the user must lower it; n/a."), plain), null);
  assert.equal(refusedField(facts("Unsupported parameter: 'n'."), plain), "n");
  assert.equal(refusedField(facts("Unsupported parameter: '(x' is not supported."), plain), "(x");
  assert.equal(refusedField(facts("Unsupported parameter: `user`."), plain), "user");
  assert.equal(ladderMayCure(facts("x"), null), true);
  assert.equal(ladderMayCure(facts("x"), "max_tokens"), true);
  assert.equal(ladderMayCure(facts("x"), "top_k"), false);
  assert.equal(ladderMayCure(facts("x", "model", "unsupported_feature_for_model"), "model"), false);
});
