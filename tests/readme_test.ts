import assert from "node:assert/strict";
import { CONFIG_VARIABLES } from "../lib/config.ts";

const README = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
const DENO_JSON = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));

Deno.test("README: the configuration table has every variable with its default", () => {
  for (const v of CONFIG_VARIABLES) {
    const row = README.split("\n").find((line) => line.startsWith(`| \`${v.name}\``));
    assert.ok(row, `README lacks a row for ${v.name}`);
    assert.ok(
      row.includes(v.default ? `\`${v.default}\`` : "unset"),
      `${v.name}: default ${v.default}`,
    );
  }
});

Deno.test("README: every `deno task X` it mentions exists, and CI runs its test command", () => {
  const tasks = [...README.matchAll(/deno task ([\w:-]+)/g)].map((m) => m[1]);
  assert.ok(tasks.length > 5);
  for (const task of tasks) {
    assert.ok(task in DENO_JSON.tasks, `deno task ${task} is not in deno.json`);
  }
  const ci = Deno.readTextFileSync(new URL("../.ci/run", import.meta.url));
  assert.match(README, /npm install -g deno@2\.9\.6 && deno task test/);
  assert.match(ci, /^deno task test\b/m);
});
