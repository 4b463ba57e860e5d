/** @module Tests of the Poe client's options and their defaults. */
import assert from "node:assert/strict";
import { upstreamSettings } from "../lib/upstream_options.ts";

Deno.test("upstreamSettings: an option left out or given as undefined keeps its default", () => {
  const base = { baseUrl: "http://poe.test", apiKey: null };
  const defaults = upstreamSettings(base);
  assert.equal(defaults.retries, 2);
  assert.equal(defaults.connectTimeoutMs, 10_000);
  assert.equal(defaults.firstByteTimeoutMs, 300_000);
  assert.equal(defaults.slowFirstByteTimeoutMs, 900_000);
  assert.equal(defaults.idleTimeoutMs, 120_000);
  assert.equal(defaults.streamStartMs, 5_000);
  assert.equal(defaults.userAgent, "poe-proxy");
  assert.equal(defaults.fetch, globalThis.fetch);
  assert.equal(defaults.random, Math.random);
  const undefinedGiven = upstreamSettings({ ...base, retries: undefined, userAgent: undefined });
  assert.equal(undefinedGiven.retries, 2);
  assert.equal(undefinedGiven.userAgent, "poe-proxy");
  // Zero is a value, not a missing option.
  const given = upstreamSettings({ ...base, retries: 0, streamStartMs: 0, apiKey: "k" });
  assert.equal(given.retries, 0);
  assert.equal(given.streamStartMs, 0);
  assert.equal(given.apiKey, "k");
});
