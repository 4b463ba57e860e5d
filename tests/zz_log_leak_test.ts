/**
 * @module The last test file of a run: every log line any proxy wrote in this test process is
 * searched for the keys the tests used (issue 6). `deno test` runs files in name order in one
 * process, so this sees the lines of the whole suite; run alone, it checks only that it ran.
 */
import assert from "node:assert/strict";
import { ALL_LOG_LINES } from "./harness.ts";

/** The distinctive keys of secrets_test.ts and the Poe key every other test uses. */
const SECRETS = ["sk-poe-SECRET-123", "inbound-SECRET-456", "second-SECRET-789", "test-poe-key"];

Deno.test("no log line of the whole test run holds the Poe key or an inbound key", () => {
  const hits = ALL_LOG_LINES.filter((line) => SECRETS.some((s) => line.includes(s)));
  assert.deepEqual(hits.slice(0, 5), [], `${hits.length} log lines hold a key`);
});
