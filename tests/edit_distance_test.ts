/** @module Tests of lib/edit_distance.ts: exact distances within the bound, `max + 1` beyond it. */
import assert from "node:assert/strict";
import { editDistance } from "../lib/edit_distance.ts";

Deno.test("editDistance counts insertions, deletions and substitutions within max", () => {
  assert.equal(editDistance("kitten", "sitting", 10), 3);
  assert.equal(editDistance("per_1k_token", "per_1k_tokens", 2), 1);
  assert.equal(editDistance("models", "model", 2), 1);
  assert.equal(editDistance("", "abc", 3), 3);
  assert.equal(editDistance("abc", "", 3), 3);
  assert.equal(editDistance("same", "same", 0), 0);
  // Case matters: callers lower-case both sides first.
  assert.equal(editDistance("GPT", "gpt", 5), 3);
});

Deno.test("editDistance gives up with max + 1 once the distance must exceed max", () => {
  // The lengths alone rule it out.
  assert.equal(editDistance("a", "abcdefgh", 3), 4);
  // Same lengths: a row whose smallest value exceeds max ends the count.
  assert.equal(editDistance("abcdefgh", "abcdwxyz", 2), 3);
  assert.equal(editDistance("abcdef", "uvwxyz", 1), 2);
  assert.equal(editDistance("x", "y", 0), 1);
});
