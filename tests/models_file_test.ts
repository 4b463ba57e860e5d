/** @module Tests of lib/models_file.ts: reading `models.yaml`, and each error with its path and position. */
import assert from "node:assert/strict";
import type { ModelEntry } from "../lib/models.ts";
import { ModelsError, type ModelsFile, parseModelsFile } from "../lib/models_file.ts";

function fixture(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./testdata/${name}`, import.meta.url));
}

async function load(name: string): Promise<ModelsFile> {
  return parseModelsFile(await fixture(name), name);
}

/** The ModelsError that parsing `text` throws. */
function parseError(text: string, source = "models.yaml"): ModelsError {
  try {
    parseModelsFile(text, source);
  } catch (err) {
    assert.ok(err instanceof ModelsError, `expected a ModelsError, got ${err}`);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be rejected`);
}

async function fixtureError(name: string): Promise<ModelsError> {
  return parseError(await fixture(name), name);
}

/** The entry with this `poe_name`. */
function get(file: ModelsFile, id: string): ModelEntry {
  const entry = file.entries.find((e) => e.id === id);
  assert.ok(entry, `${id} should be in the file`);
  return entry;
}

Deno.test("parseModelsFile reads bare names, maps, aliases and defaults", async () => {
  const file = await load("models_valid.yaml");
  assert.deepEqual(file.defaults, { textMaxTokens: 100000 });
  assert.deepEqual(file.entries.map((e) => `${e.modality}:${e.id}`), [
    "text:Bare-Text-Model",
    "text:Big-Model",
    "text:Mid-Model",
    "text:Small-Model",
    "text:Tokens-Only",
    "image:Picture-Model",
    "image:Cheap-Picture",
    "video:Movie-Model",
    "audio:Song-Model",
  ]);
  assert.deepEqual(get(file, "Bare-Text-Model"), {
    id: "Bare-Text-Model",
    modality: "text",
    base: null,
    per1kTokens: null,
    per1kOutputTokens: null,
    maxTokens: null,
    aliases: [],
    cheaper: [],
  });
  assert.deepEqual(get(file, "Big-Model"), {
    id: "Big-Model",
    modality: "text",
    base: 300,
    per1kTokens: 50,
    per1kOutputTokens: null,
    maxTokens: 200000,
    aliases: ["big", "big-latest"],
    cheaper: ["Small-Model"],
  });
  assert.equal(get(file, "Movie-Model").base, 9000.5);
});

Deno.test("parseModelsFile freezes each entry and its aliases", async () => {
  const file = await load("models_valid.yaml");
  assert.ok(Object.isFrozen(get(file, "Big-Model")));
  assert.ok(Object.isFrozen(get(file, "Big-Model").aliases));
});

Deno.test("parseModelsFile accepts a file without defaults and with empty modalities", async () => {
  const file = await load("models_no_defaults.yaml");
  assert.equal(file.entries.length, 2);
  assert.deepEqual(file.defaults, { textMaxTokens: null });
  assert.equal(get(file, "Second").maxTokens, 4096);
});

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

Deno.test("parseModelsFile names the path and the value of a wrong type", async () => {
  const err = await fixtureError("models_wrong_type.yaml");
  assert.equal(
    err.message,
    'Cannot load models_wrong_type.yaml: models.text[3].per_1k_tokens must be a number: got "ten"' +
      " (models_wrong_type.yaml:8:22)",
  );
  assert.equal(err.path, "models.text[3].per_1k_tokens");
  assert.deepEqual([err.line, err.column], [8, 22]);
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
    /defaults\.text_max_tokens must be a number: got "5" /,
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

Deno.test("parseModelsFile rejects duplicate names case-insensitively across modalities", async () => {
  const err = await fixtureError("models_duplicate_name.yaml");
  assert.equal(
    err.message,
    'Cannot load models_duplicate_name.yaml: models.image[0] "gpt-5" duplicates models.text[0] ' +
      '"GPT-5" (names and aliases are case-insensitive) (models_duplicate_name.yaml:5:7)',
  );
});

Deno.test("parseModelsFile rejects an alias equal to another model's name", async () => {
  const err = await fixtureError("models_duplicate_alias.yaml");
  assert.equal(
    err.message,
    'Cannot load models_duplicate_alias.yaml: models.text[1].aliases[0] "CLAUDE-SONNET-4.6" ' +
      'duplicates models.text[0].poe_name "Claude-Sonnet-4.6" (names and aliases are ' +
      "case-insensitive) (models_duplicate_alias.yaml:6:17)",
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, aliases: [x]}, {poe_name: b, aliases: [X]}]\n")
      .message,
    /models\.text\[1\]\.aliases\[0\] "X" duplicates models\.text\[0\]\.aliases\[0\] "x"/,
  );
});

Deno.test("parseModelsFile rejects unknown keys with their path", async () => {
  const err = await fixtureError("models_unknown_key.yaml");
  assert.equal(
    err.message,
    "Cannot load models_unknown_key.yaml: unknown key models.text[0].per_1k_token: " +
      "did you mean per_1k_tokens? (models_unknown_key.yaml:4:7)",
  );
  assert.equal(err.path, "models.text[0].per_1k_token");
  assert.match(
    parseError("model:\n  text: [a]\n").message,
    /^Cannot load models\.yaml: unknown key model: did you mean models\? /,
  );
  assert.match(
    parseError("defaults:\n  max_tokens: 5\nmodels:\n  text: [a]\n").message,
    /unknown key defaults\.max_tokens: expected text_max_tokens /,
  );
});

Deno.test("parseModelsFile rejects an unknown modality", async () => {
  const err = await fixtureError("models_unknown_modality.yaml");
  assert.equal(
    err.message,
    "Cannot load models_unknown_modality.yaml: unknown modality models.music: expected text, " +
      "image, video, audio (models_unknown_modality.yaml:3:3)",
  );
});

Deno.test("parseModelsFile rejects a cheaper name that is not in the file", async () => {
  const err = await fixtureError("models_bad_cheaper.yaml");
  assert.equal(
    err.message,
    "Cannot load models_bad_cheaper.yaml: models.text[0].cheaper[1] must name a model in this " +
      'file: got "GPT-9" (models_bad_cheaper.yaml:4:29)',
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, aliases: [b], cheaper: [B]}]\n").message,
    /models\.text\[0\]\.cheaper\[0\] must name another model: got "B" /,
  );
});

Deno.test("parseModelsFile resolves cheaper aliases to names", () => {
  const file = parseModelsFile(
    "models:\n  text:\n    - {poe_name: A, cheaper: [b, B-Model]}\n    - {poe_name: B-Model, aliases: [b]}\n",
    "x",
  );
  assert.deepEqual(get(file, "A").cheaper, ["B-Model"]);
});

Deno.test("parseModelsFile rejects an empty registry", async () => {
  assert.equal(
    (await fixtureError("models_empty.yaml")).message,
    "Cannot load models_empty.yaml: no models defined: list at least one under models.text, " +
      "models.image, models.video or models.audio (models_empty.yaml:5:3)",
  );
  assert.equal(
    parseError("").message,
    "Cannot load models.yaml: the file is empty: it needs a models map with at least one model",
  );
  assert.match(parseError("# only a comment\n").message, /the file is empty/);
  assert.match(parseError("defaults:\n  text_max_tokens: 5\n").message, /no models defined/);
  assert.match(parseError("- a\n").message, /the top level must be a map: got a list /);
});

Deno.test("parseModelsFile follows YAML anchors and aliases", () => {
  const file = parseModelsFile(
    "models:\n  text:\n    - {poe_name: A, aliases: &al [x, y]}\n  image:\n    - {poe_name: B, cheaper: *al}\n",
    "x",
  );
  assert.deepEqual(get(file, "B").cheaper, ["A"]);
});

Deno.test("parseModelsFile rejects names over 200 characters, showing the value cut short", () => {
  assert.equal(parseModelsFile(`models:\n  text: [${"x".repeat(200)}]\n`, "x").entries.length, 1);
  assert.equal(
    parseError(`models:\n  text: [${"x".repeat(201)}]\n`).message,
    `Cannot load models.yaml: models.text[0] must be at most 200 characters: got "${
      "x".repeat(57)
    }..." (models.yaml:2:10)`,
  );
});

Deno.test("parseModelsFile rejects sections of the wrong shape", () => {
  assert.match(
    parseError("defaults: [1]\nmodels:\n  text: [a]\n").message,
    /: defaults must be a map: got a list \(models\.yaml:1:11\)$/,
  );
  assert.match(parseError("models: [a]\n").message, /: models must be a map: got a list /);
  assert.match(
    parseError("models:\n  text: a\n").message,
    /: models\.text must be a list of models: got "a" /,
  );
  assert.match(
    parseError("models:\n  text: [{poe_name: a, cheaper: b}]\n").message,
    /: models\.text\[0\]\.cheaper must be a list of names: got "b" /,
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
