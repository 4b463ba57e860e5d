/**
 * @module Tests of lib/models_source.ts, through main.ts: which models file is read, and that one
 * that cannot be read is never replaced by the embedded models.
 */
import assert from "node:assert/strict";
import { listeningUrl, mainCommand } from "./proxy_process.ts";

function command(args: string[], env: Record<string, string>, cwd?: string): Deno.Command {
  return mainCommand(args, env, { cwd });
}

Deno.test("main.ts from a folder without models.yaml serves the embedded registry", async () => {
  const empty = Deno.makeTempDirSync();
  const child = command(["--port", "0"], { POE_API_KEY: "k" }, empty).spawn();
  const { url, rest } = await listeningUrl(child);
  const models = await (await fetch(`${url}/v1/models`)).json();
  assert.ok(models.data.length >= 20);
  assert.ok(models.data.some((m: { modality: string }) => m.modality === "video"));
  child.kill("SIGTERM");
  assert.equal((await child.status).code, 0);
  await rest;
  await child.stderr.cancel();
});

Deno.test("main.ts with a ./models.yaml it cannot read exits 2 naming it, never the embedded models", async () => {
  const cases: { make: (path: string) => void; reason: RegExp }[] = [
    { make: (path) => Deno.mkdirSync(path), reason: /Is a directory/ },
    { make: (path) => Deno.symlinkSync("models.yaml", path), reason: /symbolic links/i },
  ];
  // Root reads any file whatever its mode.
  if (Deno.uid() !== 0) {
    cases.push({
      make: (path) => {
        Deno.writeTextFileSync(path, "models:\n  text:\n    - One\n");
        Deno.chmodSync(path, 0o000);
      },
      reason: /Permission denied/,
    });
  }
  for (const { make, reason } of cases) {
    const dir = Deno.makeTempDirSync();
    make(`${dir}/models.yaml`);
    const check = await command(["check"], { POE_API_KEY: "k" }, dir).output();
    const checkErr = new TextDecoder().decode(check.stderr).trim();
    assert.equal(check.code, 2, checkErr || new TextDecoder().decode(check.stdout));
    assert.match(checkErr, /^Cannot read \.\/models\.yaml: /);
    assert.match(checkErr, reason);
    // Serving: the same line, before listening (the old code served the embedded models).
    const child = command([], { POE_API_KEY: "k", PORT: "0" }, dir).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const start = await child.output();
    clearTimeout(timer);
    assert.equal(start.code, 2);
    assert.equal(new TextDecoder().decode(start.stderr).trim(), checkErr);
    assert.doesNotMatch(new TextDecoder().decode(start.stdout), /listening/);
  }
});

Deno.test("main.ts with the Python proxy's MODELS_FILE=/app/models.yaml outside Docker says what to do", async () => {
  // Only where that path does not exist: outside a container built from this repository.
  if (await Deno.stat("/app/models.yaml").then(() => true, () => false)) return;
  const dir = Deno.makeTempDirSync();
  const python = await command(
    ["check"],
    { POE_API_KEY: "k", MODELS_FILE: "/app/models.yaml" },
    dir,
  )
    .output();
  const err = new TextDecoder().decode(python.stderr).trim();
  assert.equal(python.code, 2, err);
  assert.match(err, /^Cannot read MODELS_FILE "\/app\/models\.yaml": .*No such file/);
  assert.match(err, /exists in the Docker image only: outside Docker, delete the MODELS_FILE line/);
  // Any other missing file is named without the hint.
  const other = await command(["check"], { POE_API_KEY: "k", MODELS_FILE: `${dir}/none.yaml` }, dir)
    .output();
  const otherErr = new TextDecoder().decode(other.stderr).trim();
  assert.equal(other.code, 2, otherErr);
  assert.match(otherErr, /^Cannot read MODELS_FILE /);
  assert.doesNotMatch(otherErr, /Docker/);
});
