import assert from "node:assert/strict";
import { answerBeforeMs, clientWaitError, clientWaitMs } from "../lib/client_wait.ts";

Deno.test("clientWaitMs reads the SDKs' timeout headers in seconds, and nothing else", () => {
  const wait = (headers: Record<string, string>) => clientWaitMs(new Headers(headers));
  assert.equal(wait({ "x-stainless-timeout": "600" }), 600_000);
  assert.equal(wait({ "x-stainless-read-timeout": "1.5" }), 1_500);
  assert.equal(wait({ "x-stainless-timeout": "60", "x-stainless-read-timeout": "5" }), 60_000);
  // Python's str(1e9), or an hour's worth of days: a timer that long would fire at once.
  for (const bad of ["", "0", "-3", "soon", "Infinity", "NaN", "1000000000.0", "3000000"]) {
    assert.equal(wait({ "x-stainless-timeout": bad }), null, bad);
  }
  assert.equal(wait({}), null);
});

Deno.test("the proxy answers up to 2 s before the client gives up, with a 504 it does not retry", () => {
  assert.equal(answerBeforeMs(600_000), 598_000);
  assert.equal(answerBeforeMs(2_000), 1_500);
  const err = clientWaitError(600_000);
  assert.equal(err.status, 504);
  assert.equal(err.code, "upstream_timeout");
  assert.equal(err.headers["x-should-retry"], "false");
  assert.match(err.message, /client's timeout \(600 s\)/);
});
