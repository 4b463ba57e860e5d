/** @module Tests of the timeouts of a call to Poe: phases, the TCP probe and their errors. */
import assert from "node:assert/strict";
import {
  brokeWhileHeld,
  fetchFailure,
  firstByteDeadline,
  heldBreakError,
  networkError,
  openingWait,
  type Phases,
  phases,
  probe,
  quickFailureMs,
  TimeoutError,
  timeoutError,
} from "../lib/upstream_timeouts.ts";
import { Deadlines } from "../lib/deadlines.ts";
import { ManualClock } from "./manual_clock.ts";
import { breakingPoe } from "./raw_http.ts";

/** A port nothing listens on (it was free a moment ago). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A listener that counts the connections it gets, and those the other side closed. */
function listener(): {
  url: string;
  connections: () => number;
  closed: () => number;
  close: () => Promise<void>;
} {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  let closed = 0;
  const open = new Set<Deno.Conn>();
  const reading: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of server) {
      connections++;
      open.add(conn);
      reading.push((async () => {
        try {
          while (await conn.read(new Uint8Array(16)) !== null);
          closed++;
        } catch {
          // Closed on this side, at the end of the test.
        } finally {
          if (open.delete(conn)) conn.close();
        }
      })());
    }
  })();
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}/v1/chat/completions`,
    connections: () => connections,
    closed: () => closed,
    close: async () => {
      server.close();
      await accepting.catch(() => {});
      for (const conn of open) conn.close();
      open.clear();
      await Promise.all(reading);
    },
  };
}

/** Phases on a hand-driven clock. */
function manualPhases(clock: ManualClock, connectMs: number, firstByteMs: number): Phases {
  const options = { timers: clock, now: clock.now };
  return {
    first: new Deadlines(Math.min(connectMs, firstByteMs), options),
    second: new Deadlines(Math.max(0, firstByteMs - connectMs), options),
    firstByteMs,
  };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 2000;
  while (!check()) {
    if (Date.now() > end) throw new Error(`not seen in time: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("phases: the connect deadline, then the rest of the first-byte one", () => {
  const p = phases(10_000, 300_000);
  assert.deepEqual([p.first.ms, p.second.ms, p.firstByteMs], [10_000, 290_000, 300_000]);
  const short = phases(10_000, 4_000);
  assert.deepEqual([short.first.ms, short.second.ms, short.firstByteMs], [4_000, 0, 4_000]);
});

Deno.test("TimeoutError: says its phase", () => {
  const err = new TimeoutError("first-byte");
  assert.ok(err instanceof Error);
  assert.equal(err.phase, "first-byte");
  assert.equal(err.message, "first-byte timeout");
});

Deno.test("timeoutError: each phase names the setting that timed it out", () => {
  const cases: [TimeoutError["phase"], boolean, string, string][] = [
    [
      "connect",
      false,
      "upstream_connect_timeout",
      "Could not connect to Poe within CONNECT_TIMEOUT_SECONDS.",
    ],
    [
      "connect",
      true,
      "upstream_connect_timeout",
      "Could not connect to Poe within CONNECT_TIMEOUT_SECONDS.",
    ],
    [
      "first-byte",
      false,
      "upstream_timeout",
      "Poe did not start answering within FIRST_BYTE_TIMEOUT_SECONDS.",
    ],
    [
      "first-byte",
      true,
      "upstream_timeout",
      "Poe did not start answering within MEDIA_TIMEOUT_SECONDS.",
    ],
    ["idle", false, "upstream_timeout", "Poe went silent for longer than IDLE_TIMEOUT_SECONDS."],
    ["idle", true, "upstream_timeout", "Poe went silent for longer than MEDIA_TIMEOUT_SECONDS."],
  ];
  for (const [phase, slow, code, message] of cases) {
    const err = timeoutError(new TimeoutError(phase), slow);
    assert.deepEqual([err.status, err.type, err.code, err.message], [
      504,
      "timeout_error",
      code,
      message,
    ]);
  }
});

Deno.test("networkError: a timeout is told as one; anything else as Poe unreachable", () => {
  assert.equal(
    networkError(new TimeoutError("first-byte"), { attempts: 1 }).message,
    "Poe did not start answering within FIRST_BYTE_TIMEOUT_SECONDS.",
  );
  assert.equal(
    networkError(new TimeoutError("idle"), { attempts: 1, slow: true }).message,
    "Poe went silent for longer than MEDIA_TIMEOUT_SECONDS.",
  );
  const cause = new TypeError("connection refused");
  const err = networkError(cause, { attempts: 3 });
  assert.equal(err.status, 502);
  assert.equal(err.type, "upstream_error");
  assert.equal(err.code, "upstream_unreachable");
  assert.equal(err.message, "Could not reach Poe after 3 attempt(s): connection refused");
  assert.equal(err.cause, cause);
  assert.equal(
    networkError("boom", { attempts: 1 }).message,
    "Could not reach Poe after 1 attempt(s): boom",
  );
});

/** What a real `fetch` of `url` rejects with. */
async function fetchError(url: string): Promise<unknown> {
  try {
    const res = await fetch(url, { method: "POST", body: "{}" });
    await res.body?.cancel();
  } catch (err) {
    return err;
  }
  throw new Error(`${url} answered`);
}

Deno.test("quickFailureMs: the lesser of 1 s and the connect timeout", () => {
  assert.equal(quickFailureMs(10_000), 1_000);
  assert.equal(quickFailureMs(300), 300);
});

Deno.test("brokeWhileHeld: a broken connection only once held; never a failure to connect or a timeout", async () => {
  await using poe = breakingPoe({ holdMs: 0 });
  const closed = await fetchError(poe.url);
  assert.equal(brokeWhileHeld(closed, 1_500, 1_000), true, "a call Poe held, then closed");
  assert.equal(brokeWhileHeld(closed, 20, 1_000), false, "closed at once, as a stale keep-alive");
  // However long it took: the request was never sent.
  const refused = await fetchError(`http://127.0.0.1:${closedPort()}/`);
  assert.equal(brokeWhileHeld(refused, 5_000, 1_000), false);
  const handshake = await fetchError(poe.url.replace("http:", "https:"));
  assert.equal(brokeWhileHeld(handshake, 5_000, 1_000), false);
  for (const phase of ["connect", "first-byte"] as const) {
    assert.equal(brokeWhileHeld(new TimeoutError(phase), 5_000, 1_000), false);
  }
});

Deno.test("heldBreakError: a 502 upstream_disconnected that says how long Poe held the call", () => {
  const cause = new TypeError("fetch failed");
  const err = heldBreakError(cause, 3_040);
  assert.deepEqual([err.status, err.type, err.code], [
    502,
    "upstream_error",
    "upstream_disconnected",
  ]);
  assert.match(err.message, /^The connection to Poe broke while it was answering \(after 3\.0 s,/);
  assert.equal(err.cause, cause);
});

Deno.test("fetchFailure: a first-byte timeout or a held break is final; a quick break or a connect timeout is retried", () => {
  const at = (err: unknown, ms: number) =>
    fetchFailure(err, { ms, quickMs: 1_000, attempts: 3, slow: false });
  const silent = at(new TimeoutError("first-byte"), 300_000);
  assert.equal(silent.retry, false);
  assert.equal(silent.error.code, "upstream_timeout");
  const unreachable = at(new TimeoutError("connect"), 10_000);
  assert.equal(unreachable.retry, true);
  assert.equal(unreachable.error.code, "upstream_connect_timeout");
  const broken = new TypeError("connection closed before message completed");
  const held = at(broken, 2_500);
  assert.equal(held.retry, false);
  assert.match(held.error.message, /while it was answering \(after 2\.5 s/);
  const quick = at(broken, 20);
  assert.equal(quick.retry, true);
  assert.match(quick.error.message, /^Could not reach Poe after 3 attempt\(s\)/);
});

Deno.test("probe: true when the host takes a TCP connection, false when it refuses", async () => {
  const server = listener();
  try {
    assert.equal(await probe(server.url, 2000), true);
    await until(() => server.closed() === 1, "the probe's connection closed");
  } finally {
    await server.close();
  }
  assert.equal(await probe(`http://127.0.0.1:${closedPort()}/`, 2000), false);
});

Deno.test("firstByteDeadline: a reachable Poe is given the rest of the first-byte timeout", async () => {
  const clock = new ManualClock();
  const server = listener();
  try {
    const controller = new AbortController();
    firstByteDeadline(manualPhases(clock, 100, 300), {
      connectMs: 100,
      url: server.url,
      controller,
    });
    await clock.advance(100);
    await until(() => server.connections() === 1, "the probe");
    await clock.settle();
    assert.equal(controller.signal.aborted, false);
    await clock.advance(199);
    assert.equal(controller.signal.aborted, false);
    await clock.advance(1);
    assert.ok(controller.signal.reason instanceof TimeoutError);
    assert.equal(controller.signal.reason.phase, "first-byte");
  } finally {
    await server.close();
  }
});

Deno.test("firstByteDeadline: a Poe the probe cannot reach is a connect timeout", async () => {
  const clock = new ManualClock();
  const controller = new AbortController();
  firstByteDeadline(manualPhases(clock, 100, 300), {
    connectMs: 100,
    url: `http://127.0.0.1:${closedPort()}/`,
    controller,
  });
  await clock.advance(99);
  assert.equal(controller.signal.aborted, false);
  await clock.advance(1);
  await until(() => controller.signal.aborted, "the connect timeout");
  assert.equal(controller.signal.reason.phase, "connect");
  // The first-byte deadline still armed fires on an aborted controller: no change.
  await clock.advance(200);
  assert.equal(controller.signal.reason.phase, "connect");
});

Deno.test("firstByteDeadline: a first-byte timeout no longer than the connect one needs no probe", async () => {
  const clock = new ManualClock();
  const server = listener();
  try {
    const controller = new AbortController();
    firstByteDeadline(manualPhases(clock, 500, 200), {
      connectMs: 500,
      url: server.url,
      controller,
    });
    await clock.advance(200);
    assert.equal(controller.signal.reason.phase, "first-byte");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(server.connections(), 0);
  } finally {
    await server.close();
  }
});

Deno.test("firstByteDeadline: cancel stops whichever deadline is armed", async () => {
  const clock = new ManualClock();
  const early = new AbortController();
  firstByteDeadline(manualPhases(clock, 100, 300), {
    connectMs: 100,
    url: "http://127.0.0.1:1/",
    controller: early,
  }).cancel();
  await clock.advance(400);
  assert.equal(early.signal.aborted, false);

  const server = listener();
  try {
    const late = new AbortController();
    const deadline = firstByteDeadline(manualPhases(clock, 100, 300), {
      connectMs: 100,
      url: server.url,
      controller: late,
    });
    await clock.advance(100);
    await until(() => server.connections() === 1, "the probe");
    deadline.cancel();
    await clock.advance(300);
    assert.equal(late.signal.aborted, false);
  } finally {
    await server.close();
  }
});

Deno.test("openingWait: the stream-start wait when the first-byte budget has that much left", async () => {
  const clock = new ManualClock();
  const streamStart = new Deadlines(50, { timers: clock, now: clock.now });
  let over = false;
  const opening = openingWait(streamStart, 1000);
  opening.wait.then(() => over = true);
  assert.equal(streamStart.pending, 1);
  await clock.advance(49);
  assert.equal(over, false);
  await clock.advance(1);
  assert.equal(over, true);
  opening.cancel();

  let kept = false;
  let cancelled = false;
  openingWait(streamStart, 50).wait.then(() => kept = true);
  const next = openingWait(streamStart, 50);
  next.wait.then(() => cancelled = true);
  next.cancel();
  assert.equal(streamStart.pending, 1);
  await clock.advance(100);
  assert.deepEqual({ kept, cancelled }, { kept: true, cancelled: false });
});

Deno.test("openingWait: only what is left of the first-byte budget when that is less", async () => {
  const clock = new ManualClock();
  const streamStart = new Deadlines(60_000, { timers: clock, now: clock.now });
  const started = performance.now();
  await openingWait(streamStart, 20).wait;
  assert.ok(performance.now() - started < 1000);
  assert.equal(streamStart.pending, 0);
  await openingWait(streamStart, -5).wait;

  let over = false;
  const cancelled = openingWait(streamStart, 10);
  cancelled.wait.then(() => over = true);
  cancelled.cancel();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(over, false);
});
