/** @module The model listings: `/v1/models` entries and the `models` command's output. */
import assert from "node:assert/strict";
import {
  formatRegistryTable,
  formatRemoteModels,
  modelObject,
  table,
} from "../lib/model_listing.ts";
import { type ModelEntry, ModelRegistry } from "../lib/models.ts";

const YAML = `defaults:
  text_max_tokens: 100000
models:
  text:
    - poe_name: GPT-4o
      base: 140
      per_1k_tokens: 35
      max_tokens: 128000
      aliases: [gpt-4o-latest, 4o]
    - poe_name: Claude-Opus-4.1
      per_1k_tokens: 450
      per_1k_output_tokens: 2250
    - Unpriced-Bot
    - poe_name: Answers-Priced
      per_1k_output_tokens: 100
  image:
    - poe_name: Imagen-4
      base: 400
`;

function registry(): ModelRegistry {
  return ModelRegistry.parse(YAML, "listing.yaml");
}

Deno.test("table pads columns to the widest cell, two spaces apart, without trailing spaces", () => {
  const text = table(["id", "n"], [["a", "1"], ["longer-id", "22"], ["b", ""]]);
  assert.equal(
    text,
    [
      "id         n",
      "---------  --",
      "a          1",
      "longer-id  22",
      "b",
    ].join("\n"),
  );
  // A header wider than every cell sets the width; no rows leave header and rule.
  assert.equal(table(["identifier"], []), "identifier\n----------");
});

Deno.test("formatRegistryTable: id, modality, context cap, estimate and aliases per model", () => {
  const lines = formatRegistryTable(registry(), false).split("\n");
  assert.match(lines[0], /^id\s+modality\s+context cap\s+points \(est\.\)\s+aliases$/);
  assert.match(lines[1], /^-+( {2}-+){4}$/);
  const row = (id: string) => lines.find((l) => l.startsWith(`${id} `) || l === id)!.split(/ {2,}/);
  assert.deepEqual(row("GPT-4o"), [
    "GPT-4o",
    "text",
    "128000",
    "140 + 35/1k tokens",
    "gpt-4o-latest, 4o",
  ]);
  assert.deepEqual(row("Claude-Opus-4.1"), [
    "Claude-Opus-4.1",
    "text",
    "100000",
    "0 + 450/1k tokens (2250/1k answer tokens)",
  ]);
  assert.deepEqual(row("Unpriced-Bot"), ["Unpriced-Bot", "text", "100000", "-"]);
  assert.deepEqual(row("Answers-Priced"), [
    "Answers-Priced",
    "text",
    "100000",
    "0 + 0/1k tokens (100/1k answer tokens)",
  ]);
  // Media models have no context cap.
  assert.deepEqual(row("Imagen-4"), ["Imagen-4", "image", "-", "400 + 0/1k tokens"]);
  assert.equal(lines.length, 2 + 5);
});

Deno.test("formatRegistryTable as JSON: the same facts, typed, null for no cap", () => {
  const rows = JSON.parse(formatRegistryTable(registry(), true));
  assert.deepEqual(rows, [
    {
      id: "GPT-4o",
      modality: "text",
      context_cap: 128000,
      estimate: "140 + 35/1k tokens",
      aliases: ["gpt-4o-latest", "4o"],
    },
    {
      id: "Claude-Opus-4.1",
      modality: "text",
      context_cap: 100000,
      estimate: "0 + 450/1k tokens (2250/1k answer tokens)",
      aliases: [],
    },
    { id: "Unpriced-Bot", modality: "text", context_cap: 100000, estimate: "-", aliases: [] },
    {
      id: "Answers-Priced",
      modality: "text",
      context_cap: 100000,
      estimate: "0 + 0/1k tokens (100/1k answer tokens)",
      aliases: [],
    },
    {
      id: "Imagen-4",
      modality: "image",
      context_cap: null,
      estimate: "400 + 0/1k tokens",
      aliases: [],
    },
  ]);
});

Deno.test("formatRemoteModels: USD per million tokens from Poe's per-token prices, strings or numbers", () => {
  const answer = {
    object: "list",
    data: [
      {
        id: "claude-sonnet-4.6",
        architecture: { modality: "text,image->text" },
        context_window: { context_length: 200000 },
        pricing: { prompt: "0.000003", completion: "0.000015" },
      },
      { id: "gpt-4o", context_length: 128000, pricing: { prompt: 0.0000025, completion: 0.00001 } },
    ],
  };
  const lines = formatRemoteModels(answer, false).split("\n");
  assert.match(lines[0], /^id\s+modality\s+context\s+input \$\/M\s+output \$\/M$/);
  assert.deepEqual(lines[2].split(/ {2,}/), [
    "claude-sonnet-4.6",
    "text,image->text",
    "200000",
    "$3.00",
    "$15.00",
  ]);
  assert.deepEqual(lines[3].split(/ {2,}/), ["gpt-4o", "-", "128000", "$2.50", "$10.00"]);
});

Deno.test("formatRemoteModels skips entries that are no object", () => {
  const rows = JSON.parse(formatRemoteModels({ data: [null, 7, "x", { id: "kept" }] }, true));
  assert.deepEqual(rows.map((r: { id: string }) => r.id), ["kept"]);
});

Deno.test("formatRemoteModels: missing or odd fields become -, never NaN or undefined", () => {
  const answer = {
    data: [
      { id: "bare" },
      {
        id: "odd",
        architecture: null,
        context_window: { context_length: "lots" },
        pricing: { prompt: "free", completion: null },
      },
      { architecture: { modality: 7 }, pricing: null },
    ],
  };
  const text = formatRemoteModels(answer, false);
  assert.ok(!/NaN|undefined|null/.test(text), text);
  const lines = text.split("\n");
  assert.deepEqual(lines[2].split(/ {2,}/), ["bare", "-", "-", "-", "-"]);
  assert.deepEqual(lines[3].split(/ {2,}/), ["odd", "-", "-", "-", "-"]);
  assert.deepEqual(lines[4].trim().split(/ {2,}/), ["-", "-", "-", "-"]);
  assert.deepEqual(JSON.parse(formatRemoteModels(answer, true))[0], {
    id: "bare",
    modality: "-",
    context_length: null,
    usd_per_million_input: "-",
    usd_per_million_output: "-",
  });
});

Deno.test("formatRemoteModels: an answer without a data array is an empty table, or []", () => {
  for (const answer of [null, {}, { data: "x" }, "oops", 42]) {
    assert.equal(
      formatRemoteModels(answer, false),
      "id  modality  context  input $/M  output $/M\n--  --------  -------  ---------  ----------",
    );
    assert.deepEqual(JSON.parse(formatRemoteModels(answer, true)), []);
  }
});

function entry(fields: Partial<ModelEntry>): ModelEntry {
  return {
    id: "Some-Model",
    modality: "text",
    base: null,
    per1kTokens: null,
    per1kOutputTokens: null,
    maxTokens: null,
    aliases: [],
    cheaper: [],
    ...fields,
  };
}

Deno.test("modelObject: OpenAI's model shape with this proxy's cap and aliases", () => {
  assert.deepEqual(modelObject(entry({ aliases: ["some"] }), 1700000000, 128000), {
    id: "Some-Model",
    object: "model",
    created: 1700000000,
    owned_by: "poe",
    modality: "text",
    aliases: ["some"],
    context_window: { context_length: 128000 },
    pricing: null,
  });
  assert.equal(modelObject(entry({}), 1, null).context_window, null);
});

Deno.test("modelObject: pricing in points, missing parts as 0, always estimated", () => {
  assert.deepEqual(modelObject(entry({ base: 140 }), 1, null).pricing, {
    unit: "points",
    base: 140,
    per_1k_tokens: 0,
    per_1k_output_tokens: 0,
    estimated: true,
  });
  assert.deepEqual(
    modelObject(entry({ per1kTokens: 30, per1kOutputTokens: 90 }), 1, null).pricing,
    { unit: "points", base: 0, per_1k_tokens: 30, per_1k_output_tokens: 90, estimated: true },
  );
});

Deno.test("modelObject: answer tokens cost per_1k_tokens for a text model, nothing for media", () => {
  const text = modelObject(entry({ per1kTokens: 30 }), 1, null).pricing as Record<string, unknown>;
  assert.equal(text.per_1k_output_tokens, 30);
  const image = modelObject(entry({ modality: "image", base: 100, per1kTokens: 1500 }), 1, null)
    .pricing as Record<string, unknown>;
  assert.equal(image.per_1k_output_tokens, 0);
  const speech = modelObject(
    entry({ modality: "audio", per1kTokens: 40, per1kOutputTokens: 7 }),
    1,
    null,
  ).pricing as Record<string, unknown>;
  assert.equal(speech.per_1k_output_tokens, 7);
});
