/**
 * @module The benchmark's own load generator, run as a separate process: timed keep-alive loops
 * over raw TCP, and a mode that holds many streams open at once.
 *
 * Usage: `deno run --allow-net tests/bench/load.ts '<JSON job>'`, where the job is a
 * {@linkcode LoopJob} or a {@linkcode HoldJob}. Prints one JSON line with the result (a hold job
 * prints one when its streams are open, then waits for a line on standard input, closes them and
 * prints another).
 */
import { HttpConnection, postRequest } from "./http_client.ts";
import { printLine } from "../../lib/log.ts";

/** Requests in `concurrency` keep-alive loops for `durationMs`, after `warmupMs` not counted. */
export interface LoopJob {
  mode: "loop";
  port: number;
  path: string;
  body: string;
  headers?: Record<string, string>;
  concurrency: number;
  durationMs: number;
  warmupMs?: number;
  /** Stop early after this many measured requests. */
  maxRequests?: number;
  /** A request taking longer counts as an error. Default: 15,000 ms. */
  timeoutMs?: number;
}

/** What a {@linkcode LoopJob} prints. Times in milliseconds. */
export interface LoopResult {
  requests: number;
  errors: number;
  non2xx: number;
  /** Answers a poe-proxy guard gave instead of Poe (`x-poe-proxy-guard`): not a valid run. */
  guarded: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  ttfb_p50: number;
  ttfb_p99: number;
  /** Smallest body seen, to notice truncated answers. */
  min_body_bytes: number;
}

/** Opens `count` streaming requests, `batch` at a time, each read up to its first body byte. */
export interface HoldJob {
  mode: "hold";
  port: number;
  path: string;
  body: string;
  headers?: Record<string, string>;
  count: number;
  batch: number;
}

/** The value at quantile `q` of ascending `sorted` (nearest rank). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

async function runLoops(job: LoopJob): Promise<LoopResult> {
  const request = postRequest(`127.0.0.1:${job.port}`, job.path, job.body, job.headers);
  const latencies: number[] = [];
  const ttfbs: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let guarded = 0;
  let minBody = Infinity;
  const start = performance.now();
  const measureFrom = start + (job.warmupMs ?? 0);
  const stopAt = measureFrom + job.durationMs;
  let measuredEnd = measureFrom;
  const loop = async () => {
    let conn: HttpConnection | null = null;
    while (performance.now() < stopAt) {
      if (job.maxRequests !== undefined && latencies.length >= job.maxRequests) break;
      try {
        if (!conn || conn.closed) conn = await HttpConnection.open(job.port);
        const t = await conn.send(request, false, job.timeoutMs ?? 15_000);
        const now = performance.now();
        if (now < measureFrom || now > stopAt) continue;
        measuredEnd = Math.max(measuredEnd, now);
        latencies.push(t.lastByteMs);
        ttfbs.push(t.firstByteMs);
        if (t.status < 200 || t.status > 299) non2xx++;
        if (t.head.includes("\r\nx-poe-proxy-guard:")) guarded++;
        minBody = Math.min(minBody, t.bodyBytes);
      } catch {
        errors++;
        conn?.close();
        conn = null;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    conn?.close();
  };
  await Promise.all(Array.from({ length: job.concurrency }, loop));
  const seconds = Math.max(1e-9, (measuredEnd - measureFrom) / 1000);
  const sortedLat = Float64Array.from(latencies).sort();
  const sortedTtfb = Float64Array.from(ttfbs).sort();
  return {
    requests: latencies.length,
    errors,
    non2xx,
    guarded,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(sortedLat, 0.5),
    p99: percentile(sortedLat, 0.99),
    ttfb_p50: percentile(sortedTtfb, 0.5),
    ttfb_p99: percentile(sortedTtfb, 0.99),
    min_body_bytes: Number.isFinite(minBody) ? minBody : 0,
  };
}

async function readLine(): Promise<void> {
  const reader = Deno.stdin.readable.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || value.includes(10)) return;
    }
  } finally {
    reader.releaseLock();
  }
}

async function hold(job: HoldJob): Promise<void> {
  const request = postRequest(`127.0.0.1:${job.port}`, job.path, job.body, job.headers);
  const conns: HttpConnection[] = [];
  let open = 0;
  let failed = 0;
  let non2xx = 0;
  const started = performance.now();
  for (let i = 0; i < job.count; i += job.batch) {
    const n = Math.min(job.batch, job.count - i);
    await Promise.all(Array.from({ length: n }, async () => {
      try {
        const conn = await HttpConnection.open(job.port);
        conns.push(conn);
        const t = await conn.send(request, true, 30_000);
        if (t.status === 200) open++;
        else non2xx++;
      } catch {
        failed++;
      }
    }));
  }
  printLine(JSON.stringify({
    open,
    failed,
    non2xx,
    ms: performance.now() - started,
  }));
  await readLine();
  for (const conn of conns) conn.close();
  printLine(JSON.stringify({ closed: conns.length }));
}

if (import.meta.main) {
  const job = JSON.parse(Deno.args[0]) as LoopJob | HoldJob;
  if (job.mode === "loop") printLine(JSON.stringify(await runLoops(job)));
  else await hold(job);
}
