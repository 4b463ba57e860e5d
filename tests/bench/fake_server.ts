/** @module The fake Poe as its own process for the benchmark, with a stats endpoint on a second port. */
import { FakePoe } from "../fake_poe.ts";
import { printLine } from "../../lib/log.ts";

/**
 * Starts `FakePoe` with a balance of 10^12 points, without recording (the benchmark sends hundreds of thousands of requests) on a
 * free port of 127.0.0.1, and a second server whose `GET /__stats` answers
 * `{"usage_calls": N, "balance": B}`: how many `/usage/*` calls the fake has served. Prints one line,
 * `fake-poe listening on URL stats on URL`, and runs until killed.
 */
async function main(): Promise<void> {
  // Direct and nginx runs are billed too: a balance that never nears POINTS_CUTOFF.
  const fake = await FakePoe.start({ record: false, balance: 1e12 });
  // Reading the balance applies the debits that are due, one Array.shift() each: left to pile up
  // over a direct run of 100,000 answers, the first current_balance call after it would take
  // seconds (quadratic) and stall the fake's event loop. Applying them often keeps it cheap.
  let balance = fake.balance;
  setInterval(() => balance = fake.balance, 20);
  const stats = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    if (new URL(req.url).pathname !== "/__stats") return new Response("not found", { status: 404 });
    return Response.json({ usage_calls: fake.usageCalls(), balance });
  });
  printLine(`fake-poe listening on ${fake.url} stats on http://127.0.0.1:${stats.addr.port}`);
}

if (import.meta.main) await main();
