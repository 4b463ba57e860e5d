import assert from "node:assert/strict";
import {
  contextCapOf,
  MODALITIES,
  type ModelEntry,
  ModelRegistry,
  ModelsError,
} from "../lib/models.ts";

function fixture(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./testdata/${name}`, import.meta.url));
}

async function load(name: string): Promise<ModelRegistry> {
  return ModelRegistry.parse(await fixture(name), name);
}

/** The ModelsError that parsing `text` throws. */
function parseError(text: string, source = "models.yaml"): ModelsError {
  try {
    ModelRegistry.parse(text, source);
  } catch (err) {
    assert.ok(err instanceof ModelsError, `expected a ModelsError, got ${err}`);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be rejected`);
}

async function fixtureError(name: string): Promise<ModelsError> {
  return parseError(await fixture(name), name);
}

function get(registry: ModelRegistry, name: string): ModelEntry {
  const entry = registry.lookup(name);
  assert.ok(entry, `${name} should be in the registry`);
  return entry;
}

Deno.test("ModelRegistry.parse reads bare names, maps, aliases and defaults", async () => {
  const registry = await load("models_valid.yaml");
  assert.equal(registry.size, 9);
  assert.deepEqual(registry.defaults, { textMaxTokens: 100000 });
  assert.deepEqual(registry.list().map((e) => `${e.modality}:${e.id}`), [
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
  assert.deepEqual(get(registry, "Bare-Text-Model"), {
    id: "Bare-Text-Model",
    modality: "text",
    base: null,
    per1kTokens: null,
    per1kOutputTokens: null,
    maxTokens: null,
    aliases: [],
    cheaper: [],
  });
  assert.deepEqual(get(registry, "Big-Model"), {
    id: "Big-Model",
    modality: "text",
    base: 300,
    per1kTokens: 50,
    per1kOutputTokens: null,
    maxTokens: 200000,
    aliases: ["big", "big-latest"],
    cheaper: ["Small-Model"],
  });
  assert.equal(get(registry, "movie").base, 9000.5);
});

Deno.test("ModelRegistry.parse freezes entries and the list", async () => {
  const registry = await load("models_valid.yaml");
  assert.ok(Object.isFrozen(registry.list()));
  assert.ok(Object.isFrozen(get(registry, "Big-Model")));
  assert.ok(Object.isFrozen(get(registry, "Big-Model").aliases));
});

Deno.test("ModelRegistry.parse accepts a file without defaults and with empty modalities", async () => {
  const registry = await load("models_no_defaults.yaml");
  assert.equal(registry.size, 2);
  assert.deepEqual(registry.defaults, { textMaxTokens: null });
  assert.equal(get(registry, "second").maxTokens, 4096);
});

Deno.test("ModelRegistry.contextCap is the model's own max_tokens, else the default, for text only", async () => {
  const registry = await load("models_valid.yaml");
  assert.equal(registry.defaults.textMaxTokens, 100000);
  assert.equal(registry.contextCap(get(registry, "Big-Model")), 200000, "raised above the default");
  assert.equal(registry.contextCap(get(registry, "Picture-Model")), null);
  const table: [number | null, number | null, string, number | null][] = [
    [200_000, 128_000, "text", 200_000],
    [64_000, 128_000, "text", 64_000],
    [null, 128_000, "text", 128_000],
    [32_000, null, "text", 32_000],
    [null, null, "text", null],
    [0, 128_000, "text", 128_000],
    [null, 0, "text", null],
    [200_000, 128_000, "image", null],
  ];
  for (const [model, defaults, modality, expected] of table) {
    assert.equal(contextCapOf(model, defaults, modality), expected, `${model} ${defaults}`);
  }
});

Deno.test("ModelRegistry.parse reports a YAML syntax error with source, line and column", async () => {
  const err = await fixtureError("models_syntax_error.yaml");
  assert.match(
    err.message,
    /^Cannot load models_syntax_error\.yaml: models_syntax_error\.yaml:\d+:\d+: invalid YAML: \S/,
  );
  assert.equal(err.line, 6);
  assert.equal(err.message.includes(`models_syntax_error.yaml:${err.line}:${err.column}:`), true);
  assert.equal(err.source, "models_syntax_error.yaml");
});

Deno.test("ModelRegistry.parse reports a duplicated YAML key as a syntax error", () => {
  const err = parseError("models:\n  text: [A]\n  text: [B]\n");
  assert.equal(
    err.message,
    "Cannot load models.yaml: models.yaml:3:3: invalid YAML: Map keys must be unique",
  );
});

Deno.test("ModelRegistry.parse names the path and the value of a wrong type", async () => {
  const err = await fixtureError("models_wrong_type.yaml");
  assert.equal(
    err.message,
    'Cannot load models_wrong_type.yaml: models.text[3].per_1k_tokens must be a number: got "ten"' +
      " (models_wrong_type.yaml:8:22)",
  );
  assert.equal(err.path, "models.text[3].per_1k_tokens");
  assert.deepEqual([err.line, err.column], [8, 22]);
});

Deno.test("ModelRegistry.parse rejects negative, infinite and non-integer numbers", async () => {
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

Deno.test("ModelRegistry.parse rejects names that are not non-empty strings", () => {
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

Deno.test("ModelRegistry.parse rejects control characters and surrounding spaces in names", () => {
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

Deno.test("ModelRegistry.parse rejects duplicate names case-insensitively across modalities", async () => {
  const err = await fixtureError("models_duplicate_name.yaml");
  assert.equal(
    err.message,
    'Cannot load models_duplicate_name.yaml: models.image[0] "gpt-5" duplicates models.text[0] ' +
      '"GPT-5" (names and aliases are case-insensitive) (models_duplicate_name.yaml:5:7)',
  );
});

Deno.test("ModelRegistry.parse rejects an alias equal to another model's name", async () => {
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

Deno.test("ModelRegistry.parse rejects unknown keys with their path", async () => {
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

Deno.test("ModelRegistry.parse rejects an unknown modality", async () => {
  const err = await fixtureError("models_unknown_modality.yaml");
  assert.equal(
    err.message,
    "Cannot load models_unknown_modality.yaml: unknown modality models.music: expected text, " +
      "image, video, audio (models_unknown_modality.yaml:3:3)",
  );
});

Deno.test("ModelRegistry.parse rejects a cheaper name that is not in the file", async () => {
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

Deno.test("ModelRegistry.parse resolves cheaper aliases to names", () => {
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - {poe_name: A, cheaper: [b, B-Model]}\n    - {poe_name: B-Model, aliases: [b]}\n",
    "x",
  );
  assert.deepEqual(get(registry, "a").cheaper, ["B-Model"]);
});

Deno.test("ModelRegistry.parse rejects an empty registry", async () => {
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

Deno.test("ModelRegistry.parse follows YAML anchors and aliases", () => {
  const registry = ModelRegistry.parse(
    "models:\n  text:\n    - {poe_name: A, aliases: &al [x, y]}\n  image:\n    - {poe_name: B, cheaper: *al}\n",
    "x",
  );
  assert.deepEqual(get(registry, "b").cheaper, ["A"]);
});

Deno.test("ModelRegistry.lookup is case-insensitive by name and alias", async () => {
  const registry = await load("models_valid.yaml");
  assert.equal(registry.lookup("big-model")?.id, "Big-Model");
  assert.equal(registry.lookup("BIG-MODEL")?.id, "Big-Model");
  assert.equal(registry.lookup("Big-Latest")?.id, "Big-Model");
  assert.equal(registry.lookup("SMALL")?.id, "Small-Model");
  assert.equal(registry.lookup("nope"), undefined);
  assert.equal(registry.lookup(""), undefined);
});

Deno.test("ModelRegistry.suggest offers close names, best first, up to a limit", async () => {
  const registry = await load("models_valid.yaml");
  assert.deepEqual(registry.suggest("Big-Modle"), ["Big-Model"]);
  assert.deepEqual(registry.suggest("picture"), ["Picture-Model", "Cheap-Picture"]);
  assert.deepEqual(registry.suggest("model", 2), ["Big-Model", "Mid-Model"]);
  assert.deepEqual(registry.suggest("mvie"), ["Movie-Model"]);
  assert.deepEqual(registry.suggest("zzzzzzzz"), []);
  assert.deepEqual(registry.suggest(""), []);
  assert.deepEqual(registry.suggest("x".repeat(10_000)), []);
  assert.equal(registry.suggest("model").length, 3);
});

Deno.test("ModelRegistry.estimatePoints adds base and per-1k tokens", async () => {
  const registry = await load("models_valid.yaml");
  assert.deepEqual(registry.estimatePoints(get(registry, "Big-Model"), 2500), {
    points: 425,
    base: 300,
    tokens: 125,
  });
  assert.deepEqual(registry.estimatePoints(get(registry, "Tokens-Only"), 3000), {
    points: 3,
    base: 0,
    tokens: 3,
  });
  assert.deepEqual(registry.estimatePoints(get(registry, "Picture-Model"), 3000), {
    points: 500,
    base: 500,
    tokens: 0,
  });
  assert.deepEqual(registry.estimatePoints(get(registry, "Big-Model"), -5), {
    points: 300,
    base: 300,
    tokens: 0,
  });
  assert.equal(registry.estimatePoints(get(registry, "Bare-Text-Model"), 1000), null);
  // Base covers an answer of up to 1,000 tokens; the rest is paid at the answer price
  // (per_1k_output_tokens when given, else per_1k_tokens).
  assert.deepEqual(registry.estimatePoints(get(registry, "Big-Model"), 2000, 1000), {
    points: 400,
    base: 300,
    tokens: 100,
  });
  assert.deepEqual(registry.estimatePoints(get(registry, "Big-Model"), 2000, 3000), {
    points: 500,
    base: 300,
    tokens: 200,
  });
  // Without a base, every answer token is paid.
  assert.deepEqual(registry.estimatePoints(get(registry, "Tokens-Only"), 1000, 2000), {
    points: 3,
    base: 0,
    tokens: 3,
  });
  const priced = ModelRegistry.parse(
    "models:\n  text:\n    - poe_name: Output-Priced\n      base: 10\n" +
      "      per_1k_tokens: 30\n      per_1k_output_tokens: 200\n",
    "inline.yaml",
  );
  assert.deepEqual(priced.estimatePoints(get(priced, "Output-Priced"), 2000, 31_000), {
    points: 6070,
    base: 10,
    tokens: 6060,
  });
});

Deno.test("ModelRegistry.estimatePoints prices a media model's answer only with per_1k_output_tokens", () => {
  const registry = ModelRegistry.parse(
    "models:\n  audio:\n    - poe_name: Speech\n      base: 100\n      per_1k_tokens: 1500\n" +
      "    - poe_name: Speech-Out\n      per_1k_tokens: 1500\n      per_1k_output_tokens: 10\n" +
      "  video:\n    - poe_name: Film\n      base: 84000\n",
    "inline.yaml",
  );
  // The answer is a link: 16,000 requested answer tokens cost nothing more.
  assert.deepEqual(registry.estimatePoints(get(registry, "Speech"), 10, 16_000), {
    points: 115,
    base: 100,
    tokens: 15,
  });
  assert.equal(registry.estimatePoints(get(registry, "Film"), 5000, 16_000)?.points, 84_000);
  // Given explicitly, the answer price applies (without a base, to every answer token).
  assert.deepEqual(registry.estimatePoints(get(registry, "Speech-Out"), 10, 16_000), {
    points: 175,
    base: 0,
    tokens: 175,
  });
});

Deno.test("ModelRegistry.cheaperThan prefers the cheaper list, else cheaper same-modality models", async () => {
  const registry = await load("models_valid.yaml");
  assert.deepEqual(registry.cheaperThan(get(registry, "Big-Model"), 1000), ["Small-Model"]);
  assert.deepEqual(registry.cheaperThan(get(registry, "Mid-Model"), 1000), [
    "Tokens-Only",
    "Small-Model",
  ]);
  assert.deepEqual(registry.cheaperThan(get(registry, "Mid-Model"), 1000, 0, 1), ["Tokens-Only"]);
  assert.deepEqual(registry.cheaperThan(get(registry, "Tokens-Only"), 1000), []);
  // Cheap-Picture has no estimate, so it is never offered; Movie-Model is another modality.
  assert.deepEqual(registry.cheaperThan(get(registry, "Picture-Model"), 0), []);
  assert.deepEqual(registry.cheaperThan(get(registry, "Bare-Text-Model"), 1000), []);
});

Deno.test("shipped models.yaml parses and covers all four modalities", async () => {
  const url = new URL("../models.yaml", import.meta.url);
  const registry = ModelRegistry.parse(await Deno.readTextFile(url), "models.yaml");
  assert.ok(registry.size >= 25);
  assert.equal(registry.defaults.textMaxTokens, 200000);
  for (const modality of MODALITIES) {
    assert.ok(registry.list().some((e) => e.modality === modality), `no ${modality} model`);
  }
  assert.equal(registry.lookup("claude-sonnet")?.id, "Claude-Sonnet-4.6");
  assert.equal(registry.lookup("gpt-4o-latest")?.id, "GPT-4o");
  for (const entry of registry.list()) {
    assert.ok(registry.estimatePoints(entry, 1000) !== null, `${entry.id} has no estimate`);
  }
});
