/** @module isJsonDocument, isBareUrl, isDataText and TextShape: answers that are data, not prose. */
import assert from "node:assert/strict";
import { isBareUrl, isDataText, isJsonDocument, TextShape } from "../lib/data_answer.ts";

/** A TextShape fed `pieces` in order. */
function shape(pieces: string[]): TextShape {
  const t = new TextShape();
  for (const p of pieces) t.add(p);
  return t;
}

Deno.test("TextShape: streamed text is JSON only when the whole of it parses", () => {
  assert.equal(shape([" ", '{"a":', " [1, 2]", "}\n"]).json, true);
  assert.equal(shape(["[1,", "2]"]).json, true);
  assert.equal(shape(["[Oslo](https://x) is the capital. See [1]"]).json, false);
  assert.equal(shape(["{not json} and more }"]).json, false);
  assert.equal(shape(["Hello", " {}"]).json, false);
  assert.equal(shape(["Hello"]).watching, false);
  assert.equal(shape([]).json, false);
  // Past the kept size, the brackets at both ends decide.
  assert.equal(shape(["[", `"${"x".repeat(300 * 1024)}"`, "]"]).json, true);
});

Deno.test("TextShape and isDataText: a text that is one http(s) URL is data, in any chunking", () => {
  const url = "https://pfst.cf2.poecdn.net/base/audio/" + "0a".repeat(32);
  const cases: [string, boolean][] = [
    [url, true],
    [`  ${url}\n\n`, true],
    ["HTTP://EXAMPLE.COM/x", true],
    ["http://x", true],
    [`${url} is your audio`, false],
    [`${url}\n\nEnjoy!`, false],
    [`Here it is: ${url}`, false],
    [`![a.png](${url})\n\n${url}`, false],
    ["Hello there, friend.", false],
    ["http", false],
    ["https://", false],
    ["htp://x", false],
    ["ftp://x", false],
    [`https://x/${"a".repeat(20 * 1024)}`, false],
    ["", false],
  ];
  for (const [text, data] of cases) {
    assert.equal(isDataText(text), data, JSON.stringify(text.slice(0, 60)));
    // Whole, one character a delta, and in pieces of three.
    for (const size of [text.length || 1, 1, 3]) {
      const t = new TextShape();
      for (let i = 0; i < text.length; i += size) t.add(text.slice(i, i + size));
      assert.equal(t.data, data, `${JSON.stringify(text.slice(0, 60))} in pieces of ${size}`);
      assert.equal(t.url, data);
    }
  }
  // Prose is settled at its first delta (the relay then forwards deltas unparsed).
  const hello = new TextShape();
  hello.add("Hello");
  assert.equal(hello.watching, false);
  const here = new TextShape();
  here.add("htt");
  assert.equal(here.watching, true);
  here.add("ps://a b");
  assert.equal(here.watching, false);
});

Deno.test("isJsonDocument: one object or array, trimmed; scalars and broken JSON are prose", () => {
  const cases: [string, boolean][] = [
    ['{"a":1}', true],
    ["  [1, 2]\n", true],
    ["{}", true],
    ["[]", true],
    ["42", false],
    ['"a string"', false],
    ["null", false],
    ["true", false],
    ["{", false],
    ['{"a":1} trailing', false],
    ['{"a":1}{"b":2}', false],
    ["", false],
    ["   ", false],
  ];
  for (const [text, json] of cases) assert.equal(isJsonDocument(text), json, JSON.stringify(text));
});

Deno.test("isBareUrl: one http(s) URL up to 16 KiB, surrounding whitespace allowed, none inside", () => {
  const path = (n: number) => "a".repeat(n);
  const base = "https://x/";
  assert.equal(isBareUrl(`${base}${path(16 * 1024 - base.length)}`), true);
  assert.equal(isBareUrl(`${base}${path(16 * 1024 - base.length + 1)}`), false);
  assert.equal(isBareUrl(`\n ${base}file.mp3 \n`), true);
  assert.equal(isBareUrl(`${base}a b`), false);
  assert.equal(isBareUrl(`${base}a\tb`), false);
  assert.equal(isBareUrl("Https://X.example/A"), true);
  assert.equal(isBareUrl("mailto:a@b.example"), false);
  assert.equal(isBareUrl("https:/x"), false);
});

Deno.test("isDataText is exactly isJsonDocument or isBareUrl", () => {
  const texts = [
    '{"a":1}',
    "[1]",
    "https://a.example/x",
    "  HTTP://A.EXAMPLE  ",
    "hello",
    "Hello https://a.example",
    "h",
    "[not json",
    "42",
    "",
    `https://x/${"a".repeat(17 * 1024)}`,
    '{"url":"https://a.example"}',
  ];
  for (const t of texts) {
    assert.equal(isDataText(t), isJsonDocument(t) || isBareUrl(t), JSON.stringify(t.slice(0, 40)));
  }
});

Deno.test("TextShape: blank deltas before the text decide nothing, and are kept for the parse", () => {
  const t = new TextShape();
  assert.equal(t.watching, true);
  t.add("");
  t.add("\n");
  t.add("  ");
  assert.equal(t.watching, true);
  assert.equal(t.data, false);
  t.add('{"a":');
  t.add("1}");
  assert.equal(t.json, true);
  assert.equal(t.url, false);
  assert.equal(t.data, true);
  assert.equal(t.watching, true, "JSON is watched to its end");
});

Deno.test("TextShape: once prose, later text changes nothing and is not kept", () => {
  const t = shape(["Sure: ", '{"a":1}']);
  assert.equal(t.watching, false);
  assert.equal(t.json, false);
  assert.equal(t.data, false);
  // A URL-like start that turns out to be prose stays prose, whatever follows.
  const u = shape(["https://a.example/x", " is the link", ""]);
  assert.equal(u.watching, false);
  assert.equal(u.url, false);
  const h = shape(["hello"]);
  h.add("://x");
  assert.equal(h.url, false);
});

Deno.test("TextShape: a URL followed by whitespace is data; more text in a later delta is prose", () => {
  assert.equal(shape(["https://a.example/x", "\n\n"]).url, true);
  assert.equal(shape(["https://a.example/x", " ", "\n"]).url, true);
  const after = shape(["https://a.example/x", "\n", "Enjoy!"]);
  assert.equal(after.url, false);
  assert.equal(after.watching, false);
  // An empty delta (a chunk with a role only) between them changes nothing.
  const gap = shape(["https://a.example/x", "\n", "", "Enjoy!"]);
  assert.equal(gap.url, false);
  assert.equal(gap.watching, false);
  // The first characters settle the scheme, also split one a delta, in any casing.
  assert.equal(shape(["H", "t", "T", "p", "S", ":", "/", "/", "x"]).url, true);
  assert.equal(shape(["h", "e"]).watching, false);
  assert.equal(shape(["http", "s:", "//x"]).url, true);
  assert.equal(shape(["http", "x"]).watching, false);
});

Deno.test("TextShape: a URL longer than 16 KiB is prose, settled while it streams", () => {
  const t = shape(["https://x/"]);
  for (let i = 0; i < 16 && t.watching; i++) t.add("a".repeat(1024));
  assert.equal(t.watching, false);
  assert.equal(t.url, false);
});

Deno.test("TextShape: JSON past the kept size is judged by its first and last brackets", () => {
  const big = "x".repeat(300 * 1024);
  assert.equal(shape(["{", `"a":"${big}"`, "}"]).json, true);
  assert.equal(shape(["{", `"a":"${big}"`, "]"]).json, false);
  assert.equal(shape(["[", `"${big}"`, "}"]).json, false);
  assert.equal(shape(["[", `"${big}"`, "]  \n", " "]).json, true, "trailing blanks are skipped");
  // Past 256 KiB nothing more is kept: the brackets decide even for text that would not parse.
  assert.equal(shape(["[", `"${big}"`, ",,]"]).json, true);
  // Under the kept size, the whole text is parsed: matching brackets are not enough.
  assert.equal(shape(["[", "1,,2", "]"]).json, false);
});

Deno.test("TextShape.visible: only a character other than whitespace makes the text visible", () => {
  assert.equal(shape([]).visible, false);
  assert.equal(shape(["", " ", "\n\t"]).visible, false);
  for (const pieces of [["", " Hi"], ["{"], ["h"], ["  ", "x"]]) {
    assert.equal(shape(pieces).visible, true, JSON.stringify(pieces));
  }
});
