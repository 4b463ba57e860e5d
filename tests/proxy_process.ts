/** @module main.ts as a child process: its URL, pid, memory and every line it printed. */

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** The runtime flags of `deno task start` (`--unstable-...`, `--allow-*`): tests run what users run. */
const START_FLAGS: string[] = JSON.parse(
  Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
).tasks.start.split(/\s+/).filter((w: string) => w.startsWith("--"));

/** Options of {@linkcode mainCommand}. */
export interface MainCommandOptions {
  /** Working directory. Default: a new empty temporary directory. */
  cwd?: string | URL;
  /** Extra arguments of `deno run` itself, before `main.ts` (such as `--v8-flags=...`). */
  denoArgs?: string[];
}

/**
 * `deno run main.ts ARGS` with the flags of `deno task start`, in an environment holding only
 * PATH, HOME, NO_COLOR, DENO_DIR (when set) and `env`; output piped.
 */
export function mainCommand(
  args: string[],
  env: Record<string, string>,
  options: MainCommandOptions = {},
): Deno.Command {
  const denoDir = Deno.env.get("DENO_DIR");
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...START_FLAGS, ...(options.denoArgs ?? []), MAIN, ...args],
    env: {
      PATH: Deno.env.get("PATH") ?? "",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      NO_COLOR: "1",
      ...(denoDir ? { DENO_DIR: denoDir } : {}),
      ...env,
    },
    clearEnv: true,
    cwd: options.cwd ?? Deno.makeTempDirSync(),
    stdout: "piped",
    stderr: "piped",
  });
}

/** A running `main.ts` child. */
export interface ProxyProcess extends AsyncDisposable {
  url: string;
  pid: number;
  /** Everything printed so far on standard output. */
  stdout(): string;
  /** Everything printed so far on standard error. */
  stderr(): string;
  /**
   * Resident set size in bytes, from `ps -o rss=` (reading `/proc/<pid>/status` itself would need
   * `--allow-all`; `ps` needs only `--allow-run`).
   */
  rss(): Promise<number>;
  /** Sends SIGTERM and waits for the exit; returns the exit code. */
  stop(): Promise<number>;
}

/** Options of {@linkcode startProxyProcess}. */
export interface ProxyProcessOptions {
  /** Variables of the child's otherwise empty environment (PATH, HOME and NO_COLOR are added). */
  env: Record<string, string>;
  /** Extra arguments after `main.ts`. */
  args?: string[];
  /** Extra arguments of `deno run` itself, before `main.ts` (such as `--v8-flags=...`). */
  denoArgs?: string[];
  /** Working directory. Default: a new empty temporary directory. */
  cwd?: string;
  /** Give up waiting for the listening line after this long. Default: 20000 ms. */
  timeoutMs?: number;
}

async function drain(stream: ReadableStream<Uint8Array>, sink: { text: string }): Promise<void> {
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) sink.text += chunk;
}

/** Spawns `deno run main.ts` and resolves once it prints its listening line. */
export async function startProxyProcess(options: ProxyProcessOptions): Promise<ProxyProcess> {
  const child = mainCommand(options.args ?? [], options.env, {
    cwd: options.cwd,
    denoArgs: options.denoArgs,
  }).spawn();
  const out = { text: "" };
  const err = { text: "" };
  const drained = Promise.all([drain(child.stdout, out), drain(child.stderr, err)]);
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let exited = false;
  child.status.then(() => exited = true);
  let url = "";
  while (!url) {
    const match = /listening on (http:\/\/\S+) /.exec(out.text);
    if (match) url = match[1];
    else if (exited || Date.now() > deadline) {
      if (!exited) child.kill("SIGKILL");
      await child.status;
      await drained;
      throw new Error(`main.ts did not start:\n${out.text}\n${err.text}`);
    } else await new Promise((r) => setTimeout(r, 20));
  }
  let stopped: Promise<number> | null = null;
  const stop = () => {
    stopped ??= (async () => {
      if (!exited) child.kill("SIGTERM");
      const status = await child.status;
      await drained;
      return status.code;
    })();
    return stopped;
  };
  return {
    url,
    pid: child.pid,
    stdout: () => out.text,
    stderr: () => err.text,
    rss: async () => {
      const out = await new Deno.Command("ps", {
        args: ["-o", "rss=", "-p", String(child.pid)],
        stdout: "piped",
        stderr: "null",
      }).output();
      const kb = Number(new TextDecoder().decode(out.stdout).trim());
      if (!out.success || !Number.isFinite(kb) || kb <= 0) {
        throw new Error(`ps found no RSS for pid ${child.pid}`);
      }
      return kb * 1024;
    },
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** Reads stdout until the listening line and returns its URL. */
export async function listeningUrl(
  child: Deno.ChildProcess,
): Promise<{ url: string; line: string; rest: Promise<string> }> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`exited before listening: ${buffered}`);
    buffered += value;
    const match = buffered.match(/^(poe-proxy \S+ listening on (http:\/\/\S+) \((\d+) models\))$/m);
    if (match) {
      const rest = (async () => {
        let more = "";
        for (;;) {
          const r = await reader.read();
          if (r.done) return more;
          more += r.value;
        }
      })();
      return { url: match[2], line: match[1], rest };
    }
  }
}
