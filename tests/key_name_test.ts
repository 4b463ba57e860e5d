import assert from "node:assert/strict";
import { KeyNameLearner } from "../lib/key_name.ts";

Deno.test("KeyNameLearner trusts a name after three token matches in a row, forgets it on another", () => {
  const learner = new KeyNameLearner();
  learner.confirm("proxy-key");
  learner.confirm("proxy-key");
  assert.equal(learner.name, null);
  learner.confirm(null);
  learner.confirm("");
  learner.confirm("proxy-key");
  assert.equal(learner.name, "proxy-key");
  learner.confirm("renamed");
  assert.equal(learner.name, null);
  for (let i = 0; i < 2; i++) learner.confirm("renamed");
  assert.equal(learner.name, "renamed");
});

Deno.test("KeyNameLearner with a configured name: trusted at once, never replaced, a mismatch told after three other entries in a row", () => {
  const learner = new KeyNameLearner(3, "mine");
  assert.equal(learner.name, "mine");
  assert.equal(learner.configured, "mine");
  for (let i = 0; i < 5; i++) learner.confirm("theirs");
  assert.equal(learner.name, "mine");
  assert.equal(learner.mismatch("theirs", "q1"), false);
  // The same entry seen by the next fetch again counts once.
  assert.equal(learner.mismatch("theirs", "q1"), false);
  assert.equal(learner.mismatch("theirs", "q2"), false);
  // A token match of the configured name breaks the row.
  learner.confirm("mine");
  assert.equal(learner.mismatch("theirs", "q3"), false);
  assert.equal(learner.mismatch("theirs", "q4"), false);
  assert.equal(learner.mismatch(null, "q5"), false);
  assert.equal(learner.mismatch("mine", "q6"), false);
  assert.equal(learner.mismatch("theirs", "q7"), true);
  assert.equal(learner.name, "mine");
  // A learner with nothing configured never reports mismatches.
  assert.equal(new KeyNameLearner(1).mismatch("theirs", "q1"), false);
  assert.equal(new KeyNameLearner(1).configured, null);
});
