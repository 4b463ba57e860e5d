// deno-lint-ignore-file no-explicit-any
/** @module Tests of lib/app_routes.ts: health, the model list and one model, over HTTP. */
import assert from "node:assert/strict";
import { assertErrorShape, getJson } from "./http_json.ts";
import { startProxy } from "./harness.ts";
import { ModelRegistry } from "../lib/models.ts";

Deno.test("GET /healthz reports status, version and model count", async () => {
  await using proxy = await startProxy();
  const { status, body, headers } = await getJson(`${proxy.url}/healthz`);
  assert.equal(status, 200);
  assert.deepEqual(body, { status: "ok", version: "test", models: 9 });
  assert.ok(headers.get("x-request-id"));
});

Deno.test("GET /v1/models lists the registry in OpenAI's shape with stable created", async () => {
  await using proxy = await startProxy();
  const first = await getJson(`${proxy.url}/v1/models`);
  assert.equal(first.status, 200);
  assert.equal(first.body.object, "list");
  const gpt = first.body.data.find((m: any) => m.id === "GPT-4o");
  assert.equal(gpt.object, "model");
  assert.equal(gpt.owned_by, "poe");
  assert.equal(gpt.modality, "text");
  assert.deepEqual(gpt.context_window, { context_length: 128000 });
  // The cap the proxy clips to: a model without its own max_tokens shows the default.
  const mini = first.body.data.find((m: any) => m.id === "GPT-4o-mini");
  assert.deepEqual(mini.context_window, { context_length: 200000 });
  const image = first.body.data.find((m: any) => m.modality === "image");
  assert.equal(image.context_window, null);
  assert.equal(gpt.pricing.base, 140);
  assert.equal(typeof gpt.created, "number");
  const modalities = new Set(first.body.data.map((m: any) => m.modality));
  assert.deepEqual([...modalities].sort(), ["audio", "image", "text", "video"]);
  const second = await getJson(`${proxy.url}/v1/models`);
  assert.deepEqual(second.body, first.body);
});

Deno.test("GET /v1/models prices answer tokens as the estimate does: a media model's are free", async () => {
  const shipped = ModelRegistry.parse(
    await Deno.readTextFile(new URL("../models.yaml", import.meta.url)),
    "models.yaml",
  );
  const registry = ModelRegistry.parse(
    await Deno.readTextFile(new URL("../models.yaml", import.meta.url)) +
      "    - poe_name: Speech-Out\n      per_1k_tokens: 40\n      per_1k_output_tokens: 7\n",
    "models.yaml",
  );
  assert.equal(registry.size, shipped.size + 1);
  await using proxy = await startProxy({ registry });
  const listed = await getJson(`${proxy.url}/v1/models`);
  const byId = new Map<string, any>(listed.body.data.map((m: any) => [m.id, m]));
  const eleven = await getJson(`${proxy.url}/v1/models/elevenlabs-v3`);
  assert.equal(eleven.body.modality, "audio");
  assert.deepEqual(eleven.body.pricing, {
    unit: "points",
    base: 100,
    per_1k_tokens: 1500,
    per_1k_output_tokens: 0,
    estimated: true,
  });
  assert.equal(byId.get("Speech-Out").pricing.per_1k_output_tokens, 7);
  // A text model without per_1k_output_tokens pays per_1k_tokens for its answer.
  const text = registry.list().find((e) =>
    e.modality === "text" && e.per1kOutputTokens === null && e.per1kTokens !== null
  )!;
  assert.equal(byId.get(text.id).pricing.per_1k_output_tokens, text.per1kTokens);
  // Every priced model: the listed price of 1,000 more answer tokens is what the estimate adds.
  let checked = 0;
  for (const entry of registry.list()) {
    const pricing = byId.get(entry.id).pricing;
    const more = registry.estimatePoints(entry, 0, 3000);
    if (more === null) {
      assert.equal(pricing, null, entry.id);
      continue;
    }
    const added = more.points - registry.estimatePoints(entry, 0, 2000)!.points;
    assert.equal(pricing.per_1k_output_tokens, added, entry.id);
    checked++;
  }
  assert.ok(checked > 20);
});

Deno.test("GET /v1/models/{id} finds by any casing and alias, else 404", async () => {
  await using proxy = await startProxy();
  const one = await getJson(`${proxy.url}/v1/models/gpt-4o`);
  assert.equal(one.status, 200);
  assert.equal(one.body.id, "GPT-4o");
  const alias = await getJson(`${proxy.url}/v1/models/claude-sonnet`);
  assert.equal(alias.body.id, "Claude-Sonnet-4.6");
  const missing = await getJson(`${proxy.url}/v1/models/nope-9`);
  assert.equal(missing.status, 404);
  assertErrorShape(missing.body);
  assert.equal(missing.body.error.code, "model_not_found");
  assert.equal(missing.body.error.type, "invalid_request_error", "as OpenAI's model_not_found");
});
