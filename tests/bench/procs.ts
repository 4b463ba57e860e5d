/** @module Child processes of the benchmark: spawn, read lines, wait for one, RSS, kill them all. */

/** Options of {@linkcode Children.spawn}. */
export interface SpawnOptions {
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Give the child a pipe on standard input. Default: false. */
  stdin?: boolean;
}

/** A running child whose standard output is read as lines and whose standard error is kept (tail). */
export class Child {
  readonly name: string;
  readonly process: Deno.ChildProcess;
  readonly lines: string[] = [];
  #partial = "";
  #stderr = "";
  #cursor = 0;
  #wake: (() => void) | null = null;
  #exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(name: string, process: Deno.ChildProcess) {
    this.name = name;
    this.process = process;
    this.status = process.status.then((s) => {
      this.#exited = true;
      this.#notify();
      return s;
    });
    this.#pump(process.stdout, (text) => {
      const parts = (this.#partial + text).split("\n");
      this.#partial = parts.pop()!;
      this.lines.push(...parts);
      this.#notify();
    });
    this.#pump(process.stderr, (text) => {
      this.#stderr = (this.#stderr + text).slice(-8192);
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #pump(stream: ReadableStream<Uint8Array>, onText: (text: string) => void): Promise<void> {
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) onText(text);
    } catch {
      // The child was killed.
    }
  }

  get pid(): number {
    return this.process.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** The last 8 KiB of standard error. */
  get stderr(): string {
    return this.#stderr;
  }

  /**
   * Waits for the next line (after those already returned by this method) that matches `pattern`.
   * Throws when the child exits first or `timeoutMs` passes.
   */
  async waitLine(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      while (this.#cursor < this.lines.length) {
        const match = pattern.exec(this.lines[this.#cursor++]);
        if (match) return match;
      }
      if (this.#exited) {
        // Give the pump a moment to deliver what the child printed last.
        await new Promise((r) => setTimeout(r, 20));
        if (this.#cursor < this.lines.length) continue;
        throw new Error(`${this.name} exited before printing ${pattern}: ${this.#describe()}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `${this.name} did not print ${pattern} within ${timeoutMs} ms: ${this.#describe()}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, Math.min(left, 250));
      });
      clearTimeout(timer);
    }
  }

  #describe(): string {
    const out = this.lines.slice(-5).join(" | ");
    return `stdout: ${out || "(nothing)"}; stderr: ${
      this.#stderr.trim().slice(-1000) || "(nothing)"
    }`;
  }

  /** Writes a line to the child's standard input. */
  async writeLine(line: string): Promise<void> {
    const writer = this.process.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(line + "\n"));
    } finally {
      writer.releaseLock();
    }
  }

  /** Sends SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 2000): Promise<Deno.CommandStatus | null> {
    if (this.#exited) return await this.status;
    try {
      this.process.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.status.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs)),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    return await this.status;
  }
}

/** Every child the benchmark started, so that all are ended however it stops. */
export class Children {
  #all: Child[] = [];

  /** Starts `command` with piped standard output and error. */
  spawn(name: string, command: string, options: SpawnOptions = {}): Child {
    const process = new Deno.Command(command, {
      args: options.args ?? [],
      env: options.env,
      clearEnv: options.env !== undefined,
      cwd: options.cwd,
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const child = new Child(name, process);
    this.#all.push(child);
    return child;
  }

  /** Stops every child still running. */
  async stopAll(): Promise<void> {
    await Promise.all(this.#all.map((c) => c.stop(1500).catch(() => null)));
    this.#all = [];
  }

  /** Sends SIGKILL to every child still running, synchronously (for a hard stop). */
  killAllNow(): void {
    for (const c of this.#all) {
      if (c.exited) continue;
      try {
        c.process.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  }
}

/**
 * Resident set size of a process in MiB, from `/proc/<pid>/status` (through `cat`: Deno wants
 * `--allow-all` to read another process's `/proc` entries); null when unreadable.
 */
export async function rssMiB(pid: number): Promise<number | null> {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(await cat(`/proc/${pid}/status`) ?? "");
  return match ? Number(match[1]) / 1024 : null;
}

/** A TCP port of 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until `127.0.0.1:port` accepts a TCP connection. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch (err) {
      if (performance.now() > deadline) {
        throw new Error(`Nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** Whether `command` can be started (it exists on PATH), whatever its exit code. */
export async function available(command: string, args: string[]): Promise<boolean> {
  try {
    await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output();
    return true;
  } catch {
    return false;
  }
}

async function cat(path: string): Promise<string | null> {
  try {
    const out = await new Deno.Command("cat", { args: [path], stderr: "null" }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/** CPU time (user plus system) a process has used, in milliseconds; null when unreadable. */
export async function cpuMs(pid: number): Promise<number | null> {
  const stat = await cat(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the line, in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The pids of a process's children (nginx's workers). */
export async function childPids(pid: number): Promise<number[]> {
  const text = await cat(`/proc/${pid}/task/${pid}/children`);
  return text === null ? [] : text.trim().split(/\s+/).filter(Boolean).map(Number);
}

/** How busy the whole machine is over `ms`, in percent of all cores, from `/proc/stat`. */
export async function machineBusy(ms: number): Promise<number | null> {
  const sample = async () => {
    const text = await cat("/proc/stat");
    if (text === null) return null;
    const cpu = text.split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = cpu[3] + (cpu[4] ?? 0);
    return { idle, total: cpu.reduce((a, b) => a + b, 0) };
  };
  const a = await sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = await sample();
  if (!a || !b || b.total === a.total) return null;
  return 100 * (1 - (b.idle - a.idle) / (b.total - a.total));
}

const HERE = decodeURIComponent(new URL("./", import.meta.url).pathname);

/** The environment every benchmark child gets: no colours, no update check, the paths it needs. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Starts `fake_server.ts` and waits for its listening line. */
export async function startFake(
  children: Children,
): Promise<{ child: Child; url: string; port: number; statsUrl: string }> {
  const child = children.spawn("fake-poe", Deno.execPath(), {
    args: ["run", "--unstable-no-legacy-abort", "--allow-net=127.0.0.1", `${HERE}fake_server.ts`],
    env: baseEnv(),
  });
  const match = await child.waitLine(
    /fake-poe listening on (http:\/\/127\.0\.0\.1:(\d+)) stats on (\S+)/,
    30_000,
  );
  return { child, url: match[1], port: Number(match[2]), statsUrl: match[3] };
}

/** The arguments of `deno` that run the bare Deno proxy (`bare_proxy.ts`) in front of `upstream`. */
export function bareProxyArgs(upstream: string): string[] {
  return [
    "run",
    "--unstable-no-legacy-abort",
    "--allow-net=127.0.0.1",
    `${HERE}bare_proxy.ts`,
    upstream,
  ];
}

/** The listening line of `bare_proxy.ts`; its group 1 is the port. */
export const BARE_PROXY_LISTENING = /bare-proxy listening on http:\/\/[\d.]+:(\d+)/;
