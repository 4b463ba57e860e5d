/**
 * @module A bounded load test (issue 6): 200 concurrent streaming clients through main.ts (a child
 * process on 127.0.0.1) to the fake Poe; every client gets exactly its reply, and the proxy's
 * resident memory returns near its starting level.
 *
 * Memory is the child's resident set size (`ps -o rss=`, the kernel's `VmRSS`), so the figures are
 * the proxy's alone, not the test's or the fake's. RSS does not fall back to the idle level after
 * a burst: V8 keeps the heap it grew to (its memory reducer shrinks it only after ~10 s idle) and
 * the allocator keeps its arenas; 200 concurrent streams take the child from about 100 MB to about
 * 220 MB and it stays near there, while the JS heap after a full GC stays flat (measured in-process
 * with --expose-gc: about 20 MB, +0.2 MB per 200 requests, the fake's own bounded history). Left
 * alone, V8 also grows its heap lazily (+50 MB a round for the first rounds) before collecting, which
 * looks like a leak and is not; the child therefore runs with `--max-old-space-size=96`, so that
 * garbage is collected and RSS follows what is live. The baseline is taken after one warm-up round
 * of 200 concurrent streams, and the bound is generous: after two more rounds (400 requests) RSS
 * must stay within 100 MB of it. A leak that keeps a stream, a connection or a buffer per request
 * grows RSS every round and, under the heap cap, runs the child out of memory: either fails.
 * Timings are printed, never asserted.
 */
import assert from "node:assert/strict";
import { FakePoe } from "./fake_poe.ts";
import { startProxyProcess } from "./proxy_process.ts";
import { printLine } from "../lib/log.ts";

const CLIENTS = 200;
const ROUNDS = 2;
const MB = 1024 * 1024;

const FAKE_WORDS =
  "the quick brown fox jumps over a lazy dog while seven bold wizards quietly pack boxes".split(
    " ",
  );

function wordsReply(n: number): string {
  return Array.from({ length: n }, (_, i) => FAKE_WORDS[i % FAKE_WORDS.length]).join(" ");
}

/** Streams one answer of `words` words and returns its reassembled content. */
async function streamOnce(url: string, words: number, id: number): Promise<string> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o",
      stream: true,
      messages: [{ role: "user", content: `client ${id} [[fake: words=${words},stall=2]]` }],
    }),
  });
  assert.equal(res.status, 200, `client ${id}`);
  const text = await res.text();
  assert.ok(text.trimEnd().endsWith("data: [DONE]"), `client ${id} ends with [DONE]`);
  return text.split("\n")
    .filter((l) => l.startsWith("data: {"))
    .map((l) => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content ?? "")
    .join("");
}

Deno.test({
  name: "load: 200 concurrent streams all complete exactly; the proxy's memory returns",
  ignore: Deno.build.os !== "linux",
  async fn() {
    await using fake = await FakePoe.start({ record: false });
    await using proxy = await startProxyProcess({
      // A tight old-space cap makes V8 collect instead of growing lazily, so RSS follows what is
      // live; a real leak then also runs the child out of heap and fails every stream.
      denoArgs: ["--v8-flags=--max-old-space-size=96"],
      env: {
        POE_API_KEY: "test-poe-key",
        POE_BASE_URL: fake.url,
        PORT: "0",
        FOOTER: "off",
        LOG_LEVEL: "warn",
        RATE_LIMIT_PER_MINUTE: "0",
        POE_RATE_LIMIT_PER_MINUTE: "0",
      },
    });
    const idle = await proxy.rss();
    // Warm up: the tokenizer, JIT and connection pools are one-time costs, not a leak.
    for (let i = 0; i < 10; i++) assert.equal(await streamOnce(proxy.url, 20, i), wordsReply(20));
    await new Promise((r) => setTimeout(r, 300));
    const warmed = await proxy.rss();
    const round = async (n: number) => {
      const results = await Promise.all(
        Array.from({ length: CLIENTS }, async (_, i) => {
          const words = 100 + (i % 50);
          return { words, content: await streamOnce(proxy.url, words, i) };
        }),
      );
      for (const [i, r] of results.entries()) {
        assert.equal(r.content, wordsReply(r.words), `client ${i} of round ${n}`);
      }
    };
    await round(-1);
    await new Promise((r) => setTimeout(r, 500));
    const before = await proxy.rss();

    let peak = before;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await proxy.rss());
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const afterRounds: number[] = [];
    const roundMs: number[] = [];
    try {
      for (let n = 0; n < ROUNDS; n++) {
        const started = performance.now();
        await round(n);
        roundMs.push(Math.round(performance.now() - started));
        await new Promise((r) => setTimeout(r, 300));
        afterRounds.push(await proxy.rss());
      }
    } finally {
      sampling = false;
      await sampler;
    }
    await new Promise((r) => setTimeout(r, 1000));
    const after = await proxy.rss();
    const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;
    printLine(
      `proxy RSS: idle ${mb(idle)}, after 10 single streams ${mb(warmed)}, after a first round ` +
        `of ${CLIENTS} (before) ${mb(before)}, peak ${mb(peak)}, ` +
        `after each round ${afterRounds.map(mb).join(" / ")}, after ${mb(after)}; ` +
        `${ROUNDS} rounds of ${CLIENTS} streams in ${roundMs.join(" / ")} ms`,
    );
    assert.equal(await proxy.stop(), 0);
    assert.ok(after < before + 100 * MB, `RSS grew from ${mb(before)} to ${mb(after)}`);
    assert.equal(proxy.stderr().match(/ERROR/g)?.length ?? 0, 0, proxy.stderr());
  },
});
