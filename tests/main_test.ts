import assert from "node:assert/strict";
import { FakePoe } from "./fake_poe.ts";
import { listeningUrl, mainCommand, startProxyProcess } from "./proxy_process.ts";

function command(args: string[], env: Record<string, string>, cwd?: string): Deno.Command {
  return mainCommand(args, env, { cwd });
}

Deno.test("main.ts prints one listening line, serves, and exits 0 on SIGTERM", async () => {
  const child = command([], { POE_API_KEY: "k", PORT: "0" }).spawn();
  const { url, line, rest } = await listeningUrl(child);
  assert.match(
    line,
    /^poe-proxy \d+\.\d+\.\d+ listening on http:\/\/127\.0\.0\.1:\d+ \(\d+ models\)$/,
  );
  const health = await (await fetch(`${url}/healthz`)).json();
  assert.equal(health.status, "ok");
  assert.ok(health.models > 0);
  child.kill("SIGTERM");
  const status = await child.status;
  await rest;
  await child.stderr.cancel();
  assert.equal(status.code, 0);
});

Deno.test("main.ts with LOG_FORMAT=json writes only JSON lines to stdout, the listening line to stderr", async () => {
  const child = command([], { POE_API_KEY: "k", PORT: "0", LOG_FORMAT: "json" }).spawn();
  const texts = { out: "", err: "" };
  const drain = async (stream: ReadableStream<Uint8Array>, key: "out" | "err") => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) texts[key] += text;
  };
  const drained = Promise.all([drain(child.stdout, "out"), drain(child.stderr, "err")]);
  const listening = /listening on (http:\/\/\S+) /;
  for (let i = 0; i < 1000 && !listening.test(texts.out + texts.err); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const url = listening.exec(texts.out + texts.err)?.[1];
  if (url) assert.equal((await (await fetch(`${url}/healthz`)).json()).status, "ok");
  child.kill("SIGTERM");
  const status = await child.status;
  await drained;
  assert.ok(url, texts.out + texts.err);
  assert.equal(status.code, 0);
  assert.match(texts.err, listening);
  const events = texts.out.trim().split("\n").map((line) => JSON.parse(line).event);
  assert.ok(events.includes("started"), texts.out);
});

Deno.test("main.ts with a bad PORT exits 2 with one clear line", async () => {
  const out = await command([], { POE_API_KEY: "k", PORT: "abc" }).output();
  assert.equal(out.code, 2);
  const err = new TextDecoder().decode(out.stderr).trim();
  assert.equal(err, 'Invalid PORT: "abc" (expected an integer from 0 to 65535)');
});

Deno.test("main.ts on a port already in use exits 1 with one line, no stack trace", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = String((taken.addr as Deno.NetAddr).port);
    const out = await command([], { POE_API_KEY: "k", PORT: port, HOST: "127.0.0.1" }).output();
    assert.equal(out.code, 1);
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.equal(
      err,
      `Cannot listen on 127.0.0.1:${port}: the port is in use (another poe-proxy, or the old proxy still running?); set PORT`,
    );
  } finally {
    taken.close();
  }
});

Deno.test("main.ts with a bad keys file line exits 2 naming the line, not the key", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/keys`, "good-key\nsecret-one secret-two\n");
  const out = await command([], {
    POE_API_KEY: "k",
    PORT: "0",
    PROXY_API_KEYS_FILE: `${dir}/keys`,
  }).output();
  assert.equal(out.code, 2);
  const err = new TextDecoder().decode(out.stderr).trim();
  assert.equal(err, "PROXY_API_KEYS_FILE: line 2 holds more than one word; write one key a line");
});

Deno.test("main.ts without a Poe key exits 2 and says where to put it and about the demo", async () => {
  const out = await command([], { PORT: "0" }).output();
  assert.equal(out.code, 2);
  const err = new TextDecoder().decode(out.stderr);
  assert.match(err, /POE_API_KEY/);
  assert.match(err, /\.env/);
  assert.match(err, /deno task demo/);
});

Deno.test("main.ts --env-file that cannot be read exits 2 naming it", async () => {
  const out = await command(["--env-file", "/nonexistent/poe.env"], { POE_API_KEY: "k" }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /--env-file "\/nonexistent\/poe\.env"/);
});

Deno.test("main.ts reads .env from the working directory, below the environment", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/.env`, "POE_API_KEY=from-dotenv\nPORT=abc\n");
  const out = await command(["check"], { PORT: "0" }, dir).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /configuration ok/);
  assert.doesNotMatch(text, /from-dotenv/);
});

Deno.test("main.ts without a key names the .env it read, a key written wrong there, and check fails too", async () => {
  const dir = Deno.realPathSync(Deno.makeTempDirSync());
  Deno.writeTextFileSync(`${dir}/.env`, "POE_APIKEY=k1\nPOE_API_KEY: k2\n# a comment\n");
  for (const args of [[], ["check"]]) {
    const out = await command(args, { PORT: "0" }, dir).output();
    assert.equal(out.code, 2, args.join(" "));
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.match(text, new RegExp(`in ${dir}/\\.env \\(or name a file`));
    assert.match(text, /sets POE_APIKEY: did you mean POE_API_KEY\?/);
    assert.match(text, /\.env line 2 set nothing: write NAME=value/);
    assert.doesNotMatch(text, /k1|k2/);
    if (args[0] === "check") assert.match(text, /^configuration incomplete; /);
  }
});

Deno.test("main.ts check names .env settings the environment overrides with other values", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/.env`, "POE_API_KEY=new-key\nLOG_LEVEL=debug\nPORT=0\n");
  const out = await command(["check"], { POE_TOKEN: "old-key", LOG_LEVEL: "debug" }, dir)
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  assert.match(
    text,
    /warning: the environment overrides POE_API_KEY \(by POE_TOKEN\) of \.env with other values/,
  );
  assert.doesNotMatch(text, /LOG_LEVEL/, "the same value is no override");
  assert.doesNotMatch(text, /old-key|new-key/);
});

Deno.test("main.ts check counts the keys of PROXY_API_KEYS_FILE and names .env typos", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/keys`, "k1-0123456789abcdef\nk2-0123456789abcdef\n");
  Deno.writeTextFileSync(`${dir}/.env`, "POE_API_KEY=k\nPROT=9000\nPOINTS_CUTOF=5\n");
  const out = await command(["check"], {
    PORT: "0",
    PROXY_API_KEYS: "k3-0123456789abcdef",
    PROXY_API_KEYS_FILE: `${dir}/keys`,
  }, dir).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /"proxyApiKeys": 3,/);
  assert.match(text, /warning: \.env sets POINTS_CUTOF, PROT, which are no settings of poe-proxy/);
  assert.doesNotMatch(text, /k1-0123/);
});

Deno.test("main.ts check prints the warnings start logs about models.yaml", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(
    `${dir}/warn.yaml`,
    "models:\n  text:\n    - {poe_name: T, base: 10, cheaper: [I]}\n    - Free\n" +
      "  image:\n    - {poe_name: I, base: 5, max_tokens: 5000}\n",
  );
  const out = await command(["check", "--models", "warn.yaml"], {
    POE_API_KEY: "k",
    MAX_POINTS_PER_MESSAGE: "100",
  }, dir).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /^configuration ok; 3 models from warn\.yaml/);
  assert.match(text, /warning: max_tokens in models\.yaml is a text model's context cap; .*: I\n/);
  assert.match(text, /warning: models\.yaml cheaper lists name models that are never suggested: T/);
  assert.match(
    text,
    /warning: MAX_POINTS_PER_MESSAGE cannot check 1 models without a price .*: Free/,
  );
});

Deno.test("main.ts models --remote: an answer that is not JSON is one clear line, exit 2", async () => {
  const page = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("<html>hi</html>", { headers: { "content-type": "text/html" } }),
  );
  try {
    const out = await command(["models", "--remote"], {
      POE_BASE_URL: `http://127.0.0.1:${page.addr.port}`,
    }).output();
    assert.equal(out.code, 2);
    assert.equal(
      new TextDecoder().decode(out.stderr).trim(),
      "Poe's GET /v1/models did not answer JSON (content-type text/html): check POE_BASE_URL",
    );
  } finally {
    await page.shutdown();
  }
});

Deno.test("main.ts --version and --help", async () => {
  const version = await command(["--version"], {}).output();
  assert.equal(version.code, 0);
  const denoJson = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  assert.equal(new TextDecoder().decode(version.stdout).trim(), `poe-proxy ${denoJson.version}`);
  const help = await command(["--help"], {}).output();
  assert.match(new TextDecoder().decode(help.stdout), /POINTS_CUTOFF/);
});

Deno.test("main.ts models prints the registry table; check fails with 2 on a bad models file", async () => {
  const models = await command(["models"], {}).output();
  assert.equal(models.code, 0);
  const table = new TextDecoder().decode(models.stdout);
  assert.match(table, /^id\s+modality\s+context cap\s+points \(est\.\)/);
  assert.match(table, /Claude-Sonnet-4\.6\s+text/);
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/bad.yaml`, "models:\n  text:\n    - poe_name: [1\n");
  const bad = await command(["check", "--models", "bad.yaml"], {}, dir).output();
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /Cannot load bad\.yaml: .*bad\.yaml:\d+:\d+/);
});

Deno.test("main.ts models --remote lists Poe's live catalogue, as a table and as JSON", async () => {
  await using fake = await FakePoe.start();
  const table = await command(["models", "--remote"], { POE_BASE_URL: fake.url }).output();
  assert.equal(table.code, 0, new TextDecoder().decode(table.stderr));
  const text = new TextDecoder().decode(table.stdout);
  assert.match(text, /^id\s+modality\s+context\s+input \$\/M\s+output \$\/M/);
  assert.match(text, /claude-sonnet-4\.6\s+\S+\s+200000\s+\$3\.00\s+\$15\.00/);
  const json = await command(["models", "--remote", "--json"], { POE_BASE_URL: fake.url }).output();
  const rows = JSON.parse(new TextDecoder().decode(json.stdout));
  assert.ok(
    rows.some((r: { id: string; modality: string }) => r.id === "veo-3" && r.modality !== "-"),
  );
});

Deno.test("main.ts: a second signal during the grace ends the requests still open at once", async () => {
  await using fake = await FakePoe.start();
  const proxy = await startProxyProcess({
    env: {
      POE_API_KEY: "test-poe-key",
      POE_BASE_URL: fake.url,
      PORT: "0",
      SHUTDOWN_GRACE_SECONDS: "30",
    },
  });
  const streamed = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "GPT-4o",
      stream: true,
      messages: [{ role: "user", content: "Hi [[fake: stall=200,chunks=100]]" }],
    }),
  });
  const text = streamed.body!.pipeThrough(new TextDecoderStream());
  const started = Date.now();
  const exited = proxy.stop();
  await new Promise((r) => setTimeout(r, 300));
  Deno.kill(proxy.pid, "SIGINT");
  assert.equal(await exited, 0);
  const took = Date.now() - started;
  assert.ok(took < 5000, `exited after ${took} ms, not at the end of a 30 s grace`);
  let tail = "";
  for await (const piece of text) tail += piece;
  assert.match(tail, /"code":"server_shutting_down"[^\n]*\n\ndata: \[DONE\]\n\n$/);
  assert.match(proxy.stderr(), /second signal; cutting the requests still open/);
});

Deno.test("main.ts: requests still open when SHUTDOWN_GRACE_SECONDS ends are logged with end=shutdown", async () => {
  await using fake = await FakePoe.start();
  const proxy = await startProxyProcess({
    env: {
      POE_API_KEY: "test-poe-key",
      POE_BASE_URL: fake.url,
      PORT: "0",
      SHUTDOWN_GRACE_SECONDS: "1",
    },
  });
  const post = (id: string, body: Record<string, unknown>) =>
    fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id },
      body: JSON.stringify({ model: "GPT-4o", ...body }),
    });
  // A stream Poe answers for 20 s, and an answer Poe starts only after 20 s.
  const streamed = await post("cut-stream", {
    stream: true,
    messages: [{ role: "user", content: "Hi [[fake: stall=200,chunks=100]]" }],
  });
  const reader = streamed.body!.pipeThrough(new TextDecoderStream()).getReader();
  await reader.read();
  // Read on while the proxy stops: the stream's end is what the client is told.
  const rest = (async () => {
    let text = "";
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done) return text;
      text += r.value;
    }
  })();
  const waiting = post("cut-waiting", {
    messages: [{ role: "user", content: "Hi [[fake: slow-first=20000]]" }],
  }).then(async (res) => await res.text(), (err: Error) => err);
  while (fake.chatRequests().length < 2) await new Promise((r) => setTimeout(r, 20));
  const stopping = Date.now();
  assert.equal(await proxy.stop(), 0);
  const took = Date.now() - stopping;
  // The grace is waited out, and not much more.
  assert.ok(took >= 900 && took < 3000, `exited after ${took} ms`);
  const line = (id: string) =>
    proxy.stdout().split("\n").find((l) => l.includes(` request request_id=${id} `));
  assert.match(line("cut-stream") ?? "", / status=200 .*model=GPT-4o stream=true .*end=shutdown/);
  assert.match(line("cut-waiting") ?? "", / status=503 .*model=GPT-4o stream=false .*end=shutdown/);
  assert.match(proxy.stderr(), /grace period over; cutting the requests still open/);
  // Not a connection dropped mid-event: an error event the SDKs raise, then [DONE].
  const tail = await rest;
  assert.match(
    tail,
    /data: \{"error":\{[^\n]*"code":"server_shutting_down"[^\n]*\n\ndata: \[DONE\]\n\n$/,
  );
  assert.ok(await waiting instanceof Error, "the waiting client got no answer");
  // The exit cut Poe's requests too: the fake saw both go.
  while (fake.cancellations.length < 2) await new Promise((r) => setTimeout(r, 20));
});
