/** @module Tests of lib/config_values.ts: each value parser's accepted and refused forms. */
import assert from "node:assert/strict";
import {
  apiKey,
  baseUrl,
  boolean,
  corsOrigins,
  Expected,
  filePath,
  footerMode,
  host,
  hostName,
  integer,
  list,
  MAX_TIMER_MS,
  number,
  oneOf,
  proxyKey,
  seconds,
  trustProxy,
} from "../lib/config_values.ts";

/** The {@linkcode Expected} that `parse(raw)` throws. */
function refused(parse: (raw: string) => unknown, raw: string): Expected {
  try {
    parse(raw);
  } catch (error) {
    assert.ok(error instanceof Expected, `not an Expected: ${error}`);
    return error;
  }
  assert.fail(`${JSON.stringify(raw)} was accepted`);
}

/** Asserts that each of `raws` is refused with `expected` and, when given, names its `entry`. */
function refusesAll(
  parse: (raw: string) => unknown,
  raws: readonly string[],
  expected: string,
  entry: (raw: string) => string | undefined = () => undefined,
): void {
  for (const raw of raws) {
    const error = refused(parse, raw);
    assert.equal(error.message, expected, JSON.stringify(raw));
    assert.equal(error.entry, entry(raw), JSON.stringify(raw));
  }
}

Deno.test("integer: digits, with an optional +, within its bounds", () => {
  const port = integer(0, 65535);
  assert.equal(port("0"), 0);
  assert.equal(port("+80"), 80);
  assert.equal(port("007"), 7);
  assert.equal(port("65535"), 65535);
  refusesAll(
    port,
    ["65536", "-1", "-0", "1.0", "1e3", "0x10", "", "1 2"],
    "an integer from 0 to 65535",
  );
  assert.equal(integer(0)("0"), 0);
  refusesAll(integer(0), ["-1"], "a non-negative integer");
  assert.equal(integer(1)("9007199254740991"), Number.MAX_SAFE_INTEGER);
  refusesAll(integer(1), ["0", "9007199254740992"], "a positive integer");
});

Deno.test("number: plain decimals, never negative, zero only when allowed, up to max", () => {
  const any = number(false);
  assert.equal(any("0"), 0);
  assert.equal(any("2.5"), 2.5);
  assert.equal(any(".5"), 0.5);
  assert.equal(any("5."), 5);
  assert.equal(any("+1"), 1);
  refusesAll(
    any,
    ["-1", "1e3", "Infinity", "NaN", "0x10", "1.2.3", ".", ""],
    "a non-negative number",
  );
  refusesAll(number(true), ["0", "0.0"], "a positive number");
  assert.equal(number(true, 10)("10"), 10);
  refusesAll(number(true, 10), ["10.5"], "a positive number up to 10");
});

Deno.test("seconds: at most what a timer can hold", () => {
  assert.equal(MAX_TIMER_MS, 2 ** 31 - 1);
  assert.equal(seconds(true)("2147483"), 2147483);
  assert.equal(seconds(false)("0"), 0);
  refusesAll(seconds(true), ["0", "2147483.5"], "a positive number up to 2147483");
  refusesAll(seconds(false), ["-0.5"], "a non-negative number up to 2147483");
});

Deno.test("boolean: on/off, true/false, yes/no, 1/0 in any case", () => {
  for (const raw of ["on", "true", "1", "yes", "ON", "True", "YES"]) {
    assert.equal(boolean(raw), true, raw);
  }
  for (const raw of ["off", "false", "0", "no", "Off", "NO"]) {
    assert.equal(boolean(raw), false, raw);
  }
  refusesAll(boolean, ["", "2", "y", "enabled"], "on or off (or true/false, yes/no, 1/0)");
});

Deno.test("footerMode: stream, or a boolean word for on or off", () => {
  assert.equal(footerMode("stream"), "stream");
  assert.equal(footerMode("STREAM"), "stream");
  for (const raw of ["on", "yes", "1"]) assert.equal(footerMode(raw), "on", raw);
  for (const raw of ["off", "False", "0"]) assert.equal(footerMode(raw), "off", raw);
  refusesAll(footerMode, ["maybe", "streaming", ""], "on, stream or off");
});

Deno.test("oneOf: one of the values, in any case", () => {
  const format = oneOf(["text", "json"] as const);
  assert.equal(format("JSON"), "json");
  assert.equal(format("text"), "text");
  refusesAll(format, ["xml", "", "json "], "one of text, json");
});

Deno.test("filePath: any non-empty path", () => {
  assert.equal(filePath("dir/my models.yaml"), "dir/my models.yaml");
  refusesAll(filePath, [""], "a file path");
});

Deno.test("host: an IP address or a DNS name without a port; [::1] is ::1", () => {
  const names = [
    "localhost",
    "0.0.0.0",
    "::",
    "::1",
    "192.168.1.20",
    "fe80::1%eth0",
    "my-server.lan",
    "example.com.",
  ];
  for (const name of names) assert.equal(host(name), name);
  assert.equal(host("[::1]"), "::1");
  refusesAll(
    host,
    ["my host", "localhost:8080", "999.1.1.1", "[::1]:8080", "-x.lan", "", "[localhost]"],
    "a host name or IP address, without a port (PORT sets that)",
  );
});

Deno.test("baseUrl: an http or https URL without trailing slashes or /v1", () => {
  assert.equal(baseUrl("https://api.poe.com/"), "https://api.poe.com");
  assert.equal(baseUrl("http://127.0.0.1:8081/poe//"), "http://127.0.0.1:8081/poe");
  // Poe's docs give the OpenAI base URL with /v1: chat calls add it, the Usage API is not under it.
  assert.equal(baseUrl("HTTPS://Api.Poe.com/v1//"), "https://api.poe.com");
  assert.equal(baseUrl("https://api.poe.com/V1"), "https://api.poe.com");
  assert.equal(baseUrl("http://gateway.lan/poe/v1/"), "http://gateway.lan/poe");
  // Poe's chat endpoint pasted whole, or /v1 twice.
  assert.equal(baseUrl("https://api.poe.com/v1/chat/completions"), "https://api.poe.com");
  assert.equal(baseUrl("https://api.poe.com/chat/completions/"), "https://api.poe.com");
  assert.equal(baseUrl("https://api.poe.com/v1/v1"), "https://api.poe.com");
  refusesAll(baseUrl, ["ftp://api.poe.com", "api.poe.com", ""], "an http or https URL");
});

Deno.test("apiKey: any key of printable ASCII", () => {
  assert.equal(apiKey("sk-abc_123.XYZ"), "sk-abc_123.XYZ");
  assert.equal(apiKey("a!~#$%&*+/=?^`{|}"), "a!~#$%&*+/=?^`{|}");
  refusesAll(
    apiKey,
    // A zero-width space and curly quotes come along with a paste; fetch refuses them in a header.
    [
      "sk abc",
      "sk\tabc",
      "sk\nabc",
      "sk\u0000",
      "sk\x7f",
      "sk-abc\u200b",
      "\u201csk-abc\u201d",
      "clé",
    ],
    "a key of printable ASCII, without spaces, control, invisible or non-ASCII characters (paste it again)",
  );
});

Deno.test("list: entries trimmed, empties dropped, each checked", () => {
  const hosts = list(hostName);
  assert.deepEqual(hosts(" A.lan, ,b.lan,, "), ["a.lan", "b.lan"]);
  assert.deepEqual(hosts(""), []);
  assert.deepEqual(hosts(",,"), []);
  const error = refused(hosts, "a.lan, b.lan:80");
  assert.equal(error.entry, "b.lan:80");
});

Deno.test("hostName: a host name without a port, or *, lower-cased; errors name the entry", () => {
  assert.equal(hostName("*"), "*");
  assert.equal(hostName("Example.COM"), "example.com");
  assert.equal(hostName("a"), "a");
  refusesAll(
    hostName,
    ["b.lan:80", "-a", "a_b", "http://a"],
    "comma-separated host names without ports, or *",
    (raw) => raw,
  );
});

Deno.test("proxyKey: a key of printable ASCII; errors name no entry", () => {
  assert.equal(proxyKey("client-key-1"), "client-key-1");
  refusesAll(
    proxyKey,
    ["a b", "a\u0001", "clé-1", "key\u200b"],
    "comma-separated keys of printable ASCII, without spaces, control, invisible or non-ASCII characters",
  );
});

Deno.test("trustProxy: IP addresses and CIDR ranges, normalised; errors name the entry", () => {
  assert.deepEqual(trustProxy(""), []);
  assert.deepEqual(trustProxy("::1, 192.168.0.0/16"), ["::1", "192.168.0.0/16"]);
  assert.deepEqual(trustProxy("::ffff:10.0.0.1, 10.0.0.1, FD00:0::/8"), ["10.0.0.1", "fd00::/8"]);
  assert.equal(
    refused(trustProxy, "10.0.0.1, example.com, 10.0.0.2").entry,
    "example.com",
  );
  refusesAll(
    trustProxy,
    ["example.com", "10.0.0.1/", "fe80::/129"],
    "comma-separated IP addresses or CIDR ranges (not host names)",
    (raw) => raw,
  );
});

Deno.test("corsOrigins: web and app origins, lower-cased, deduplicated; * alone wins", () => {
  assert.deepEqual(corsOrigins(""), []);
  assert.deepEqual(
    corsOrigins("app://Obsidian.md, chrome-extension://abcdef/, tauri://localhost"),
    ["app://obsidian.md", "chrome-extension://abcdef", "tauri://localhost"],
  );
  assert.deepEqual(corsOrigins("https://a.com, https://A.com/, http://localhost:3000/"), [
    "https://a.com",
    "http://localhost:3000",
  ]);
  assert.deepEqual(corsOrigins("https://a.com,*"), ["*"]);
  refusesAll(
    corsOrigins,
    ["null", "https://a.com/path", "a.com", "app://x/path"],
    `"*" or comma-separated origins like https://example.com or app://obsidian.md`,
    (raw) => raw,
  );
});
