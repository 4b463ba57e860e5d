/**
 * @module `deno task bench`: poe-proxy side by side with a direct connection to the fake Poe and
 * with nginx as a plain reverse proxy, against the targets of issue 9.
 *
 * Every server is its own process: the fake Poe (`fake_server.ts`), poe-proxy (`main.ts`, as
 * `deno task start` runs it, with `LOG_LEVEL=warn`, no rate limits, footer and poller at their
 * defaults), nginx when installed (plain, and with upstream keepalive for reference), and the load
 * generator (`wrk` when installed, else `load.ts`; streamed requests and held streams always use
 * `load.ts`, which reads raw TCP). Only 127.0.0.1 is used. Everything written goes to one temporary folder, removed at the end (`--keep` keeps it).
 *
 * Flags: `--quick` (shorter phases), `--profile` (run the proxy with `--cpu-prof` and print its
 * heaviest functions), `--env NAME=VALUE` (a setting for poe-proxy, repeatable, e.g.
 * `--env FOOTER=off`), `--no-variant` (skip the second poe-proxy with `FOOTER_WAIT_MS=0`),
 * `--no-nginx`, `--no-wrk`, `--keep` (keep the temporary folder, with the proxy's output in
 * `poe-proxy.log`), `--budget SECONDS` (default 180).
 */
import { parseArgs } from "node:util";
import { printError, printLine } from "../../lib/log.ts";
import {
  available,
  BARE_PROXY_LISTENING,
  bareProxyArgs,
  baseEnv,
  Child,
  childPids,
  Children,
  cpuMs,
  freePort,
  machineBusy,
  rssMiB,
  startFake,
  waitForPort,
} from "./procs.ts";
import type { HoldJob, LoopJob, LoopResult } from "./load.ts";
import { formatProfile, summarizeProfile } from "./cpuprofile.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const HERE = decodeURIComponent(new URL("./", import.meta.url).pathname);
const DENO = Deno.execPath();
const POE_KEY = "test-poe-key";
/** The runtime flags of `deno task start`: the benchmark runs what users run. */
const START_FLAGS: string[] = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start
  .split(/\s+/).filter((w: string) => w.startsWith("--"));
const CHAT = "/v1/chat/completions";
const HEADERS = { authorization: `Bearer ${POE_KEY}` };
const BODY = JSON.stringify({
  model: "GPT-4o",
  messages: [{ role: "user", content: "Hello! How are you today?" }],
});
/** Text of the fake's non-streamed answer to {@linkcode BODY}. */
const EXPECT = "Hello there, friend.";
const STREAM_BODY = JSON.stringify({
  model: "GPT-4o",
  stream: true,
  messages: [{ role: "user", content: "Tell me a story. [[fake: words=40]]" }],
});
/**
 * Streams that stay open: a first word, then two minutes of silence. The first word is content
 * (`no-role`): a stream whose opening holds only its role chunk gets its headers after up to 5 s
 * (its opening is read for an error), and the hold phase reads each stream to its first byte.
 */
const HOLD_BODY = JSON.stringify({
  model: "GPT-4o",
  stream: true,
  messages: [{ role: "user", content: "Take your time. [[fake: stall=120000,no-role]]" }],
});
const PROXY_SETTINGS: Record<string, string> = {
  PORT: "0",
  POE_API_KEY: POE_KEY,
  RATE_LIMIT_PER_MINUTE: "0",
  POE_RATE_LIMIT_PER_MINUTE: "0",
  LOG_LEVEL: "warn",
};
const HOLD_COUNT = 1000;
/**
 * A second poe-proxy, measured once: the footer's wait for the real cost (up to FOOTER_WAIT_MS,
 * first points-history fetch after 200 ms) is by design part of every answer's last byte, so
 * this variant shows what the relay itself costs.
 */
const VARIANT: Record<string, string> = { FOOTER_WAIT_MS: "0" };
const VARIANT_NAME = Object.entries(VARIANT).map(([k, v]) => `${k}=${v}`).join(" ");

/** Seconds of each phase. */
interface Durations {
  warmup: number;
  c1: number;
  c32: number;
  stream: number;
}

/** The references measured just before one poe-proxy run. */
interface Pair {
  directC1: LoadFigures;
  /** Direct streamed TTFB p50: it drifts as much as the proxy's whole budget (0.13 to 0.27 ms). */
  directTtfbP50: number;
  nginxC32: number | null;
}

/** poe-proxy's figures against the references of its own run, and their medians. */
interface Paired {
  addedP50: number;
  addedP99: number;
  nginxPct: number | null;
  addedTtfbP50: number;
  runs: { addedP50: number; addedP99: number; nginxPct: number | null; addedTtfbP50: number }[];
}

/** What one target measured. Times in milliseconds. */
interface TargetResult {
  c1: LoadFigures;
  c32: LoadFigures;
  stream: LoopResult;
  /** CPU time the server (not the fake behind it) used per request at concurrency 32, in µs. */
  cpuUsC32: number | null;
  /** Requests sent to the target in all phases, warm-up included. */
  sent: number;
  /** Usage API calls and chat requests during the concurrency-32 phase, when counted. */
  sustained: { usageCalls: number; requests: number } | null;
}

interface LoadFigures {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** Answers that were not the fake's (a guard's): with wrk, non-2xx answers count here too. */
  guarded: number;
}

interface Target {
  name: string;
  port: number;
  /** The processes whose CPU time serves this target's requests. */
  pids: () => Promise<number[]>;
}

// ---------------------------------------------------------------------------------------------
// Load

class Load {
  constructor(
    readonly children: Children,
    readonly tmp: string,
    readonly useWrk: boolean,
  ) {}

  #luaPath = "";

  async init(): Promise<void> {
    if (!this.useWrk) return;
    this.#luaPath = `${this.tmp}/post.lua`;
    await Deno.writeTextFile(
      this.#luaPath,
      `wrk.method = "POST"
wrk.body = [==[${BODY}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "${HEADERS.authorization}"
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) guarded = 0 end
-- A poe-proxy guard answering instead of Poe would make the run meaningless: count those.
response = function(status, headers, body)
  if headers["x-poe-proxy-guard"] ~= nil or not string.find(body, "${EXPECT}", 1, true) then
    guarded = guarded + 1
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local g = 0
  for _, t in ipairs(threads) do g = g + t:get("guarded") end
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"guarded":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status, g,
    latency:percentile(50), latency:percentile(99)))
end
`,
    );
  }

  /** Non-streamed requests at `concurrency` for `seconds`. */
  async rps(target: Target, concurrency: number, seconds: number): Promise<LoadFigures> {
    if (this.useWrk) {
      const child = this.children.spawn(`wrk (${target.name})`, "wrk", {
        args: [
          "-t1",
          `-c${concurrency}`,
          `-d${Math.max(1, Math.round(seconds))}s`,
          "--timeout",
          "10s",
          "-s",
          this.#luaPath,
          `http://127.0.0.1:${target.port}${CHAT}`,
        ],
      });
      const match = await child.waitLine(/^WRKJSON (.*)$/, (seconds + 30) * 1000);
      await child.status;
      const r = JSON.parse(match[1]);
      return {
        requests: r.requests,
        rps: r.requests / (r.duration_us / 1e6),
        p50: r.requests ? r.p50_us / 1000 : NaN,
        p99: r.requests ? r.p99_us / 1000 : NaN,
        errors: r.errors,
        non2xx: r.non2xx,
        guarded: r.guarded,
      };
    }
    const r = await this.loop(target, {
      body: BODY,
      concurrency,
      durationMs: seconds * 1000,
      warmupMs: 200,
    });
    return {
      requests: r.requests,
      rps: r.rps,
      p50: r.p50,
      p99: r.p99,
      errors: r.errors,
      non2xx: r.non2xx,
      guarded: r.guarded,
    };
  }

  /** Keep-alive loops of `load.ts`. */
  async loop(
    target: Target,
    job: Omit<LoopJob, "mode" | "port" | "path" | "headers">,
  ): Promise<LoopResult> {
    const full: LoopJob = { mode: "loop", port: target.port, path: CHAT, headers: HEADERS, ...job };
    const child = this.children.spawn(`load.ts (${target.name})`, DENO, {
      args: ["run", "--allow-net=127.0.0.1", `${HERE}load.ts`, JSON.stringify(full)],
    });
    const match = await child.waitLine(/^(\{.*\})$/, job.durationMs + (job.warmupMs ?? 0) + 30_000);
    await child.status;
    // A phase with no answers has no percentiles: NaN, which JSON carried as null.
    return JSON.parse(match[1], (_k, v) => v === null ? NaN : v);
  }

  /** Opens {@linkcode HOLD_COUNT} streams; returns the child, which closes them on a line. */
  async hold(target: Target): Promise<{ child: Child; open: number; failed: number; ms: number }> {
    const job: HoldJob = {
      mode: "hold",
      port: target.port,
      path: CHAT,
      headers: HEADERS,
      body: HOLD_BODY,
      count: HOLD_COUNT,
      batch: 100,
    };
    const child = this.children.spawn("load.ts (hold)", DENO, {
      args: ["run", "--allow-net=127.0.0.1", `${HERE}load.ts`, JSON.stringify(job)],
      stdin: true,
    });
    const match = await child.waitLine(/^(\{"open".*\})$/, 60_000);
    const r = JSON.parse(match[1]);
    return { child, open: r.open, failed: r.failed + r.non2xx, ms: r.ms };
  }
}

async function measure(
  load: Load,
  target: Target,
  d: Durations,
  usage?: () => Promise<number>,
): Promise<TargetResult> {
  const warm = await load.rps(target, 8, d.warmup);
  const c1 = await load.rps(target, 1, d.c1);
  const pids = await target.pids();
  const cpu = async () => {
    let sum = 0;
    for (const pid of pids) sum += await cpuMs(pid) ?? NaN;
    return sum;
  };
  const cpuBefore = await cpu();
  const usageBefore = usage ? await usage() : 0;
  const c32 = await load.rps(target, 32, d.c32);
  const cpuUsed = await cpu() - cpuBefore;
  const sustained = usage
    ? { usageCalls: await usage() - usageBefore, requests: c32.requests }
    : null;
  const stream = await load.loop(target, {
    body: STREAM_BODY,
    concurrency: 1,
    durationMs: d.stream * 1000,
    warmupMs: 300,
  });
  const cpuUsC32 = Number.isFinite(cpuUsed) ? 1000 * cpuUsed / Math.max(1, c32.requests) : null;
  return {
    c1,
    c32,
    stream,
    cpuUsC32,
    sent: warm.requests + c1.requests + c32.requests + stream.requests,
    sustained,
  };
}

// ---------------------------------------------------------------------------------------------
// Servers

async function startProxy(
  children: Children,
  tmp: string,
  fakeUrl: string,
  cpuProf: boolean,
  extraEnv: Record<string, string> = {},
): Promise<{ child: Child; port: number; startupMs: number }> {
  const args = ["run", ...START_FLAGS];
  if (cpuProf) args.push("--cpu-prof", `--cpu-prof-dir=${tmp}/prof`);
  args.push("main.ts", "--env-file", `${tmp}/empty.env`);
  const started = performance.now();
  const child = children.spawn("poe-proxy", DENO, {
    args,
    cwd: ROOT,
    env: { ...baseEnv(), ...PROXY_SETTINGS, ...extraEnv, POE_BASE_URL: fakeUrl },
  });
  const match = await child.waitLine(/listening on http:\/\/[^:\s]+:(\d+)/, 30_000);
  return { child, port: Number(match[1]), startupMs: performance.now() - started };
}

/**
 * nginx in front of the fake Poe. `plain` is the reverse proxy issue 9 names: `proxy_pass` with
 * buffering off and nginx's defaults otherwise (one worker; a new HTTP/1.0 connection to the
 * upstream per request); its figures here match the issue's (7,000 to 12,000 req/s at c=32).
 * `keepalive` adds a pool of 64 upstream HTTP/1.1 connections, as a tuned nginx runs: twice as
 * fast, faster than a bare Deno proxy; shown for reference, not a target.
 */
async function startNginx(
  children: Children,
  tmp: string,
  fakePort: number,
  kind: "plain" | "keepalive",
): Promise<Target> {
  const dir = `${tmp}/nginx-${kind}`;
  await Deno.mkdir(dir);
  const port = freePort();
  const keepalive = kind === "keepalive";
  const conf = `# nginx (${kind}) in front of the fake Poe, as poe-proxy's benchmark runs it.
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream fake { server 127.0.0.1:${fakePort};${keepalive ? " keepalive 64;" : ""} }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://fake;
${
    keepalive
      ? '      proxy_http_version 1.1;\n      proxy_set_header Connection "";\n'
      : ""
  }      proxy_buffering off;
    }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = children.spawn(`nginx-${kind}`, "nginx", {
    args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
  });
  try {
    await waitForPort(port, 5000);
  } catch (err) {
    throw new Error(`nginx did not start: ${(err as Error).message}; ${child.stderr.trim()}`);
  }
  const master = child.pid;
  return { name: `nginx-${kind}`, port, pids: () => childPids(master) };
}

async function usageCalls(statsUrl: string): Promise<number> {
  const response = await fetch(`${statsUrl}/__stats`);
  return (await response.json()).usage_calls;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Report

interface Check {
  id: string;
  figure: string;
  value: number | null;
  target: string;
  met: boolean | null;
}

function fmt(v: number | null | undefined, digits = 2): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "-";
  return v.toFixed(digits);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * The figure-by-figure median of identical runs: on a shared 2-core machine one run's latency can
 * be off by 50 %, and a target should not be met or missed by that luck.
 */
function medianRun(runs: TargetResult[]): TargetResult {
  // deno-lint-ignore no-explicit-any
  const mid = (values: any[]): any => {
    const first = values[0];
    if (typeof first === "number") return median(values);
    if (first === null || typeof first !== "object") return first;
    return Object.fromEntries(Object.keys(first).map((k) => [k, mid(values.map((v) => v?.[k]))]));
  };
  return { ...mid(runs), sent: runs.reduce((n, r) => n + r.sent, 0) };
}

function pairedFigures(runs: TargetResult[], pairs: Pair[]): Paired {
  const each = runs.map((r, i) => ({
    addedP50: r.c1.p50 - pairs[i].directC1.p50,
    addedP99: r.c1.p99 - pairs[i].directC1.p99,
    nginxPct: pairs[i].nginxC32 ? 100 * r.c32.rps / pairs[i].nginxC32! : null,
    addedTtfbP50: r.stream.ttfb_p50 - pairs[i].directTtfbP50,
  }));
  const pct = each.map((x) => x.nginxPct).filter((x): x is number => x !== null);
  return {
    addedP50: median(each.map((x) => x.addedP50)),
    addedP99: median(each.map((x) => x.addedP99)),
    nginxPct: pct.length ? median(pct) : null,
    addedTtfbP50: median(each.map((x) => x.addedTtfbP50)),
    runs: each,
  };
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? "")].length)));
  return rows.map((r) =>
    r.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ")
      .trimEnd()
  );
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean" },
      profile: { type: "boolean" },
      keep: { type: "boolean" },
      "no-nginx": { type: "boolean" },
      "no-wrk": { type: "boolean" },
      "no-variant": { type: "boolean" },
      budget: { type: "string", default: "180" },
      env: { type: "string", multiple: true },
    },
  });
  const d: Durations = values.quick
    ? { warmup: 1, c1: 2, c32: 2, stream: 1.5 }
    : { warmup: 1, c1: 4, c32: 5, stream: 3 };
  const budgetMs = Number(values.budget) * 1000;
  for (const pair of values.env ?? []) {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error(`--env wants NAME=VALUE: got ${JSON.stringify(pair)}`);
    PROXY_SETTINGS[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const tmp = await Deno.makeTempDir({ prefix: "poe-proxy-bench-" });
  const children = new Children();
  const hardStop = setTimeout(() => {
    printError(`bench: over its budget of ${values.budget} s; stopping every child process`);
    children.killAllNow();
    if (!values.keep) Deno.removeSync(tmp, { recursive: true });
    Deno.exit(1);
  }, budgetMs);
  const onSignal = () => {
    children.killAllNow();
    if (!values.keep) Deno.removeSync(tmp, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  const log = (line: string) => printLine(`bench: ${line}`);
  const warnings: string[] = [];
  const warn = (line: string) => {
    warnings.push(line);
    printLine(`bench: WARNING: ${line}`);
  };

  try {
    const useWrk = !values["no-wrk"] && await available("wrk", ["-v"]);
    const useNginx = !values["no-nginx"] && await available("nginx", ["-v"]);
    await Deno.writeTextFile(`${tmp}/empty.env`, "");
    const busy = await machineBusy(1000);
    if (busy !== null && busy > 15) {
      warn(
        `the machine was ${
          busy.toFixed(0)
        } % busy before the bench started: other work shares these cores, figures will be low and noisy`,
      );
    }
    const load = new Load(children, tmp, useWrk);
    await load.init();
    log(`temp folder ${tmp}`);
    log(
      `generator: ${useWrk ? "wrk -t1 (non-streamed), " : ""}tests/bench/load.ts (streamed${
        useWrk ? "" : ", non-streamed"
      }); nginx: ${useNginx ? "yes" : "not installed, skipped (apt-get install -y nginx)"}`,
    );
    log(
      `poe-proxy settings: ${
        Object.entries(PROXY_SETTINGS).filter(([k]) => k !== "POE_API_KEY").map(([k, v]) =>
          `${k}=${v}`
        ).join(" ")
      }; the rest at its defaults (footer and poller on unless set here); no .env`,
    );

    const fake = await startFake(children);
    const fakeUrl = fake.url;
    const statsUrl = fake.statsUrl;
    const direct: Target = {
      name: "direct",
      port: fake.port,
      pids: () => Promise.resolve([fake.child.pid]),
    };

    const bare = children.spawn("bare-proxy", DENO, {
      args: bareProxyArgs(fakeUrl),
      env: baseEnv(),
    });
    const bareTarget: Target = {
      name: "bare-proxy",
      port: Number(
        (await bare.waitLine(BARE_PROXY_LISTENING, 30_000))[1],
      ),
      pids: () => Promise.resolve([bare.pid]),
    };

    const startups: number[] = [];
    const proxy = await startProxy(children, tmp, fakeUrl, values.profile === true);
    startups.push(proxy.startupMs);
    const proxyTarget: Target = {
      name: "poe-proxy",
      port: proxy.port,
      pids: () => Promise.resolve([proxy.child.pid]),
    };
    log(
      `poe-proxy pid ${proxy.child.pid} listening on port ${proxy.port} after ${
        fmt(proxy.startupMs, 0)
      } ms`,
    );
    await sleep(1000);
    const rssIdle = await rssMiB(proxy.child.pid);

    const nginxTarget = useNginx ? await startNginx(children, tmp, direct.port, "plain") : null;
    const tunedTarget = useNginx ? await startNginx(children, tmp, direct.port, "keepalive") : null;

    log("direct to the fake Poe...");
    const directResult = await measure(load, direct, d);
    let nginxResult: TargetResult | null = null;
    let tunedRps: number | null = null;
    if (nginxTarget && tunedTarget) {
      log("through nginx (plain)...");
      nginxResult = await measure(load, nginxTarget, d);
      log("through nginx with upstream keepalive (reference, c=32 only)...");
      await load.rps(tunedTarget, 8, d.warmup);
      tunedRps = (await load.rps(tunedTarget, 32, d.c32)).rps;
    }
    // For scale (issue 9): what Deno itself costs, with nothing of poe-proxy's on top.
    log("through a bare Deno proxy (reference, non-streamed only)...");
    await load.rps(bareTarget, 8, d.warmup);
    const bareC1 = await load.rps(bareTarget, 1, d.c1);
    const bareCpuBefore = await cpuMs(bare.pid);
    const bareC32 = await load.rps(bareTarget, 32, d.c32);
    const bareCpuAfter = await cpuMs(bare.pid);
    // What Deno alone costs a request: poe-proxy's figure beside it shows what the product adds.
    const bareCpuUsC32 = bareCpuBefore !== null && bareCpuAfter !== null
      ? 1000 * (bareCpuAfter - bareCpuBefore) / Math.max(1, bareC32.requests)
      : null;

    // The machine's speed drifts within a minute: each poe-proxy run is compared with direct at
    // c=1 and streamed, and nginx at c=32, measured just before it; the targets take the median.
    const pairs: Pair[] = [];
    const pair = async () => {
      const directC1 = await load.rps(direct, 1, d.c1);
      const directStream = await load.loop(direct, {
        body: STREAM_BODY,
        concurrency: 1,
        durationMs: d.stream * 500,
        warmupMs: 300,
      });
      const nginxC32 = nginxTarget ? (await load.rps(nginxTarget, 32, d.c32)).rps : null;
      pairs.push({ directC1, directTtfbP50: directStream.ttfb_p50, nginxC32 });
    };
    log("direct and nginx again, then through poe-proxy, run 1...");
    await pair();
    const usageBefore = await usageCalls(statsUrl);
    const usage = () => usageCalls(statsUrl);
    const runs: TargetResult[] = [await measure(load, proxyTarget, d, usage)];
    const rssAfter: (number | null)[] = [await rssMiB(proxy.child.pid)];

    log(`${HOLD_COUNT} streams open at once...`);
    const held = await load.hold(proxyTarget);
    await sleep(500);
    const rssHold = await rssMiB(proxy.child.pid);
    await held.child.writeLine("close");
    await held.child.waitLine(/"closed"/, 30_000);
    await held.child.status;
    await sleep(1000);
    const rssClosed = await rssMiB(proxy.child.pid);
    if (held.open < HOLD_COUNT) {
      warn(`only ${held.open} of ${HOLD_COUNT} streams opened (${held.failed} failed)`);
    }

    for (const n of [2, 3]) {
      log(`direct and nginx again, then through poe-proxy, run ${n}...`);
      await pair();
      runs.push(await measure(load, proxyTarget, d, usage));
      rssAfter.push(await rssMiB(proxy.child.pid));
    }
    const usageAfter = await usageCalls(statsUrl);
    const chatRequests = runs.reduce((n, r) => n + r.sent, 0) + held.open;
    const usagePerRequest = (usageAfter - usageBefore) / Math.max(1, chatRequests);
    // "Under sustained load": the concurrency-32 phases. At concurrency 1 every answer waits for
    // its own history read (one call each), which is the point of the footer.
    const sustainedCalls = runs.reduce((n, r) => n + (r.sustained?.usageCalls ?? 0), 0);
    const sustainedRequests = runs.reduce((n, r) => n + (r.sustained?.requests ?? 0), 0);
    const usageSustained = sustainedCalls / Math.max(1, sustainedRequests);

    log("start-up, twice more...");
    for (let i = 0; i < 2; i++) {
      const extra = await startProxy(children, tmp, fakeUrl, false);
      startups.push(extra.startupMs);
      await extra.child.stop();
    }
    const startupMs = median(startups);

    let variantResult: TargetResult | null = null;
    if (!values["no-variant"]) {
      log(`through a second poe-proxy with ${VARIANT_NAME}...`);
      const second = await startProxy(children, tmp, fakeUrl, false, VARIANT);
      variantResult = await measure(load, {
        name: "poe-proxy variant",
        port: second.port,
        pids: () => Promise.resolve([second.child.pid]),
      }, d);
      await second.child.stop();
    }

    if (values.keep) {
      await Deno.writeTextFile(
        `${tmp}/poe-proxy.log`,
        proxy.child.lines.join("\n") + "\n" + proxy.child.stderr,
      );
    }

    let profileLines: string[] = [];
    if (values.profile) {
      await proxy.child.stop(10_000);
      for await (const entry of Deno.readDir(`${tmp}/prof`)) {
        if (!entry.name.endsWith(".cpuprofile")) continue;
        const profile = JSON.parse(await Deno.readTextFile(`${tmp}/prof/${entry.name}`));
        profileLines = formatProfile(summarizeProfile(profile, 30));
      }
      if (profileLines.length === 0) warn("no .cpuprofile was written");
    }

    // --- checks and report ----------------------------------------------------------------------
    // poe-proxy's figures are the medians of its three runs (each run is also printed).
    const p = medianRun(runs);
    const v = variantResult;
    const named: [string, TargetResult | null][] = [
      ["direct", directResult],
      ["nginx", nginxResult],
      ...runs.map((r, i) => [`poe-proxy run ${i + 1}`, r] as [string, TargetResult]),
      [`poe-proxy ${VARIANT_NAME}`, v],
    ];
    for (const [name, r] of named) {
      if (!r) continue;
      for (const [phase, f] of [["c=1", r.c1], ["c=32", r.c32], ["streamed", r.stream]] as const) {
        if (f.errors || f.non2xx || f.guarded) {
          warn(
            `${name} ${phase}: ${f.errors} errors, ${f.non2xx} non-2xx answers, ${f.guarded} answers not from the fake (a guard's?): its figures are not valid`,
          );
        }
      }
    }
    const fastest = Math.max(p.c32.rps, v?.c32.rps ?? 0);
    if (directResult.c32.rps < 1.5 * fastest) {
      warn(
        `direct (${fmt(directResult.c32.rps, 0)} req/s) is not well above poe-proxy (${
          fmt(fastest, 0)
        } req/s): the load generator or the fake may be the bottleneck`,
      );
    }
    const growth = rssAfter[1] !== null && rssAfter[2] !== null
      ? 100 * (rssAfter[2]! - rssAfter[1]!) / rssAfter[1]!
      : null;
    const check = (
      into: Check[],
      id: string,
      figure: string,
      value: number | null,
      target: string,
      ok: (v: number) => boolean,
    ) =>
      into.push({
        id,
        figure,
        value: value === null || Number.isNaN(value) ? null : value,
        target,
        met: value === null || Number.isNaN(value) ? null : ok(value),
      });
    const relayChecks = (r: TargetResult, paired: Paired | null): Check[] => {
      const out: Check[] = [];
      check(
        out,
        "added_p50_c1_ms",
        "added latency c=1 p50 (ms)",
        paired?.addedP50 ?? r.c1.p50 - directResult.c1.p50,
        "< 0.5",
        (x) => x < 0.5,
      );
      check(
        out,
        "added_p99_c1_ms",
        "added latency c=1 p99 (ms)",
        paired?.addedP99 ?? r.c1.p99 - directResult.c1.p99,
        "< 2",
        (x) => x < 2,
      );
      check(out, "rps_c32", "req/s c=32", r.c32.rps, ">= 3000", (x) => x >= 3000);
      if (nginxResult) {
        check(
          out,
          "rps_c32_vs_nginx_pct",
          "req/s c=32, % of nginx",
          paired?.nginxPct ?? 100 * r.c32.rps / nginxResult.c32.rps,
          ">= 60 %",
          (x) => x >= 60,
        );
      }
      check(
        out,
        "added_ttfb_p50_ms",
        "added TTFB streamed p50 (ms)",
        paired?.addedTtfbP50 ?? r.stream.ttfb_p50 - directResult.stream.ttfb_p50,
        "< 1",
        (x) => x < 1,
      );
      return out;
    };
    const paired = pairedFigures(runs, pairs);
    const checks = relayChecks(p, paired);
    const variantChecks = v ? relayChecks(v, null) : [];
    check(
      checks,
      "usage_calls_per_request",
      "Usage API calls per chat request (c=32)",
      usageSustained,
      "< 0.1",
      (x) => x < 0.1,
    );
    check(checks, "rss_idle_mib", "RSS idle (MiB)", rssIdle, "< 80", (x) => x < 80);
    check(
      checks,
      "rss_1000_streams_mib",
      `RSS with ${HOLD_COUNT} open streams (MiB)`,
      rssHold,
      "< 250",
      (x) => x < 250,
    );
    check(
      checks,
      "rss_growth_run2_run3_pct",
      "RSS growth run 2 -> 3 (%)",
      growth,
      "<= 10 %",
      (x) => x <= 10,
    );
    check(checks, "startup_ms", "start-up to listening (ms)", startupMs, "< 300", (x) => x < 300);

    const cell = (r: TargetResult | null, f: (r: TargetResult) => number, digits: number) =>
      r ? fmt(f(r), digits) : "-";
    const cols = (f: (r: TargetResult) => number, digits = 2) => [
      cell(directResult, f, digits),
      cell(p, f, digits),
      cell(v, f, digits),
      cell(nginxResult, f, digits),
    ];
    const addedCols = (f: (r: TargetResult) => number, pairedValue?: number | null) => {
      const minus = (r: TargetResult) => f(r) - f(directResult);
      const proxy = pairedValue === undefined ? cell(p, minus, 3) : fmt(pairedValue, 3);
      return ["", proxy, cell(v, minus, 3), cell(nginxResult, minus, 3)];
    };
    const proxyOnly = (value: string) => ["", value, "", ""];
    const tick = (c: Check | undefined) => c ? c.met === null ? "?" : c.met ? "✓" : "✗" : "";
    const mark = (id: string) => {
      const c = checks.find((c) => c.id === id);
      return c ? [c.target, tick(c), tick(variantChecks.find((x) => x.id === id))] : ["", "", ""];
    };
    const none = ["", "", ""];
    const rows: string[][] = [
      ["figure", "direct", "poe-proxy", VARIANT_NAME, "nginx", "target", "met", "met"],
      ["non-streamed c=1 req/s", ...cols((r) => r.c1.rps, 0), ...none],
      ["non-streamed c=1 p50 ms", ...cols((r) => r.c1.p50, 3), ...none],
      ["non-streamed c=1 p99 ms", ...cols((r) => r.c1.p99, 3), ...none],
      [
        "  added c=1 p50 ms",
        ...addedCols((r) => r.c1.p50, paired.addedP50),
        ...mark("added_p50_c1_ms"),
      ],
      [
        "  added c=1 p99 ms",
        ...addedCols((r) => r.c1.p99, paired.addedP99),
        ...mark("added_p99_c1_ms"),
      ],
      [
        "  bare Deno proxy added c=1 p50 ms",
        "",
        "",
        "",
        fmt(bareC1.p50 - directResult.c1.p50, 3),
        "reference",
        "",
        "",
      ],
      ["non-streamed c=32 req/s", ...cols((r) => r.c32.rps, 0), ...mark("rps_c32")],
      [
        "  % of nginx",
        "",
        fmt(paired.nginxPct, 0),
        nginxResult && v ? fmt(100 * v.c32.rps / nginxResult.c32.rps, 0) : "-",
        "",
        ...mark("rps_c32_vs_nginx_pct"),
      ],
      [
        "  nginx + upstream keepalive req/s",
        "",
        "",
        "",
        fmt(tunedRps, 0),
        "reference",
        "",
        "",
      ],
      [
        "  % of that",
        "",
        tunedRps ? fmt(100 * p.c32.rps / tunedRps, 0) : "-",
        tunedRps && v ? fmt(100 * v.c32.rps / tunedRps, 0) : "-",
        "",
        ...none,
      ],
      ["  bare Deno proxy req/s", "", "", "", fmt(bareC32.rps, 0), "reference", "", ""],
      [
        "  % of that",
        "",
        fmt(100 * p.c32.rps / bareC32.rps, 0),
        v ? fmt(100 * v.c32.rps / bareC32.rps, 0) : "-",
        "",
        ...none,
      ],
      ["non-streamed c=32 p50 ms", ...cols((r) => r.c32.p50, 3), ...none],
      ["non-streamed c=32 p99 ms", ...cols((r) => r.c32.p99, 3), ...none],
      ["streamed c=1 TTFB p50 ms", ...cols((r) => r.stream.ttfb_p50, 3), ...none],
      ["streamed c=1 TTFB p99 ms", ...cols((r) => r.stream.ttfb_p99, 3), ...none],
      [
        "  added TTFB p50 ms",
        ...addedCols((r) => r.stream.ttfb_p50, paired.addedTtfbP50),
        ...mark("added_ttfb_p50_ms"),
      ],
      ["streamed c=1 last byte p50 ms", ...cols((r) => r.stream.p50, 3), ...none],
      ["streamed c=1 last byte p99 ms", ...cols((r) => r.stream.p99, 3), ...none],
      ["  added last byte p50 ms", ...addedCols((r) => r.stream.p50), ...none],
      ["streamed c=1 req/s", ...cols((r) => r.stream.rps, 0), ...none],
      ["server CPU per request c=32 (µs)", ...cols((r) => r.cpuUsC32 ?? NaN, 0), ...none],
      [
        "  bare Deno proxy CPU per request c=32 (µs)",
        "",
        "",
        "",
        fmt(bareCpuUsC32, 0),
        "reference",
        "",
        "",
      ],
      ["proxy RSS idle MiB", ...proxyOnly(fmt(rssIdle, 1)), ...mark("rss_idle_mib")],
      ["proxy RSS after run 1 MiB", ...proxyOnly(fmt(rssAfter[0], 1)), ...none],
      [
        `proxy RSS, ${HOLD_COUNT} open streams MiB`,
        ...proxyOnly(fmt(rssHold, 1)),
        ...mark("rss_1000_streams_mib"),
      ],
      ["proxy RSS after closing them MiB", ...proxyOnly(fmt(rssClosed, 1)), ...none],
      [
        "proxy RSS after run 2 / run 3 MiB",
        ...proxyOnly(`${fmt(rssAfter[1], 1)} / ${fmt(rssAfter[2], 1)}`),
        ...none,
      ],
      ["  growth run 2 -> 3 %", ...proxyOnly(fmt(growth, 1)), ...mark("rss_growth_run2_run3_pct")],
      [
        "poe-proxy c=32 req/s runs 1 / 2 / 3",
        ...proxyOnly(runs.map((r) => fmt(r.c32.rps, 0)).join(" / ")),
        ...none,
      ],
      [
        "  added c=1 p50 ms runs 1 / 2 / 3",
        ...proxyOnly(paired.runs.map((x) => fmt(x.addedP50, 3)).join(" / ")),
        ...none,
      ],
      [
        "  added c=1 p99 ms runs 1 / 2 / 3",
        ...proxyOnly(paired.runs.map((x) => fmt(x.addedP99, 3)).join(" / ")),
        ...none,
      ],
      [
        "  % of nginx runs 1 / 2 / 3",
        ...proxyOnly(paired.runs.map((x) => fmt(x.nginxPct, 0)).join(" / ")),
        ...none,
      ],
      [
        "  nginx c=32 req/s beside runs 1 / 2 / 3",
        ...proxyOnly(pairs.map((x) => fmt(x.nginxC32, 0)).join(" / ")),
        ...none,
      ],
      [
        "  added TTFB p50 ms runs 1 / 2 / 3",
        ...proxyOnly(paired.runs.map((x) => fmt(x.addedTtfbP50, 3)).join(" / ")),
        ...none,
      ],
      [
        "Usage API calls per chat request, c=32",
        ...proxyOnly(fmt(usageSustained, 4)),
        ...mark("usage_calls_per_request"),
      ],
      [
        "  over the whole run (c=1 included)",
        ...proxyOnly(fmt(usagePerRequest, 4)),
        ...none,
      ],
      ["start-up to listening ms", ...proxyOnly(fmt(startupMs, 0)), ...mark("startup_ms")],
    ];
    printLine("");
    for (const line of table(rows)) printLine(line);
    printLine("");
    printLine(
      `(poe-proxy: the median of its ${runs.length} runs, figure by figure; its added c=1 ` +
        `latency and % of nginx are the medians of each run against direct and nginx measured ` +
        `just before it; median of ` +
        `${startups.length} start-ups: ${startups.map((s) => fmt(s, 0)).join(", ")} ms; ` +
        `TTFB is the first body byte; ${chatRequests} chat requests through poe-proxy; ` +
        `machine ${busy === null ? "?" : busy.toFixed(0)} % busy before the start)`,
    );
    const met = checks.filter((c) => c.met === true).length;
    printLine(
      `targets met with defaults: ${met} of ${checks.length}${
        v
          ? `; with ${VARIANT_NAME}: ${
            variantChecks.filter((c) => c.met).length
          } of ${variantChecks.length} relay targets`
          : ""
      }${warnings.length ? `; ${warnings.length} warning(s)` : ""}`,
    );
    for (const line of profileLines) printLine(line);
    const figures = (r: TargetResult | null) =>
      r && { c1: r.c1, c32: r.c32, stream: r.stream, cpu_us_c32: r.cpuUsC32, sent: r.sent };
    printLine(JSON.stringify({
      bench: "poe-proxy",
      date: new Date().toISOString(),
      deno: Deno.version.deno,
      generator: useWrk ? "wrk" : "load.ts",
      machine_busy_before_pct: busy,
      durations_s: d,
      settings: { ...PROXY_SETTINGS, POE_API_KEY: undefined },
      direct: figures(directResult),
      nginx: figures(nginxResult),
      nginx_keepalive_c32_rps: tunedRps,
      bare_deno_proxy: { c1: bareC1, c32: bareC32, cpu_us_c32: bareCpuUsC32 },
      proxy: figures(p),
      proxy_runs: runs.map(figures),
      paired: { ...paired, references: pairs },
      variant: v && { settings: VARIANT, ...figures(v), targets: variantChecks },
      memory_mib: {
        idle: rssIdle,
        after_runs: rssAfter,
        streams_open: rssHold,
        streams_closed: rssClosed,
        streams_opened: held.open,
      },
      usage_calls_per_request: { c32: usageSustained, whole_run: usagePerRequest },
      startup_ms: startups,
      targets: checks,
      all_met: checks.every((c) => c.met === true),
      warnings,
    }));
    return 0;
  } catch (err) {
    printError(`bench failed: ${(err as Error).stack ?? err}`);
    return 1;
  } finally {
    clearTimeout(hardStop);
    Deno.removeSignalListener("SIGINT", onSignal);
    await children.stopAll();
    if (values.keep) printLine(`bench: kept ${tmp}`);
    else await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
