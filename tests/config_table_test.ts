/** @module Tests of lib/config_table.ts: the table of settings, its rows and its shown defaults. */
import assert from "node:assert/strict";
import { resolveConfig } from "../lib/config.ts";
import { CONFIG_VARIABLES } from "../lib/config_table.ts";

Deno.test("CONFIG_VARIABLES: one row per Config field, unique names, documented", () => {
  const fields = CONFIG_VARIABLES.map((row) => row.field);
  assert.deepEqual([...fields].sort(), Object.keys(resolveConfig({})).sort());
  assert.equal(new Set(CONFIG_VARIABLES.map((row) => row.name)).size, CONFIG_VARIABLES.length);
  for (const row of CONFIG_VARIABLES) {
    assert.match(row.name, /^[A-Z][A-Z0-9_]*$/);
    assert.ok(row.description.length > 10, row.name);
  }
  assert.deepEqual(
    CONFIG_VARIABLES.filter((row) => row.flag).map((row) => [row.flag, row.name]),
    [["--models", "MODELS_FILE"], ["--host", "HOST"], ["--port", "PORT"]],
  );
  assert.ok(Object.isFrozen(CONFIG_VARIABLES));
});

Deno.test("CONFIG_VARIABLES: each shown default resolves to the default value", () => {
  const defaults = resolveConfig({});
  for (const row of CONFIG_VARIABLES) {
    if (row.default === "") continue;
    const config = resolveConfig({ env: { [row.name]: row.default } });
    assert.deepEqual(config[row.field], defaults[row.field], row.name);
  }
});
