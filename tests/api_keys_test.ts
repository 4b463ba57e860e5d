import assert from "node:assert/strict";
import { ApiKeys, authenticationError, parseKeys, timingSafeEqual } from "../lib/api_keys.ts";

const KEY_A = "sk-proxy-alpha-0123456789";
const KEY_B = "sk-proxy-bravo-9876543210";

Deno.test("parseKeys: a comment after a key in the file is dropped; two words on a line are an error", () => {
  assert.deepEqual(parseKeys(null, "bob-key  # Bob's laptop\n# all\nann#key\n"), [
    "bob-key",
    "ann#key",
  ]);
  assert.throws(
    () => parseKeys(null, "ok-key\nsecret-one secret-two\n"),
    (e: Error) => e.message === "line 2 holds more than one word; write one key a line",
  );
});

Deno.test("parseKeys reads a comma list, trimmed, blanks dropped", () => {
  assert.deepEqual(parseKeys(" a , b,,c ", null), ["a", "b", "c"]);
  assert.deepEqual(parseKeys("", null), []);
  assert.deepEqual(parseKeys(null, null), []);
});

Deno.test("parseKeys reads a file: one a line, blanks and # comments ignored", () => {
  const file = "# inbound keys\n\n  alpha  \r\nbravo\n   # indented comment\ncharlie\n";
  assert.deepEqual(parseKeys(null, file), ["alpha", "bravo", "charlie"]);
});

Deno.test("parseKeys merges both sources and dedupes, first occurrence first", () => {
  assert.deepEqual(parseKeys("bravo, alpha, bravo", "alpha\ndelta\n"), ["bravo", "alpha", "delta"]);
});

Deno.test("ApiKeys.enabled is false without keys", () => {
  assert.equal(new ApiKeys([]).enabled, false);
  assert.equal(new ApiKeys([]).identify(new Headers({ authorization: "Bearer x" })), null);
  assert.equal(new ApiKeys([KEY_A]).enabled, true);
});

Deno.test("ApiKeys.identify accepts Authorization: Bearer", () => {
  const keys = new ApiKeys([KEY_A, KEY_B]);
  assert.equal(keys.identify(new Headers({ authorization: `Bearer ${KEY_A}` })), "key-1");
  assert.equal(keys.identify(new Headers({ authorization: `bearer   ${KEY_B} ` })), "key-2");
});

Deno.test("ApiKeys.identify accepts x-api-key", () => {
  const keys = new ApiKeys([KEY_A, KEY_B]);
  assert.equal(keys.identify(new Headers({ "x-api-key": KEY_B })), "key-2");
  // A dummy Bearer (some clients always send one) does not hide a valid x-api-key.
  assert.equal(
    keys.identify(new Headers({ authorization: "Bearer dummy", "x-api-key": KEY_A })),
    "key-1",
  );
});

Deno.test("ApiKeys.identify refuses wrong, missing, empty and malformed credentials", () => {
  const keys = new ApiKeys([KEY_A]);
  const refused: HeadersInit[] = [
    {},
    { authorization: "" },
    { authorization: "Bearer" },
    { authorization: "Bearer " },
    { authorization: `Basic ${KEY_A}` },
    { authorization: KEY_A },
    { authorization: `Bearer ${KEY_A}x` },
    { authorization: `Bearer ${KEY_A.slice(0, -1)}` },
    { authorization: `Bearer ${KEY_A.toUpperCase()}` },
    { "x-api-key": "" },
    { "x-api-key": "wrong" },
    { authorization: `Bearer ${KEY_B}` },
  ];
  for (const init of refused) {
    assert.equal(keys.identify(new Headers(init)), null, JSON.stringify(init));
  }
});

Deno.test("ApiKeys names never contain any part of a key", () => {
  const keys = ["k", "ke", "key", "key-1", "key-2", "1", "-"];
  const apiKeys = new ApiKeys(keys);
  keys.forEach((key, i) => {
    const name = apiKeys.identify(new Headers({ authorization: `Bearer ${key}` }));
    assert.equal(name, `key-${i + 1}`);
  });
  // The object itself holds no key text that could be logged by accident.
  const secret = "sk-very-secret-value";
  const holder = new ApiKeys([secret]);
  assert.ok(!JSON.stringify(holder).includes(secret));
  assert.ok(!Deno.inspect(holder, { depth: 10 }).includes(secret));
  assert.ok(!authenticationError().message.includes(secret));
});

Deno.test("authenticationError is a 401 authentication_error", () => {
  const err = authenticationError();
  assert.equal(err.status, 401);
  assert.equal(err.type, "authentication_error");
  assert.equal(err.headers["www-authenticate"], "Bearer");
});

Deno.test("timingSafeEqual compares by content and length", () => {
  assert.equal(timingSafeEqual("", ""), true);
  assert.equal(timingSafeEqual("abc", "abc"), true);
  assert.equal(timingSafeEqual("abc", "abd"), false);
  assert.equal(timingSafeEqual("abc", "ab"), false);
  assert.equal(timingSafeEqual("ab", "abc"), false);
  assert.equal(timingSafeEqual("", "a"), false);
  assert.equal(timingSafeEqual("é", "e\u0301"), false);
  // A prefix padded with NUL is still different: the length is part of the comparison.
  assert.equal(timingSafeEqual("a\0", "a"), false);
});
