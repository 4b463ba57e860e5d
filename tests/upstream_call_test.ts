/** @module Tests of what one call of the Poe client gives back: the record of its tries. */
import assert from "node:assert/strict";
import { attemptsField } from "../lib/upstream_call.ts";

Deno.test("attemptsField: each try as reason:status, in order", () => {
  assert.equal(attemptsField([{ reason: "first", status: 200, ms: 12 }]), "first:200");
  assert.equal(
    attemptsField([
      { reason: "first", status: 0, ms: 3 },
      { reason: "retry-network", status: 400, ms: 40 },
      { reason: "drop-max-tokens", status: 200, inBody: true, ms: 50 },
    ]),
    "first:0,retry-network:400,drop-max-tokens:200",
  );
});
