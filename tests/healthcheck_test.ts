/** @module healthUrl and healthcheck: `poe-proxy healthcheck` against real servers on port 0. */
import assert from "node:assert/strict";
import { healthcheck, healthUrl } from "../lib/healthcheck.ts";
import { startProxy } from "./harness.ts";

/** A free loopback port that nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A server on 127.0.0.1 port 0 that answers with `answer` and records what it was asked. */
function serve(answer: () => Response | Promise<Response>) {
  const requests: { method: string; path: string; userAgent: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { method, url, headers } = req;
    requests.push({ method, path: new URL(url).pathname, userAgent: headers.get("user-agent") });
    return answer();
  });
  return {
    port: server.addr.port,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("healthUrl asks wildcard addresses on loopback and brackets IPv6", () => {
  assert.equal(healthUrl("0.0.0.0", 8080), "http://127.0.0.1:8080/healthz");
  assert.equal(healthUrl("127.0.0.1", 1), "http://127.0.0.1:1/healthz");
  assert.equal(healthUrl("::", 80), "http://[::1]:80/healthz");
  assert.equal(healthUrl("::1", 80), "http://[::1]:80/healthz");
  assert.equal(healthUrl("localhost", 9), "http://localhost:9/healthz");
});

Deno.test("healthcheck is healthy against a running proxy, unhealthy against nothing", async () => {
  await using proxy = await startProxy();
  const port = Number(new URL(proxy.url).port);
  const ok = await healthcheck("0.0.0.0", port);
  assert.equal(ok.healthy, true, ok.message);
  assert.match(ok.message, /^healthy: .*\d+ models/);
  const none = await healthcheck("127.0.0.1", closedPort());
  assert.equal(none.healthy, false);
  assert.match(none.message, /^unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz: /);
  assert.equal((await healthcheck("127.0.0.1", 0)).healthy, false);
});

Deno.test("healthcheck is unhealthy on another status, a wrong body, or no answer in time", async () => {
  const answers = [
    () => new Response('{"status":"ok"}', { status: 503 }),
    () => new Response('{"status":"starting"}'),
    () => new Response("<html>"),
  ];
  for (const answer of answers) {
    const result = await healthcheck("127.0.0.1", 1, { fetch: () => Promise.resolve(answer()) });
    assert.equal(result.healthy, false, result.message);
  }
  const hang: typeof fetch = (_input, init) =>
    new Promise((_resolve, reject) => {
      init?.signal?.addEventListener("abort", () => reject(init.signal!.reason));
    });
  const slow = await healthcheck("127.0.0.1", 1, { fetch: hang, timeoutMs: 50 });
  assert.equal(slow.healthy, false);
  assert.match(slow.message, /no answer within 50 ms/);
});

Deno.test("healthUrl: an empty host or bracketed wildcard is asked on loopback; IPv6 is bracketed once", () => {
  assert.equal(healthUrl("", 8080), "http://127.0.0.1:8080/healthz");
  assert.equal(healthUrl("[::]", 8080), "http://[::1]:8080/healthz");
  assert.equal(healthUrl("[::1]", 8080), "http://[::1]:8080/healthz");
  assert.equal(healthUrl("fe80::1", 8080), "http://[fe80::1]:8080/healthz");
  assert.equal(healthUrl("192.168.1.5", 8080), "http://192.168.1.5:8080/healthz");
});

Deno.test("healthcheck GETs /healthz with its own User-Agent and reports version and models", async () => {
  await using server = serve(() => Response.json({ status: "ok", version: "1.2.3", models: 7 }));
  const result = await healthcheck("0.0.0.0", server.port);
  assert.deepEqual(result, {
    healthy: true,
    message:
      `healthy: http://127.0.0.1:${server.port}/healthz answered ok (version 1.2.3, 7 models)`,
  });
  assert.deepEqual(server.requests, [
    { method: "GET", path: "/healthz", userAgent: "poe-proxy-healthcheck" },
  ]);
});

Deno.test("healthcheck: another status or body is unhealthy, with the status and 200 characters of the body", async () => {
  const long = "x".repeat(1000);
  const answers: [() => Response, RegExp][] = [
    [() => Response.json({ status: "ok" }, { status: 503 }), /answered 503: \{"status":"ok"\}$/],
    [() => Response.json({ status: "draining" }), /answered 200: \{"status":"draining"\}$/],
    [() => new Response("null"), /answered 200: null$/],
    [() => new Response(long, { status: 500 }), new RegExp(`answered 500: x{200}$`)],
  ];
  for (const [answer, message] of answers) {
    await using server = serve(answer);
    const result = await healthcheck("127.0.0.1", server.port);
    assert.equal(result.healthy, false);
    assert.match(result.message, /^unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz answered /);
    assert.match(result.message, message);
  }
});

Deno.test("healthcheck: a server that never answers is unhealthy after timeoutMs", async () => {
  const held: (() => void)[] = [];
  await using server = serve(() =>
    new Promise<Response>((resolve) => held.push(() => resolve(new Response("late"))))
  );
  try {
    const t0 = performance.now();
    const result = await healthcheck("127.0.0.1", server.port, { timeoutMs: 100 });
    const took = performance.now() - t0;
    assert.equal(result.healthy, false);
    assert.equal(
      result.message,
      `unhealthy: http://127.0.0.1:${server.port}/healthz: no answer within 100 ms`,
    );
    assert.ok(took >= 95 && took < 2_000, `gave up after ${took} ms`);
  } finally {
    // The server shuts down only once its requests are answered.
    for (const answer of held) answer();
  }
});

Deno.test("healthcheck stops its timer once answered: the request is not aborted later", async () => {
  await using server = serve(() => Response.json({ status: "ok", version: "1", models: 1 }));
  // The real fetch, watched: the signal it was given.
  const signals: AbortSignal[] = [];
  const watched: typeof fetch = (input, init) => {
    if (init?.signal) signals.push(init.signal);
    return fetch(input, init);
  };
  const result = await healthcheck("127.0.0.1", server.port, { timeoutMs: 30, fetch: watched });
  assert.equal(result.healthy, true, result.message);
  assert.equal(signals.length, 1);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(signals[0].aborted, false);
});

Deno.test("healthcheck: port 0 is unhealthy without asking anyone", async () => {
  assert.deepEqual(await healthcheck("127.0.0.1", 0), {
    healthy: false,
    message: "unhealthy: PORT is 0, so there is no known port to ask",
  });
});

Deno.test("healthcheck asks an IPv6 server on ::1, for HOST :: or ::1", async (t) => {
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: "::1", port: 0, onListen: () => {} },
      () => Response.json({ status: "ok", version: "v6", models: 1 }),
    );
  } catch {
    t.step({ name: "no IPv6 loopback here", ignore: true, fn: () => {} });
    return;
  }
  try {
    for (const host of ["::", "::1", "[::1]"]) {
      const result = await healthcheck(host, server.addr.port);
      assert.equal(result.healthy, true, `${host}: ${result.message}`);
    }
  } finally {
    await server.shutdown();
  }
});
