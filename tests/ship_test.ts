/** @module Shipping: compile safety, `healthcheck`, `systemd-unit`, SIGHUP reload, plain log lines. */
import assert from "node:assert/strict";
import { ModelRegistry } from "../lib/models.ts";
import { startProxy } from "./harness.ts";
import { FakePoe } from "./fake_poe.ts";
import { mainCommand } from "./proxy_process.ts";
import { HARDENING, unitLines } from "./systemd_lines.ts";

const ROOT = new URL("../", import.meta.url);
const MAIN = new URL("main.ts", ROOT).pathname;
const DENO_JSON = new URL("deno.json", ROOT).pathname;
const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
];
const CLEAN_ENV: Record<string, string> = {
  PATH: Deno.env.get("PATH") ?? "",
  HOME: Deno.env.get("HOME") ?? "/tmp",
  ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
  NO_COLOR: "1",
};
const decoder = new TextDecoder();

function tasks(): Record<string, string> {
  return JSON.parse(Deno.readTextFileSync(DENO_JSON)).tasks;
}

/** The runtime flags of `deno task start`, e.g. `--unstable-...` and `--allow-*`. */
function startFlags(): string[] {
  return tasks().start.split(/\s+/).filter((w) => w.startsWith("--"));
}

/** A free loopback port that nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `main.ts` as a subprocess, with its stdout and stderr collected as they come. */
class MainProcess implements AsyncDisposable {
  stdout = "";
  stderr = "";
  url = "";
  readonly child: Deno.ChildProcess;
  readonly #pumps: Promise<void>;
  #status: Promise<Deno.CommandStatus> | null = null;

  constructor(args: string[], env: Record<string, string>, cwd?: string) {
    this.child = mainCommand(args, env, { cwd }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) this[key] += text;
    };
    this.#pumps = Promise.all([
      pump(this.child.stdout, "stdout"),
      pump(this.child.stderr, "stderr"),
    ])
      .then(() => {});
  }

  /** Starts `main.ts` and waits for its listening line. */
  static async start(
    env: Record<string, string>,
    options: { cwd?: string; args?: string[] } = {},
  ): Promise<MainProcess> {
    const proc = new MainProcess(options.args ?? [], { PORT: "0", ...env }, options.cwd);
    await proc.listening();
    return proc;
  }

  /** Waits for the listening line, and takes its URL. */
  async listening(): Promise<void> {
    const line = /^poe-proxy \S+ listening on (http:\/\/\S+) \(\d+ models\)$/m;
    let exited = false;
    this.child.status.then(() => exited = true);
    await waitFor(() => line.test(this.stdout) || exited, "the listening line");
    const match = this.stdout.match(line);
    if (!match) {
      await this.stop();
      throw new Error(`main.ts exited before listening:\n${this.stdout}\n${this.stderr}`);
    }
    this.url = match[1];
  }

  async json(path: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
    const response = await fetch(`${this.url}${path}`, init);
    return { status: response.status, body: await response.json() };
  }

  async modelCount(): Promise<number> {
    const { body } = await this.json("/healthz");
    return (body as { models: number }).models;
  }

  /** SIGTERM, then the exit code once both streams are read. */
  async stop(): Promise<number> {
    if (this.#status === null) {
      try {
        this.child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      this.#status = this.child.status;
    }
    const status = await this.#status;
    await this.#pumps;
    return status.code;
  }

  async [Symbol.asyncDispose]() {
    await this.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Compile safety

Deno.test("deno.json compile builds the five targets with narrow baked permissions and models.yaml", () => {
  const all = tasks();
  const commands = all.compile.split("&&").map((c) => c.trim().split(/\s+/));
  assert.deepEqual(commands.map((c) => c[c.indexOf("--target") + 1]), TARGETS);
  const host = all["compile:host"].trim().split(/\s+/);
  assert.ok(!host.includes("--target"));
  assert.deepEqual(host.slice(host.indexOf("--output"), host.indexOf("--output") + 3), [
    "--output",
    "dist/poe-proxy",
    "main.ts",
  ]);
  for (const words of [...commands, host]) {
    assert.deepEqual(words.slice(0, 2), ["deno", "compile"]);
    assert.equal(words.at(-1), "main.ts");
    // The same runtime flags as `deno task start`, and nothing broader.
    for (const flag of startFlags()) assert.ok(words.includes(flag), `${flag} in ${words}`);
    for (const broad of ["-A", "--allow-all", "--allow-write", "--allow-run", "--allow-sys"]) {
      assert.ok(!words.some((w) => w.startsWith(broad)), `${broad} in ${words}`);
    }
    assert.equal(words[words.indexOf("--include") + 1], "models.yaml");
    assert.ok(words.includes("--exclude-unused-npm"), "test-only npm packages stay out");
    assert.ok(words.includes("--frozen"), "the binary is built from deno.lock as it is");
  }
  for (const [i, t] of TARGETS.entries()) {
    assert.equal(commands[i][commands[i].indexOf("--output") + 1], `dist/poe-proxy-${t}`);
  }
});

/** main.ts and lib/*.ts without comments. */
function programSources(): { path: string; code: string }[] {
  const files = [MAIN];
  for (const entry of Deno.readDirSync(new URL("lib/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".ts")) {
      files.push(new URL(`lib/${entry.name}`, ROOT).pathname);
    }
  }
  return files.sort().map((path) => ({
    path: path.slice(new URL(ROOT).pathname.length),
    code: Deno.readTextFileSync(path)
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/(^|[^:"'`])\/\/.*$/gm, "$1"),
  }));
}

function includedFiles(): string[] {
  const words = tasks()["compile:host"].split(/\s+/);
  return words.flatMap((w, i) => (w === "--include" ? words[i + 1].split(",") : []));
}

Deno.test("program sources: no computed import, worker or require; files read are user paths or --include", () => {
  const included = includedFiles();
  // What main.ts may read: user-named files (MODELS_FILE, --env-file or ./.env,
  // PROXY_API_KEYS_FILE), ./models.yaml, the embedded copy, which --include ships, and the
  // owner of main.ts itself (systemd-unit, run through deno only).
  const mainReads = new Set([
    "main",
    "file",
    '"models.yaml"',
    "EMBEDDED_MODELS",
    "source",
    "config.proxyApiKeysFile",
  ]);
  for (const { path, code } of programSources()) {
    for (const m of code.matchAll(/\bimport\s*\(\s*([^)]*)\)/g)) {
      assert.match(m[1].trim(), /^(["'])[^"'`]+\1$/, `${path}: computed import(${m[1]})`);
    }
    assert.doesNotMatch(code, /\bnew\s+Worker\s*\(/, `${path}: workers are not embedded`);
    assert.doesNotMatch(code, /\brequire\s*\(/, `${path}: require()`);
    assert.doesNotMatch(code, /from\s+["']node:fs/, `${path}: node:fs`);
    for (const m of code.matchAll(/new\s+URL\(\s*["'`]([^"'`]+)["'`]\s*,\s*import\.meta\.url/g)) {
      const file = new URL(m[1], new URL(path, ROOT)).pathname.slice(new URL(ROOT).pathname.length);
      assert.ok(included.includes(file), `${path} reads ${file}, which compile does not --include`);
    }
    const reads = [
      ...code.matchAll(/\bDeno\.(read\w*|open\w*|stat\w*|lstat\w*|realPath\w*)\s*\(([^)]*)\)/g),
    ];
    if (path !== "main.ts") {
      assert.deepEqual(reads.map((m) => m[0]), [], `${path}: only main.ts touches files`);
      continue;
    }
    for (const m of reads) {
      assert.ok(mainReads.has(m[2].trim()), `main.ts reads ${m[2]}: add it to --include or here`);
    }
  }
});

interface InfoModule {
  specifier: string;
  kind?: string;
  error?: string;
  dependencies?: { specifier: string; isDynamic?: boolean; code?: { specifier?: string } }[];
}

async function moduleGraph(entry: string): Promise<InfoModule[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", DENO_JSON, entry],
    env: CLEAN_ENV,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, decoder.decode(out.stderr));
  return JSON.parse(decoder.decode(out.stdout)).modules;
}

Deno.test("main.ts module graph: local and npm only; the one dynamic import (the tokenizer) is literal and embedded", async () => {
  const graph = await moduleGraph(MAIN);
  const dynamic: string[] = [];
  for (const m of graph) {
    assert.equal(m.error, undefined, `${m.specifier}: ${m.error}`);
    assert.match(m.specifier, /^(file:|npm:|node:)/, `remote module ${m.specifier}`);
    for (const d of m.dependencies ?? []) {
      if (!d.isDynamic || !m.specifier.startsWith("file:")) continue;
      dynamic.push(`${m.specifier.slice(ROOT.href.length)} -> ${d.specifier}`);
      // Resolved at analysis time, so `deno compile` embeds it: nothing is fetched at run time.
      assert.ok(
        d.code?.specifier,
        `${m.specifier} imports ${d.specifier} without a literal specifier`,
      );
    }
  }
  assert.deepEqual(dynamic, ["lib/tokens.ts -> gpt-tokenizer/encoding/o200k_base"]);
  assert.ok(graph.some((m) => m.specifier.endsWith("/deno.json") && m.kind === "asserted"));
  assert.ok(graph.some((m) => m.kind === "npm" && /\/gpt-tokenizer@/.test(m.specifier)));
});

Deno.test("lib/tokens.ts counts tokens with no permissions, from another folder", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(
    `${dir}/count.ts`,
    `import { loadTokenizer, TokenCounter } from ${
      JSON.stringify(new URL("lib/tokens.ts", ROOT).href)
    };\n` +
      `await loadTokenizer();\n` +
      `const c = new TokenCounter();\n` +
      `console.log(c.countText("hello world"), c.countText("Hello, world! ".repeat(100)));\n`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--config", DENO_JSON, `${dir}/count.ts`],
    env: CLEAN_ENV,
    clearEnv: true,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, decoder.decode(out.stderr));
  assert.equal(decoder.decode(out.stdout).trim(), "2 401");
});

Deno.test("main.ts from a folder without models.yaml and no network serves the embedded models", async () => {
  const shipped = ModelRegistry.parse(
    Deno.readTextFileSync(new URL("models.yaml", ROOT)),
    "models.yaml",
  );
  const dead = `http://127.0.0.1:${closedPort()}`;
  await using proc = await MainProcess.start({
    POE_API_KEY: "k",
    POE_BASE_URL: dead,
    UPSTREAM_RETRIES: "0",
    USAGE_POLL_SECONDS: "3600",
  });
  const { body } = await proc.json("/v1/models");
  const ids = (body as { data: { id: string }[] }).data.map((m) => m.id);
  assert.deepEqual(ids, shipped.list().map((e) => e.id));
  // A chat with Poe unreachable is an OpenAI-shaped error, not a crash.
  const chat = await proc.json("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: ids[0], messages: [{ role: "user", content: "hello world" }] }),
  });
  assert.ok(chat.status >= 500, `status ${chat.status}`);
  assert.equal(typeof (chat.body as { error: { message: string } }).error.message, "string");
  assert.equal(await proc.stop(), 0);
  // Piped output has no colours: one plain line per event.
  assert.ok(!(proc.stdout + proc.stderr).includes("\u001b["), "an ANSI escape in the logs");
});

// ---------------------------------------------------------------------------------------------
// healthcheck

Deno.test("main.ts healthcheck exits 0 against a running server and 1 against nothing", async () => {
  await using proxy = await startProxy();
  const port = new URL(proxy.url).port;
  const ok = await mainCommand(["healthcheck"], { HOST: "0.0.0.0", PORT: port }).output();
  assert.equal(ok.code, 0, decoder.decode(ok.stderr));
  assert.match(decoder.decode(ok.stdout), /^healthy: /);
  const none = await mainCommand(["healthcheck", "--port", String(closedPort())], {}).output();
  assert.equal(none.code, 1);
  assert.match(decoder.decode(none.stderr), /^unhealthy: /);
  // A configuration error is unhealthy too: Docker reserves exit code 2.
  const bad = await mainCommand(["healthcheck"], { PORT: "abc" }).output();
  assert.equal(bad.code, 1);
  assert.match(decoder.decode(bad.stderr), /Invalid PORT/);
});

Deno.test("main.ts healthcheck asks the server straight, even with HTTP_PROXY set (a container's)", async () => {
  await using proxy = await startProxy();
  const port = new URL(proxy.url).port;
  // Nothing listens on port 9: a probe sent through this proxy would fail.
  const env = { PORT: port, HTTP_PROXY: "http://127.0.0.1:9", http_proxy: "http://127.0.0.1:9" };
  const ok = await mainCommand(["healthcheck"], env).output();
  assert.equal(ok.code, 0, decoder.decode(ok.stderr));
  assert.match(decoder.decode(ok.stdout), /^healthy: /);
});

// ---------------------------------------------------------------------------------------------
// systemd-unit

Deno.test("main.ts systemd-unit prints a hardened unit that runs this deno and main.ts", async () => {
  const out = await mainCommand(["systemd-unit", "--host", "0.0.0.0"], {}).output();
  assert.equal(out.code, 0, decoder.decode(out.stderr));
  const lines = unitLines(decoder.decode(out.stdout));
  for (const l of HARDENING) assert.ok(lines.includes(l), `missing ${l}`);
  // The owner of main.ts, unless root: then a throw-away user, and a warning about reading it.
  const owner = Deno.statSync(MAIN).uid;
  if (owner === 0) {
    assert.ok(lines.includes("DynamicUser=yes"));
    assert.match(decoder.decode(out.stderr), /belongs to root.*world-readable/);
  } else {
    assert.ok(lines.includes(`User=${owner}`));
    assert.ok(!lines.includes("DynamicUser=yes"));
  }
  const exec = lines.find((l) => l.startsWith("ExecStart="))!;
  const words = exec.slice("ExecStart=".length).split(" ");
  assert.equal(words[0], Deno.realPathSync(Deno.execPath()));
  assert.equal(words.at(-1), MAIN);
  assert.deepEqual(words.slice(1, 2), ["run"]);
  for (const flag of startFlags()) assert.ok(words.includes(flag), flag);
  assert.ok(lines.includes("Environment=HOST=0.0.0.0"));
  assert.ok(lines.includes("Environment=PORT=8080"));
  assert.ok(lines.includes("ProtectHome=read-only"), "main.ts may live under /home");
  assert.ok(lines.includes("CacheDirectory=poe-proxy"));
  assert.ok(lines.includes("CapabilityBoundingSet="));
  assert.ok(!lines.some((l) => l.startsWith("MemoryDenyWriteExecute")), "V8's JIT needs W+X");
});

// ---------------------------------------------------------------------------------------------
// Reload

const SMALL_YAML = "models:\n  text:\n    - GPT-4o-mini\n    - Claude-Haiku-4.5\n";
const BAD_YAML = "models:\n  text:\n    - poe_name: [1\n";

Deno.test("main.ts on SIGHUP reloads MODELS_FILE; a bad file keeps the old models and logs why", {
  ignore: Deno.build.os === "windows",
}, async () => {
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/models.yaml`;
  Deno.copyFileSync(new URL("testdata/models_test_registry.yaml", import.meta.url), file);
  await using proc = await MainProcess.start({ POE_API_KEY: "k", MODELS_FILE: file });
  const initial = await proc.modelCount();
  assert.ok(initial > 2);

  Deno.writeTextFileSync(file, SMALL_YAML);
  proc.child.kill("SIGHUP");
  await waitFor(async () => (await proc.modelCount()) === 2, "the new registry");
  // Info lines are written a few milliseconds late, several in one write.
  await waitFor(
    () => /models reloaded source=\S+ models=2 previous=\d+/.test(proc.stdout),
    "the log line",
  );
  const listed = await proc.json("/v1/models");
  assert.deepEqual(
    (listed.body as { data: { id: string }[] }).data.map((m) => m.id),
    ["GPT-4o-mini", "Claude-Haiku-4.5"],
  );

  Deno.writeTextFileSync(file, BAD_YAML);
  proc.child.kill("SIGHUP");
  await waitFor(() => proc.stderr.includes("models reload failed"), "the reload error");
  assert.match(proc.stderr, /ERROR models reload failed.*models\.yaml:\d+:\d+: invalid YAML/);
  assert.equal(await proc.modelCount(), 2);

  Deno.removeSync(file);
  proc.child.kill("SIGHUP");
  await waitFor(() => /Cannot read MODELS_FILE/.test(proc.stderr), "the missing-file error");
  assert.equal(await proc.modelCount(), 2);
  assert.equal(await proc.stop(), 0);
});

Deno.test(
  "main.ts: a SIGHUP while its files are read at startup is not fatal, and reloads once it can",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    const dir = Deno.makeTempDirSync();
    const file = `${dir}/models.yaml`;
    Deno.copyFileSync(new URL("testdata/models_test_registry.yaml", import.meta.url), file);
    // The keys file is a FIFO: startup waits on it, after the models were read, until it is written.
    const fifo = `${dir}/keys`;
    assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
    await using proc = new MainProcess([], {
      PORT: "0",
      POE_API_KEY: "k",
      MODELS_FILE: file,
      PROXY_API_KEYS_FILE: fifo,
    });
    // Opened once the proxy opened it to read: it is past its first lines, waiting there.
    const writer = await Deno.open(fifo, { write: true });
    Deno.writeTextFileSync(file, SMALL_YAML);
    proc.child.kill("SIGHUP");
    await writer.write(new TextEncoder().encode("a-long-enough-inbound-key-123\n"));
    writer.close();
    await proc.listening();
    await waitFor(async () => (await proc.modelCount()) === 2, "the reload");
    assert.equal(await proc.stop(), 0);
  },
);

Deno.test(
  "main.ts with MODELS_FILE unset: SIGHUP rereads ./models.yaml; once removed, its models stay",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    const dir = Deno.makeTempDirSync();
    Deno.writeTextFileSync(`${dir}/models.yaml`, SMALL_YAML);
    await using proc = await MainProcess.start({ POE_API_KEY: "k" }, { cwd: dir });
    assert.equal(await proc.modelCount(), 2);

    Deno.writeTextFileSync(`${dir}/models.yaml`, SMALL_YAML + "    - Third\n");
    proc.child.kill("SIGHUP");
    await waitFor(
      () => /models reloaded source=models\.yaml models=3 previous=2/.test(proc.stdout),
      "the reload",
    );
    assert.equal(await proc.modelCount(), 3);

    // Gone: the reload fails and keeps the user's models, never the embedded ones.
    Deno.removeSync(`${dir}/models.yaml`);
    proc.child.kill("SIGHUP");
    await waitFor(() => proc.stderr.includes("models reload failed"), "the reload error");
    assert.match(
      proc.stderr,
      /ERROR models reload failed; keeping the previous models error="Cannot read \.\/models\.yaml: No such file.*models=3/,
    );
    assert.equal(await proc.modelCount(), 3);
    // Unreadable (a directory in its place, which even root cannot read as a file): the same.
    Deno.mkdirSync(`${dir}/models.yaml`);
    proc.child.kill("SIGHUP");
    await waitFor(
      () => proc.stderr.match(/models reload failed/g)?.length === 2,
      "the second reload error",
    );
    assert.match(proc.stderr, /Cannot read \.\/models\.yaml: Is a directory/);
    assert.equal(await proc.modelCount(), 3);
    assert.equal(await proc.stop(), 0);
    assert.doesNotMatch(proc.stdout + proc.stderr, /embedded/);
  },
);

Deno.test(
  "main.ts on the embedded models: SIGHUP takes a ./models.yaml put there since, then keeps to it",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    const dir = Deno.makeTempDirSync();
    await using proc = await MainProcess.start({ POE_API_KEY: "k" }, { cwd: dir });
    const embedded = await proc.modelCount();
    assert.ok(embedded > 2);
    // Nothing there yet: the embedded copy again.
    proc.child.kill("SIGHUP");
    await waitFor(
      () =>
        proc.stdout.includes(`models reloaded source="(embedded models.yaml)" models=${embedded}`),
      "the embedded reload",
    );
    // README: put a models.yaml in the working directory and reload.
    Deno.writeTextFileSync(`${dir}/models.yaml`, SMALL_YAML);
    proc.child.kill("SIGHUP");
    await waitFor(async () => (await proc.modelCount()) === 2, "the user's models");
    Deno.removeSync(`${dir}/models.yaml`);
    proc.child.kill("SIGHUP");
    await waitFor(() => proc.stderr.includes("models reload failed"), "the reload error");
    assert.match(proc.stderr, /Cannot read \.\/models\.yaml: No such file/);
    assert.equal(await proc.modelCount(), 2);
    assert.equal(await proc.stop(), 0);
  },
);

Deno.test("main.ts: a chat in flight during SIGHUP finishes; new requests use the new models", {
  ignore: Deno.build.os === "windows",
}, async () => {
  await using fake = await FakePoe.start();
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/models.yaml`;
  Deno.copyFileSync(new URL("testdata/models_test_registry.yaml", import.meta.url), file);
  await using proc = await MainProcess.start({
    POE_API_KEY: "test-poe-key",
    POE_BASE_URL: fake.url,
    MODELS_FILE: file,
  });
  const chat = (model: string, content: string) =>
    fetch(`${proc.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content }] }),
    });
  const slow = chat("GPT-4o", "Are you there? [[fake: slow-first=800]]");
  await waitFor(() => fake.chatRequests().length === 1, "the chat to reach the fake Poe");
  // The new file no longer has the model the request in flight uses.
  Deno.writeTextFileSync(file, SMALL_YAML);
  proc.child.kill("SIGHUP");
  await waitFor(() => proc.stdout.includes("models reloaded"), "the reload");
  const gone = await chat("GPT-4o", "hi");
  assert.equal(gone.status, 404);
  await gone.body?.cancel();
  const answer = await slow;
  assert.equal(answer.status, 200);
  const body = await answer.json();
  assert.equal(typeof body.choices[0].message.content, "string");
  assert.ok(body.choices[0].message.content.length > 0);
  assert.equal(await proc.stop(), 0);
});

Deno.test(
  "main.ts on SIGHUP rereads PROXY_API_KEYS_FILE: a revoked key is refused; a bad file keeps the keys",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    const OLD = "kid-tablet-key-0123456789abcdef";
    const NEW = "owner-key-fedcba9876543210aaaa";
    const ADDED = "guest-key-5555555555aaaaabbbbb";
    await using fake = await FakePoe.start();
    const dir = Deno.makeTempDirSync();
    const file = `${dir}/keys`;
    Deno.writeTextFileSync(file, `${OLD}\n${NEW}\n`);
    await using proc = await MainProcess.start({
      POE_API_KEY: "test-poe-key",
      POE_BASE_URL: fake.url,
      PROXY_API_KEYS_FILE: file,
    }, { cwd: dir });
    const statusWith = async (key: string) => {
      const response = await fetch(`${proc.url}/v1/models`, {
        headers: { authorization: `Bearer ${key}` },
      });
      await response.body?.cancel();
      return response.status;
    };
    assert.deepEqual([await statusWith(OLD), await statusWith(NEW)], [200, 200]);

    Deno.writeTextFileSync(file, `# revoked the tablet\n${NEW}\n${ADDED}\n`);
    proc.child.kill("SIGHUP");
    await waitFor(() => proc.stdout.includes("keys reloaded keys=2 previous=2"), "the keys reload");
    assert.deepEqual(
      [await statusWith(OLD), await statusWith(NEW), await statusWith(ADDED)],
      [401, 200, 200],
    );
    // The new key is hidden where it does not belong, and names on the dashboard stay the keys'.
    const chat = (key: string, model: string) =>
      proc.json("/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
      });
    const pasted = await chat(NEW, `Bearer ${ADDED}`);
    assert.equal(pasted.status, 404);
    assert.match(JSON.stringify(pasted.body), /The model \\"Bearer \(hidden\)\\"/);
    assert.equal((await chat(ADDED, "GPT-4o")).status, 200);
    const usage = await proc.json("/api/usage", { headers: { authorization: `Bearer ${ADDED}` } });
    const rows = (usage.body as { recent: { client: string; model: string }[] }).recent;
    assert.deepEqual(rows.map((r) => [r.client, r.model]), [
      ["key-3", "GPT-4o"],
      ["key-2", "Bearer (hidden)"],
    ]);

    // Emptied, or gone: startup would refuse it, so the keys in use stay.
    Deno.writeTextFileSync(file, `# ${NEW}\n`);
    proc.child.kill("SIGHUP");
    await waitFor(() => proc.stderr.includes("keys reload failed"), "the empty-file error");
    assert.match(proc.stderr, /ERROR keys reload failed; keeping the previous keys .*holds no key/);
    Deno.removeSync(file);
    proc.child.kill("SIGHUP");
    await waitFor(
      () => /Cannot read PROXY_API_KEYS_FILE/.test(proc.stderr),
      "the missing-file error",
    );
    assert.deepEqual([await statusWith(OLD), await statusWith(NEW)], [401, 200]);
    assert.equal(await proc.stop(), 0);
    for (const key of [OLD, NEW, ADDED]) {
      assert.ok(!(proc.stdout + proc.stderr).includes(key.slice(0, 12)), "no key is printed");
    }
  },
);
