// deno-lint-ignore-file no-explicit-any
/** @module The door over HTTP: rate limits, inbound keys, CORS and the startup warning (issue 6). */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { FakePoe } from "./fake_poe.ts";
import { startFakeAndProxy as setup, testConfig, testRegistry } from "./harness.ts";
import { mainCommand, startProxyProcess } from "./proxy_process.ts";
import { createApp } from "../lib/app.ts";
import { memoryLogger } from "../lib/log.ts";
import { portOf, rawJsonBody, rawRequest } from "./raw_http.ts";

const LIMITED = { RATE_LIMIT_PER_MINUTE: "60", RATE_LIMIT_BURST: "3", FOOTER: "off" };

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // an SSE stream or empty body stays text
  }
  return { status: res.status, headers: res.headers, body };
}

function chat(url: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return call(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: body ??
      JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
  });
}

function assertOpenAiError(body: any, type: string): void {
  assert.equal(typeof body?.error?.message, "string", JSON.stringify(body));
  assert.equal(body.error.type, type);
  assert.ok("param" in body.error && "code" in body.error, JSON.stringify(body));
}

function remaining(a: Answer): number {
  return Number(a.headers.get("x-ratelimit-remaining-requests"));
}

// --- rate limiting ------------------------------------------------------------------------------

Deno.test("rate limit: burst 3 lets 3 through, the 4th gets 429 rate_limit_error with Retry-After", async () => {
  await using s = await setup(LIMITED);
  const answers: Answer[] = [];
  for (let i = 0; i < 4; i++) answers.push(await chat(s.proxy.url));
  for (const [i, a] of answers.slice(0, 3).entries()) {
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.headers.get("x-ratelimit-limit-requests"), "3");
    assert.equal(remaining(a), 2 - i);
    assert.match(a.headers.get("x-ratelimit-reset-requests")!, /^(\d+m)?\d+s$/);
  }
  const refused = answers[3];
  assert.equal(refused.status, 429);
  assertOpenAiError(refused.body, "rate_limit_error");
  assert.equal(refused.body.error.code, "rate_limit_exceeded");
  // Which setting to raise: not Poe's limit, nor the one in front of Poe.
  assert.match(
    refused.body.error.message,
    /this client may send \d+ a minute \(RATE_LIMIT_PER_MINUTE, bursts of 3: RATE_LIMIT_BURST\); retry after \d+ s\./,
  );
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.equal(refused.headers.get("x-ratelimit-limit-requests"), "3");
  assert.equal(remaining(refused), 0);
  assert.ok(refused.headers.get("x-ratelimit-reset-requests"));
  // Refused requests never reach Poe.
  assert.equal(s.fake.chatRequests().length, 3);
});

Deno.test("rate limit: every chat response carries the x-ratelimit headers, streams and errors too", async () => {
  await using s = await setup({ ...LIMITED, RATE_LIMIT_BURST: "10" });
  const stream = await chat(
    s.proxy.url,
    {},
    JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], stream: true }),
  );
  assert.equal(stream.status, 200);
  assert.equal(remaining(stream), 9);
  const bad = await chat(s.proxy.url, {}, "not json");
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.get("x-ratelimit-limit-requests"), "10");
  assert.equal(remaining(bad), 8);
  const unknown = await chat(
    s.proxy.url,
    {},
    JSON.stringify({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }),
  );
  assert.equal(unknown.status, 404);
  assert.equal(remaining(unknown), 7);
  const poeFails = await chat(
    s.proxy.url,
    {},
    JSON.stringify({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi [[fake: status=403]]" }],
    }),
  );
  assert.equal(poeFails.status, 403);
  assert.ok(poeFails.headers.get("x-ratelimit-limit-requests"));
});

Deno.test("rate limit: with keys, each key has its own bucket, whatever its address", async () => {
  await using s = await setup({ ...LIMITED, PROXY_API_KEYS: "key-alpha,key-beta" });
  const alpha = { authorization: "Bearer key-alpha" };
  for (let i = 0; i < 3; i++) assert.equal((await chat(s.proxy.url, alpha)).status, 200);
  assert.equal((await chat(s.proxy.url, alpha)).status, 429);
  // Same address, other key: a full bucket.
  const beta = await chat(s.proxy.url, { "x-api-key": "key-beta" });
  assert.equal(beta.status, 200);
  assert.equal(remaining(beta), 2);
  // The log names the key, never the key itself.
  const lines = s.proxy.logs.filter((l) => l.includes("/v1/chat/completions"));
  assert.ok(lines.some((l) => l.includes("client=key-1")));
  assert.ok(lines.some((l) => l.includes("client=key-2")));
  assert.ok(!s.proxy.logs.some((l) => l.includes("key-alpha") || l.includes("key-beta")));
});

Deno.test("rate limit: without keys, the peer address is the client (in-process, two peers)", async () => {
  const config = testConfig({ ...LIMITED, RATE_LIMIT_BURST: "1" });
  const app = createApp({
    config,
    version: "test",
    registry: await testRegistry().then((r) => () => r),
    logger: memoryLogger(),
  });
  // The body is invalid so Poe is never called; the bucket is taken before the body is read.
  const send = (peer: string, xff?: string) =>
    app.handler(
      new Request("http://proxy/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", ...(xff ? { "x-forwarded-for": xff } : {}) },
        body: "[]",
      }),
      { remoteAddr: { hostname: peer } },
    ).then(async (r) => (await r.body?.cancel(), r.status));
  assert.equal(await send("203.0.113.1"), 400);
  assert.equal(await send("203.0.113.1"), 429);
  assert.equal(await send("203.0.113.2"), 400);
  // Without TRUST_PROXY, X-Forwarded-For is ignored: a fresh forged address gains nothing.
  assert.equal(await send("203.0.113.1", "198.51.100.9"), 429);
  // Global IPv6 peers share a bucket per /64.
  assert.equal(await send("2001:db8:1:2::1"), 400);
  assert.equal(await send("2001:db8:1:2::ffff"), 429);
  assert.equal(await send("2001:db8:1:3::1"), 400);
});

/** An app of `env`, called in-process from a peer address; each call gives the status. */
async function inProcess(env: Record<string, string>) {
  const logger = memoryLogger();
  const app = createApp({
    config: testConfig(env),
    version: "test",
    registry: await testRegistry().then((r) => () => r),
    logger,
  });
  const answer = (peer: string, req: Request) =>
    app.handler(req, { remoteAddr: { hostname: peer } })
      .then(async (r) => (await r.body?.cancel(), r.status));
  return {
    logger,
    /** GET /v1/models, which needs the key. */
    send: (peer: string, headers: Record<string, string> = {}) =>
      answer(peer, new Request("http://127.0.0.1:8080/v1/models", { headers })),
    /** A chat request of an invalid body: 400 once the client's bucket let it in, 429 if not. */
    chat: (peer: string) =>
      answer(
        peer,
        new Request("http://127.0.0.1:8080/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "[]",
        }),
      ),
    [Symbol.asyncDispose]: () => app.close(),
  };
}

Deno.test("rate limit: IPv6 loopback, link-local and unique-local peers are each their own client", async () => {
  await using s = await inProcess({ ...LIMITED, RATE_LIMIT_BURST: "1" });
  // A household network: the machine itself, and devices by fe80:: and fd00:: addresses.
  const devices = [
    "::1",
    "fe80::1c2d:3eff:fe4f:5a6b",
    "fe80::2",
    "fd12:3456:789a:1::20",
    "fd12:3456:789a:1::21",
  ];
  for (const peer of devices) assert.equal(await s.chat(peer), 400, peer);
  for (const peer of devices) assert.equal(await s.chat(peer), 429, peer);
  // The log names the client by its whole address, as the dashboard does.
  const client = (path: string) =>
    s.logger.lines.filter((l) => l.includes(path)).map((l) => /client=(\S+)/.exec(l)?.[1]);
  assert.ok(client("/v1/chat/completions").includes("::1"), s.logger.lines.join("\n"));
  assert.ok(client("/v1/chat/completions").includes("fe80::2"));
  assert.ok(!s.logger.lines.some((l) => l.includes("/64")));
});

Deno.test("rate limit: RATE_LIMIT_IPV6_PREFIX sets the network of a global IPv6 client; 128 keys each address", async () => {
  const phone = "2a02:8071:1234:5600:aaaa:bbbb:cccc:1";
  const laptop = "2a02:8071:1234:5600:1111:2222:3333:4444";
  {
    await using s = await inProcess({ ...LIMITED, RATE_LIMIT_BURST: "1" });
    assert.equal(await s.chat(phone), 400);
    assert.equal(await s.chat(laptop), 429, "one /64 by default");
    assert.ok(s.logger.lines.some((l) => l.includes("client=2a02:8071:1234:5600::/64")));
  }
  {
    await using s = await inProcess({
      ...LIMITED,
      RATE_LIMIT_BURST: "1",
      RATE_LIMIT_IPV6_PREFIX: "128",
    });
    assert.equal(await s.chat(phone), 400);
    assert.equal(await s.chat(laptop), 400);
    assert.equal(await s.chat(phone), 429);
    assert.ok(s.logger.lines.some((l) => l.includes(`client=${laptop} `)));
  }
  {
    await using s = await inProcess({
      ...LIMITED,
      RATE_LIMIT_BURST: "1",
      RATE_LIMIT_IPV6_PREFIX: "48",
    });
    assert.equal(await s.chat(phone), 400);
    assert.equal(await s.chat("2a02:8071:1234:ff00::1"), 429, "one /48");
    assert.equal(await s.chat("2a02:8071:1235::1"), 400);
  }
});

Deno.test("keys: wrong keys from one LAN device never lock out another (IPv6 link-local, unique-local, /128)", async () => {
  const key = "a-long-enough-random-key-0123";
  const cases: { env: Record<string, string>; guest: string; owner: string }[] = [
    { env: {}, guest: "fe80::aaaa", owner: "fe80::bbbb" },
    { env: {}, guest: "fd00:1:2:3::aaaa", owner: "fd00:1:2:3::bbbb" },
    { env: {}, guest: "::ffff:192.168.1.7", owner: "192.168.1.20" },
    {
      env: { RATE_LIMIT_IPV6_PREFIX: "128" },
      guest: "2a02:8071:1234:5600:aaaa:bbbb:cccc:1",
      owner: "2a02:8071:1234:5600:1111:2222:3333:4444",
    },
  ];
  for (const { env, guest, owner } of cases) {
    await using s = await inProcess({ PROXY_API_KEYS: key, ...env });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) {
      statuses.push(await s.send(guest, { authorization: "Bearer stale-key" }));
    }
    assert.deepEqual(statuses, [...Array(10).fill(401), 429], guest);
    assert.equal(await s.send(owner, { authorization: `Bearer ${key}` }), 200, owner);
  }
  // With the default, a global /64 is one client: its wrong keys count together.
  await using s = await inProcess({ PROXY_API_KEYS: key });
  for (let i = 0; i < 10; i++) await s.send("2001:db8:1:2::a", { authorization: "Bearer x" });
  assert.equal(await s.send("2001:db8:1:2::b", { authorization: `Bearer ${key}` }), 429);
});

Deno.test("rate limit: X-Forwarded-For is believed only from a TRUST_PROXY peer", async (t) => {
  await t.step("peer trusted: each forwarded address has its own bucket", async () => {
    await using s = await setup({ ...LIMITED, RATE_LIMIT_BURST: "1", TRUST_PROXY: "127.0.0.1" });
    assert.equal((await chat(s.proxy.url, { "x-forwarded-for": "198.51.100.1" })).status, 200);
    assert.equal((await chat(s.proxy.url, { "x-forwarded-for": "198.51.100.1" })).status, 429);
    assert.equal((await chat(s.proxy.url, { "x-forwarded-for": "198.51.100.2" })).status, 200);
    // The right-most untrusted address counts: a client cannot prepend its way to a new bucket.
    const forged = await chat(s.proxy.url, { "x-forwarded-for": "10.9.9.9, 198.51.100.1" });
    assert.equal(forged.status, 429);
    assert.ok(s.proxy.logs.some((l) => l.includes("client=198.51.100.2")));
  });
  await t.step("peer not trusted: X-Forwarded-For is ignored", async () => {
    await using s = await setup({ ...LIMITED, RATE_LIMIT_BURST: "1", TRUST_PROXY: "10.0.0.1" });
    assert.equal((await chat(s.proxy.url, { "x-forwarded-for": "198.51.100.1" })).status, 200);
    assert.equal((await chat(s.proxy.url, { "x-forwarded-for": "198.51.100.2" })).status, 429);
    assert.ok(s.proxy.logs.some((l) => l.includes("client=127.0.0.1")));
    assert.ok(!s.proxy.logs.some((l) => l.includes("client=198.51.100")));
  });
});

Deno.test("rate limit: POE_RATE_LIMIT_PER_MINUTE is one bucket for every client", async () => {
  await using s = await setup({
    RATE_LIMIT_PER_MINUTE: "0",
    POE_RATE_LIMIT_PER_MINUTE: "2",
    PROXY_API_KEYS: "k-one,k-two,k-three",
  });
  assert.equal((await chat(s.proxy.url, { authorization: "Bearer k-one" })).status, 200);
  assert.equal((await chat(s.proxy.url, { authorization: "Bearer k-two" })).status, 200);
  const third = await chat(s.proxy.url, { authorization: "Bearer k-three" });
  assert.equal(third.status, 429);
  assertOpenAiError(third.body, "rate_limit_error");
  assert.match(third.body.error.message, /POE_RATE_LIMIT_PER_MINUTE \(2\)/);
  assert.ok(Number(third.headers.get("retry-after")) >= 1);
  assert.equal(s.fake.chatRequests().length, 2);
});

Deno.test("rate limit: the Usage API's calls count against POE_RATE_LIMIT_PER_MINUTE too", async () => {
  await using s = await setup({ RATE_LIMIT_PER_MINUTE: "0", POE_RATE_LIMIT_PER_MINUTE: "6" });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    const before = s.fake.usageCalls();
    const res = await chat(s.proxy.url);
    statuses.push(res.status);
    if (res.status !== 200) break;
    // The answer's cost is looked for in the points history: a call to Poe as well.
    const end = Date.now() + 5_000;
    while (s.fake.usageCalls() === before && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  // Six tokens: three chats and their three history reads (each read at least one call).
  assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
  assert.equal(statuses.at(-1), 429);
  assert.ok(statuses.length <= 4, `${statuses}`);
  assert.ok(s.fake.chatRequests().length + s.fake.usageCalls() <= 6 + 1);
});

Deno.test("rate limit: the dashboard's reads of the history do not refuse chat calls", async () => {
  await using s = await setup({ RATE_LIMIT_PER_MINUTE: "0", POE_RATE_LIMIT_PER_MINUTE: "20" });
  // 3,000 entries: the dashboard's first read takes 30 pages at once.
  const now = Date.now();
  for (let i = 0; i < 3000; i++) {
    s.fake.addHistory({ bot_name: "GPT-4o", creation_time: (now - 60_000 - i * 1000) * 1000 });
  }
  const before = s.fake.usageCalls();
  const page = await fetch(`${s.proxy.url}/api/usage`);
  assert.equal(page.status, 200);
  await page.body?.cancel();
  assert.ok(s.fake.usageCalls() - before >= 30, `${s.fake.usageCalls() - before} calls`);
  assert.equal((await chat(s.proxy.url)).status, 200);
});

Deno.test("rate limit: requests that never reach Poe spend nothing of the global bucket", async () => {
  await using s = await setup({ RATE_LIMIT_PER_MINUTE: "0", POE_RATE_LIMIT_PER_MINUTE: "1" });
  for (let i = 0; i < 5; i++) assert.equal((await chat(s.proxy.url, {}, "{")).status, 400);
  assert.equal((await chat(s.proxy.url)).status, 200);
  assert.equal((await chat(s.proxy.url)).status, 429);
  assert.equal(s.fake.chatRequests().length, 1);
});

Deno.test("rate limit: RATE_LIMIT_PER_MINUTE=0 turns it off; only Poe's own headers pass on", async () => {
  await using s = await setup({ RATE_LIMIT_PER_MINUTE: "0", RATE_LIMIT_BURST: "1" });
  for (let i = 0; i < 5; i++) {
    const a = await chat(s.proxy.url);
    assert.equal(a.status, 200);
    // The fake reports Poe's account limit of 500; nothing of the disabled bucket of 1.
    assert.equal(a.headers.get("x-ratelimit-limit-requests"), "500");
  }
  const bad = await chat(s.proxy.url, {}, "{");
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.get("x-ratelimit-limit-requests"), null);
});

// --- inbound keys -------------------------------------------------------------------------------

Deno.test("keys: Bearer and x-api-key accepted; wrong or missing is 401; /healthz open", async () => {
  await using s = await setup({ PROXY_API_KEYS: "good-key-1, good-key-2" });
  const url = s.proxy.url;
  assert.equal((await call(`${url}/healthz`)).status, 200);
  const attempts: Record<string, string>[] = [
    {},
    { authorization: "Bearer wrong-key" },
    { authorization: "Bearer good-key-1x" },
    { authorization: "Basic Z29vZC1rZXktMQ==" },
    { authorization: "good-key-1" },
    { "x-api-key": "" },
    { "x-api-key": "good-key" },
  ];
  // Nine wrong tries in all: the tenth would make this address wait (a test of its own).
  const tries: [string, Record<string, string>][] = [
    ...attempts.map((headers): [string, Record<string, string>] => ["/v1/models", headers]),
    ["/v1/models/gpt-4o", {}],
  ];
  for (const [path, headers] of tries) {
    const a = await call(`${url}${path}`, { headers });
    assert.equal(a.status, 401, `${path} ${JSON.stringify(headers)}`);
    assertOpenAiError(a.body, "authentication_error");
    assert.equal(a.body.error.code, "invalid_api_key");
    assert.equal(a.headers.get("www-authenticate"), "Bearer");
    assert.ok(!JSON.stringify(a.body).includes("good-key"));
  }
  const c = await chat(url, { authorization: "Bearer wrong-key" });
  assert.equal(c.status, 401);
  assertOpenAiError(c.body, "authentication_error");
  assert.equal(s.fake.chatRequests().length, 0);
  assert.equal(
    (await call(`${url}/v1/models`, { headers: { authorization: "Bearer good-key-1" } }))
      .status,
    200,
  );
  assert.equal(
    (await call(`${url}/v1/models`, { headers: { authorization: "bearer  good-key-2" } }))
      .status,
    200,
  );
  assert.equal(
    (await call(`${url}/v1/models`, { headers: { "x-api-key": "good-key-2" } })).status,
    200,
  );
  assert.equal((await chat(url, { "x-api-key": "good-key-1" })).status, 200);
  // A wrong Bearer with a right x-api-key still gets in (each candidate is checked).
  assert.equal(
    (await call(`${url}/v1/models`, {
      headers: { authorization: "Bearer nope", "x-api-key": "good-key-1" },
    })).status,
    200,
  );
  // An unknown endpoint under /v1/ says 404, not whether a key is right.
  assert.equal((await call(`${url}/v1/nothing`)).status, 404);
});

Deno.test("keys: PROXY_API_KEYS_FILE is read by main.ts, one key a line, comments skipped", async () => {
  await using fake = await FakePoe.start();
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/keys.txt`, "# clients\nfile-key-one\n\n  file-key-two  \r\n");
  await using proxy = await startProxyProcess({
    env: {
      POE_API_KEY: "test-poe-key",
      POE_BASE_URL: fake.url,
      PORT: "0",
      FOOTER: "off",
      PROXY_API_KEYS: "env-key",
      PROXY_API_KEYS_FILE: `${dir}/keys.txt`,
    },
    cwd: dir,
  });
  assert.equal((await call(`${proxy.url}/healthz`)).status, 200);
  assert.equal((await call(`${proxy.url}/v1/models`)).status, 401);
  assert.equal(
    (await call(`${proxy.url}/v1/models`, { headers: { "x-api-key": "# clients" } }))
      .status,
    401,
  );
  for (const key of ["file-key-one", "file-key-two", "env-key"]) {
    const a = await call(`${proxy.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(a.status, 200, key);
  }
  assert.equal((await chat(proxy.url, { authorization: "Bearer file-key-two" })).status, 200);
  assert.equal(await proxy.stop(), 0);
  const printed = proxy.stdout() + proxy.stderr();
  for (const key of ["file-key-one", "file-key-two", "env-key"]) assert.ok(!printed.includes(key));
  assert.ok(!printed.includes("no inbound keys"));
});

Deno.test("keys: an unreadable PROXY_API_KEYS_FILE stops main.ts with exit code 2", async () => {
  const out = await mainCommand([], {
    POE_API_KEY: "k",
    PORT: "0",
    PROXY_API_KEYS_FILE: "/nonexistent/keys.txt",
  }).output();
  assert.equal(out.code, 2);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /PROXY_API_KEYS_FILE "\/nonexistent\/keys\.txt"/,
  );
});

// --- CORS ---------------------------------------------------------------------------------------

const ORIGIN = "https://app.example.com";

function corsHeaderNames(headers: Headers): string[] {
  return [...headers.keys()].filter((k) => k.startsWith("access-control-"));
}

Deno.test("CORS: CORS_ORIGINS empty sends no CORS headers, even to a preflight", async () => {
  await using s = await setup();
  // A page's request is refused outright: a simple POST needs no preflight to reach Poe.
  const get = await call(`${s.proxy.url}/v1/models`, { headers: { origin: ORIGIN } });
  assert.equal(get.status, 403);
  assert.deepEqual(corsHeaderNames(get.headers), []);
  const pre = await call(`${s.proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: ORIGIN, "access-control-request-method": "POST" },
  });
  assert.deepEqual(corsHeaderNames(pre.headers), []);
  // The browser shows only "CORS error": the log names the origin and the setting, once.
  await call(`${s.proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: ORIGIN, "access-control-request-method": "POST" },
  });
  const told = s.proxy.logs.filter((l) => l.includes("origin not allowed"));
  assert.equal(told.length, 1, told.join("\n"));
  assert.ok(told[0].includes(ORIGIN) && told[0].includes("CORS_ORIGINS"), told[0]);
});

Deno.test("CORS: an allowed origin gets headers and its preflight 204; others get none", async () => {
  await using s = await setup({
    CORS_ORIGINS: `${ORIGIN}, https://other.example.com`,
    PROXY_API_KEYS: "browser-key",
    ...LIMITED,
  });
  const pre = await call(`${s.proxy.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: {
      origin: ORIGIN,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type",
    },
  });
  // The preflight carries no key and still succeeds.
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), ORIGIN);
  assert.match(pre.headers.get("access-control-allow-methods")!, /\bPOST\b/);
  assert.match(pre.headers.get("access-control-allow-headers")!, /authorization/i);
  assert.match(pre.headers.get("access-control-allow-headers")!, /content-type/i);
  assert.match(pre.headers.get("vary")!, /origin/i);

  const ok = await chat(s.proxy.url, { origin: ORIGIN, authorization: "Bearer browser-key" });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), ORIGIN);
  assert.match(ok.headers.get("access-control-expose-headers")!, /x-ratelimit-remaining-requests/);
  // An error is readable by the page too.
  const refused = await chat(s.proxy.url, { origin: ORIGIN });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get("access-control-allow-origin"), ORIGIN);

  for (const origin of ["https://evil.example.com", "https://app.example.com.evil.net", "null"]) {
    const pre2 = await call(`${s.proxy.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST" },
    });
    assert.deepEqual(corsHeaderNames(pre2.headers), [], origin);
    const get = await call(`${s.proxy.url}/v1/models`, {
      headers: { origin, authorization: "Bearer browser-key" },
    });
    assert.equal(get.status, 403);
    assert.deepEqual(corsHeaderNames(get.headers), [], origin);
  }
});

Deno.test("CORS: CORS_ORIGINS=* allows any origin with a literal *", async () => {
  await using s = await setup({ CORS_ORIGINS: "*" });
  const get = await call(`${s.proxy.url}/healthz`, { headers: { origin: "https://x.example" } });
  assert.equal(get.headers.get("access-control-allow-origin"), "*");
});

// --- the startup warning ------------------------------------------------------------------------

const WARNING = /anyone who can reach this port spends your Poe points/;

Deno.test("main.ts warns at startup on a non-loopback HOST without keys, and only then", async (t) => {
  const base = { POE_API_KEY: "k", PORT: "0", LOG_FORMAT: "text" };
  await t.step("HOST=0.0.0.0 without keys: warns", async () => {
    await using proxy = await startProxyProcess({ env: { ...base, HOST: "0.0.0.0" } });
    // Only the loopback address is used, though the server listens on every interface.
    const port = new URL(proxy.url).port;
    assert.equal((await call(`http://127.0.0.1:${port}/healthz`)).status, 200);
    await proxy.stop();
    assert.match(proxy.stderr() + proxy.stdout(), WARNING);
    assert.match(proxy.stderr(), /WARN/);
  });
  await t.step("HOST=0.0.0.0 with keys: silent", async () => {
    await using proxy = await startProxyProcess({
      env: { ...base, HOST: "0.0.0.0", PROXY_API_KEYS: "some-key" },
    });
    await proxy.stop();
    assert.doesNotMatch(proxy.stderr() + proxy.stdout(), WARNING);
  });
  await t.step("HOST=127.0.0.1 without keys: silent", async () => {
    await using proxy = await startProxyProcess({ env: { ...base, HOST: "127.0.0.1" } });
    await proxy.stop();
    assert.doesNotMatch(proxy.stderr() + proxy.stdout(), WARNING);
  });
});

// --- bounded memory under a flood of addresses --------------------------------------------------

const FLOOD_ENV = {
  RATE_LIMIT_PER_MINUTE: "60",
  RATE_LIMIT_BURST: "3",
  TRUST_PROXY: "127.0.0.1",
  MAX_TRACKED_CLIENTS: "1000",
};

/** The `i`-th address of a flood: 10.x.y.z, all distinct for i < 2^24. */
function floodAddress(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

Deno.test("rate limit: 20,000 forwarded addresses leave at most MAX_TRACKED_CLIENTS buckets", async () => {
  const app = createApp({
    config: testConfig(FLOOD_ENV),
    version: "test",
    registry: await testRegistry().then((r) => () => r),
    logger: memoryLogger("warn"),
  });
  try {
    // The bucket is taken before the body is read, so an invalid body still costs a token.
    const send = (xff: string) =>
      app.handler(
        new Request("http://proxy/v1/chat/completions", {
          method: "POST",
          headers: { "content-type": "application/json", "x-forwarded-for": xff },
          body: "[]",
        }),
        { remoteAddr: { hostname: "127.0.0.1" } },
      ).then(async (r) => (await r.body?.cancel(), r.status));
    let most = 0;
    for (let i = 0; i < 20_000; i++) {
      assert.equal(await send(floodAddress(i)), 400);
      most = Math.max(most, app.stats().trackedClients);
    }
    assert.equal(most, 1000);
    assert.equal(app.stats().trackedClients, 1000);
    // The newest clients keep their buckets: 2 tokens left, then refused.
    const recent = floodAddress(19_999);
    assert.equal(await send(recent), 400);
    assert.equal(await send(recent), 400);
    assert.equal(await send(recent), 429);
    // An evicted client starts again with a full bucket (a missing bucket is a full one).
    assert.equal(await send(floodAddress(0)), 400);
    assert.ok(app.stats().trackedClients <= 1000);
  } finally {
    await app.close();
  }
});

Deno.test("rate limit: the flood over HTTP through a trusted proxy keeps buckets bounded", async () => {
  const app = createApp({
    config: testConfig(FLOOD_ENV),
    version: "test",
    registry: await testRegistry().then((r) => () => r),
    logger: memoryLogger("warn"),
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => app.handler(req, { remoteAddr: info.remoteAddr }),
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/v1/chat/completions`;
    let next = 0;
    let most = 0;
    const worker = async () => {
      while (next < 3000) {
        const i = next++;
        const res = await fetch(url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-forwarded-for": `203.0.113.9, ${floodAddress(i)}`,
          },
          body: "{}",
        });
        await res.body?.cancel();
        assert.equal(res.status, 400);
        assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "2");
        most = Math.max(most, app.stats().trackedClients);
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    assert.ok(most <= 1000, `${most} buckets`);
    assert.equal(app.stats().trackedClients, 1000);
  } finally {
    await server.shutdown();
    await app.close();
  }
});

Deno.test("answers carry the request id, CORS and the client's own limits, streamed or not", async () => {
  await using s = await setup({
    CORS_ORIGINS: ORIGIN,
    RATE_LIMIT_PER_MINUTE: "60",
    RATE_LIMIT_BURST: "5",
  });
  for (const stream of [false, true]) {
    const res = await fetch(`${s.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        origin: ORIGIN,
        "x-request-id": `id-${stream}`,
      },
      body: JSON.stringify({
        model: "gpt-4o",
        stream,
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal(res.headers.get("x-request-id"), `id-${stream}`);
    assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN);
    assert.equal(res.headers.get("vary"), "Origin");
    // This proxy's bucket for the client (burst 5), not Poe's account-wide figures.
    assert.equal(res.headers.get("x-ratelimit-limit-requests"), "5");
    assert.match(res.headers.get("x-ratelimit-remaining-requests")!, /^[0-4]$/);
    assert.equal(
      res.headers.get("content-type")?.split(";")[0],
      stream ? "text/event-stream" : "application/json",
    );
    // A stream's cost comes after its headers, in the footer and usage.
    assert.equal(res.headers.has("x-poe-points"), !stream);
  }
});

// --- web pages: foreign origins and DNS rebinding ---------------------------------------------

Deno.test("a web page of a foreign origin cannot spend points, even with a simple no-preflight POST", async () => {
  await using s = await setup();
  const res = await fetch(`${s.proxy.url}/v1/chat/completions`, {
    method: "POST",
    // What a page's `fetch(url, {mode: "no-cors", body: "..."})` sends.
    headers: { "content-type": "text/plain;charset=UTF-8", origin: "https://evil.example" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(res.status, 403);
  const body = await res.json();
  assert.equal(body.error.code, "origin_not_allowed");
  assert.match(body.error.message, /CORS_ORIGINS/);
  assert.equal(s.fake.chatRequests().length, 0);
  // The proxy's own page (the dashboard) is same-origin.
  const own = await fetch(`${s.proxy.url}/api/usage`, { headers: { origin: s.proxy.url } });
  assert.equal(own.status, 200);
  await own.body?.cancel();
});

Deno.test("without inbound keys, only localhost, IP addresses and ALLOWED_HOSTS are answered (DNS rebinding)", async () => {
  // What Chromium sends on a same-origin GET over plain http: no Sec-Fetch-*, no Origin.
  const statusFor = async (
    url: string,
    host: string,
    browser = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0\r\n",
  ) => {
    const res = await rawRequest(
      portOf(url),
      `GET /api/usage HTTP/1.1\r\nHost: ${host}\r\n${browser}Connection: close\r\n\r\n`,
      { timeoutMs: 5000 },
    );
    return { status: res.status, text: res.text };
  };
  {
    await using s = await setup({ ALLOWED_HOSTS: "homeserver, nas.lan" });
    for (
      const host of [
        "127.0.0.1:8080",
        "localhost:8080",
        "[::1]:8080",
        "192.168.1.5",
        "app.localhost",
        "HomeServer:8080",
        "nas.lan",
      ]
    ) {
      assert.equal((await statusFor(s.proxy.url, host)).status, 200, host);
    }
    // A page of attacker.example, whose name now resolves to 127.0.0.1.
    for (
      const host of [
        "attacker.example:8080",
        "homeserver.attacker.example",
        "localhost.attacker.example",
      ]
    ) {
      const r = await statusFor(s.proxy.url, host);
      assert.equal(r.status, 403, host);
      const body = rawJsonBody(r.text) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "host_not_allowed");
      assert.match(body.error.message, /ALLOWED_HOSTS/);
    }
    // A program (an SDK, a chat UI's server, another container) may reach the API by any name.
    for (const host of ["poe-proxy:8080", "host.docker.internal:8080"]) {
      const api = await rawRequest(
        portOf(s.proxy.url),
        `GET /v1/models HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
        { timeoutMs: 5000 },
      );
      assert.equal(api.status, 200, host);
      // Not the dashboard's figures, whose readers are browsers (a Firefox page may set its own
      // user agent) and scrapers: those need ALLOWED_HOSTS.
      for (const path of ["/api/usage", "/metrics", "/"]) {
        const data = await rawRequest(
          portOf(s.proxy.url),
          `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n`,
          { timeoutMs: 5000 },
        );
        assert.equal(data.status, 403, `${host}${path}`);
      }
    }
    assert.equal(
      (await statusFor(s.proxy.url, "attacker.example", "Sec-Fetch-Mode: cors\r\n")).status,
      403,
    );
    // A rebinding page's POST carries an Origin of the same name: refused too.
    assert.equal(
      (await statusFor(s.proxy.url, "attacker.example", "Origin: http://attacker.example\r\n"))
        .status,
      403,
    );
  }
  // With keys, a page cannot authenticate: any host name is answered.
  await using k = await setup({ PROXY_API_KEYS: "k1" });
  assert.equal((await statusFor(k.proxy.url, "attacker.example")).status, 401);
  await using any = await setup({ ALLOWED_HOSTS: "*" });
  assert.equal((await statusFor(any.proxy.url, "attacker.example")).status, 200);
});

// --- review fixes: empty key files, app origins, auth failures, the global bucket --------------

Deno.test("keys: a PROXY_API_KEYS_FILE that holds no key stops main.ts; short keys are warned about", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/keys.txt`, "# alice-key\n# bob-key\n\n");
  const out = await mainCommand([], {
    POE_API_KEY: "k",
    PORT: "0",
    PROXY_API_KEYS_FILE: `${dir}/keys.txt`,
  }).output();
  assert.equal(out.code, 2, "an emptied file must not leave the proxy open");
  assert.match(new TextDecoder().decode(out.stderr), /holds no key/);

  await using fake = await FakePoe.start();
  await using proxy = await startProxyProcess({
    env: {
      POE_API_KEY: "test-poe-key",
      POE_BASE_URL: fake.url,
      PORT: "0",
      PROXY_API_KEYS: "q7,a-long-enough-random-key-0123",
    },
    cwd: dir,
  });
  assert.equal(await proxy.stop(), 0);
  const printed = proxy.stdout() + proxy.stderr();
  assert.match(printed, /1 of the inbound keys is shorter than 16 characters/);
  assert.ok(!printed.includes("q7,") && !/\bq7\b/.test(printed), "the short key is not shown");
});

Deno.test("CORS: app and extension origins can be allowed by name; null cannot", async () => {
  for (const bad of ["null", "app://obsidian.md/path", "javascript:alert(1)"]) {
    assert.throws(() => testConfig({ CORS_ORIGINS: bad }), /CORS_ORIGINS/, bad);
  }
  await using s = await setup({
    CORS_ORIGINS: "app://obsidian.md, chrome-extension://abcdefghijklmnop, tauri://localhost, " +
      "safari-web-extension://E8D5C1F0-1234-4A5B-9C8D-0123456789AB",
    PROXY_API_KEYS: "a-long-enough-random-key-0123",
    FOOTER: "off",
  });
  for (
    const origin of [
      "app://obsidian.md",
      "chrome-extension://abcdefghijklmnop",
      // Safari keeps an extension's upper-case id in its origin, which is named back as it came.
      "safari-web-extension://E8D5C1F0-1234-4A5B-9C8D-0123456789AB",
    ]
  ) {
    const a = await chat(s.proxy.url, {
      origin,
      authorization: "Bearer a-long-enough-random-key-0123",
    });
    assert.equal(a.status, 200, origin);
    assert.equal(a.headers.get("access-control-allow-origin"), origin);
  }
  const other = await chat(s.proxy.url, {
    origin: "app://other.app",
    authorization: "Bearer a-long-enough-random-key-0123",
  });
  assert.equal(other.status, 403);
});

Deno.test("CORS: a page of an allowed origin gets its preflight when the proxy is reached by a name", async () => {
  await using s = await setup({ CORS_ORIGINS: ORIGIN });
  const preflight = (origin: string) =>
    rawRequest(
      portOf(s.proxy.url),
      `OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: homeserver.lan:8080\r\nOrigin: ${origin}\r\n` +
        "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
      { timeoutMs: 5000 },
    );
  const allowed = await preflight(ORIGIN);
  assert.equal(allowed.status, 204, allowed.text);
  // A DNS-rebinding page's origin is the host itself: still refused.
  assert.equal((await preflight("http://homeserver.lan:8080")).status, 403);
});

Deno.test("keys: wrong keys from one address are 401 ten times, then 429 for that address, right key or not", async () => {
  const key = "a-long-enough-random-key-0123";
  await using s = await setup({ PROXY_API_KEYS: key, FOOTER: "off" });
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    statuses.push((await chat(s.proxy.url, { authorization: `Bearer guess-${i}` })).status);
  }
  assert.deepEqual(statuses, [...Array(10).fill(401), 429, 429]);
  const right = await chat(s.proxy.url, { authorization: `Bearer ${key}` });
  assert.equal(right.status, 429, "a key found by trying would be hidden");
  assertOpenAiError(right.body, "rate_limit_error");
  assert.equal(right.body.error.code, "too_many_auth_failures");
  assert.ok(Number(right.headers.get("retry-after")) >= 1);
  assert.equal(s.fake.chatRequests().length, 0);
});

Deno.test("keys: a request that sends two wrong keys (Bearer and x-api-key) counts as two guesses", async () => {
  const key = "a-long-enough-random-key-0123";
  await using s = await setup({ PROXY_API_KEYS: key, FOOTER: "off" });
  const statuses: number[] = [];
  for (let i = 0; i < 7; i++) {
    const headers = { authorization: `Bearer guess-a-${i}`, "x-api-key": `guess-b-${i}` };
    statuses.push((await chat(s.proxy.url, headers)).status);
  }
  assert.deepEqual(statuses, [...Array(5).fill(401), 429, 429]);
  // The same key in both headers is one guess.
  await using t = await setup({ PROXY_API_KEYS: key, FOOTER: "off" });
  const same: number[] = [];
  for (let i = 0; i < 10; i++) {
    const headers = { authorization: `Bearer guess-${i}`, "x-api-key": `guess-${i}` };
    same.push((await chat(t.proxy.url, headers)).status);
  }
  assert.deepEqual(same, Array(10).fill(401));
});

Deno.test("rate limit: a refusal in front of Poe spends nothing of the client's own bucket, and shows its headers", async () => {
  await using s = await setup({
    RATE_LIMIT_PER_MINUTE: "60",
    RATE_LIMIT_BURST: "3",
    POE_RATE_LIMIT_PER_MINUTE: "2",
    PROXY_API_KEYS: "key-a-0123456789abcdef,key-b-0123456789abcdef",
    FOOTER: "off",
  });
  const a = { authorization: "Bearer key-a-0123456789abcdef" };
  const b = { authorization: "Bearer key-b-0123456789abcdef" };
  assert.equal((await chat(s.proxy.url, a)).status, 200);
  assert.equal((await chat(s.proxy.url, a)).status, 200);
  for (let i = 0; i < 4; i++) {
    const refused = await chat(s.proxy.url, b);
    assert.equal(refused.status, 429);
    assert.match(refused.body.error.message, /POE_RATE_LIMIT_PER_MINUTE/);
    assert.equal(refused.headers.get("x-ratelimit-limit-requests"), "3", "B's own limit");
    assert.equal(remaining(refused), 3, "nothing of B's spent");
    assert.ok(Number(refused.headers.get("retry-after")) >= 1, "the global bucket's wait");
  }
  assert.equal(s.fake.chatRequests().length, 2);
});

Deno.test("keys: a DNS-rebinding page's wrong keys lock out the pages at its address, never the owner's programs", async () => {
  const key = "a-long-enough-random-key-0123";
  await using s = await setup({ PROXY_API_KEYS: key, FOOTER: "off" });
  const port = portOf(s.proxy.url);
  // What a same-origin fetch() sends from a page at evil.example that rebound its name to us.
  const page = (name: string, auth: string) =>
    rawRequest(
      port,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: ${name}:${port}\r\n` +
        `Origin: http://${name}:${port}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0\r\n` +
        "Sec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\n" +
        `Authorization: Bearer ${auth}\r\nContent-Type: application/json\r\n` +
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
      { timeoutMs: 5000 },
    );
  const statuses: number[] = [];
  // A fresh name for every try buys nothing: the name is the page's to choose.
  for (let i = 0; i < 11; i++) {
    statuses.push((await page(`h${i}.evil.example`, `guess-${i}`)).status);
  }
  assert.deepEqual(statuses, [...Array(10).fill(401), 429]);
  // The page cannot find the key by trying: the pages at its address wait, right key or not.
  const found = await page("another.evil.example", key);
  assert.equal(found.status, 429);
  const body = rawJsonBody(found.text) as { error: { code: string; message: string } };
  assert.equal(body.error.code, "too_many_auth_failures");
  assert.match(body.error.message, /web pages \(at "another\.evil\.example"\) on this address/);
  // The owner's program at the same address, with the right key, gets in.
  const client = new OpenAI({ baseURL: `${s.proxy.url}/v1`, apiKey: key, maxRetries: 0 });
  const answer = await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "hi" }],
  });
  assert.equal(answer.choices[0].message.role, "assistant");
  assert.equal(s.fake.chatRequests().length, 1);
  // A program's wrong keys still count against the address.
  const wrong: number[] = [];
  for (let i = 0; i < 11; i++) {
    wrong.push((await chat(s.proxy.url, { authorization: `Bearer guess-${i}` })).status);
  }
  assert.deepEqual(wrong, [...Array(10).fill(401), 429]);
});

Deno.test("keys: a stranger's wrong keys from a browser hold up no other address's browser", async () => {
  const key = "a-long-enough-random-key-0123";
  await using s = await setup({ PROXY_API_KEYS: key, FOOTER: "off", TRUST_PROXY: "127.0.0.1" });
  const port = portOf(s.proxy.url);
  // Behind a reverse proxy at poe.example.com: the dashboard's own reads, from two addresses.
  const usage = (from: string, auth: string) =>
    rawRequest(
      port,
      `GET /api/usage HTTP/1.1\r\nHost: poe.example.com\r\nX-Forwarded-For: ${from}\r\n` +
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0\r\nSec-Fetch-Mode: cors\r\n" +
        `Authorization: Bearer ${auth}\r\nConnection: close\r\n\r\n`,
      { timeoutMs: 5000 },
    );
  const statuses: number[] = [];
  for (let i = 0; i < 11; i++) statuses.push((await usage("203.0.113.5", `guess-${i}`)).status);
  assert.deepEqual(statuses, [...Array(10).fill(401), 429]);
  assert.equal((await usage("198.51.100.7", key)).status, 200, "the owner's dashboard elsewhere");
});

Deno.test("keys: a LAN device rotating its IPv6 addresses waits, and never holds up a device that showed its key", async () => {
  const key = "a-long-enough-random-key-0123";
  await using s = await setup({ PROXY_API_KEYS: key, FOOTER: "off", TRUST_PROXY: "127.0.0.1" });
  const models = (from: string, auth: string) =>
    call(`${s.proxy.url}/v1/models`, {
      headers: { "x-forwarded-for": from, authorization: `Bearer ${auth}` },
    });
  assert.equal((await models("fd00:1:2:3::bbbb", key)).status, 200);
  const statuses: number[] = [];
  for (let a = 1; a <= 11; a++) {
    for (let i = 0; i < 10; i++) {
      statuses.push((await models(`fd00:1:2:3::${a.toString(16)}`, `guess-${a}-${i}`)).status);
    }
  }
  assert.equal(statuses.filter((x) => x === 401).length, 100, "a hundred for the network");
  assert.equal(statuses.filter((x) => x === 429).length, 10);
  assert.equal((await models("fd00:1:2:3::bbbb", key)).status, 200, "the owner's device");
  assert.equal((await models("fd00:1:2:3::cccc", key)).status, 429, "a device first seen now");
});

Deno.test("keys: requests that carry no key (a page's image, a probe) never lock the address out", async () => {
  const key = "a-long-enough-random-key-0123";
  await using s = await setup({ PROXY_API_KEYS: key, FOOTER: "off" });
  // What any web page makes a browser send for <img src="http://127.0.0.1:8080/v1/models">.
  const image = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
    "sec-fetch-mode": "no-cors",
    "sec-fetch-site": "cross-site",
  };
  for (let i = 0; i < 15; i++) {
    assert.equal((await call(`${s.proxy.url}/v1/models`, { headers: image })).status, 401);
  }
  const client = new OpenAI({ baseURL: `${s.proxy.url}/v1`, apiKey: key, maxRetries: 0 });
  const list = await client.models.list();
  assert.ok(list.data.length > 0, "the owner's program still gets in");
});
