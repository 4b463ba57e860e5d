/**
 * @module Reads a V8 `.cpuprofile` (from `deno run --cpu-prof`) into the functions and files with
 * the most self time. Standalone: `deno run --allow-read tests/bench/cpuprofile.ts FILE [N]`.
 */
import { printLine } from "../../lib/log.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

/** One row of {@linkcode summarizeProfile}. */
export interface SelfTime {
  name: string;
  ms: number;
  percent: number;
}

function shortUrl(url: string): string {
  if (!url) return "(native)";
  return url
    .replace(/^file:\/\/.*?\/(lib|tests)\//, "$1/")
    .replace(/^file:\/\/.*\/main\.ts$/, "main.ts")
    .replace(/^.*\/registry\.npmjs\.org\//, "npm:")
    .replace(/^.*\/node_modules\/(\.deno\/)?/, "npm:");
}

/** Self time by function (name, file and line) and by file, heaviest first. */
export function summarizeProfile(
  profile: Profile,
  top = 25,
): {
  functions: SelfTime[];
  files: SelfTime[];
  inclusive: SelfTime[];
  totalMs: number;
  idlePercent: number;
} {
  const totalHits = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0) || 1;
  const totalMs = (profile.endTime - profile.startTime) / 1000;
  const msPerHit = totalMs / totalHits;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let idle = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (!hits) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") idle += hits;
    const file = shortUrl(url);
    const key = `${functionName || "(anonymous)"} ${file}${url ? `:${lineNumber + 1}` : ""}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
    byFile.set(file, (byFile.get(file) ?? 0) + hits);
  }
  const rows = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, hits]) => ({
      name,
      ms: hits * msPerHit,
      percent: 100 * hits / totalHits,
    }));
  // Inclusive time of the project's own functions (not counted twice under recursion).
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const keyOf = (n: ProfileNode) =>
    `${n.callFrame.functionName || "(anonymous)"} ${shortUrl(n.callFrame.url)}:${
      n.callFrame.lineNumber + 1
    }`;
  const own = (n: ProfileNode) => /^(lib\/|main\.ts)/.test(shortUrl(n.callFrame.url));
  const inclusive = new Map<string, number>();
  const walk = (id: number, open: Set<string>): number => {
    const node = byId.get(id)!;
    const key = own(node) ? keyOf(node) : null;
    const fresh = key !== null && !open.has(key);
    if (fresh) open.add(key);
    let hits = node.hitCount ?? 0;
    for (const child of node.children ?? []) hits += walk(child, open);
    if (fresh) {
      open.delete(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + hits);
    }
    return hits;
  };
  const childIds = new Set(profile.nodes.flatMap((n) => n.children ?? []));
  for (const n of profile.nodes) if (!childIds.has(n.id)) walk(n.id, new Set());
  return {
    functions: rows(byFunction),
    files: rows(byFile),
    inclusive: rows(inclusive),
    totalMs,
    idlePercent: 100 * idle / totalHits,
  };
}

/** The summary as printable lines. */
export function formatProfile(summary: ReturnType<typeof summarizeProfile>): string[] {
  const lines = [
    `CPU profile: ${(summary.totalMs / 1000).toFixed(1)} s, ${
      summary.idlePercent.toFixed(1)
    } % idle; self time by function:`,
  ];
  for (const r of summary.functions) {
    lines.push(
      `  ${r.percent.toFixed(1).padStart(5)} %  ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}`,
    );
  }
  lines.push("inclusive time of poe-proxy's own functions:");
  for (const r of summary.inclusive) {
    lines.push(
      `  ${r.percent.toFixed(1).padStart(5)} %  ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}`,
    );
  }
  lines.push("self time by file:");
  for (const r of summary.files.slice(0, 12)) {
    lines.push(
      `  ${r.percent.toFixed(1).padStart(5)} %  ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}`,
    );
  }
  return lines;
}

if (import.meta.main) {
  const profile = JSON.parse(await Deno.readTextFile(Deno.args[0])) as Profile;
  for (const line of formatProfile(summarizeProfile(profile, Number(Deno.args[1] ?? 30)))) {
    printLine(line);
  }
}
