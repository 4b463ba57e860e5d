/**
 * @module Tests of lib/yaml_nodes.ts, through the models file: YAML syntax, aliases, names and
 * numbers, each error with its path and position.
 */
import assert from "node:assert/strict";
import { parseModelsFile } from "../lib/models_file.ts";
import { fixtureError, get, parseError } from "./models_fixture.ts";

Deno.test("parseModelsFile reports a YAML syntax error with source, line and column", async () => {
  const err = await fixtureError("models_syntax_error.yaml");
  assert.match(
    err.message,
    /^Cannot load models_syntax_error\.yaml: models_syntax_error\.yaml:\d+:\d+: invalid YAML: \S/,
  );
  assert.equal(err.line, 6);
  assert.equal(err.message.includes(`models_syntax_error.yaml:${err.line}:${err.column}:`), true);
  assert.equal(err.source, "models_syntax_error.yaml");
});

Deno.test("parseModelsFile reports a duplicated YAML key as a syntax error", () => {
  const err = parseError("models:\n  text: [A]\n  text: [B]\n");
  assert.equal(
    err.message,
    "Cannot load models.yaml: models.yaml:3:3: invalid YAML: Map keys must be unique",
  );
});

Deno.test("parseModelsFile rejects negative, infinite and non-integer numbers", async () => {
  assert.equal(
    (await fixtureError("models_negative.yaml")).message,
    "Cannot load models_negative.yaml: models.image[0].base must not be negative: got -5" +
      " (models_negative.yaml:4:13)",
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, per_1k_tokens: .inf}]\n").message,
    /models\.text\[0\]\.per_1k_tokens must be a finite number: got \.inf /,
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, max_tokens: 1.5}]\n").message,
    /models\.text\[0\]\.max_tokens must be a positive integer: got 1\.5 /,
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, max_tokens: 0}]\n").message,
    /models\.text\[0\]\.max_tokens must be a positive integer: got 0 /,
  );
  assert.match(
    parseError("defaults:\n  text_max_tokens: '5'\nmodels:\n  text: [a]\n").message,
    /defaults\.text_max_tokens must be a number, written without quotes or underscores \(5\): got "5" /,
  );
});

Deno.test("parseModelsFile rejects names that are not non-empty strings", () => {
  assert.match(
    parseError("models:\n  text: [{poe_name: 5}]\n").message,
    /models\.text\[0\]\.poe_name must be a non-empty string: got 5 /,
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: ''}]\n").message,
    /models\.text\[0\]\.poe_name must be a non-empty string: got "" /,
  );
  assert.match(
    parseError("models:\n  text: [{base: 1}]\n").message,
    /models\.text\[0\] must have a poe_name /,
  );
  assert.match(
    parseError("models:\n  text: [[a]]\n").message,
    /models\.text\[0\] must be a model name or a map with poe_name: got a list /,
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, aliases: b}]\n").message,
    /models\.text\[0\]\.aliases must be a list of names: got "b" /,
  );
});

Deno.test("parseModelsFile rejects control characters and surrounding spaces in names", () => {
  assert.match(
    parseError('models:\n  text: ["GPT-5\\u0000"]\n').message,
    /models\.text\[0\] must not contain control characters: got "GPT-5\\u0000" /,
  );
  assert.match(
    parseError('models:\n  text: [{poe_name: a, aliases: ["b\\nc"]}]\n').message,
    /models\.text\[0\]\.aliases\[0\] must not contain control characters: got "b\\nc" /,
  );
  assert.match(
    parseError('models:\n  text: [" GPT-5"]\n').message,
    /models\.text\[0\] must not start or end with spaces: got " GPT-5" /,
  );
});

Deno.test("parseModelsFile follows YAML anchors and aliases", () => {
  const file = parseModelsFile(
    "models:\n  text:\n    - {poe_name: A, aliases: &al [x, y]}\n  image:\n    - {poe_name: B, cheaper: *al}\n",
    "x",
  );
  assert.deepEqual(get(file, "B").cheaper, ["A"]);
});

Deno.test("parseModelsFile rejects names over 128 characters, showing the value cut short", () => {
  assert.equal(parseModelsFile(`models:\n  text: [${"x".repeat(128)}]\n`, "x").entries.length, 1);
  assert.equal(
    parseError(`models:\n  text: [${"x".repeat(129)}]\n`).message,
    `Cannot load models.yaml: models.text[0] must be at most 128 characters: got "${
      "x".repeat(57)
    }..." (models.yaml:2:10)`,
  );
});

Deno.test("parseModelsFile rejects names and aliases a chat request could not name: printable ASCII only", () => {
  assert.match(
    parseError('models:\n  text:\n    - {poe_name: GPT-4o, aliases: ["Modèle-Ü"]}\n').message,
    /models\.text\[0\]\.aliases\[0\] must be printable ASCII .*: got "Modèle-Ü"/,
  );
  assert.match(parseError("models:\n  text: [Caf\u00e9]\n").message, /printable ASCII/);
  assert.equal(parseModelsFile("models:\n  text: [A b.c_d:e/f@1]\n", "x").entries.length, 1);
});

Deno.test("parseModelsFile reads YAML merge keys, as PyYAML does: a model's own keys win", () => {
  const file = parseModelsFile(
    "models:\n  text:\n    - &claude {poe_name: Claude-A, base: 100, per_1k_tokens: 5}\n" +
      "    - <<: *claude\n      poe_name: Claude-B\n      base: 50\n" +
      "    - <<: [{poe_name: First, max_tokens: 10}, {poe_name: Second, per_1k_output_tokens: 7}]\n",
    "x",
  );
  const b = get(file, "Claude-B");
  assert.equal(b.base, 50);
  assert.equal(b.per1kTokens, 5);
  const merged = get(file, "First");
  assert.equal(merged.maxTokens, 10);
  assert.equal(merged.per1kOutputTokens, 7);
  // A YAML 1.1 document, or an explicit tag, makes the key a merge key of its own kind.
  for (
    const text of [
      "%YAML 1.1\n---\nmodels:\n  text:\n    - &a {poe_name: A, base: 1}\n    - {<<: *a, poe_name: B}\n",
      "models:\n  text:\n    - &a {poe_name: A, base: 1}\n    - {!!merge <<: *a, poe_name: B}\n",
    ]
  ) assert.equal(get(parseModelsFile(text, "x"), "B").base, 1, text);
  assert.match(
    parseError("models:\n  text:\n    - {poe_name: A, <<: 5}\n").message,
    /models\.text\[0\]\.<< must name a map or a list of maps/,
  );
  assert.match(
    parseError("models:\n  text:\n    - {poe_name: A, <<: {colour: red}}\n").message,
    /unknown key models\.text\[0\]\.colour/,
  );
});

Deno.test("parseModelsFile caps YAML alias resolutions and rejects an unresolved alias", () => {
  // Each alias is resolved where it is read: a few anchors could otherwise cost unbounded work.
  const aliases = Array(1001).fill("*x").join(", ");
  assert.match(
    parseError(`models:\n  text:\n    - &x A\n    - {poe_name: B, aliases: [${aliases}]}\n`)
      .message,
    /^Cannot load models\.yaml: too many YAML aliases \(over 1000\) \(models\.yaml:4:\d+\)$/,
  );
  assert.equal(
    parseError("models:\n  text: [a, *nope]\n").message,
    "Cannot load models.yaml: unresolved YAML alias *nope (models.yaml:2:13)",
  );
});
