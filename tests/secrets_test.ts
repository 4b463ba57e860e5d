/**
 * @module The Poe key and the inbound keys never appear in a log line, an error, a response header
 * or `/healthz` (issue 6), over a full mix of requests, and never in a configuration error.
 */
import assert from "node:assert/strict";
import { FakePoe } from "./fake_poe.ts";
import { ALL_LOG_LINES, startProxy, testConfig } from "./harness.ts";
import { memoryLogger } from "../lib/log.ts";
import { createUsageService } from "../lib/usage_service.ts";
import { mainCommand, startProxyProcess } from "./proxy_process.ts";
import { ConfigError, resolveConfig } from "../lib/config.ts";

/** Distinctive values, so that any copy of them anywhere is found. */
export const POE_SECRET = "sk-poe-SECRET-123";
export const INBOUND_SECRET = "inbound-SECRET-456";
const OTHER_INBOUND = "second-SECRET-789";
const SECRETS = [POE_SECRET, INBOUND_SECRET, OTHER_INBOUND];

/** Every place a secret could leak to, gathered while the mix runs. */
class Exposure {
  readonly texts: string[] = [];

  async record(label: string, res: Response): Promise<{ status: number; body: string }> {
    const body = await res.text();
    const headers = [...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
    this.texts.push(`${label}\n${headers}\n\n${body}`);
    return { status: res.status, body };
  }

  assertClean(extra: string[] = []): void {
    for (const text of [...this.texts, ...extra]) {
      for (const secret of SECRETS) {
        assert.ok(!text.includes(secret), `a secret leaked into:\n${text.slice(0, 2000)}`);
        // Nor a recognisable part of one.
        assert.ok(!text.includes(secret.slice(0, 12)), `part of a secret leaked:\n${text}`);
      }
    }
  }
}

function chatBody(content: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content }], ...extra });
}

Deno.test("secrets: a full request mix never shows the Poe key or an inbound key", async () => {
  await using fake = await FakePoe.start({ apiKey: POE_SECRET });
  await using proxy = await startProxy({
    poeUrl: fake.url,
    env: {
      POE_API_KEY: POE_SECRET,
      PROXY_API_KEYS: `${INBOUND_SECRET},${OTHER_INBOUND}`,
      RATE_LIMIT_PER_MINUTE: "60",
      RATE_LIMIT_BURST: "12",
      LOG_LEVEL: "debug",
      LOG_BODIES: "on",
      CORS_ORIGINS: "https://app.example.com",
    },
  });
  const seen = new Exposure();
  const url = proxy.url;
  const good = { "content-type": "application/json", authorization: `Bearer ${INBOUND_SECRET}` };
  const post = (label: string, body: string, headers: Record<string, string> = good) =>
    fetch(`${url}/v1/chat/completions`, { method: "POST", headers, body }).then((r) =>
      seen.record(label, r)
    );

  assert.equal((await seen.record("healthz", await fetch(`${url}/healthz`))).status, 200);
  assert.equal(
    (await seen.record("models", await fetch(`${url}/v1/models`, { headers: good }))).status,
    200,
  );
  assert.equal((await post("chat", chatBody("hello"))).status, 200);
  assert.equal((await post("stream", chatBody("hello", { stream: true }))).status, 200);
  assert.equal(
    (await post("x-api-key", chatBody("hi"), {
      "content-type": "application/json",
      "x-api-key": OTHER_INBOUND,
    })).status,
    200,
  );
  // Refused keys: missing, wrong, a secret with a suffix or prefix, the Poe key itself.
  for (
    const auth of [
      "",
      "Bearer wrong",
      `Bearer ${INBOUND_SECRET}x`,
      `Bearer x${INBOUND_SECRET}`,
      `Bearer ${POE_SECRET}`,
      INBOUND_SECRET,
    ]
  ) {
    const r = await post(`401 ${auth.length}`, chatBody("hi"), {
      "content-type": "application/json",
      ...(auth ? { authorization: auth } : {}),
    });
    assert.equal(r.status, 401);
  }
  // Retries, Poe's errors, broken streams.
  assert.equal((await post("retry", chatBody("hi [[fake: fail-first=1:500]]"))).status, 200);
  assert.equal((await post("poe 401", chatBody("hi [[fake: status=401]]"))).status, 401);
  assert.equal(
    (await post("poe 429", chatBody("hi [[fake: status=429,retry-after=60]]"))).status,
    429,
  );
  assert.equal(
    (await post("midstream", chatBody("hi [[fake: midstream-error]]", { stream: true }))).status,
    200,
  );
  assert.equal((await post("drop", chatBody("hi [[fake: drop]]", { stream: true }))).status, 200);
  assert.equal((await post("bad json", "{")).status, 400);
  assert.equal((await post("404", JSON.stringify({ model: "nope", messages: [] }))).status, 400);
  assert.equal(
    (await post("unknown model", chatBody("hi").replace("gpt-4o", "no-such-model"))).status,
    404,
  );
  // A key pasted as the model: hidden in the request body's LOG_BODIES line too.
  assert.equal(
    (await post("key as model", chatBody("hi").replace("gpt-4o", OTHER_INBOUND))).status,
    404,
  );
  // Drain the bucket: 429 from the proxy itself.
  let limited = 0;
  for (let i = 0; i < 15; i++) {
    if ((await post(`burst ${i}`, chatBody("hi"))).status === 429) limited++;
  }
  assert.ok(limited > 0);
  for (const path of ["/metrics", "/api/usage", "/", "/v1/nothing", "/v1/models/gpt-4o"]) {
    await seen.record(path, await fetch(`${url}${path}`, { headers: good }));
    await seen.record(`${path} no key`, await fetch(`${url}${path}`));
  }
  const preflight = await fetch(`${url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
  });
  await seen.record("preflight", preflight);

  // The fake did get the key (so it was really in use), in the Authorization header only.
  const sent = fake.chatRequests();
  assert.ok(sent.length >= 5);
  for (const r of sent) {
    assert.equal(r.headers.authorization, `Bearer ${POE_SECRET}`);
    assert.ok(!JSON.stringify(r.body).includes(POE_SECRET));
    // The client's key is not forwarded to Poe.
    assert.ok(!JSON.stringify(r.headers).includes(INBOUND_SECRET));
  }
  assert.ok(proxy.logs.length > 20, "the mix was logged");
  seen.assertClean(proxy.logs);
});

Deno.test("secrets: a Poe error that echoes the key does not carry it to the client or the log", async () => {
  await using fake = await FakePoe.start({ apiKey: POE_SECRET });
  await using proxy = await startProxy({
    poeUrl: fake.url,
    env: { POE_API_KEY: POE_SECRET, LOG_LEVEL: "debug" },
  });
  const seen = new Exposure();
  for (const status of [400, 401, 500]) {
    const message = encodeURIComponent(`Invalid API key provided: ${POE_SECRET}`);
    const res = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chatBody(`hi [[fake: status=${status},message=${message}]]`),
    });
    const r = await seen.record(`poe ${status}`, res);
    assert.equal(r.status, status);
    assert.match(r.body, /Invalid API key provided/);
  }
  seen.assertClean(proxy.logs);
});

Deno.test("secrets: the Poe key quoted whole or shortened, or a key sent as the model, is hidden everywhere", async () => {
  await using fake = await FakePoe.start({ apiKey: POE_SECRET });
  // The Usage API refuses the key and quotes it, as some services do.
  fake.balanceErrorStatus = 401;
  fake.balanceErrorMessage = `Incorrect API key provided: ${POE_SECRET}. Partial: sk-p...123`;
  const env = {
    POE_API_KEY: POE_SECRET,
    POE_BASE_URL: fake.url,
    PROXY_API_KEYS: `${INBOUND_SECRET},${OTHER_INBOUND}`,
    LOG_LEVEL: "debug",
  };
  // A logger of its own, without the redaction every log line gets: the message itself is clean.
  const usageLog = memoryLogger();
  await using points = createUsageService(testConfig(env), { logger: usageLog });
  await points.poller.refresh();
  await using proxy = await startProxy({ env, deps: { usage: points } });
  const seen = new Exposure();
  const headers = { "content-type": "application/json", authorization: `Bearer ${INBOUND_SECRET}` };
  const post = async (label: string, body: string) => {
    const res = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers, body });
    return await seen.record(label, res);
  };
  const shortened = encodeURIComponent("Key sk-po...-123 or sk-p…23 refused");
  let r = await post("poe 401 shortened", chatBody(`hi [[fake: status=401,message=${shortened}]]`));
  assert.equal(r.status, 401);
  assert.match(r.body, /Key \(hidden\) or \(hidden\) refused/);
  const quoted = encodeURIComponent(`bad key ${POE_SECRET} here`);
  r = await post(
    "midstream quoting the key",
    chatBody(`hi [[fake: midstream-error,message=${quoted}]]`, { stream: true }),
  );
  assert.equal(r.status, 200);
  assert.match(r.body, /bad key \(hidden\) here/);
  for (const model of [POE_SECRET, OTHER_INBOUND]) {
    r = await post(
      "key as model",
      JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
    );
    assert.equal(r.status, 404);
  }
  const usage = await seen.record(
    "usage",
    await fetch(`${proxy.url}/api/usage`, {
      headers: { authorization: `Bearer ${INBOUND_SECRET}` },
    }),
  );
  assert.equal(usage.status, 200);
  assert.match(usage.body, /Incorrect API key provided: \(hidden\)\. Partial: \(hidden\)/);
  // The rows of the dashboard show the unknown models' names hidden.
  assert.equal(
    JSON.parse(usage.body).recent.filter((row: { model: string }) => row.model === "(hidden)")
      .length,
    2,
  );
  const all = [...seen.texts, ...proxy.logs, ...usageLog.lines].join("\n");
  for (const part of ["sk-p...123", "sk-po...-123", "sk-p…23"]) {
    assert.ok(!all.includes(part), part);
  }
  assert.ok(usageLog.lines.some((l) => l.includes("Incorrect API key provided")));
  seen.assertClean([...proxy.logs, ...usageLog.lines]);
});

Deno.test("secrets: an inbound key with text around it, in the model, a path or the request id, is hidden", async () => {
  await using fake = await FakePoe.start({ apiKey: POE_SECRET });
  await using proxy = await startProxy({
    poeUrl: fake.url,
    env: {
      POE_API_KEY: POE_SECRET,
      PROXY_API_KEYS: `${INBOUND_SECRET},${OTHER_INBOUND}`,
      LOG_LEVEL: "debug",
      LOG_BODIES: "on",
    },
  });
  const seen = new Exposure();
  const auth = { authorization: `Bearer ${INBOUND_SECRET}` };
  const send = async (label: string, path: string, init: RequestInit = {}) =>
    await seen.record(
      label,
      await fetch(`${proxy.url}${path}`, { ...init, headers: { ...auth, ...init.headers } }),
    );
  const models = [`Bearer ${OTHER_INBOUND}`, `${OTHER_INBOUND} `, `key=${INBOUND_SECRET}`];
  for (const model of models) {
    const r = await send("model", "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(r.status, 404);
    assert.match(r.body, /The model \\"[^"]*\(hidden\)[^"]*\\" is not in/);
  }
  for (const path of [`/v1/models/${OTHER_INBOUND}`, `/v1/models/Bearer%20${OTHER_INBOUND}`]) {
    const r = await send("model path", path);
    assert.equal(r.status, 404);
    assert.match(r.body, /The model \\"[^"]*\(hidden\)\\"/);
  }
  assert.equal((await send("405", `/v1/models/${OTHER_INBOUND}`, { method: "POST" })).status, 405);
  assert.equal((await send("unknown", `/v1/${OTHER_INBOUND}/chat`)).status, 404);
  const id = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json", "x-request-id": OTHER_INBOUND },
    body: chatBody("hi"),
  });
  await seen.record("request id", id);
  assert.equal(id.status, 200);
  assert.match(id.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/, "a new id");

  const usage = await send("usage", "/api/usage");
  const rows = JSON.parse(usage.body).recent as { model: string }[];
  assert.deepEqual(
    rows.map((r) => r.model).slice(1).reverse(),
    ["Bearer (hidden)", "(hidden) ", "key=(hidden)"],
  );
  const lines = proxy.logs.join("\n");
  assert.match(lines, /path=\/v1\/models\/\(hidden\) status=404/);
  assert.match(lines, /path="\/v1\/models\/Bearer \(hidden\)" status=404/);
  assert.match(lines, /path=\/v1\/\(hidden\)\/chat status=404/);
  seen.assertClean(proxy.logs);
});

Deno.test("secrets: a wrong Poe key is reported without showing it", async () => {
  await using fake = await FakePoe.start({ apiKey: "the-right-one" });
  await using proxy = await startProxy({
    poeUrl: fake.url,
    env: { POE_API_KEY: POE_SECRET, LOG_LEVEL: "debug" },
  });
  const seen = new Exposure();
  const r = await seen.record(
    "wrong key",
    await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: chatBody("hi"),
    }),
  );
  assert.equal(r.status, 401);
  assert.match(r.body, /POE_API_KEY/);
  seen.assertClean(proxy.logs);
});

Deno.test("secrets: configuration errors name the variable and hide the value", () => {
  const bad: Record<string, string>[] = [
    { POE_API_KEY: `${POE_SECRET} trailing` },
    { POE_API_KEY: `${POE_SECRET}\u0001` },
    { POE_TOKEN: `${POE_SECRET} x` },
    { PROXY_API_KEYS: `${INBOUND_SECRET}, bad key` },
    { PROXY_API_KEYS: `${INBOUND_SECRET}\u0007` },
  ];
  for (const env of bad) {
    let message = "";
    try {
      resolveConfig({ env });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      message = err.message;
    }
    const name = Object.keys(env)[0];
    assert.match(message, new RegExp(`Invalid ${name}: \\(hidden\\)`));
    for (const secret of SECRETS) assert.ok(!message.includes(secret.slice(0, 12)), message);
  }
  // From a .env file too.
  try {
    resolveConfig({ dotenv: { POE_API_KEY: `${POE_SECRET} x` }, dotenvPath: "/srv/.env" });
    assert.fail("accepted");
  } catch (err) {
    assert.match((err as Error).message, /Invalid POE_API_KEY in \/srv\/\.env: \(hidden\)/);
    assert.ok(!(err as Error).message.includes(POE_SECRET));
  }
});

Deno.test("secrets: main.ts check, start and a bad key print no secret", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/keys.txt`, `${OTHER_INBOUND}\n`);
  const env = {
    POE_API_KEY: POE_SECRET,
    PROXY_API_KEYS: INBOUND_SECRET,
    PROXY_API_KEYS_FILE: `${dir}/keys.txt`,
    PORT: "0",
  };
  const run = (extra: Record<string, string>, args: string[]) =>
    mainCommand(args, { ...env, ...extra }, { cwd: dir }).output();
  const check = await run({}, ["check"]);
  assert.equal(check.code, 0);
  const bad = await run({ POE_API_KEY: `${POE_SECRET} oops` }, []);
  assert.equal(bad.code, 2);
  const outputs = [check, bad].map((o) =>
    new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr)
  );
  assert.match(outputs[1], /Invalid POE_API_KEY: \(hidden\)/);

  await using fake = await FakePoe.start({ apiKey: POE_SECRET });
  const proxy = await startProxyProcess({
    env: { ...env, POE_BASE_URL: fake.url, LOG_LEVEL: "debug" },
    cwd: dir,
  });
  const seen = new Exposure();
  await seen.record("healthz", await fetch(`${proxy.url}/healthz`));
  await seen.record(
    "chat",
    await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": OTHER_INBOUND },
      body: chatBody("hi", { stream: true }),
    }),
  );
  await seen.record("401", await fetch(`${proxy.url}/v1/models`));
  assert.equal(await proxy.stop(), 0);
  seen.assertClean([...outputs, proxy.stdout(), proxy.stderr()]);
});

Deno.test("secrets: no log line of this process holds a secret (the leak scan of this file)", () => {
  const hits = ALL_LOG_LINES.filter((l) => SECRETS.some((s) => l.includes(s)));
  assert.deepEqual(hits, []);
  assert.ok(ALL_LOG_LINES.length > 0);
});
