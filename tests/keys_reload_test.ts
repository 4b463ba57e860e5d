/** @module KeysReloader: a valid keys file replaces the keys, a bad one is logged and ignored. */
import assert from "node:assert/strict";
import { ApiKeys, inboundKeys } from "../lib/api_keys.ts";
import { KeysReloader } from "../lib/keys_reload.ts";
import { memoryLogger } from "../lib/log.ts";

const OLD = "kid-tablet-key-0123456789abcdef";
const NEW = "owner-key-fedcba9876543210aaaa";
const FILE = "/etc/poe-proxy/keys";

/** A reloader over `keys` whose file holds `text` (null: unreadable), read as startup reads it. */
function reloaderOf(keys: ApiKeys, file: { text: string | null }, env: string[] = []) {
  const logger = memoryLogger();
  const reloader = new KeysReloader({
    keys,
    load: () => {
      if (file.text === null) {
        return Promise.reject(
          new Error(`Cannot read PROXY_API_KEYS_FILE "${FILE}": Is a directory`),
        );
      }
      return Promise.resolve(
        inboundKeys({ proxyApiKeys: env, proxyApiKeysFile: FILE }, file.text),
      );
    },
    logger,
  });
  return { reloader, logger };
}

const bearer = (key: string) => new Headers({ authorization: `Bearer ${key}` });

Deno.test("KeysReloader: a revoked key is refused after the reload; the log has counts, no key", async () => {
  const keys = new ApiKeys([OLD, NEW]);
  const file = { text: `# revoked the tablet\n${NEW}\n` };
  const { reloader, logger } = reloaderOf(keys, file);
  assert.equal(await reloader.reload(), true);
  assert.equal(keys.identify(bearer(OLD)), null);
  assert.equal(keys.identify(bearer(NEW)), "key-2");
  assert.deepEqual(logger.lines.map((l) => l.replace(/^\S+ /, "")), [
    "INFO  keys reloaded keys=1 previous=2",
  ]);
});

Deno.test("KeysReloader keeps the old keys on an unreadable, empty or invalid file, and says why", async () => {
  const cases: [string | null, RegExp][] = [
    [null, /Cannot read PROXY_API_KEYS_FILE \\"\/etc\/poe-proxy\/keys\\": Is a directory/],
    ["# all commented out\n\n", /holds no key: refusing to run without inbound keys/],
    [`${NEW} ${OLD}\n`, /PROXY_API_KEYS_FILE: line 1 holds more than one word/],
  ];
  for (const [text, why] of cases) {
    const keys = new ApiKeys([OLD, NEW]);
    const { reloader, logger } = reloaderOf(keys, { text });
    assert.equal(await reloader.reload(), false);
    assert.equal(keys.identify(bearer(OLD)), "key-1");
    assert.equal(keys.identify(bearer(NEW)), "key-2");
    assert.equal(logger.lines.length, 1);
    assert.match(logger.lines[0], /ERROR keys reload failed; keeping the previous keys error=/);
    assert.match(logger.lines[0], why);
    assert.match(logger.lines[0], / keys=2$/);
    assert.ok(!logger.lines[0].includes(NEW) && !logger.lines[0].includes(OLD.slice(0, 12)));
  }
});

Deno.test("KeysReloader: PROXY_API_KEYS stay; an emptied file then leaves them alone, as at startup", async () => {
  const ENV = "env-key-from-the-unit-0123456789";
  const keys = new ApiKeys([ENV, OLD]);
  const file = { text: "" };
  const { reloader, logger } = reloaderOf(keys, file, [ENV]);
  assert.equal(await reloader.reload(), true);
  assert.equal(keys.identify(bearer(ENV)), "key-1");
  assert.equal(keys.identify(bearer(OLD)), null);
  assert.match(logger.lines[0], /keys reloaded keys=1 previous=2$/);
});

Deno.test("KeysReloader warns about short keys on reload, as at startup, without showing them", async () => {
  const keys = new ApiKeys([NEW]);
  const { reloader, logger } = reloaderOf(keys, { text: `${NEW}\nq7\n` });
  assert.equal(await reloader.reload(), true);
  assert.equal(keys.identify(bearer("q7")), "key-2");
  assert.match(
    logger.lines.join("\n"),
    /WARN {2}short inbound keys message="1 of the inbound keys is/,
  );
  assert.ok(!/\bq7\b/.test(logger.lines.join("\n")));
});

Deno.test("KeysReloader runs reloads one at a time, in order, so the file read last wins", async () => {
  const keys = new ApiKeys([OLD]);
  const gates = [Promise.withResolvers<string[]>(), Promise.withResolvers<string[]>()];
  let call = 0;
  const reloader = new KeysReloader({
    keys,
    load: () => gates[call++].promise,
    logger: memoryLogger(),
  });
  const first = reloader.reload();
  const second = reloader.reload();
  gates[0].resolve([OLD]);
  await first;
  gates[1].resolve([NEW]);
  assert.equal(await second, true);
  assert.equal(keys.identify(bearer(OLD)), null);
  assert.equal(keys.identify(bearer(NEW)), "key-2");
});
