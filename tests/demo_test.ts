/** @module `deno task demo` as a user runs it: a subprocess that serves until SIGINT. */
import assert from "node:assert/strict";

const DEMO = new URL("./demo.ts", import.meta.url).pathname;

Deno.test("demo.ts prints a URL and curl commands, answers, and exits 0 on SIGINT", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-no-legacy-abort", "--allow-net", "--allow-env", "--allow-read", DEMO],
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/tmp", NO_COLOR: "1" },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("Ctrl-C stops.")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`demo exited early: ${out}`);
    out += value;
  }
  const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  assert.ok(url, out);
  assert.match(out, /curl http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions/);
  assert.match(
    out,
    /curl -N http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions .*\n.*"stream": true/,
  );

  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hello!" }] }),
  });
  const body = await res.json();
  assert.equal(res.status, 200);
  assert.equal(typeof body.choices[0].message.content, "string");
  // The balance poller runs, as with a real key: the dashboard's figures show the fake's balance.
  let balance: unknown = null;
  for (let i = 0; i < 50 && balance === null; i++) {
    const usage = await (await fetch(`${url}/api/usage`)).json();
    balance = usage.balance?.points ?? null;
    if (balance === null) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(typeof balance, "number");
  const second = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "Hi!" }] }),
  });
  await second.body?.cancel();
  assert.match(second.headers.get("x-poe-balance") ?? "", /^\d+$/);

  child.kill("SIGINT");
  const status = await child.status;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    out += value;
  }
  const stderr = await new Response(child.stderr).text();
  assert.equal(status.code, 0, stderr);
  assert.match(out, /demo stopped/);
});
