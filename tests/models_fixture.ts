/** @module models.yaml fixtures and the errors parsing them throws, for the tests that read them. */
import assert from "node:assert/strict";
import type { ModelEntry } from "../lib/models.ts";
import { ModelsError, type ModelsFile, parseModelsFile } from "../lib/models_file.ts";

export function fixture(name: string): Promise<string> {
  return Deno.readTextFile(new URL(`./testdata/${name}`, import.meta.url));
}

export async function load(name: string): Promise<ModelsFile> {
  return parseModelsFile(await fixture(name), name);
}

/** The ModelsError that parsing `text` throws. */
export function parseError(text: string, source = "models.yaml"): ModelsError {
  try {
    parseModelsFile(text, source);
  } catch (err) {
    assert.ok(err instanceof ModelsError, `expected a ModelsError, got ${err}`);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be rejected`);
}

export async function fixtureError(name: string): Promise<ModelsError> {
  return parseError(await fixture(name), name);
}

/** The entry with this `poe_name`. */
export function get(file: ModelsFile, id: string): ModelEntry {
  const entry = file.entries.find((e) => e.id === id);
  assert.ok(entry, `${id} should be in the file`);
  return entry;
}
