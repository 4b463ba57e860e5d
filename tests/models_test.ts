/** @module Tests of lib/models.ts: the registry's lookup, suggestions, estimates and caps. */
import assert from "node:assert/strict";
import { contextCapOf, type ModelEntry, ModelRegistry } from "../lib/models.ts";
import { MODALITIES, ModelsError } from "../lib/models_file.ts";
import { FakePoe } from "./fake_poe.ts";

function fixture(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./testdata/${name}`, import.meta.url));
}

async function load(name: string): Promise<ModelRegistry> {
  return ModelRegistry.parse(await fixture(name), name);
}

function get(registry: ModelRegistry, name: string): ModelEntry {
  const entry = registry.lookup(name);
  assert.ok(entry, `${name} should be in the registry`);
  return entry;
}

Deno.test("ModelRegistry.parse holds the file's models in file order and its defaults, frozen", async () => {
  const registry = await load("models_valid.yaml");
  assert.equal(registry.size, 9);
  assert.equal(registry.list()[0].id, "Bare-Text-Model");
  assert.deepEqual(registry.defaults, { textMaxTokens: 100000 });
  assert.ok(Object.isFrozen(registry.list()));
  assert.ok(Object.isFrozen(registry.defaults));
  assert.throws(() => ModelRegistry.parse("models: {}\n", "x.yaml"), ModelsError);
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

/** A registry of text models A to D and an image model, A listing `cheaper`. */
function listing(cheaper: string): ModelRegistry {
  return ModelRegistry.parse(
    `models:
  text:
    - {poe_name: A, base: 100, per_1k_tokens: 10, cheaper: ${cheaper}}
    - {poe_name: Dear, base: 100, per_1k_tokens: 10, per_1k_output_tokens: 11}
    - {poe_name: Cross, base: 50, per_1k_tokens: 100}
    - {poe_name: Cheap, base: 1}
    - Bare
  image:
    - {poe_name: Img, base: 1}
`,
    "m.yaml",
  );
}

Deno.test("ModelRegistry.cheaperFaults names cheaper entries of another modality or never cheaper", () => {
  const registry = listing("[Img, Dear, Cross, Cheap, Bare]");
  const faults = registry.cheaperFaults().map((f) => [f.model.id, f.listed.id, f.reason]);
  // Dear costs the same up to 1,000 answer tokens and more beyond; Cross is cheaper for short
  // prompts only; Bare has no price to compare.
  assert.deepEqual(faults, [["A", "Img", "modality"], ["A", "Dear", "dearer"]]);
  assert.deepEqual(listing("[Cheap]").cheaperFaults(), []);
});

Deno.test("ModelRegistry.cheaperThan leaves out listed models of another modality or not cheaper", () => {
  const registry = listing("[Img, Dear, Cross, Cheap, Bare]");
  const a = get(registry, "A");
  // At 100 tokens A's 101 against Cross's 60: cheaper; at 10,000 tokens 200 against 1,050: not.
  assert.deepEqual(registry.cheaperThan(a, 100, 0, 5), ["Cross", "Cheap", "Bare"]);
  assert.deepEqual(registry.cheaperThan(a, 10_000, 0, 5), ["Cheap", "Bare"]);
  assert.deepEqual(registry.cheaperThan(a, 100, 0, 1), ["Cross"]);
  // A list of faults only is no list: the cheaper models of its modality are suggested.
  const faulty = listing("[Img, Dear]");
  assert.deepEqual(faulty.cheaperThan(get(faulty, "A"), 100), ["Cheap", "Cross"]);
});

Deno.test("ModelRegistry.cheaperThan suggests no model whose context cap cannot hold the input", () => {
  const registry = ModelRegistry.parse(
    `defaults: {text_max_tokens: 100000}
models:
  text:
    - {poe_name: Big, base: 300, max_tokens: 400000}
    - {poe_name: Small, base: 10, max_tokens: 32000}
    - {poe_name: Mid, base: 100}
    - {poe_name: Long, base: 200, max_tokens: 1000000}
`,
    "m.yaml",
  );
  const big = get(registry, "Big");
  assert.deepEqual(registry.cheaperThan(big, 32_000), ["Small", "Mid", "Long"]);
  assert.deepEqual(registry.cheaperThan(big, 32_001), ["Mid", "Long"]);
  assert.deepEqual(registry.cheaperThan(big, 150_000), ["Long"]);
});

Deno.test("ModelRegistry.cheaperThan: a listed model that cannot hold the input is left out", () => {
  const registry = ModelRegistry.parse(
    `defaults: {text_max_tokens: 100000}
models:
  text:
    - {poe_name: Big, base: 300, max_tokens: 400000, cheaper: [Small, Mid]}
    - {poe_name: Small, base: 10, max_tokens: 32000}
    - {poe_name: Mid, base: 100}
    - {poe_name: Long, base: 200, max_tokens: 1000000}
`,
    "m.yaml",
  );
  const big = get(registry, "Big");
  assert.deepEqual(registry.cheaperThan(big, 32_000), ["Small", "Mid"]);
  assert.deepEqual(registry.cheaperThan(big, 32_001), ["Mid"]);
  // None of the list can hold it: the models of its modality that can are suggested.
  assert.deepEqual(registry.cheaperThan(big, 150_000), ["Long"]);
});

Deno.test("ModelRegistry.cheaperThan falls back to the modality's cheaper models when none listed is", () => {
  const registry = listing("[Cross]");
  const a = get(registry, "A");
  // At 100 tokens Cross (60) is cheaper than A (101); at 10,000 it is not (1,050 against 200).
  assert.deepEqual(registry.cheaperThan(a, 100), ["Cross"]);
  assert.deepEqual(registry.cheaperThan(a, 10_000), ["Cheap"]);
});

Deno.test("ModelRegistry.cheaperThan with maxPoints suggests no model the cap would refuse too", () => {
  const registry = listing("[Cross, Cheap, Bare]");
  const a = get(registry, "A");
  // At 100 tokens: A 101, Cross 60 (over a cap of 50), Cheap 1; Bare has no price.
  assert.deepEqual(registry.cheaperThan(a, 100, 0, 3, 50), ["Cheap", "Bare"]);
  assert.deepEqual(registry.cheaperThan(a, 100, 0, 3, 60), ["Cross", "Cheap", "Bare"]);
  const auto = listing("[Img]");
  const b = get(auto, "A");
  assert.deepEqual(auto.cheaperThan(b, 100), ["Cheap", "Cross"]);
  assert.deepEqual(auto.cheaperThan(b, 100, 0, 3, 59), ["Cheap"]);
  assert.deepEqual(auto.cheaperThan(b, 100, 0, 3, 0), ["Cheap", "Cross"], "0: no cap");
});

Deno.test("ModelRegistry.cheaperThan: a list written empty suggests nothing; no list, the modality's", () => {
  const registry = ModelRegistry.parse(
    `models:
  audio:
    - {poe_name: Speech, base: 100, per_1k_tokens: 1500, cheaper: []}
    - {poe_name: Music, base: 840}
    - {poe_name: Cheap-Speech, base: 10}
`,
    "m.yaml",
  );
  assert.deepEqual(registry.cheaperThan(get(registry, "Speech"), 1000), []);
  assert.equal(get(registry, "Speech").noCheaper, true);
  assert.deepEqual(registry.cheaperThan(get(registry, "Music"), 0), ["Cheap-Speech", "Speech"]);
  assert.equal(get(registry, "Music").noCheaper, undefined);
});

Deno.test("ModelRegistry.standIn is the dearest priced model of the modality for these tokens", () => {
  const registry = listing("[Cheap]");
  const bare = get(registry, "Bare");
  // A (and Dear, after it): 100 + 10 per 1,000 tokens; Cross: 50 + 100 per 1,000 tokens.
  assert.deepEqual(registry.standIn(bare, 100), {
    id: "A",
    estimate: { points: 101, base: 100, tokens: 1 },
  });
  assert.equal(registry.standIn(bare, 1000)?.id, "Cross");
  assert.equal(registry.standIn(get(registry, "A"), 100), null, "priced: its own estimate");
  const none = ModelRegistry.parse(
    "models:\n  text: [Bare]\n  image: [{poe_name: I, base: 5}]\n",
    "m",
  );
  assert.equal(none.standIn(get(none, "Bare"), 100), null, "no priced model of its modality");
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
  assert.deepEqual(registry.cheaperFaults(), [], "every cheaper list names cheaper models");
  // Speech is not music: neither audio model is suggested for the other.
  assert.deepEqual(registry.cheaperThan(registry.lookup("ElevenLabs-v3")!, 1000), []);
  assert.deepEqual(registry.cheaperThan(registry.lookup("Lyria")!, 0), []);
});

Deno.test("shipped models.yaml: no alias is the name of another of Poe's bots", async () => {
  const registry = ModelRegistry.parse(
    await Deno.readTextFile(new URL("../models.yaml", import.meta.url)),
    "models.yaml",
  );
  // The fake lists bots under Poe's own names (FLUX-pro and ElevenLabs are bots of their own).
  await using fake = await FakePoe.start();
  const catalogue = await (await fetch(`${fake.url}/v1/models`)).json();
  const bots = new Set<string>(catalogue.data.map((m: { id: string }) => m.id.toLowerCase()));
  assert.ok(bots.has("flux-pro") && bots.has("elevenlabs"));
  for (const entry of registry.list()) {
    for (const alias of entry.aliases) {
      assert.ok(!bots.has(alias.toLowerCase()), `${alias} (of ${entry.id}) is a bot of Poe's`);
    }
  }
});
