/** @module Prometheus text parsed with the npm `parse-prometheus-text-format`, for metrics tests. */
import parsePrometheusTextFormat from "parse-prometheus-text-format";

/** One family as the npm parser returns it. */
export interface ParsedFamily {
  name: string;
  help: string;
  type: string;
  metrics: {
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
}

/** Parses Prometheus text with `parse-prometheus-text-format` into families by name. */
export function parseMetrics(text: string): Map<string, ParsedFamily> {
  const families = parsePrometheusTextFormat(text) as ParsedFamily[];
  return new Map(families.map((f) => [f.name, f]));
}

/** The value of the sample whose labels include `labels`, as a number, or undefined. */
export function sample(
  families: Map<string, ParsedFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = families.get(name);
  const m = family?.metrics.find((s) =>
    Object.entries(labels).every(([k, v]) => s.labels?.[k] === v)
  );
  if (!m) return undefined;
  return Number(m.value ?? m.count);
}
