/** @module Tests of lib/startup_warnings.ts, through main.ts: what it warns about at startup. */
import assert from "node:assert/strict";
import { listeningUrl, mainCommand } from "./proxy_process.ts";

/**
 * Starts main.ts with `env` (in `cwd`), stops it once it listens, and returns the log line that
 * names `event`, with all its output when there is none.
 */
async function startupLine(
  event: string,
  env: Record<string, string>,
  cwd?: string,
): Promise<{ line: string | undefined; logs: string }> {
  const child = mainCommand([], env, { cwd }).spawn();
  const { rest } = await listeningUrl(child);
  child.kill("SIGTERM");
  await child.status;
  const logs = await rest +
    new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  return { line: logs.split("\n").find((l) => l.includes(event)), logs };
}

/** A temporary folder holding `models.yaml` with `text`; returns its path. */
function modelsFile(text: string): string {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/models.yaml`, text);
  return `${dir}/models.yaml`;
}

Deno.test("main.ts warns at startup about models MAX_POINTS_PER_MESSAGE cannot price", async () => {
  const { line, logs } = await startupLine("cost cap blind", {
    POE_API_KEY: "k",
    PORT: "0",
    MAX_POINTS_PER_MESSAGE: "100",
    MODELS_FILE: modelsFile(
      "models:\n  text:\n    - Bare-One\n    - poe_name: Priced-One\n      base: 5\n",
    ),
  });
  assert.ok(line, logs);
  assert.match(line, /cannot check 1 models without a price in models\.yaml.*: Bare-One\b/);
  assert.doesNotMatch(line, /Priced-One/);
});

Deno.test("main.ts warns at startup about names in .env that are no setting (typos)", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/.env`, "POE_API_KEY=k\nPOINT_CUTOFF=500000\nPORT=0\n");
  const { line, logs } = await startupLine("unknown settings", {}, dir);
  assert.ok(line, logs);
  assert.match(line, /\.env sets POINT_CUTOFF, which is no setting of poe-proxy/);
  assert.doesNotMatch(line, /POE_API_KEY|PORT\b/);
});

Deno.test("main.ts warns at startup about max_tokens on media models, which is ignored", async () => {
  const { line, logs } = await startupLine("max_tokens ignored", {
    POE_API_KEY: "k",
    PORT: "0",
    MODELS_FILE: modelsFile(
      "models:\n  text:\n    - {poe_name: Text-One, max_tokens: 1000}\n" +
        "  image:\n    - {poe_name: Image-One, max_tokens: 100}\n    - Image-Two\n",
    ),
  });
  assert.ok(line, logs);
  assert.match(line, /never clipped, so it is ignored for: Image-One"?$/);
});

Deno.test("main.ts warns at startup about CORS_ORIGINS=* without inbound keys, and only then", async () => {
  const base = { POE_API_KEY: "k", PORT: "0" };
  const { line, logs } = await startupLine("any web page", { ...base, CORS_ORIGINS: "*" });
  assert.ok(line, logs);
  assert.match(line, /WARN/);
  assert.match(
    line,
    /CORS_ORIGINS=\* without PROXY_API_KEYS: any web site open in a browser that can reach this proxy may call it, spending your Poe points/,
  );
  const quietEnvs: Record<string, string>[] = [
    { CORS_ORIGINS: "*", PROXY_API_KEYS: "a-long-enough-random-key-0123" },
    { CORS_ORIGINS: "https://chat.example.com" },
    {},
  ];
  for (const env of quietEnvs) {
    const quiet = await startupLine("any web page", { ...base, ...env });
    assert.equal(quiet.line, undefined, JSON.stringify(env));
  }
});
