/** @module DoorLimits: each client's bucket, the wrong-key lockout and Poe's account-wide bucket. */
import assert from "node:assert/strict";
import { DoorLimits, type DoorLimitsConfig } from "../lib/door_limits.ts";
import { ProxyError } from "../lib/errors.ts";
import { memoryLogger } from "../lib/log.ts";
import { RequestContext } from "../lib/request_context.ts";

const CONFIG: DoorLimitsConfig = {
  rateLimitPerMinute: 60,
  rateLimitBurst: 2,
  maxTrackedClients: 100,
  poeRateLimitPerMinute: 3,
};

function limits(config: Partial<DoorLimitsConfig> = {}): DoorLimits {
  const t = 1_000_000;
  return new DoorLimits({ ...CONFIG, ...config }, () => t);
}

function context(client = "10.0.0.1"): RequestContext {
  return new RequestContext({
    id: "r1",
    client,
    method: "POST",
    path: "/v1/chat/completions",
    logger: memoryLogger(),
  });
}

const ok = () => Promise.resolve(new Response("ok"));

async function refusal(promise: Promise<unknown>): Promise<ProxyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ProxyError);
    return err;
  }
  throw new Error("not refused");
}

Deno.test("DoorLimits.forClient: the answer gets the client's limit headers, and so does its response", async () => {
  const door = limits();
  let given: Record<string, string> = {};
  const res = await door.forClient(context(), (headers) => {
    given = headers;
    return ok();
  });
  await res.body?.cancel();
  assert.equal(given["x-ratelimit-limit-requests"], "2");
  assert.equal(given["x-ratelimit-remaining-requests"], "1");
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), "1");
  assert.equal(door.trackedClients, 1);
});

Deno.test("DoorLimits.forClient: a response that already carries its headers is left alone", async () => {
  const ctx = context();
  ctx.headersIncluded = true;
  const res = await limits().forClient(ctx, ok);
  await res.body?.cancel();
  assert.equal(res.headers.get("x-ratelimit-remaining-requests"), null);
});

Deno.test("DoorLimits.forClient: past its burst a client gets 429, limited=client, and is not answered", async () => {
  const door = limits();
  for (let i = 0; i < 2; i++) await (await door.forClient(context(), ok)).body?.cancel();
  const ctx = context();
  let called = false;
  const err = await refusal(door.forClient(ctx, () => {
    called = true;
    return ok();
  }));
  assert.equal(err.status, 429);
  assert.equal(ctx.fields.limited, "client");
  assert.equal(called, false);
  assert.ok(Number(err.headers["retry-after"]) >= 1);
  // Another client has its own bucket.
  await (await door.forClient(context("10.0.0.2"), ok)).body?.cancel();
});

Deno.test("DoorLimits.forClient: an error carries the client's limit; a 429 keeps its own headers", async () => {
  const door = limits();
  const failed = await refusal(
    door.forClient(context(), () => Promise.reject(new ProxyError(502, "bad"))),
  );
  assert.equal(failed.headers["x-ratelimit-remaining-requests"], "1");
  const poe429 = await refusal(
    door.forClient(
      context("10.0.0.2"),
      () =>
        Promise.reject(
          new ProxyError(429, "Poe", { headers: { "x-ratelimit-remaining-requests": "99" } }),
        ),
    ),
  );
  assert.equal(poe429.headers["x-ratelimit-remaining-requests"], "99");
});

Deno.test("DoorLimits.takePoeToken: past Poe's bucket 429 with limited=poe; the client's token is refunded", async () => {
  const door = limits({ rateLimitBurst: 10 });
  const refused = [];
  for (let i = 0; i < 5; i++) {
    const ctx = context();
    try {
      await (await door.forClient(ctx, () => {
        door.takePoeToken(ctx);
        return ok();
      })).body?.cancel();
    } catch (err) {
      assert.ok(err instanceof ProxyError);
      assert.equal(ctx.fields.limited, "poe");
      assert.match(err.message, /POE_RATE_LIMIT_PER_MINUTE \(3\)/);
      refused.push(err);
    }
  }
  assert.equal(refused.length, 2, "Poe's burst is 3");
  // Three answered, two refunded: the client spent three of its ten.
  assert.equal(refused.at(-1)!.headers["x-ratelimit-remaining-requests"], "7");
});

Deno.test("DoorLimits.takePoeRetryToken: false with limited=poe-retry once Poe's bucket is empty", () => {
  const door = limits({ poeRateLimitPerMinute: 1 });
  const ctx = context();
  assert.equal(door.takePoeRetryToken(ctx), true);
  assert.equal(ctx.fields.limited, undefined);
  assert.equal(door.takePoeRetryToken(ctx), false);
  assert.equal(ctx.fields.limited, "poe-retry");
});

Deno.test("DoorLimits.refuseGuesser: after ten wrong keys the address waits, with Retry-After", () => {
  const door = limits();
  for (let i = 0; i < 10; i++) {
    door.refuseGuesser(context(), "10.0.0.9");
    door.wrongKey("10.0.0.9");
  }
  const ctx = context();
  assert.throws(() => door.refuseGuesser(ctx, "10.0.0.9"), (err) => {
    assert.ok(err instanceof ProxyError);
    assert.equal(err.status, 429);
    assert.equal(err.code, "too_many_auth_failures");
    assert.ok(Number(err.headers["retry-after"]) >= 1);
    return true;
  });
  assert.equal(ctx.fields.limited, "auth");
  // Another address is not held up.
  door.refuseGuesser(context(), "10.0.0.10");
});

Deno.test("DoorLimits.refuseGuesser: a rebinding page's wrong keys hold up the pages at its address, not its programs", () => {
  const door = limits();
  // Each try at another name: the name is the sender's to choose, and buys nothing.
  for (let i = 0; i < 10; i++) {
    door.refuseGuesser(context(), "127.0.0.1", `h${i}.evil.example`);
    door.wrongKey("127.0.0.1", `h${i}.evil.example`);
  }
  const ctx = context();
  assert.throws(() => door.refuseGuesser(ctx, "127.0.0.1", "fresh.evil.example"), (err) => {
    assert.ok(err instanceof ProxyError);
    assert.equal(err.status, 429);
    assert.equal(err.code, "too_many_auth_failures");
    assert.match(
      err.message,
      /from web pages \(at "fresh\.evil\.example"\) on this address; try again in \d+ s\./,
    );
    assert.ok(Number(err.headers["retry-after"]) >= 1);
    return true;
  });
  assert.equal(ctx.fields.limited, "auth");
  // The owner's programs at that address, and pages at other addresses, are not held up.
  door.refuseGuesser(context(), "127.0.0.1");
  door.refuseGuesser(context(), "10.0.0.7", "evil.example");
  // An address held up holds up its pages too.
  for (let i = 0; i < 10; i++) door.wrongKey("10.0.0.9");
  assert.throws(() => door.refuseGuesser(context(), "10.0.0.9", "other.example"), /this address/);
});

Deno.test("DoorLimits: the addresses of one local IPv6 network share a larger wrong-key allowance", () => {
  const door = limits();
  // The owner's device, seen with a right key before a guest started guessing.
  door.refuseGuesser(context(), "fd00:1:2:3::bbbb");
  door.rightKey("fd00:1:2:3::bbbb");
  // A host of the network takes a new address for every ten tries.
  let refused = 0;
  for (let i = 0; i < 150; i++) {
    const address = `fd00:1:2:3::${(Math.floor(i / 10) + 1).toString(16)}`;
    try {
      door.refuseGuesser(context(), address);
      door.wrongKey(address);
    } catch {
      refused++;
    }
  }
  assert.equal(refused, 50, "a hundred a minute for the network, then it waits");
  assert.throws(() => door.refuseGuesser(context(), "fd00:1:2:3::99"), /this address/);
  // An address that showed a right key is not held up by its neighbours' guesses.
  door.refuseGuesser(context(), "fd00:1:2:3::bbbb");
  // Another network, and global or IPv4 addresses, are not held up.
  door.refuseGuesser(context(), "fd00:1:2:4::1");
  door.refuseGuesser(context(), "fe80::1");
  door.refuseGuesser(context(), "10.0.0.1");
});
