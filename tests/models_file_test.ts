/** @module Tests of lib/models_file.ts: reading `models.yaml`, and each error with its path and position. */
import assert from "node:assert/strict";
import { parseModelsFile } from "../lib/models_file.ts";
import { fixtureError, get, load, parseError } from "./models_fixture.ts";

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
  // What other tools call a model's name: poe_name, not the nearest spelling (base).
  for (const key of ["name", "model", "id"]) {
    assert.match(
      parseError(`models:\n  text:\n    - ${key}: GPT-4o\n`).message,
      new RegExp(`unknown key models\\.text\\[0\\]\\.${key}: did you mean poe_name\\?`),
    );
  }
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

Deno.test('parseModelsFile: a number the Python proxy took (200_000, "226") is refused saying how to write it', () => {
  assert.match(
    parseError("defaults: {text_max_tokens: 200_000}\nmodels:\n  text: [A]\n").message,
    /defaults\.text_max_tokens must be a number, written without quotes or underscores \(200000\): got "200_000"/,
  );
  assert.match(
    parseError('models:\n  text:\n    - {poe_name: A, base: "226"}\n').message,
    /base must be a number, written without quotes or underscores \(226\): got "226"/,
  );
  assert.match(
    parseError("models:\n  text:\n    - {poe_name: A, base: lots}\n").message,
    /base must be a number: got "lots"/,
  );
});
