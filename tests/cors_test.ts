/** @module CorsPolicy: the headers an allowed origin gets, and its preflight's answer. */
import assert from "node:assert/strict";
import { CorsPolicy } from "../lib/cors.ts";

const ORIGIN = "https://app.example.com";

function request(headers: Record<string, string>, method = "GET"): Request {
  return new Request("http://proxy/v1/models", { method, headers });
}

Deno.test("CorsPolicy.headers: an allowed origin gets itself, the exposed headers and Vary", () => {
  const headers = new CorsPolicy([ORIGIN, "https://other.example"]).headers(
    request({ origin: ORIGIN }),
  );
  assert.equal(headers["access-control-allow-origin"], ORIGIN);
  assert.equal(headers.vary, "Origin");
  const exposed = headers["access-control-expose-headers"].split(", ");
  for (const name of ["x-request-id", "retry-after", "x-ratelimit-remaining-requests"]) {
    assert.ok(exposed.includes(name), name);
  }
});

Deno.test("CorsPolicy.headers: none without an origin, for another origin, or with no origins", () => {
  const policy = new CorsPolicy([ORIGIN]);
  assert.deepEqual(policy.headers(request({})), {});
  assert.deepEqual(policy.headers(request({ origin: "https://app.example.com.evil.net" })), {});
  assert.deepEqual(policy.headers(request({ origin: "null" })), {});
  assert.deepEqual(new CorsPolicy([]).headers(request({ origin: ORIGIN })), {});
});

Deno.test("CorsPolicy.headers: * allows any origin with a literal *", () => {
  const headers = new CorsPolicy(["*"]).headers(request({ origin: "https://x.example" }));
  assert.equal(headers["access-control-allow-origin"], "*");
});

Deno.test("CorsPolicy.preflight: 204 with Allow, and the preflight headers for an allowed origin", async () => {
  const res = new CorsPolicy([ORIGIN]).preflight(
    request({ origin: ORIGIN, "access-control-request-headers": "x-custom" }, "OPTIONS"),
    ["POST"],
  );
  assert.equal(res.status, 204);
  assert.equal(await res.text(), "");
  assert.equal(res.headers.get("allow"), "POST, OPTIONS");
  assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN);
  assert.equal(res.headers.get("access-control-allow-methods"), "POST, OPTIONS");
  assert.equal(res.headers.get("access-control-allow-headers"), "x-custom");
  assert.equal(res.headers.get("access-control-max-age"), "600");
  const plain = new CorsPolicy([ORIGIN]).preflight(request({ origin: ORIGIN }, "OPTIONS"), [
    "GET",
  ]);
  assert.equal(
    plain.headers.get("access-control-allow-headers"),
    "authorization, content-type, x-api-key",
  );
});

Deno.test("CorsPolicy.preflight: another origin gets Allow and no CORS headers", () => {
  const res = new CorsPolicy([ORIGIN]).preflight(
    request({ origin: "https://evil.example" }, "OPTIONS"),
    ["GET", "POST"],
  );
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("allow"), "GET, POST, OPTIONS");
  const cors = [...res.headers.keys()].filter((k) => k.startsWith("access-control-"));
  assert.deepEqual(cors, []);
});
