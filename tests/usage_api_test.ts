/** @module The Usage API client: parsing, and UsageApi against real servers on port 0. */
import assert from "node:assert/strict";
import {
  breakdownTokens,
  MAX_USAGE_BODY_BYTES,
  parseBalance,
  parsePointsPage,
  poeTimeToMs,
  UsageApi,
  UsageApiError,
} from "../lib/usage_api.ts";
import { FakePoe } from "./fake_poe.ts";
import { paddedJson } from "./body_streams.ts";

/** What a scripted server was asked. */
interface Asked {
  path: string;
  search: string;
  authorization: string | null;
  userAgent: string | null;
}

/**
 * A server on 127.0.0.1 port 0 whose answers are scripted, one per request (the last repeats),
 * recording what it was asked.
 */
function scripted(...answers: (() => Response)[]) {
  const asked: Asked[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    asked.push({
      path: url.pathname,
      search: url.search,
      authorization: req.headers.get("authorization"),
      userAgent: req.headers.get("user-agent"),
    });
    return (answers.length > 1 ? answers.shift()! : answers[0])();
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    asked,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A UsageApiError `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<UsageApiError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof UsageApiError, `not a UsageApiError: ${err}`);
    return err;
  }
  throw new assert.AssertionError({ message: "the call succeeded" });
}

const ENTRY = {
  query_id: "q1",
  bot_name: "GPT-4o",
  creation_time: 1,
  usage_type: "API",
  cost_points: 5,
};

Deno.test("poeTimeToMs reads microseconds, and tolerates milliseconds and seconds", () => {
  assert.equal(poeTimeToMs(1_774_577_803_123_456), 1_774_577_803_123);
  assert.equal(poeTimeToMs(1_774_577_803_123), 1_774_577_803_123);
  assert.equal(poeTimeToMs(1_774_577_803), 1_774_577_803_000);
  assert.equal(poeTimeToMs("soon"), null);
  assert.equal(poeTimeToMs(0), null);
});

Deno.test("parseBalance takes the earlier grant and needs only current_point_balance", () => {
  assert.deepEqual(parseBalance({ current_point_balance: 1500 }), {
    balance: 1500,
    nextGrant: null,
  });
  const r = parseBalance({
    current_point_balance: 10,
    next_monthly_grant_time: 2_000_000_000_000_000,
    next_daily_grant_time: 1_900_000_000_000_000,
    next_monthly_grant_amount: 1_000_000,
  });
  assert.deepEqual(r.nextGrant, { time: 1_900_000_000_000, amount: null, kind: "daily" });
  const m = parseBalance({
    current_point_balance: 10,
    next_monthly_grant_time: 1_800_000_000_000_000,
    next_monthly_grant_amount: 1_000_000,
  });
  assert.deepEqual(m.nextGrant, { time: 1_800_000_000_000, amount: 1_000_000, kind: "monthly" });
  assert.throws(() => parseBalance({ current_point_balance: "lots" }), UsageApiError);
});

Deno.test("parsePointsPage skips malformed entries and reads has_more", () => {
  const page = parsePointsPage({
    has_more: true,
    data: [
      { query_id: "a", bot_name: "X", creation_time: 1, usage_type: "API", cost_points: 3 },
      { query_id: "b", bot_name: "X", creation_time: "1", usage_type: "API", cost_points: 3 },
      null,
    ],
  });
  assert.equal(page.hasMore, true);
  assert.deepEqual(page.data.map((e) => e.query_id), ["a"]);
  assert.throws(() => parsePointsPage({}), UsageApiError);
});

Deno.test("UsageApi talks to the fake Poe: balance, grants, history pages, 401 without a key", async () => {
  await using fake = await FakePoe.start({ balance: 123_456 });
  fake.addHistory({ bot_name: "GPT-4o", cost_points: 7 });
  const api = new UsageApi({ baseUrl: fake.url, apiKey: fake.apiKey });
  const balance = await api.currentBalance();
  assert.equal(balance.balance, 123_456);
  assert.ok(balance.nextGrant && balance.nextGrant.time > Date.now());
  const page = await api.pointsHistory({ limit: 5 });
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0].cost_points, 7);
  assert.equal(fake.requests.at(-1)!.search, "?limit=5");
  const bad = new UsageApi({ baseUrl: fake.url, apiKey: "wrong" });
  await assert.rejects(() => bad.currentBalance(), (e: UsageApiError) => e.status === 401);
  const none = new UsageApi({ baseUrl: fake.url, apiKey: null });
  await assert.rejects(() => none.currentBalance(), (e: UsageApiError) => e.status === 401);
  for (const client of [api, bad, none]) client.close();
});

Deno.test("UsageApi reads no more than MAX_USAGE_BODY_BYTES of a body: the read is cancelled", async () => {
  // 64 MiB of JSON whitespace, then a balance: read whole, it was an answer (and an endless body
  // took 1.47 GB per poll until the timeout).
  for (const status of [200, 500]) {
    const body = paddedJson(64 * 1024 * 1024, '{"current_point_balance":5}', 64 * 1024);
    await using server = scripted(() =>
      new Response(body.body, { status, headers: { "content-type": "application/json" } })
    );
    const api = new UsageApi({ baseUrl: server.url, apiKey: "k" });
    try {
      const err = await failure(api.currentBalance());
      assert.equal(err.status, status);
      assert.ok(err.message.includes(`larger than ${MAX_USAGE_BODY_BYTES} bytes`), err.message);
      assert.equal(await body.ended, "cancelled");
      // What the sockets' buffers took on top of what was read.
      assert.ok(body.sent < 16 * 1024 * 1024, `${body.sent} bytes were sent`);
    } finally {
      api.close();
    }
  }
});

Deno.test("UsageApi counts what a compressed body inflates to, whatever its Content-Length says", async () => {
  // 4 MiB of whitespace, then a balance: a few KB of gzip with a length well under the cap.
  const text = " ".repeat(4 * 1024 * 1024) + '{"current_point_balance":5}';
  const gzip = new Uint8Array(
    await new Response(
      new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  assert.ok(gzip.byteLength < MAX_USAGE_BODY_BYTES);
  await using server = scripted(() =>
    new Response(gzip, {
      headers: {
        "content-type": "application/json",
        "content-encoding": "gzip",
        "content-length": String(gzip.byteLength),
      },
    })
  );
  const api = new UsageApi({ baseUrl: server.url, apiKey: "k" });
  try {
    const err = await failure(api.currentBalance());
    assert.ok(err.message.includes(`larger than ${MAX_USAGE_BODY_BYTES} bytes`), err.message);
  } finally {
    api.close();
  }
});

Deno.test("UsageApi gives up after timeoutMs, and at once when the caller aborts", async () => {
  // A server that takes requests and never answers them.
  const held: (() => void)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    const { promise, resolve } = Promise.withResolvers<Response>();
    held.push(() => resolve(new Response("late")));
    return promise;
  });
  const api = new UsageApi({
    baseUrl: `http://127.0.0.1:${server.addr.port}`,
    apiKey: "k",
    timeoutMs: 150,
  });
  try {
    let t0 = performance.now();
    await assert.rejects(() => api.currentBalance(), (e: UsageApiError) => e.status === 0);
    const timedOutAfter = performance.now() - t0;
    assert.ok(timedOutAfter >= 140 && timedOutAfter < 2000, `gave up after ${timedOutAfter} ms`);
    const controller = new AbortController();
    t0 = performance.now();
    const call = api.pointsHistory({ signal: controller.signal });
    setTimeout(() => controller.abort(new Error("caller left")), 20);
    await assert.rejects(() => call, (e: UsageApiError) => e.status === 0);
    assert.ok(performance.now() - t0 < 140, "the caller's abort ends the call before the timeout");
  } finally {
    api.close();
    for (const answer of held) answer();
    await server.shutdown();
  }
});
Deno.test("breakdownTokens reads Poe's Input and Output token counts", () => {
  const entry = {
    query_id: "a",
    bot_name: "X",
    creation_time: 1,
    usage_type: "API",
    cost_points: 339,
    cost_breakdown_in_points: {
      Input: "120 points (2,882 tokens)",
      Output: "219 points (512 tokens)",
      Total: "339 points",
    },
  };
  assert.deepEqual(breakdownTokens(entry), { prompt: 2882, completion: 512 });
  assert.equal(breakdownTokens({ ...entry, cost_breakdown_in_points: {} }), null);
});

Deno.test("poeTimeToMs: the unit boundaries, and what is no time at all", () => {
  // Just above 1e14 is microseconds; at most 1e14 (and above 1e11) milliseconds.
  assert.equal(poeTimeToMs(100_000_000_000_001), 100_000_000_000);
  assert.equal(poeTimeToMs(100_000_000_000_000), 100_000_000_000_000);
  assert.equal(poeTimeToMs(100_000_000_001), 100_000_000_001);
  assert.equal(poeTimeToMs(100_000_000_000), 100_000_000_000_000);
  for (const value of [-5, NaN, Infinity, null, undefined, "1774577803"]) {
    assert.equal(poeTimeToMs(value), null, String(value));
  }
});

Deno.test("parseBalance: grants, amounts and balances of odd types", () => {
  // Equal times: the monthly grant, with its amount.
  assert.deepEqual(
    parseBalance({
      current_point_balance: 0,
      next_monthly_grant_time: 1_800_000_000_000_000,
      next_daily_grant_time: 1_800_000_000_000_000,
      next_monthly_grant_amount: 5000,
    }).nextGrant,
    { time: 1_800_000_000_000, amount: 5000, kind: "monthly" },
  );
  // Only a daily grant; an amount that is no number is null.
  assert.deepEqual(
    parseBalance({
      current_point_balance: -3,
      next_daily_grant_time: 1_800_000_000_000_000,
      next_monthly_grant_amount: "1M",
    }),
    { balance: -3, nextGrant: { time: 1_800_000_000_000, amount: null, kind: "daily" } },
  );
  const monthly = parseBalance({
    current_point_balance: 1,
    next_monthly_grant_time: 1_800_000_000_000_000,
    next_monthly_grant_amount: "1M",
  });
  assert.deepEqual(monthly.nextGrant, { time: 1_800_000_000_000, amount: null, kind: "monthly" });
  for (const body of [null, undefined, {}, { current_point_balance: NaN }, { balance: 5 }]) {
    assert.throws(() => parseBalance(body), UsageApiError);
  }
  assert.throws(() => parseBalance({ current_point_balance: "x".repeat(100) }), (err) => {
    assert.ok(err instanceof UsageApiError);
    assert.equal(err.status, 200);
    assert.match(err.message, /^current_balance has no numeric current_point_balance: got "x+$/);
    assert.ok(err.message.length < 100);
    return true;
  });
});

Deno.test("parsePointsPage: has_more only when true; entries need every typed field", () => {
  assert.deepEqual(parsePointsPage({ data: [] }), { data: [], hasMore: false });
  assert.equal(parsePointsPage({ data: [], has_more: "true" }).hasMore, false);
  const broken = [
    { ...ENTRY, query_id: 1 },
    { ...ENTRY, bot_name: null },
    { ...ENTRY, usage_type: undefined },
    { ...ENTRY, cost_points: "5" },
    { query_id: "q", bot_name: "b", creation_time: 1, usage_type: "API" },
    "entry",
    42,
  ];
  assert.deepEqual(parsePointsPage({ data: [...broken, ENTRY] }).data, [ENTRY]);
  // Extra fields are kept.
  const extra = { ...ENTRY, cost_usd: "0.01", api_key_name: "k" };
  assert.deepEqual(parsePointsPage({ data: [extra] }).data, [extra]);
  for (const body of [null, { data: null }, { data: {} }, []]) {
    assert.throws(() => parsePointsPage(body), /points_history answered without a data array/);
  }
});

Deno.test("breakdownTokens: counts with commas, a single token, and what is not a count", () => {
  const withBreakdown = (b: Record<string, unknown>) =>
    breakdownTokens({ ...ENTRY, cost_breakdown_in_points: b as Record<string, string> });
  assert.deepEqual(
    withBreakdown({ Input: "3,000 points (1,234,567 tokens)", Output: "1 point (1 token)" }),
    { prompt: 1_234_567, completion: 1 },
  );
  assert.deepEqual(withBreakdown({ Input: "0 points (0 tokens)", Output: "x (12 tokens)" }), {
    prompt: 0,
    completion: 12,
  });
  assert.equal(withBreakdown({ Input: "120 points", Output: "5 points (5 tokens)" }), null);
  assert.equal(withBreakdown({ Input: "1 point (1 tokens)" }), null);
  assert.equal(withBreakdown({ Input: 5, Output: "5 points (5 tokens)" }), null);
  assert.equal(withBreakdown({ Input: "(12 words)", Output: "(5 tokens)" }), null);
  assert.equal(breakdownTokens(ENTRY), null);
});

Deno.test("UsageApi sends the key and User-Agent, pages with an encoded starting_after, limit 100 by default", async () => {
  await using server = scripted(() => Response.json({ data: [ENTRY], has_more: true }));
  const api = new UsageApi({
    baseUrl: `${server.url}//`,
    apiKey: "k-123",
    userAgent: "poe-proxy/9",
  });
  try {
    assert.deepEqual(await api.pointsHistory(), { data: [ENTRY], hasMore: true });
    await api.pointsHistory({ limit: 5, startingAfter: "a b&c=d/é" });
  } finally {
    api.close();
  }
  assert.deepEqual(server.asked, [
    {
      path: "/usage/points_history",
      search: "?limit=100",
      authorization: "Bearer k-123",
      userAgent: "poe-proxy/9",
    },
    {
      path: "/usage/points_history",
      search: `?limit=5&starting_after=${encodeURIComponent("a b&c=d/é")}`,
      authorization: "Bearer k-123",
      userAgent: "poe-proxy/9",
    },
  ]);
  // Without a userAgent option, fetch's own.
  await using other = scripted(() => Response.json({ current_point_balance: 1 }));
  const plain = new UsageApi({ baseUrl: other.url, apiKey: "k" });
  try {
    await plain.currentBalance();
  } finally {
    plain.close();
  }
  assert.equal(other.asked[0].path, "/usage/current_balance");
  assert.notEqual(other.asked[0].userAgent, "poe-proxy/9");
});

Deno.test("UsageApi: an error answer keeps its status; the key Poe quotes is redacted; the body is cut", async () => {
  const key = "sk-poe-SECRET-abcdef0123456789";
  await using server = scripted(
    () => Response.json({ error: { message: `Invalid key ${key}` } }, { status: 401 }),
    () => new Response(`${key} ${"y".repeat(1000)}`, { status: 503 }),
  );
  const api = new UsageApi({ baseUrl: server.url, apiKey: key });
  try {
    const unauthorized = await failure(api.currentBalance());
    assert.equal(unauthorized.status, 401);
    assert.match(
      unauthorized.message,
      /^Poe's \/usage\/current_balance answered 401 \(Poe refused the key: check POE_API_KEY; keys are at https:\/\/poe\.com\/api\/keys\): /,
    );
    assert.ok(!unauthorized.message.includes(key), unauthorized.message);
    assert.ok(!unauthorized.message.includes("SECRET"), unauthorized.message);
    const down = await failure(api.pointsHistory({ startingAfter: "q" }));
    assert.equal(down.status, 503);
    assert.match(down.message, /^Poe's \/usage\/points_history answered 503: /, "no query");
    assert.ok(!down.message.includes("SECRET"));
    assert.ok(down.message.length < 300, `${down.message.length} characters`);
  } finally {
    api.close();
  }
});

Deno.test("UsageApi: a 200 that is not JSON or not the right shape is a UsageApiError with status 200", async () => {
  await using server = scripted(
    () => new Response("<html>maintenance</html>"),
    () => Response.json({ current_point_balance: "lots" }),
    () => Response.json({ items: [] }),
  );
  const api = new UsageApi({ baseUrl: server.url, apiKey: "k" });
  try {
    const html = await failure(api.currentBalance());
    assert.equal(html.status, 200);
    assert.equal(
      html.message,
      "Poe's /usage/current_balance answered with a body that is not JSON",
    );
    assert.equal((await failure(api.currentBalance())).status, 200);
    assert.equal((await failure(api.pointsHistory())).status, 200);
  } finally {
    api.close();
  }
});

Deno.test("UsageApi: a 200 whose body stalls past the timeout is status 0, not a body that is not JSON", async () => {
  const open: ReadableStreamDefaultController<Uint8Array>[] = [];
  await using server = scripted(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"current_point_'));
          open.push(c);
        },
      }),
      { headers: { "content-type": "application/json" } },
    )
  );
  const api = new UsageApi({ baseUrl: server.url, apiKey: "k", timeoutMs: 200 });
  try {
    const err = await failure(api.currentBalance());
    assert.equal(err.status, 0);
    assert.match(err.message, /^Poe's \/usage\/current_balance stopped answering: .*in time/);
  } finally {
    api.close();
    for (const c of open) c.close();
  }
});

Deno.test("UsageApi: no answer at all is status 0, saying which call and why", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const api = new UsageApi({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "k" });
  try {
    const err = await failure(api.pointsHistory({ limit: 1 }));
    assert.equal(err.status, 0);
    assert.match(err.message, /^Cannot reach Poe's \/usage\/points_history: \S/);
    assert.ok(err.cause !== undefined);
  } finally {
    api.close();
  }
});

Deno.test("UsageApi: without a key no request is sent; an aborted caller sends none either", async () => {
  await using server = scripted(() => Response.json({ current_point_balance: 1 }));
  const none = new UsageApi({ baseUrl: server.url, apiKey: null });
  const empty = new UsageApi({ baseUrl: server.url, apiKey: "" });
  const api = new UsageApi({ baseUrl: server.url, apiKey: "k" });
  try {
    for (const client of [none, empty]) {
      const err = await failure(client.currentBalance());
      assert.equal(err.status, 401);
      assert.equal(err.message, "Cannot call /usage/current_balance: POE_API_KEY is not set");
    }
    const err = await failure(api.currentBalance(AbortSignal.abort(new Error("caller left"))));
    assert.equal(err.status, 0);
    assert.equal(server.asked.length, 0);
  } finally {
    for (const client of [none, empty, api]) client.close();
  }
});

Deno.test("UsageApi.clockOffsetMs: null until an answer with a Date header, then the median of the last five", async () => {
  /** The Date headers sent, in ms. */
  const sent: number[] = [];
  const at = (offsetMs: number, status = 200) => () => {
    const date = new Date(Date.now() + offsetMs).toUTCString();
    sent.push(Date.parse(date));
    return Response.json({ current_point_balance: 1 }, { status, headers: { date } });
  };
  const ahead = 60_000;
  const behind = -3_600_000;
  await using server = scripted(
    () => new Response("{}", { headers: { date: "not a date" }, status: 500 }),
    at(ahead),
    at(behind), // One odd reading (a cache's stale answer) does not move the median.
    at(ahead),
    at(ahead),
    at(ahead),
    at(ahead),
    // Then the clock moves: the median follows once three of the last five say so (an error
    // answer's Date counts too).
    at(behind, 503),
    at(behind),
    at(behind),
  );
  const api = new UsageApi({ baseUrl: server.url, apiKey: "k" });
  const near = (want: number) => {
    const value = api.clockOffsetMs;
    assert.ok(value !== null && Math.abs(value - want) <= 600, `${value}, not about ${want}`);
  };
  try {
    assert.equal(api.clockOffsetMs, null);
    await failure(api.currentBalance());
    assert.equal(api.clockOffsetMs, null, "an unreadable Date header is skipped");
    // The header has whole seconds: on average half of one more has passed.
    const before = Date.now();
    await api.currentBalance();
    const after = Date.now();
    const first = api.clockOffsetMs!;
    assert.ok(
      first >= sent[0] + 500 - after && first <= sent[0] + 500 - before,
      `${first} is not ${sent[0]} + 500 - now`,
    );
    await api.currentBalance();
    near(ahead);
    await api.currentBalance();
    near(ahead);
    for (let i = 0; i < 3; i++) await api.currentBalance();
    near(ahead);
    await failure(api.currentBalance());
    near(ahead);
    await api.currentBalance();
    near(ahead);
    await api.currentBalance();
    near(behind);
  } finally {
    api.close();
  }
});

Deno.test("UsageApi.close is idempotent and leaves the client usable without a timeout", async () => {
  await using server = scripted(() => Response.json({ current_point_balance: 42 }));
  const api = new UsageApi({ baseUrl: server.url, apiKey: "k", timeoutMs: 50 });
  api.close();
  api.close();
  assert.equal((await api.currentBalance()).balance, 42);
  api.close();
});
