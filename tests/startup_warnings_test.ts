/** @module Tests of lib/startup_warnings.ts, through main.ts: what it warns about at startup. */
import assert from "node:assert/strict";
import { listeningUrl, mainCommand } from "./proxy_process.ts";

function command(args: string[], env: Record<string, string>, cwd?: string): Deno.Command {
  return mainCommand(args, env, { cwd });
}

Deno.test("main.ts warns at startup about models MAX_POINTS_PER_MESSAGE cannot price", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(
    `${dir}/models.yaml`,
    "models:\n  text:\n    - Bare-One\n    - poe_name: Priced-One\n      base: 5\n",
  );
  const child = command([], {
    POE_API_KEY: "k",
    PORT: "0",
    MAX_POINTS_PER_MESSAGE: "100",
    MODELS_FILE: `${dir}/models.yaml`,
  }).spawn();
  const { rest } = await listeningUrl(child);
  child.kill("SIGTERM");
  await child.status;
  const logs = await rest +
    new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  const line = logs.split("\n").find((l) => l.includes("cost cap blind"));
  assert.ok(line, logs);
  assert.match(line, /cannot check 1 models without a price in models\.yaml.*: Bare-One\b/);
  assert.doesNotMatch(line, /Priced-One/);
});

Deno.test("main.ts warns at startup about names in .env that are no setting (typos)", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/.env`, "POE_API_KEY=k\nPOINT_CUTOFF=500000\nPORT=0\n");
  const child = command([], {}, dir).spawn();
  const { rest } = await listeningUrl(child);
  child.kill("SIGTERM");
  await child.status;
  const logs = await rest +
    new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  const line = logs.split("\n").find((l) => l.includes("unknown settings"));
  assert.ok(line, logs);
  assert.match(line, /\.env sets POINT_CUTOFF, which is no setting of poe-proxy/);
  assert.doesNotMatch(line, /POE_API_KEY|PORT\b/);
});

Deno.test("main.ts warns at startup about max_tokens on media models, which is ignored", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(
    `${dir}/models.yaml`,
    "models:\n  text:\n    - {poe_name: Text-One, max_tokens: 1000}\n" +
      "  image:\n    - {poe_name: Image-One, max_tokens: 100}\n    - Image-Two\n",
  );
  const child = command([], { POE_API_KEY: "k", PORT: "0", MODELS_FILE: `${dir}/models.yaml` })
    .spawn();
  const { rest } = await listeningUrl(child);
  child.kill("SIGTERM");
  await child.status;
  const logs = await rest +
    new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
  const line = logs.split("\n").find((l) => l.includes("max_tokens ignored"));
  assert.ok(line, logs);
  assert.match(line, /never clipped, so it is ignored for: Image-One"?$/);
});
