// deno-lint-ignore-file no-explicit-any
/** @module JSON over HTTP for the app's tests: one call's status, headers and parsed body. */
import assert from "node:assert/strict";

/** Fetches `url` and parses its body as JSON (null when empty). */
export async function getJson(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** Asserts an OpenAI-style error body: `{"error":{"message","type","param","code"}}`. */
export function assertErrorShape(body: any): void {
  assert.equal(typeof body.error.message, "string");
  assert.equal(typeof body.error.type, "string");
  assert.ok("param" in body.error);
  assert.ok("code" in body.error);
}
