/** @module Tests of lib/startup_warnings.ts, through main.ts and alone: what it warns about at startup. */
import assert from "node:assert/strict";
import { listeningUrl, mainCommand } from "./proxy_process.ts";
import { warnAtStartup } from "../lib/startup_warnings.ts";
import { memoryLogger } from "../lib/log.ts";
import { ModelRegistry } from "../lib/models.ts";
import { testConfig } from "./harness.ts";

/** The lines {@linkcode warnAtStartup} logs for this models file and these settings. */
function warnings(models: string, env: Record<string, string> = {}): string[] {
  const logger = memoryLogger();
  warnAtStartup({
    config: testConfig(env),
    inbound: [],
    registry: ModelRegistry.parse(models, "models.yaml"),
    logger,
  });
  return logger.lines;
}

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

Deno.test("warnAtStartup warns when POINTS_CUTOFF is set and some models have no price, naming them", () => {
  const models = "models:\n  text:\n    - Bare-One\n    - {poe_name: Priced-One, base: 5}\n" +
    "  video:\n    - Film-One\n    - Film-Two\n";
  const line = warnings(models, { POINTS_CUTOFF: "5000" }).find((l) => l.includes("cutoff blind"));
  assert.ok(line);
  assert.match(line, /WARN/);
  assert.match(
    line,
    /POINTS_CUTOFF cannot price what requests to 3 models without a price in models\.yaml .* hold while they run: Bare-One is held at the estimate of the dearest priced model of the same modality \(a stand-in\); Film-One, Film-Two hold nothing \(no model of their modality has a price\), so a burst of requests to them can pass the cutoff/,
  );
  assert.doesNotMatch(line, /Priced-One/);
  // No cutoff, or every model priced: nothing to tell.
  const quiet = (lines: string[]) => !lines.some((l) => l.includes("cutoff blind"));
  assert.ok(quiet(warnings(models, { POINTS_CUTOFF: "0" })));
  assert.ok(quiet(warnings("models:\n  text: [{poe_name: P, base: 5}]\n", { POINTS_CUTOFF: "9" })));
});

Deno.test("warnAtStartup warns about cheaper lists naming another modality's model or a dearer one", () => {
  const lines = warnings(
    "models:\n  text:\n    - {poe_name: T, base: 50, cheaper: [Img, Dearer, Cheap]}\n" +
      "    - {poe_name: Dearer, base: 60}\n    - {poe_name: Cheap, base: 5}\n" +
      "  image:\n    - {poe_name: Img, base: 1}\n",
  );
  const line = lines.find((l) => l.includes("cheaper ignored"));
  assert.ok(line, lines.join("\n"));
  assert.match(line, /WARN/);
  assert.match(
    line,
    /cheaper lists name models that are never suggested: T \(a text model\) lists Img, an image model; T lists Dearer, whose estimate is at least T's for any request/,
  );
  assert.doesNotMatch(line, /Cheap\b/);
  assert.ok(
    !warnings("models:\n  text: [{poe_name: A, base: 5, cheaper: [B]}, {poe_name: B, base: 1}]\n")
      .some((l) => l.includes("cheaper ignored")),
  );
});

Deno.test("warnAtStartup says where calls go when POE_BASE_URL has a path, and only then", () => {
  const models = "models:\n  text: [{poe_name: P, base: 5}]\n";
  const line = warnings(models, { POE_BASE_URL: "http://gateway.lan/poe/v1" })
    .find((l) => l.includes("base url path"));
  assert.ok(line);
  assert.match(line, /chat calls go to http:\/\/gateway\.lan\/poe\/v1\/chat\/completions/);
  for (const url of ["https://api.poe.com", "https://api.poe.com/v1/chat/completions"]) {
    assert.ok(!warnings(models, { POE_BASE_URL: url }).some((l) => l.includes("base url path")));
  }
});
