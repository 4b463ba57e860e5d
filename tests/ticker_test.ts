import assert from "node:assert/strict";
import { Ticker, tickerOf } from "../lib/ticker.ts";

Deno.test("Ticker calls every watcher on one interval, and stops when the last one leaves", async () => {
  const ticker = new Ticker(10);
  const calls = { a: 0, b: 0 };
  const stopA = ticker.add(() => calls.a++);
  const stopB = ticker.add(() => {
    calls.b++;
    // A watcher may leave while the others are called.
    if (calls.b === 3) stopB();
  });
  assert.equal(ticker.size, 2);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls.b, 3);
  assert.ok(calls.a >= 4, `a was called ${calls.a} times`);
  assert.equal(ticker.size, 1);
  stopA();
  stopA();
  assert.equal(ticker.size, 0);
  const seen = calls.a;
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(calls.a, seen, "no call after leaving");
  // The test's op sanitizer also checks that no interval is left running.
});

Deno.test("tickerOf shares one ticker per period", () => {
  assert.equal(tickerOf(250), tickerOf(250));
  assert.notEqual(tickerOf(250), tickerOf(500));
});
