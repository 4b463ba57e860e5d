// deno-lint-ignore-file no-explicit-any
/**
 * @module The large bodies' memory budget over HTTP (`MAX_BODY_MEMORY_MB`): bodies beyond it wait
 * their turn or get a 503, small requests pass them by, and the budget comes back whichever way a
 * request ends. Bodies of 1.5 MB against a 20 MB budget: each is counted 18 MB, so one at a time.
 */
import assert from "node:assert/strict";
import { startFakeAndProxy, type TestProxy } from "./harness.ts";
import type { FakePoe } from "./fake_poe.ts";
import { assertErrorShape } from "./http_json.ts";
import { bytesOf, portOf, writeAll } from "./raw_http.ts";
import { KEPT_PER_BODY_BYTE, MEMORY_PER_BODY_BYTE } from "../lib/body_budget.ts";

/** One body at a time; a waiting body gives up after 30 s unless a test says otherwise. */
const ONE_AT_A_TIME = { MAX_BODY_MEMORY_MB: "20" };

const IMAGE_CHARS = 1_500_000;

/** A chat request of about 1.5 MB (an image), with the fake's directives in its text. */
function largeBody(directives = "", extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: "gpt-4o",
    ...extra,
    messages: [{
      role: "user",
      content: [
        { type: "text", text: `what is it? [[fake: ${directives}]]` },
        {
          type: "image_url",
          image_url: { url: `data:image/png;base64,${"A".repeat(IMAGE_CHARS)}` },
        },
      ],
    }],
  });
}

const SMALL = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });

function post(proxy: TestProxy, body: BodyInit, init: RequestInit = {}): Promise<Response> {
  return fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    ...init,
  });
}

async function answer(
  res: Promise<Response>,
): Promise<{ status: number; headers: Headers; body: any }> {
  const r = await res;
  const text = await r.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // a stream stays text
  }
  return { status: r.status, headers: r.headers, body };
}

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`not seen in ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Holds the fake's answers until released: by the test, or when the test ends, however it ends. */
function holdPoe(fake: FakePoe): { release: () => void } & Disposable {
  const release = fake.hold();
  return { release, [Symbol.dispose]: release };
}

function budget(proxy: TestProxy): { held: number; waiting: number } {
  return proxy.stats().largeBodies;
}

/** The budget is all back once the request's log line is written (and nobody waits). */
async function returned(proxy: TestProxy, lines: number): Promise<void> {
  await until(
    () => proxy.logs.filter((l) => / INFO {2}request /.test(l)).length >= lines,
    "log lines",
  );
  assert.deepEqual(budget(proxy), { held: 0, waiting: 0 });
}

Deno.test("body budget: large bodies beyond it wait their turn, then all succeed", async () => {
  await using s = await startFakeAndProxy(ONE_AT_A_TIME);
  using held = holdPoe(s.fake);
  const first = answer(post(s.proxy, largeBody()));
  await until(() => s.fake.chatRequests().length === 1, "the first at Poe");
  const later = [answer(post(s.proxy, largeBody())), answer(post(s.proxy, largeBody()))];
  await until(() => budget(s.proxy).waiting === 2, "two waiting");
  // Held at Poe, the first keeps the others' bodies unread: Poe has seen only it.
  assert.equal(s.fake.chatRequests().length, 1);
  assert.equal(budget(s.proxy).held, bytesOf(largeBody()).length * MEMORY_PER_BODY_BYTE);
  held.release();
  for (const a of [await first, ...await Promise.all(later)]) {
    assert.equal(a.status, 200, JSON.stringify(a.body).slice(0, 300));
    assert.equal(a.body.choices[0].message.content, "Hello there, friend.");
  }
  assert.equal(s.fake.chatRequests().length, 3);
  // Poe got each image whole.
  for (const r of s.fake.chatRequests()) {
    assert.equal((r.body as any).messages[0].content[1].image_url.url.length, 22 + IMAGE_CHARS);
  }
  await returned(s.proxy, 3);
  assert.ok(
    s.proxy.logs.some((l) => /status=200 .*body_wait_ms=\d+/.test(l)),
    "the wait is logged",
  );
});

Deno.test("body budget: a body still waiting at BODY_TIMEOUT_SECONDS gets 503 server_busy with Retry-After", async () => {
  await using s = await startFakeAndProxy({ ...ONE_AT_A_TIME, BODY_TIMEOUT_SECONDS: "0.3" });
  using held = holdPoe(s.fake);
  const first = answer(post(s.proxy, largeBody()));
  await until(() => s.fake.chatRequests().length === 1, "the first at Poe");
  const refusing = answer(post(s.proxy, largeBody()));
  // Not at Poe (which holds every call): it waits, then is refused.
  await until(() => budget(s.proxy).waiting === 1 || s.fake.chatRequests().length > 1, "waiting");
  assert.equal(s.fake.chatRequests().length, 1);
  const refused = await refusing;
  assert.equal(refused.status, 503);
  assertErrorShape(refused.body);
  assert.equal(refused.body.error.type, "server_error");
  assert.equal(refused.body.error.code, "server_busy");
  assert.match(refused.body.error.message, /MAX_BODY_MEMORY_MB.*BODY_TIMEOUT_SECONDS/);
  assert.equal(refused.headers.get("retry-after"), "1");
  // Its body was never read: the connection is not kept for another request.
  assert.equal(refused.headers.get("connection"), "close");
  assert.ok(refused.headers.get("x-request-id"));
  assert.equal(budget(s.proxy).waiting, 0);
  held.release();
  assert.equal((await first).status, 200);
  assert.equal(s.fake.chatRequests().length, 1);
  await returned(s.proxy, 2);
});

Deno.test("body budget: a small request is never queued behind large ones", async () => {
  await using s = await startFakeAndProxy(ONE_AT_A_TIME);
  const first = answer(post(s.proxy, largeBody("slow-first=2000")));
  await until(() => s.fake.chatRequests().length === 1, "the first at Poe");
  const waiting = answer(post(s.proxy, largeBody()));
  await until(() => budget(s.proxy).waiting === 1, "one waiting");
  // Small ones, with or without a declared length (a chunked body under 1 MiB), pass it by.
  const small = await answer(post(s.proxy, SMALL));
  const chunked = await answer(post(s.proxy, ReadableStream.from([bytesOf(SMALL)]), {
    duplex: "half",
  } as RequestInit));
  for (const a of [small, chunked]) assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.equal(budget(s.proxy).waiting, 1, "answered while the large body still waits");
  assert.equal((await first).status, 200);
  assert.equal((await waiting).status, 200);
  await returned(s.proxy, 4);
});

Deno.test("body budget: while a stream is relayed its request counts only what it keeps", async () => {
  await using s = await startFakeAndProxy(ONE_AT_A_TIME);
  const body = largeBody("stall=300,chunks=3", { stream: true });
  const size = new TextEncoder().encode(body).length;
  const res = await post(s.proxy, body);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();
  assert.deepEqual(budget(s.proxy), { held: size * KEPT_PER_BODY_BYTE, waiting: 0 });
  while (!(await reader.read()).done);
  await returned(s.proxy, 1);
});

Deno.test("body budget: returned after body errors (400, 404, 413) and Poe's failures", async () => {
  await using s = await startFakeAndProxy({
    ...ONE_AT_A_TIME,
    MAX_BODY_BYTES: String(2 * 1024 * 1024),
    UPSTREAM_RETRIES: "0",
  });
  const cases: [string, BodyInit, number][] = [
    ["invalid JSON", largeBody().slice(0, -1), 400],
    ["an unknown model", largeBody().replace('"gpt-4o"', '"no-such-model"'), 404],
    [
      "a bad content part",
      largeBody().replace('{"type":"text",', '{"type":"text","text":1},{"type":"text",'),
      400,
    ],
    ["Poe's 500", largeBody("status=500"), 500],
    ["Poe's broken stream", largeBody("open-drop", { stream: true }), 502],
  ];
  let lines = 0;
  for (const [what, body, status] of cases) {
    const a = await answer(post(s.proxy, body));
    assert.equal(a.status, status, `${what}: ${JSON.stringify(a.body).slice(0, 300)}`);
    await returned(s.proxy, ++lines);
  }
  // Held while Poe works on it, the share comes back with Poe's error.
  {
    using held = holdPoe(s.fake);
    const failing = answer(post(s.proxy, largeBody("status=503")));
    await until(() => budget(s.proxy).held > 0, "the share held while Poe works");
    held.release();
    assert.equal((await failing).status, 503);
    await returned(s.proxy, ++lines);
  }
  // Sent in chunks, a body takes its share past 1 MiB, and is 413 past MAX_BODY_BYTES.
  const chunks = [bytesOf(largeBody().slice(0, 1_200_000)), bytesOf("A".repeat(1_000_000))];
  const tooLarge = await answer(post(s.proxy, ReadableStream.from(chunks), {
    duplex: "half",
  } as RequestInit));
  assert.equal(tooLarge.status, 413);
  await returned(s.proxy, ++lines);
  assert.equal(s.fake.chatRequests().length, 3);
});

Deno.test("body budget: a waiting client that leaves before its body's bytes frees its place at once", async () => {
  await using s = await startFakeAndProxy(ONE_AT_A_TIME);
  using held = holdPoe(s.fake);
  const first = answer(post(s.proxy, largeBody()));
  await until(() => s.fake.chatRequests().length === 1, "the first at Poe");
  // Its headers only (curl waits so for a large body's 100 Continue): the read kept pending on
  // its body fails when the connection closes.
  using conn = await connect(s.proxy);
  await writeAll(conn, bytesOf(head(bytesOf(largeBody()).length)));
  const next = answer(post(s.proxy, largeBody()));
  await until(() => budget(s.proxy).waiting === 2, "two waiting");
  conn.close();
  // Long before its deadline (30 s), and while the first is still at Poe.
  await until(() => budget(s.proxy).waiting === 1, "the place freed", 1000);
  assert.equal(s.fake.chatRequests().length, 1);
  held.release();
  assert.equal((await first).status, 200);
  assert.equal((await next).status, 200);
  await returned(s.proxy, 3);
  assert.equal(statuses(s.proxy).sort().join(), "200,200,499");
});

Deno.test("body budget: a waiting client that left mid-body gives its place back at its turn", async () => {
  await using s = await startFakeAndProxy(ONE_AT_A_TIME);
  using held = holdPoe(s.fake);
  const first = answer(post(s.proxy, largeBody()));
  await until(() => s.fake.chatRequests().length === 1, "the first at Poe");
  // Deno tells of a connection closed mid-body to a pending read only, and the bytes sent before
  // fill that read: the client is found gone when its turn comes, and its share given back then.
  using conn = await connect(s.proxy);
  const body = bytesOf(largeBody());
  await writeAll(conn, bytesOf(head(body.length)));
  await writeAll(conn, body.subarray(0, 500_000));
  const next = answer(post(s.proxy, largeBody()));
  await until(() => budget(s.proxy).waiting === 2, "two waiting");
  conn.close();
  held.release();
  assert.equal((await first).status, 200);
  assert.equal((await next).status, 200);
  assert.equal(s.fake.chatRequests().length, 2);
  await returned(s.proxy, 3);
  assert.equal(statuses(s.proxy).sort().join(), "200,200,499");
});

/** The statuses of the request log lines so far. */
function statuses(proxy: TestProxy): string[] {
  return proxy.logs.filter((l) => / INFO {2}request /.test(l)).map((l) =>
    /status=(\d+)/.exec(l)![1]
  );
}

/** A raw connection to the proxy, closed when the test ends however it ends (or before). */
async function connect(proxy: TestProxy): Promise<Deno.Conn & Disposable> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(proxy.url) });
  return Object.assign(conn, {
    [Symbol.dispose]: () => {
      try {
        conn.close();
      } catch {
        // closed by the test
      }
    },
  });
}

/** A request's head declaring a body of `length` bytes. */
function head(length: number): string {
  return "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
    `content-length: ${length}\r\n\r\n`;
}

Deno.test("body budget: returned when the client leaves mid-body, while Poe works, and mid-stream", async () => {
  await using s = await startFakeAndProxy({ ...ONE_AT_A_TIME, KEEPALIVE_SECONDS: "0.2" });
  // Mid-body: the share is taken before the body is read; the connection closes half-way.
  using conn = await connect(s.proxy);
  const body = bytesOf(largeBody());
  await writeAll(conn, bytesOf(head(body.length)));
  await writeAll(conn, body.subarray(0, 500_000));
  await until(() => budget(s.proxy).held > 0, "the share taken");
  conn.close();
  await returned(s.proxy, 1);
  assert.deepEqual(statuses(s.proxy), ["499"]);

  // While Poe works on it (a stream whose headers went out early, with keep-alive comments).
  using held = holdPoe(s.fake);
  const leaving = new AbortController();
  const atPoe = await post(s.proxy, largeBody("", { stream: true }), { signal: leaving.signal });
  assert.equal(atPoe.status, 200);
  await atPoe.body!.getReader().read();
  assert.equal(
    budget(s.proxy).held,
    bytesOf(largeBody("", { stream: true })).length * MEMORY_PER_BODY_BYTE,
  );
  leaving.abort();
  await returned(s.proxy, 2);
  assert.deepEqual(statuses(s.proxy), ["499", "499"]);
  held.release();

  // Mid-stream, once the answer's words flow.
  const streamed = largeBody("stall=100,chunks=20", { stream: true });
  const res = await post(s.proxy, streamed);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  for (let text = ""; !/"content":"[^"]/.test(text);) {
    const { done, value } = await reader.read();
    assert.ok(!done, "the stream ended before its words");
    text += value;
  }
  assert.equal(budget(s.proxy).held, bytesOf(streamed).length * KEPT_PER_BODY_BYTE);
  await reader.cancel();
  await returned(s.proxy, 3);
  assert.match(s.proxy.logs.filter((l) => / INFO {2}request /.test(l))[2], /end=client-gone/);
});

Deno.test("body budget: MAX_BODY_MEMORY_MB=0 turns it off: large bodies all go at once", async () => {
  await using s = await startFakeAndProxy({ MAX_BODY_MEMORY_MB: "0" });
  using held = holdPoe(s.fake);
  const answers = [answer(post(s.proxy, largeBody())), answer(post(s.proxy, largeBody()))];
  await until(() => s.fake.chatRequests().length === 2, "both at Poe");
  assert.deepEqual(budget(s.proxy), { held: 0, waiting: 0 });
  held.release();
  for (const a of await Promise.all(answers)) assert.equal(a.status, 200);
});
