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
  // A paste's zero-width space: a client could never send the key as written.
  assert.throws(
    () => parseKeys(null, "ok-key\nsecret-one\u200b\n"),
    (e: Error) =>
      e.message ===
        "line 2 holds a character that is not printable ASCII (an invisible one from a paste?)",
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

Deno.test("ApiKeys.replace: a removed key is refused at once; kept keys keep their names", () => {
  const KEY_C = "sk-proxy-charlie-5555555555";
  const keys = new ApiKeys([KEY_A, KEY_B]);
  const name = (key: string) => keys.identify(new Headers({ authorization: `Bearer ${key}` }));
  assert.equal(name(KEY_B), "key-2");
  keys.replace([KEY_B, KEY_C]);
  assert.equal(keys.size, 2);
  assert.equal(name(KEY_A), null, "the revoked key");
  assert.equal(keys.isKey(KEY_A), false);
  // A name never passes to another key: key-1 was the revoked one's on the dashboard's rows.
  assert.equal(name(KEY_B), "key-2");
  assert.equal(name(KEY_C), "key-3");
  keys.replace([KEY_C, KEY_A]);
  assert.equal(name(KEY_A), "key-1", "a key seen before gets its name back");
  assert.equal(name(KEY_B), null);
  assert.equal(name(KEY_C), "key-3");
  // Never emptied (the door would open), never filled when there were none (no door to close).
  assert.throws(() => keys.replace([]), /would be open/);
  assert.equal(name(KEY_A), "key-1");
  assert.throws(() => new ApiKeys([]).replace([KEY_A]));
  // Still no key text that could be logged by accident.
  assert.ok(!Deno.inspect(keys, { depth: 10 }).includes(KEY_C));
  assert.ok(!JSON.stringify(keys).includes(KEY_C));
});

Deno.test("ApiKeys.hide hides a key anywhere in a text, whole or shortened, and follows replace", () => {
  const keys = new ApiKeys([KEY_A, "q7short"]);
  assert.equal(keys.hide(`Bearer ${KEY_A}`), "Bearer (hidden)");
  assert.equal(keys.hide(`/v1/models/${KEY_A}`), "/v1/models/(hidden)");
  assert.equal(keys.hide(`${KEY_A},${KEY_A}`), "(hidden),(hidden)");
  assert.equal(keys.hide(`was ${KEY_A.slice(0, 6)}...${KEY_A.slice(-4)}`), "was (hidden)");
  // A key under 8 characters only as the whole text: inside one it would hide parts of words.
  assert.equal(keys.hide("q7short"), "(hidden)");
  assert.equal(keys.hide("gpt-q7short"), "gpt-q7short");
  for (const text of ["", "gpt-4o", "Claude-Sonnet-4.5", KEY_B, KEY_A.slice(0, -1)]) {
    assert.equal(keys.hide(text), text);
  }
  keys.replace([KEY_B]);
  assert.equal(keys.hide(`Bearer ${KEY_B}`), "Bearer (hidden)");
  assert.equal(keys.hide(`Bearer ${KEY_A}`), `Bearer ${KEY_A}`, "no longer a key");
  assert.equal(new ApiKeys([]).hide(KEY_A), KEY_A);
});
