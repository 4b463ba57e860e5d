// deno-lint-ignore-file no-explicit-any no-control-regex
/**
 * @module Hostile input (issue 6): each gets a clear OpenAI-shaped error with the right status while
 * another client streams through the same proxy, and that stream completes with the right text.
 */
import assert from "node:assert/strict";
import { startFakeAndProxy as setup, type TestProxy } from "./harness.ts";
import { random } from "./random.ts";
import { REQUEST_EXACT_BYTES, REQUEST_SAMPLE_BYTES } from "../lib/count_budget.ts";
import { TokenCounter } from "../lib/tokens.ts";
import { printLine } from "../lib/log.ts";
import { parseMetrics, sample } from "./prometheus_text.ts";
import {
  bytesOf,
  portOf,
  rawJsonBody,
  rawRequest,
  type RawResponse,
  readResponse,
  writeAll,
} from "./raw_http.ts";

// --- helpers ------------------------------------------------------------------------------------

/** The fake's word list: `words=N` answers with the first N of these, cycling, space-separated. */
const FAKE_WORDS =
  "the quick brown fox jumps over a lazy dog while seven bold wizards quietly pack boxes".split(
    " ",
  );

function wordsReply(n: number): string {
  return Array.from({ length: n }, (_, i) => FAKE_WORDS[i % FAKE_WORDS.length]).join(" ");
}

interface Witness {
  /** Whether the stream was still running when the hostile action finished. */
  stillStreaming: boolean;
  /** Longest pause between two chunks the streaming client saw while the action ran, in ms. */
  maxGapMs: number;
  /** How long the action took, in ms. */
  actionMs: number;
}

/**
 * Starts a long stream (`words` words, `stall` ms apart), waits until its first bytes arrive, runs
 * `action`, then checks that the stream was still running when the action ended and that it
 * finishes with exactly the fake's reply.
 */
async function whileStreaming<T>(
  proxy: TestProxy,
  action: () => Promise<T>,
  options: { words?: number; stall?: number; headers?: Record<string, string> } = {},
): Promise<T & Witness> {
  const words = options.words ?? 150;
  const stall = options.stall ?? 10;
  const res = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: JSON.stringify({
      model: "gpt-4o",
      stream: true,
      messages: [{ role: "user", content: `tell me [[fake: stall=${stall},words=${words}]]` }],
    }),
  });
  assert.equal(res.status, 200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let done = false;
  let measuring = false;
  let last = performance.now();
  let maxGapMs = 0;
  const first = Promise.withResolvers<void>();
  const reading = (async () => {
    for (;;) {
      const r = await reader.read();
      const now = performance.now();
      if (measuring) maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
      if (r.done) break;
      text += r.value;
      first.resolve();
    }
    done = true;
    first.resolve();
  })();
  await first.promise;
  measuring = true;
  last = performance.now();
  const started = performance.now();
  const result = await action();
  const actionMs = performance.now() - started;
  const stillStreaming = !done;
  measuring = false;
  await reading;
  const content = text.split("\n")
    .filter((l) => l.startsWith("data: ") && l !== "data: [DONE]")
    .map((l) => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content ?? "")
    .join("");
  assert.equal(content, wordsReply(words), "the other client's stream is intact");
  assert.ok(text.trimEnd().endsWith("data: [DONE]"));
  assert.ok(stillStreaming, "the stream was still running when the hostile request was answered");
  return { ...result, stillStreaming, maxGapMs, actionMs };
}

async function post(
  url: string,
  body: BodyInit,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers, body });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // left as text; the assertions below then fail with it shown
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

function assertError(
  a: { status: number; body: any },
  status: number,
  fields: { type?: string; code?: string | null; param?: string | null } = {},
): void {
  assert.equal(a.status, status, JSON.stringify(a.body).slice(0, 300));
  const e = a.body?.error;
  assert.equal(typeof e?.message, "string", JSON.stringify(a.body).slice(0, 300));
  assert.ok(e.message.length > 10 && e.message.length < 1000, e.message);
  assert.equal(typeof e.type, "string");
  assert.ok("param" in e && "code" in e);
  if (fields.type !== undefined) assert.equal(e.type, fields.type);
  if (fields.code !== undefined) assert.equal(e.code, fields.code);
  if (fields.param !== undefined) assert.equal(e.param, fields.param);
}

const HI = [{ role: "user", content: "hi" }];

/** Sends a head and then up to `total` body bytes; stops as soon as the server answers. */
async function sendLarge(
  port: number,
  head: string,
  total: number,
  chunked: boolean,
): Promise<{ response: RawResponse; sentAtAnswer: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, bytesOf(head));
  let sent = 0;
  let answered = false;
  let sentAtAnswer = -1;
  const piece = new Uint8Array(256 * 1024).fill(0x20);
  const frame = chunked
    ? new Uint8Array([
      ...bytesOf(`${piece.length.toString(16)}\r\n`),
      ...piece,
      ...bytesOf("\r\n"),
    ])
    : piece;
  const writing = (async () => {
    try {
      while (!answered && sent < total) {
        await writeAll(conn, frame);
        sent += piece.length;
      }
      if (chunked && !answered) await writeAll(conn, bytesOf("0\r\n\r\n"));
    } catch {
      // the server closed the connection: that is one of the right answers
    }
  })();
  const response = await readResponse(conn, { timeoutMs: 30_000 });
  answered = true;
  sentAtAnswer = sent;
  try {
    conn.close();
  } catch {
    // closed already
  }
  await writing;
  return { response, sentAtAnswer };
}

// --- bodies -------------------------------------------------------------------------------------

Deno.test("hostile: a body that is not JSON is 400 invalid_json", async () => {
  await using s = await setup();
  await whileStreaming(s.proxy, async () => {
    for (const body of ["not json", "{", '{"model": "gpt-4o",}', "\u0000\u0001", "   "]) {
      assertError(await post(s.proxy.url, body), 400, { code: "invalid_json" });
    }
    return {};
  });
});

Deno.test("hostile: JSON that is not an object is 400", async () => {
  await using s = await setup();
  await whileStreaming(s.proxy, async () => {
    for (const body of ["[]", "[1,2]", '"text"', "42", "null", "true"]) {
      assertError(await post(s.proxy.url, body), 400, { code: "invalid_json" });
    }
    return {};
  });
});

Deno.test("hostile: invalid UTF-8 is 400 invalid_encoding", async () => {
  await using s = await setup();
  await whileStreaming(s.proxy, async () => {
    const prefix = bytesOf('{"model":"gpt-4o","messages":[{"role":"user","content":"');
    for (const bad of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
      const body = new Uint8Array([...prefix, ...bad, ...bytesOf('"}]}')]);
      assertError(await post(s.proxy.url, body), 400, { code: "invalid_encoding" });
    }
    return {};
  });
});

Deno.test("hostile: a wrong content type is 415; text/plain JSON is accepted on purpose", async () => {
  await using s = await setup();
  await whileStreaming(s.proxy, async () => {
    const json = JSON.stringify({ model: "gpt-4o", messages: HI });
    for (
      const type of [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "image/png",
      ]
    ) {
      assertError(await post(s.proxy.url, json, { "content-type": type }), 415, {
        code: "unsupported_media_type",
      });
    }
    const plain = await post(s.proxy.url, json, { "content-type": "text/plain;charset=UTF-8" });
    assert.equal(plain.status, 200);
    return {};
  });
});

Deno.test("hostile: non-string roles and content of the wrong type are 400 with the param", async () => {
  await using s = await setup();
  await whileStreaming(s.proxy, async () => {
    const cases: [unknown, string][] = [
      [{ model: 7, messages: HI }, "model"],
      [{ model: "gpt-4o", messages: "hi" }, "messages"],
      [{ model: "gpt-4o", messages: {} }, "messages"],
      [{ model: "gpt-4o", messages: [] }, "messages"],
      [{ model: "gpt-4o", messages: ["hi"] }, "messages[0]"],
      [{ model: "gpt-4o", messages: [{ role: 5, content: "hi" }] }, "messages[0].role"],
      [{ model: "gpt-4o", messages: [{ role: null, content: "hi" }] }, "messages[0].role"],
      [{ model: "gpt-4o", messages: [{ content: "hi" }] }, "messages[0].role"],
      [{ model: "gpt-4o", messages: [...HI, { role: "user", content: 5 }] }, "messages[1].content"],
      [{ model: "gpt-4o", messages: [{ role: "user", content: { t: 1 } }] }, "messages[0].content"],
      [{ model: "gpt-4o", messages: [{ role: "user", content: [1] }] }, "messages[0].content[0]"],
      [
        { model: "gpt-4o", messages: [{ role: "user", content: [{ type: 3 }] }] },
        "messages[0].content[0]",
      ],
      [{ model: "gpt-4o", messages: HI, stream: "yes" }, "stream"],
      [{ model: "gpt-4o", messages: HI, max_tokens: -1 }, "max_tokens"],
    ];
    for (const [body, param] of cases) {
      assertError(await post(s.proxy.url, JSON.stringify(body)), 400, { param });
    }
    assert.equal(s.fake.chatRequests().length, 1, "only the stream reached Poe");
    return {};
  });
});

Deno.test("hostile: deeply nested JSON is refused fast with 400, nothing recursive runs", async () => {
  await using s = await setup();
  const w = await whileStreaming(s.proxy, async () => {
    const timings: Record<string, number> = {};
    const depths = [100_000, 5_000_000];
    for (const depth of depths) {
      const nested = "[".repeat(depth) + "]".repeat(depth);
      const bodies = {
        field: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":${nested}}`,
        content: `{"model":"gpt-4o","messages":[{"role":"user","content":[${nested}]}]}`,
        objects: `{"model":"gpt-4o","messages":[],"x":${'{"a":'.repeat(depth / 5)}1${
          "}".repeat(depth / 5)
        }}`,
      };
      for (const [name, body] of Object.entries(bodies)) {
        const t0 = performance.now();
        assertError(await post(s.proxy.url, body), 400, { code: "nesting_too_deep" });
        timings[`${name}@${depth}`] = Math.round(performance.now() - t0);
      }
    }
    // Nesting that real requests use (tool schemas) is fine.
    const schema = JSON.parse('{"type":"object"}');
    let inner = schema;
    for (let i = 0; i < 30; i++) inner = inner.properties = { a: { type: "object" } }.a;
    const ok = await post(
      s.proxy.url,
      JSON.stringify({
        model: "gpt-4o",
        messages: HI,
        tools: [{ type: "function", function: { name: "f", parameters: schema } }],
      }),
    );
    assert.equal(ok.status, 200);
    return { timings };
  }, { words: 300 });
  printLine(
    `deep JSON answer times (ms): ${JSON.stringify(w.timings)}; longest stream pause ${
      Math.round(w.maxGapMs)
    } ms`,
  );
  assert.equal(s.fake.chatRequests().length, 2);
});

Deno.test("hostile: 100,000 messages are clipped and answered, the event loop keeps serving", async () => {
  await using s = await setup();
  const messages = Array.from({ length: 100_000 }, (_, i) => ({
    role: i % 2 ? "assistant" : "user",
    content: `message number ${i} with a few more words in it`,
  }));
  messages.push({ role: "user", content: "and the last question [[fake: reply=clipped fine]]" });
  const body = JSON.stringify({ model: "gpt-4o", messages });
  const w = await whileStreaming(s.proxy, async () => {
    let maxTickGapMs = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxTickGapMs = Math.max(maxTickGapMs, now - last);
      last = now;
    }, 5);
    try {
      const a = await post(s.proxy.url, body);
      return { a, maxTickGapMs };
    } finally {
      clearInterval(ticker);
    }
  }, { words: 400 });
  assert.equal(w.a.status, 200, JSON.stringify(w.a.body).slice(0, 300));
  assert.equal(w.a.body.choices[0].message.content, "clipped fine");
  // Too many dropped messages to count: their figure is an estimate, marked `~`; so is the kept
  // part's beyond what one request tokenizes (REQUEST_EXACT_BYTES).
  assert.match(w.a.headers.get("x-poe-proxy-clipped") ?? "", /^dropped=\d+ tokens=~\d+->~?\d+$/);
  const sent = s.fake.chatRequests().at(-1)!.body as any;
  assert.ok(sent.messages.length < messages.length);
  assert.equal(sent.messages.at(-1).content, messages.at(-1)!.content);
  printLine(
    `100,000 messages (${(body.length / 1e6).toFixed(1)} MB): answered in ${
      Math.round(w.actionMs)
    } ms; longest event-loop stall ${Math.round(w.maxTickGapMs)} ms; longest pause of the ` +
      `concurrent stream ${Math.round(w.maxGapMs)} ms; ${sent.messages.length} messages sent on`,
  );
});

/** `chars` characters of base64 of seeded random bytes: the costliest text to tokenize. */
function base64Text(chars: number, seed: number): string {
  const r = random(seed);
  const raw = new Uint8Array(Math.ceil((chars * 3) / 4));
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(r() * 256);
  return raw.toBase64().slice(0, chars);
}

/** What one request may tokenize (`CountBudget`), and a sample's last segments over it. */
const REQUEST_TOKENIZES = REQUEST_EXACT_BYTES + REQUEST_SAMPLE_BYTES + 2048;

/** A fake Poe and a proxy that counts with `counter`, whose tokenized bytes a test reads. */
function setupCounted(counter: TokenCounter) {
  return setup({}, { counter });
}

Deno.test("hostile: many base64 text parts in what is always kept are refused on an estimate, tokenizing a bounded amount", async () => {
  // 3 to 3.6 MB each, in 60 kB texts: each text was counted within its own bound, every one of
  // them, which took 5 to 8 s for these and 46 s for 450 parts (27 MB), serving nobody else.
  const parts = (n: number, seed: number) =>
    Array.from({ length: n }, (_, i) => ({ type: "text", text: base64Text(60_000, seed + i) }));
  const calls = Array.from({ length: 60 }, (_, i) => ({
    id: `call_${i}`,
    type: "function",
    function: { name: "read_file", arguments: `{"path":"f${i}"}` },
  }));
  const shapes: [string, unknown[], RegExp][] = [
    [
      "the newest user message",
      [{ role: "user", content: parts(50, 1_000) }],
      /the newest user message \(about \d+ tokens\) need about \d+ tokens/,
    ],
    [
      "the last tool round",
      [
        { role: "user", content: "read them" },
        { role: "assistant", content: null, tool_calls: calls },
        ...calls.map((c, i) => ({
          role: "tool",
          tool_call_id: c.id,
          content: base64Text(60_000, 2_000 + i),
        })),
      ],
      /the newest user message and the last tool round after it \(about \d+ tokens\)/,
    ],
    [
      "a system message",
      [{ role: "system", content: parts(60, 3_000) }, { role: "user", content: "hi" }],
      /the system messages \(about \d+ tokens\) and the newest user message/,
    ],
  ];
  const counter = new TokenCounter();
  await using s = await setupCounted(counter);
  await whileStreaming(s.proxy, async () => {
    for (const [name, messages, figure] of shapes) {
      const before = counter.tokenized;
      const a = await post(s.proxy.url, JSON.stringify({ model: "gpt-4o", messages }));
      assertError(a, 400, { code: "context_length_exceeded", param: "messages" });
      assert.match(a.body.error.message, figure, name);
      const tokenized = counter.tokenized - before;
      assert.ok(tokenized <= REQUEST_TOKENIZES, `${name}: ${tokenized} bytes tokenized`);
    }
    return {};
  });
  assert.equal(s.fake.chatRequests().length, 1, "only the other client's stream reached Poe");
});

Deno.test("hostile: a history of base64 messages is clipped on a figure counted within the request's budget", async () => {
  // 720 kB of base64 in 12 messages: under the 1 MB that the dropped part's figure was counted up
  // to, which cost 1.2 s here (1.6 s a MB).
  const messages: unknown[] = Array.from({ length: 12 }, (_, i) => ({
    role: i % 2 ? "assistant" : "user",
    content: base64Text(60_000, 4_000 + i),
  }));
  messages.push({ role: "user", content: "and the question [[fake: reply=clipped fine]]" });
  const counter = new TokenCounter();
  await using s = await setupCounted(counter);
  const w = await whileStreaming(
    s.proxy,
    async () => ({ a: await post(s.proxy.url, JSON.stringify({ model: "gpt-4o", messages })) }),
  );
  assert.equal(w.a.status, 200, JSON.stringify(w.a.body).slice(0, 300));
  assert.equal(w.a.body.choices[0].message.content, "clipped fine");
  assert.match(w.a.headers.get("x-poe-proxy-clipped") ?? "", /^dropped=\d+ tokens=~\d+->\d+$/);
  assert.ok(counter.tokenized <= REQUEST_TOKENIZES, `${counter.tokenized} bytes tokenized`);
});

// --- size and time ------------------------------------------------------------------------------

const FIFTY_MB = 50 * 1024 * 1024;

Deno.test("hostile: a 50 MB body with content-length is 413 before it is read", async () => {
  await using s = await setup();
  const w = await whileStreaming(s.proxy, async () => {
    const head =
      "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
      `content-length: ${FIFTY_MB}\r\n\r\n`;
    return await sendLarge(portOf(s.proxy.url), head, FIFTY_MB, false);
  });
  assert.equal(w.response.status, 413);
  const body = rawJsonBody(w.response.text) as any;
  assert.equal(body.error.type, "request_too_large");
  assert.equal(body.error.code, "request_too_large");
  assert.ok(w.sentAtAnswer < FIFTY_MB, `answered after ${w.sentAtAnswer} bytes`);
  printLine(`413 (content-length) after ${(w.sentAtAnswer / 1e6).toFixed(1)} MB sent`);
});

Deno.test("hostile: a 50 MB chunked body is 413 once MAX_BODY_BYTES is passed, not at its end", async () => {
  await using s = await setup();
  const w = await whileStreaming(s.proxy, async () => {
    const head =
      "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
      "transfer-encoding: chunked\r\n\r\n";
    return await sendLarge(portOf(s.proxy.url), head, FIFTY_MB, true);
  }, { words: 300 });
  assert.equal(w.response.status, 413);
  assert.equal((rawJsonBody(w.response.text) as any).error.code, "request_too_large");
  assert.ok(w.sentAtAnswer < FIFTY_MB, `answered after ${w.sentAtAnswer} bytes`);
  printLine(`413 (chunked) after ${(w.sentAtAnswer / 1e6).toFixed(1)} MB sent`);
});

Deno.test("hostile: a client that trickles its body gets 408 after BODY_TIMEOUT_SECONDS", async () => {
  await using s = await setup({ BODY_TIMEOUT_SECONDS: "0.5" });
  const port = portOf(s.proxy.url);
  for (const chunked of [false, true]) {
    const w = await whileStreaming(s.proxy, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAll(
        conn,
        bytesOf(
          "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
            (chunked ? "transfer-encoding: chunked\r\n\r\n" : "content-length: 1000\r\n\r\n"),
        ),
      );
      let stop = false;
      const trickle = (async () => {
        try {
          while (!stop) {
            await writeAll(conn, bytesOf(chunked ? "1\r\n \r\n" : " "));
            await new Promise((r) => setTimeout(r, 50));
          }
        } catch {
          // closed by the server
        }
      })();
      const t0 = performance.now();
      const response = await readResponse(conn, { timeoutMs: 5000 });
      const ms = performance.now() - t0;
      stop = true;
      conn.close();
      await trickle;
      return { response, ms };
    });
    assert.equal(w.response.status, 408, w.response.text.slice(0, 300));
    const body = rawJsonBody(w.response.text) as any;
    assert.equal(body.error.type, "timeout_error");
    assert.equal(body.error.code, "body_timeout");
    assert.ok(w.ms >= 400, `408 after ${w.ms} ms`);
    // Said whichever way the body was read (Deno 2.9.6 still keeps the connection open after it).
    const head = w.response.text.slice(0, w.response.text.indexOf("\r\n\r\n"));
    assert.match(head, /\r\nconnection: close(\r\n|$)/i, `chunked: ${chunked}`);
  }
});

Deno.test("hostile: a client that closes its connection mid-body is logged and counted as 499, not 400", async () => {
  await using s = await setup();
  const port = portOf(s.proxy.url);
  const head = (id: string, framing: string) =>
    "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
    `x-request-id: ${id}\r\n${framing}\r\n`;
  const start = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]';
  const large = " ".repeat(100_000);
  // A small declared body (read in one go), a large one and a chunked one (read piece by piece).
  const cases: [string, string][] = [
    ["gone-small", head("gone-small", `content-length: ${start.length + 100}\r\n`) + start],
    ["gone-large", head("gone-large", "content-length: 200000\r\n") + start + large],
    [
      "gone-chunked",
      head("gone-chunked", "transfer-encoding: chunked\r\n") +
      `${start.length.toString(16)}\r\n${start}\r\n`,
    ],
  ];
  const line = (id: string) => s.proxy.logs.find((l) => l.includes(` request request_id=${id} `));
  for (const [id, request] of cases) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, bytesOf(request));
    conn.close();
    const end = Date.now() + 10_000;
    while (!line(id) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    assert.match(line(id) ?? "no log line", / status=499 /, id);
    assert.match(line(id)!, /error="client gone while sending its body"/);
  }
  // A malformed chunk, the client still there, is the 400 it was.
  const bad = await rawRequest(
    port,
    head("bad-chunk", "transfer-encoding: chunked\r\n") +
      `10000\r\n${" ".repeat(0x10000)}\r\nzz\r\n`,
  );
  assert.equal(bad.status, 400, bad.text.slice(0, 300));
  assert.equal((rawJsonBody(bad.text) as any).error.code, "invalid_body");
  const metrics = parseMetrics(await (await fetch(`${s.proxy.url}/metrics`)).text());
  const count = (status: string) =>
    sample(metrics, "poe_proxy_requests_total", { route: "/v1/chat/completions", status });
  assert.equal(count("499"), 3);
  assert.equal(count("400"), 1);
});

Deno.test("a large body on a slow uplink is read for as long as it keeps arriving", async () => {
  await using s = await setup({ BODY_TIMEOUT_SECONDS: "0.5" });
  const image = "A".repeat(300_000);
  const body = bytesOf(JSON.stringify({
    model: "gpt-4o",
    messages: [{
      role: "user",
      content: [
        { type: "text", text: "What is this?" },
        { type: "image_url", image_url: { url: `data:image/png;base64,${image}` } },
      ],
    }],
  }));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: portOf(s.proxy.url) });
  await writeAll(
    conn,
    bytesOf(
      "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    ),
  );
  // 30 kB every 100 ms: about 300 kB/s, for a second and a half, three times the deadline.
  const t0 = performance.now();
  for (let i = 0; i < body.length; i += 20_000) {
    await writeAll(conn, body.subarray(i, i + 20_000));
    await new Promise((r) => setTimeout(r, 100));
  }
  const response = await readResponse(conn, { timeoutMs: 10_000 });
  conn.close();
  assert.ok(performance.now() - t0 > 1000, "the upload took longer than the deadline");
  assert.equal(response.status, 200, response.text.slice(0, 300));
  assert.equal(s.fake.chatRequests().length, 1);
});

// --- the model name -----------------------------------------------------------------------------

Deno.test("hostile: a model name with control characters or newlines is 400, never echoed raw", async () => {
  await using s = await setup();
  const names = [
    "gpt-4o\r\nx-injected: yes",
    "gpt-4o\nINFO request status=200",
    "gpt\u0000",
    "\u001b[31mred\u001b[0m",
    "gpt-4o\u2028",
    " gpt-4o",
    "g".repeat(10_000),
  ];
  await whileStreaming(s.proxy, async () => {
    for (const model of names) {
      const a = await post(s.proxy.url, JSON.stringify({ model, messages: HI }));
      assertError(a, 400, { param: "model", code: "invalid_value" });
      assert.equal(a.headers.get("x-injected"), null);
      for (const [, v] of a.headers) assert.doesNotMatch(v, /[\r\n\u0000\u001b]/);
      assert.ok(!a.body.error.message.includes(model));
    }
    return {};
  });
  for (const line of s.proxy.logs) {
    assert.doesNotMatch(line, /[\r\n\u0000\u001b\u2028]/, line);
    assert.ok(!line.includes("x-injected"), line);
    assert.ok(!line.includes("g".repeat(200)), "the long name is not logged");
  }
  assert.equal(s.fake.chatRequests().length, 1);
});

// --- the wire -----------------------------------------------------------------------------------

function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${extra}connection: close\r\n\r\n`;
}

Deno.test("hostile: /v1/models/../.. and its encodings never leave the route table", async () => {
  await using s = await setup({ PROXY_API_KEYS: "the-key", DASHBOARD: "off" });
  const port = portOf(s.proxy.url);
  const auth = "authorization: Bearer the-key\r\n";
  // [request target, status with the key, status without]
  const cases: [string, number, number][] = [
    ["/v1/models/../..", 404, 404],
    ["/v1/models/../../", 404, 404],
    ["/v1/models/%2e%2e/%2e%2e", 404, 404],
    ["/v1/models/%2E%2E/%2E%2E/etc/passwd", 404, 404],
    ["/v1/models/..%2f..%2fetc%2fpasswd", 404, 401],
    ["/v1/models/%2e%2e%2f%2e%2e%2fmain.ts", 404, 401],
    // Doubled slashes are collapsed (a base URL with a trailing slash): a model id, or the list.
    ["/v1/models/....//....//", 404, 401],
    ["/v1/models/%252e%252e", 404, 401],
    ["/v1/models/../../healthz", 200, 200],
    ["/healthz/../v1/models", 200, 401],
    ["/healthz/%2e%2e/v1/models", 200, 401],
    ["/v1/models/gpt-4o/../gpt-4o-mini", 200, 401],
    ["/v1/models/%ff%fe", 404, 401],
    ["//v1//models", 200, 401],
  ];
  await whileStreaming(s.proxy, async () => {
    for (const [target, withKey, without] of cases) {
      const a = await rawRequest(port, get(target, auth));
      assert.equal(a.status, withKey, `${target} with key: ${a.text.slice(0, 300)}`);
      const b = await rawRequest(port, get(target));
      assert.equal(b.status, without, `${target} without key: ${b.text.slice(0, 300)}`);
      for (const r of [a, b]) {
        assert.doesNotMatch(r.text, /root:|import |poe_name/, target);
        if (r.status !== 200) {
          const body = rawJsonBody(r.text) as any;
          assert.equal(typeof body.error.message, "string");
        }
      }
    }
    return {};
  }, { headers: { authorization: "Bearer the-key" } });
  // With the dashboard on, "/" is its page: a path that normalises there gets the page, no data.
  await using d = await setup({ PROXY_API_KEYS: "the-key" });
  const page = await rawRequest(portOf(d.proxy.url), get("/v1/models/%2e%2e/%2e%2e"));
  assert.equal(page.status, 200);
  assert.match(page.text, /content-type: text\/html/i);
  assert.doesNotMatch(page.text, /the-key|test-poe-key/);
});

Deno.test("hostile: an odd Host is never the path, nor a crash that prints the URL", async () => {
  const key = "owner-key-AAAAAAAA";
  await using s = await setup({ PROXY_API_KEYS: key, DASHBOARD: "off" });
  const port = portOf(s.proxy.url);
  const at = (host: string, target: string) =>
    `GET ${target} HTTP/1.1\r\nhost: ${host}\r\nauthorization: Bearer ${key}\r\n` +
    "connection: close\r\n\r\n";
  // Deno writes the Host into req.url as it came: `new URL(req.url)` threw on these, or read a
  // path out of the Host.
  for (const host of ["a b", "127.0.0.1:99999", "[fe80::1%25eth0]:8080", "a?b", "a/b", "a#b"]) {
    for (const target of ["/v1/./models", "/v1/models"]) {
      const r = await rawRequest(port, at(host, target));
      assert.equal(r.status, 200, `${host} ${target}: ${r.text.slice(0, 200)}`);
      assert.match(r.text, /"object":"list"/);
    }
    const gone = await rawRequest(port, at(host, `/v1/./models/${key}`));
    assert.equal(gone.status, 404, host);
    assert.doesNotMatch(gone.text, new RegExp(key));
  }
  assert.ok(s.proxy.logs.length > 0);
  for (const line of s.proxy.logs) assert.doesNotMatch(line, new RegExp(key));
  assert.doesNotMatch(s.proxy.logs.join("\n"), /Invalid URL|TypeError/);
});

Deno.test("hostile: a long path or method is logged cut short, a line per request not a byte", async () => {
  await using s = await setup({ PROXY_API_KEYS: "owner-key-AAAAAAAA" });
  const port = portOf(s.proxy.url);
  const path = `/${"p".repeat(60_000)}`;
  const method = "M".repeat(60_000);
  assert.equal((await rawRequest(port, get(path))).status, 404);
  const odd = await rawRequest(
    port,
    `${method} /v1/models HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`,
  );
  assert.ok(odd.status >= 400, `${odd.status}`);
  const lines = s.proxy.logs.filter((l) => l.includes("request_id="));
  assert.ok(lines.length >= 1);
  for (const line of s.proxy.logs) assert.ok(line.length < 2_000, `${line.length} characters`);
  assert.ok(s.proxy.logs.some((l) => l.includes(`${"p".repeat(199)}…(+59801)`)));
});

Deno.test("hostile: an absurdly long URL or header is refused and the server keeps serving", async () => {
  await using s = await setup();
  const port = portOf(s.proxy.url);
  const seen: Record<string, number | string> = {};
  await whileStreaming(s.proxy, async () => {
    const long = await rawRequest(port, get(`/v1/models/${"a".repeat(1_000_000)}`));
    seen.url1M = long.status || "closed";
    assert.ok(long.status === 0 || long.status >= 400, long.text.slice(0, 200));
    const medium = await rawRequest(port, get(`/${"b".repeat(20_000)}`));
    seen.url20k = medium.status || "closed";
    if (medium.status === 404) {
      const msg = (rawJsonBody(medium.text) as any).error.message as string;
      assert.ok(msg.length < 400, "the path is cut short in the message");
    } else assert.ok(medium.status === 0 || medium.status >= 400);
    const header = await rawRequest(port, get("/healthz", `x-big: ${"c".repeat(1_000_000)}\r\n`));
    seen.header1M = header.status || "closed";
    assert.ok(header.status === 0 || header.status >= 400);
    const many = Array.from({ length: 10_000 }, (_, i) => `x-h${i}: v\r\n`).join("");
    const headers = await rawRequest(port, get("/healthz", many));
    seen.headers10k = headers.status || "closed";
    assert.ok(headers.status === 0 || headers.status >= 400);
    const health = await fetch(`${s.proxy.url}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    return {};
  });
  printLine(`long URL and headers answered: ${JSON.stringify(seen)}`);
});

Deno.test("hostile: pipelined requests and garbage on a raw socket leave the server serving", async () => {
  await using s = await setup();
  const port = portOf(s.proxy.url);
  await whileStreaming(s.proxy, async () => {
    const two = await rawRequest(
      port,
      "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
      { responses: 2 },
    );
    assert.equal(two.text.match(/HTTP\/1\.1 200/g)?.length, 2, two.text);
    const garbage: (string | Uint8Array)[] = [
      "\u0000\u0001\u0002 BLAH / HTTP/9.9\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n\u00ff\u00fe garbage after a good request\r\n\r\n",
      "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 5\r\n" +
      "transfer-encoding: chunked\r\n\r\nzz\r\n",
      "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n" +
      "fffffffffffffffffffffff\r\n",
      "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\n" + "h: v\r\n".repeat(3) + "\r\n".repeat(1000),
      crypto.getRandomValues(new Uint8Array(65536)),
      "\r\n\r\n\r\n",
    ];
    for (const g of garbage) {
      const r = await rawRequest(port, g, { timeoutMs: 2000, responses: 2 });
      assert.ok(r.status === 0 || (r.status >= 200 && r.status < 600), r.text.slice(0, 200));
    }
    const health = await fetch(`${s.proxy.url}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    return {};
  });
});
