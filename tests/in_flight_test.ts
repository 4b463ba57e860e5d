import assert from "node:assert/strict";
import { InFlightRequests } from "../lib/in_flight.ts";

Deno.test("in flight: a request runs for its model, from its arrival, until ended once", () => {
  const running = new InFlightRequests();
  const a = running.sent("GPT-4o", 100);
  const b = running.sent("gpt-4o", 200);
  running.sent("Claude", 50);
  assert.equal(running.size, 3);
  // Models are compared lower-case; a read before a request arrived cannot hold its entry.
  assert.equal(running.running("gpt-4o", 99), false);
  assert.equal(running.running("gpt-4o", 100), true);
  a.end();
  assert.equal(running.running("gpt-4o", 150), false);
  assert.equal(running.running("gpt-4o", 250), true);
  b.end();
  b.end();
  assert.equal(running.running("gpt-4o", 1_000), false);
  assert.equal(running.running("claude", 1_000), true);
  assert.equal(running.size, 1);
});
