/**
 * @module Instructions per request, counted by valgrind's callgrind: a figure that moves far less
 * than seconds with the machine's speed (most repeat runs agree within about 3 %, but one in
 * several is off by a tenth or more: 894,000 once against 776,000 for the same code), so a change
 * to the request path of several percent shows in a few runs instead of many noisy ones.
 *
 * `deno task bench:instructions [--requests N] [--concurrency C] [--env NAME=VALUE ...]` starts
 * the fake Poe, then poe-proxy (as `deno task start` runs it) and the bare Deno proxy side by side,
 * each under callgrind; sends each a warm-up of 1,500 non-streamed requests, then counts the
 * instructions of N more (default 1,000, concurrency 32). Counts cover every thread of the process
 * (GC helpers too). Under valgrind a process runs about 150 times slower: this takes about three
 * minutes. Needs `valgrind` (Debian: `apt-get install valgrind`); writes only to a temporary folder.
 */
import { parseArgs } from "node:util";
import { printError, printLine } from "../../lib/log.ts";
import {
  available,
  BARE_PROXY_LISTENING,
  bareProxyArgs,
  baseEnv,
  Children,
  startFake,
} from "./procs.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const DENO = Deno.execPath();
const POE_KEY = "test-poe-key";
const START_FLAGS: string[] = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start
  .split(/\s+/).filter((w: string) => w.startsWith("--"));
const BODY = JSON.stringify({
  model: "GPT-4o",
  messages: [{ role: "user", content: "Hello! How are you today?" }],
});
const WARMUP = 1_500;

/** Sends `count` chat requests, `concurrency` at a time; returns how many were not 200. */
async function send(port: number, count: number, concurrency: number): Promise<number> {
  let started = 0;
  let failed = 0;
  const worker = async () => {
    while (started < count) {
      started++;
      const response = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: "POST",
        body: BODY,
        headers: { "content-type": "application/json", authorization: `Bearer ${POE_KEY}` },
      });
      await response.arrayBuffer();
      if (response.status !== 200) failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failed;
}

async function callgrindControl(pid: number, command: "--zero" | "--dump"): Promise<void> {
  const out = await new Deno.Command("callgrind_control", {
    args: [command, String(pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`callgrind_control ${command} failed`);
}

/** The instruction total of the callgrind dump files starting with `prefix`. */
async function dumpedInstructions(dir: string, prefix: string): Promise<number> {
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.startsWith(`${prefix}.`) || entry.name.endsWith(".log")) continue;
    const text = await Deno.readTextFile(`${dir}/${entry.name}`);
    const match = /^(?:summary|totals): (\d+)/m.exec(text);
    if (match) return Number(match[1]);
  }
  throw new Error(`no callgrind dump named ${prefix}.* in ${dir}`);
}

interface Subject {
  name: string;
  args: string[];
  env: Record<string, string>;
  listening: RegExp;
}

async function count(
  children: Children,
  tmp: string,
  subject: Subject,
  requests: number,
  concurrency: number,
): Promise<{ name: string; instructions_per_request: number; failed: number }> {
  const out = `${tmp}/${subject.name}`;
  const child = children.spawn(subject.name, "valgrind", {
    args: [
      "--tool=callgrind",
      // V8 writes and rewrites machine code: valgrind must notice it everywhere.
      "--smc-check=all-non-file",
      `--callgrind-out-file=${out}`,
      `--log-file=${out}.log`,
      DENO,
      ...subject.args,
    ],
    cwd: ROOT,
    env: subject.env,
  });
  const port = Number((await child.waitLine(subject.listening, 300_000))[1]);
  let failed = await send(port, WARMUP, concurrency);
  await callgrindControl(child.pid, "--zero");
  failed += await send(port, requests, concurrency);
  await callgrindControl(child.pid, "--dump");
  const total = await dumpedInstructions(tmp, subject.name);
  await child.stop(5000);
  return { name: subject.name, instructions_per_request: Math.round(total / requests), failed };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      requests: { type: "string", default: "1000" },
      concurrency: { type: "string", default: "32" },
      env: { type: "string", multiple: true, default: [] },
    },
  });
  if (!await available("valgrind", ["--version"])) {
    printError("bench:instructions needs valgrind (Debian: apt-get install valgrind).");
    return 1;
  }
  const requests = Number(values.requests);
  const concurrency = Number(values.concurrency);
  const extra = Object.fromEntries(values.env.map((e) => e.split(/=(.*)/s).slice(0, 2)));
  const tmp = await Deno.makeTempDir({ prefix: "poe-proxy-instructions-" });
  const children = new Children();
  try {
    // No .env of the working tree: the proxy runs on the settings given here only.
    await Deno.writeTextFile(`${tmp}/none.env`, "");
    const fakeUrl = (await startFake(children)).url;
    printLine(
      `instructions: ${WARMUP} warm-up requests, then ${requests} counted, ` +
        `concurrency ${concurrency}, each server under callgrind (about three minutes)...`,
    );
    const results = await Promise.all([
      count(
        children,
        tmp,
        {
          name: "poe-proxy",
          args: ["run", ...START_FLAGS, "main.ts", "--env-file", `${tmp}/none.env`],
          env: {
            ...baseEnv(),
            PORT: "0",
            POE_API_KEY: POE_KEY,
            POE_BASE_URL: fakeUrl,
            RATE_LIMIT_PER_MINUTE: "0",
            POE_RATE_LIMIT_PER_MINUTE: "0",
            LOG_LEVEL: "warn",
            ...extra,
          },
          listening: /listening on http:\/\/[^:\s]+:(\d+)/,
        },
        requests,
        concurrency,
      ),
      count(
        children,
        tmp,
        {
          name: "bare-proxy",
          args: bareProxyArgs(fakeUrl),
          env: baseEnv(),
          listening: BARE_PROXY_LISTENING,
        },
        requests,
        concurrency,
      ),
    ]);
    const [proxy, bare] = results;
    for (const r of results) {
      printLine(
        `${r.name.padEnd(12)} ${
          (r.instructions_per_request / 1000).toFixed(0).padStart(6)
        } k instructions per request${r.failed ? ` (${r.failed} not 200)` : ""}`,
      );
    }
    printLine(
      `poe-proxy / bare Deno proxy: ${
        (proxy.instructions_per_request / bare.instructions_per_request).toFixed(2)
      }`,
    );
    printLine(
      JSON.stringify({
        bench: "poe-proxy-instructions",
        requests,
        concurrency,
        settings: extra,
        results,
      }),
    );
    return results.some((r) => r.failed > 0) ? 1 : 0;
  } finally {
    await children.stopAll();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
