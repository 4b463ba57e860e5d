/** @module Model listings: the `/v1/models` entries, and the `models` command's text tables of this proxy's registry and of Poe's live catalogue. */
import type { ModelEntry, ModelRegistry } from "./models.ts";

/** The `/v1/models` entry of a registry model. */
export function modelObject(
  entry: ModelEntry,
  created: number,
  cap: number | null,
): Record<string, unknown> {
  return {
    id: entry.id,
    object: "model",
    created,
    owned_by: "poe",
    modality: entry.modality,
    aliases: entry.aliases,
    // This proxy's cap: longer conversations are clipped to it.
    context_window: cap === null ? null : { context_length: cap },
    pricing: entry.base === null && entry.per1kTokens === null && entry.per1kOutputTokens === null
      ? null
      : {
        unit: "points",
        base: entry.base ?? 0,
        per_1k_tokens: entry.per1kTokens ?? 0,
        // What the estimate charges an answer token: a media model's answer (a link) is free
        // unless per_1k_output_tokens says otherwise (ModelRegistry.estimatePoints).
        per_1k_output_tokens: entry.per1kOutputTokens ??
          (entry.modality === "text" ? entry.per1kTokens ?? 0 : 0),
        estimated: true,
      },
  };
}

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
  // Entries that are no object (a `null`) are skipped, not read.
  const models: RemoteModel[] = Array.isArray(data)
    ? data.filter((m) => m !== null && typeof m === "object")
    : [];
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
