/** @module Model listings: the `/v1/models` entry of a registry model. */
import assert from "node:assert/strict";
import type { ModelEntry } from "../lib/models.ts";
import { modelObject } from "../lib/model_listing.ts";

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
