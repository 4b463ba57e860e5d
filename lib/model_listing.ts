/** @module Text tables of this proxy's registry and of Poe's live catalogue, for the `models` command. */
import type { ModelRegistry } from "./models.ts";

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** The registry as a table (id, modality, context cap, point estimate), or JSON. */
export function formatRegistryTable(registry: ModelRegistry, asJson: boolean): string {
  const rows = registry.list().map((e) => {
    const cap = registry.contextCap(e);
    const estimate = e.base === null && e.per1kTokens === null && e.per1kOutputTokens === null
      ? "-"
      : `${e.base ?? 0} + ${e.per1kTokens ?? 0}/1k tokens` +
        (e.per1kOutputTokens === null ? "" : ` (${e.per1kOutputTokens}/1k answer tokens)`);
    return { id: e.id, modality: e.modality, context_cap: cap, estimate, aliases: e.aliases };
  });
  if (asJson) return JSON.stringify(rows, null, 2);
  return table(
    ["id", "modality", "context cap", "points (est.)", "aliases"],
    rows.map((
      r,
    ) => [r.id, r.modality, r.context_cap?.toString() ?? "-", r.estimate, r.aliases.join(", ")]),
  );
}

interface RemoteModel {
  id?: unknown;
  architecture?: { modality?: unknown } | null;
  context_window?: { context_length?: unknown } | null;
  context_length?: unknown;
  pricing?: { prompt?: unknown; completion?: unknown } | null;
}

function perMillion(value: unknown): string {
  const n = typeof value === "string" || typeof value === "number" ? Number(value) : NaN;
  return Number.isFinite(n) ? `$${(n * 1e6).toFixed(2)}` : "-";
}

/** Poe's `GET /v1/models` answer as a table (id, modality, context, USD per million tokens), or JSON. */
export function formatRemoteModels(answer: unknown, asJson: boolean): string {
  const data = (answer as { data?: unknown })?.data;
  const models: RemoteModel[] = Array.isArray(data) ? data : [];
  const rows = models.map((m) => ({
    id: String(m.id ?? ""),
    modality: typeof m.architecture?.modality === "string" ? m.architecture.modality : "-",
    context_length: Number(m.context_window?.context_length ?? m.context_length) || null,
    usd_per_million_input: perMillion(m.pricing?.prompt),
    usd_per_million_output: perMillion(m.pricing?.completion),
  }));
  if (asJson) return JSON.stringify(rows, null, 2);
  return table(
    ["id", "modality", "context", "input $/M", "output $/M"],
    rows.map((r) => [
      r.id,
      r.modality,
      r.context_length?.toString() ?? "-",
      r.usd_per_million_input,
      r.usd_per_million_output,
    ]),
  );
}
