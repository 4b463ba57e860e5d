import assert from "node:assert/strict";
import { CONFIG_VARIABLES } from "../lib/config_table.ts";

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

/** Counts the lines a child printed so far. */
async function collect(stream: ReadableStream<Uint8Array>, sink: { text: string }): Promise<void> {
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) sink.text += chunk;
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`not seen in time: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

Deno.test("README: `deno task dev` sees a .env made after it started only from its next restart", async () => {
  const watch = /--watch=(\S+)/.exec(DENO_JSON.tasks.dev)?.[1];
  assert.deepEqual(watch?.split(",").sort(), [".env", "models.yaml"]);
  assert.match(README, /any\s+change\s+to\s+`models\.yaml`\s+or\s+`\.env`/);
  assert.match(README, /create\s+`\.env`\s+before\s+`deno\s+task\s+dev`/);
  // What the README says, as Deno does it: a watched path missing at start is not watched.
  const dir = await Deno.makeTempDir({ prefix: "poe-proxy-watch-" });
  try {
    await Deno.writeTextFile(`${dir}/main.ts`, 'console.log("started");\n');
    await Deno.writeTextFile(`${dir}/models.yaml`, "models: {}\n");
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", `--watch=${watch}`, "--no-clear-screen", "main.ts"],
      cwd: dir,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = { text: "" };
    const err = { text: "" };
    const read = Promise.all([collect(child.stdout, out), collect(child.stderr, err)]);
    const starts = () => out.text.split("started").length - 1;
    try {
      await until(
        () => starts() === 1 && /Restarting on file change/.test(err.text),
        20_000,
        "start",
      );
      await Deno.writeTextFile(`${dir}/.env`, "POE_API_KEY=late\n");
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(starts(), 1, "a .env created after the start restarted it");
      await Deno.writeTextFile(`${dir}/models.yaml`, "models: {text: []}\n");
      await until(() => starts() === 2, 10_000, "restart on models.yaml");
      await new Promise((r) => setTimeout(r, 300));
      await Deno.writeTextFile(`${dir}/.env`, "POE_API_KEY=changed\n");
      await until(() => starts() === 3, 10_000, "restart on .env, once it existed at a start");
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await read;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
