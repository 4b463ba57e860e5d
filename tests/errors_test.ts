/** @module ProxyError, typeForStatus and errorResponse: every failure as an OpenAI-shaped body. */
import assert from "node:assert/strict";
import { errorResponse, ProxyError, typeForStatus } from "../lib/errors.ts";

Deno.test("ProxyError: defaults derive the type from the status; param, code null; no headers", () => {
  const err = new ProxyError(404, "The model `x` does not exist.");
  assert.ok(err instanceof Error);
  assert.equal(err.name, "ProxyError");
  assert.equal(err.message, "The model `x` does not exist.");
  assert.equal(err.status, 404);
  assert.equal(err.type, "invalid_request_error");
  assert.equal(err.param, null);
  assert.equal(err.code, null);
  assert.deepEqual(err.headers, {});
  assert.equal(err.cause, undefined);
});

Deno.test("ProxyError: options set type, param, code, headers and keep the cause", () => {
  const cause = new TypeError("boom");
  const err = new ProxyError(400, "messages must be an array", {
    type: "custom_error",
    param: "messages",
    code: "invalid_type",
    headers: { "retry-after": "3" },
    cause,
  });
  assert.equal(err.type, "custom_error");
  assert.equal(err.param, "messages");
  assert.equal(err.code, "invalid_type");
  assert.deepEqual(err.headers, { "retry-after": "3" });
  assert.equal(err.cause, cause);
});

Deno.test("ProxyError.toBody is exactly OpenAI's {error: {message, type, param, code}}", () => {
  const body = new ProxyError(429, "Slow down.", { code: "rate_limited", cause: "secret" })
    .toBody();
  assert.deepEqual(body, {
    error: { message: "Slow down.", type: "rate_limit_error", param: null, code: "rate_limited" },
  });
  // Nothing else goes out: not the cause, not the status, not the headers.
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.deepEqual(Object.keys(body.error), ["message", "type", "param", "code"]);
});

Deno.test("typeForStatus maps each status to the type OpenAI's clients expect", () => {
  const cases: [number, string][] = [
    [400, "invalid_request_error"],
    [401, "authentication_error"],
    [402, "insufficient_credits"],
    [403, "permission_error"],
    [404, "invalid_request_error"],
    [405, "invalid_request_error"],
    [408, "timeout_error"],
    [409, "invalid_request_error"],
    [413, "request_too_large"],
    [415, "invalid_request_error"],
    [422, "invalid_request_error"],
    [429, "rate_limit_error"],
    [499, "invalid_request_error"],
    [500, "server_error"],
    [501, "server_error"],
    [502, "upstream_error"],
    [503, "upstream_error"],
    [504, "timeout_error"],
    [529, "overloaded_error"],
    [599, "server_error"],
  ];
  for (const [status, type] of cases) assert.equal(typeForStatus(status), type, String(status));
});

Deno.test("errorResponse: a ProxyError keeps its status, body and headers, as JSON", async () => {
  const err = new ProxyError(429, "Too many requests.", {
    code: "rate_limited",
    headers: { "Retry-After": "7" },
  });
  const res = errorResponse(err, { "x-request-id": "r1" });
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("retry-after"), "7");
  assert.equal(res.headers.get("x-request-id"), "r1");
  assert.deepEqual(await res.json(), err.toBody());
});

Deno.test("errorResponse: the error's own headers and the JSON type win over the caller's", async () => {
  const err = new ProxyError(405, "Use POST.", { headers: { allow: "POST" } });
  const res = errorResponse(err, { allow: "GET", "content-type": "text/html" });
  assert.equal(res.headers.get("allow"), "POST");
  assert.equal(res.headers.get("content-type"), "application/json");
  await res.body?.cancel();
});

Deno.test("errorResponse: anything else is a generic 500 that shows no message or stack", async () => {
  for (const thrown of [new Error("db password is hunter2"), "hunter2", null, { hunter2: 1 }]) {
    const res = errorResponse(thrown);
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.ok(!text.includes("hunter2"), text);
    assert.ok(!text.includes("at "), "no stack trace");
    const body = JSON.parse(text);
    assert.equal(body.error.type, "server_error");
    assert.match(body.error.message, /^Internal error in poe-proxy; see its log/);
    assert.equal(body.error.param, null);
    assert.equal(body.error.code, null);
  }
});
