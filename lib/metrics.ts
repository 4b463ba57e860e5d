/** @module A small Prometheus registry (counters, gauges, histograms) and the text exposition format. */

/** Label values of one series, in the metric's label order. */
type LabelValues = readonly string[];

/** The label value series beyond a metric's `maxSeries` are folded into. */
export const OVERFLOW_LABEL = "other";

/** Options shared by every metric. */
export interface MetricOptions {
  /** The metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
  name: string;
  /** One line of help. */
  help: string;
  /** Label names. Default: none. */
  labels?: readonly string[];
  /**
   * Most distinct label sets kept; later new sets are folded into one more series whose every
   * value is {@linkcode OVERFLOW_LABEL}. Callers bound their label values anyway; this is the backstop.
   * Default: `500`.
   */
  maxSeries?: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value for the text format: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Formats a sample value: integers plainly, `+Inf`/`-Inf`/`NaN` as Prometheus spells them. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labelText(names: readonly string[], values: LabelValues, extra = ""): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i])}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(",")}}` : "";
}

abstract class Metric<T> {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  abstract readonly type: "counter" | "gauge" | "histogram";
  protected readonly series = new Map<string, { values: LabelValues; data: T }>();
  /** Series data by label value, one level per label (see `get`). */
  #lookup = new Map<string, unknown>();
  #only: T | undefined;
  #maxSeries: number;

  constructor(options: MetricOptions) {
    if (!NAME.test(options.name)) throw new Error(`Bad metric name: ${options.name}`);
    for (const l of options.labels ?? []) {
      if (!LABEL.test(l) || l.startsWith("__")) {
        throw new Error(`Bad label name on ${options.name}: ${l}`);
      }
    }
    this.name = options.name;
    this.help = options.help;
    this.labels = options.labels ?? [];
    this.#maxSeries = options.maxSeries ?? 500;
  }

  protected abstract fresh(): T;

  /** The series key of a label set: each value prefixed by its length, so no two sets collide. */
  protected key(labels: Record<string, string>): string {
    let key = "";
    for (const l of this.labels) {
      const value = String(labels[l] ?? "");
      key += `${value.length}:${value}`;
    }
    return key;
  }

  protected get(labels: Record<string, string>): T {
    // Every request updates several series: each is found by its label values, one Map level
    // per label, without building its key string.
    const names = this.labels;
    if (names.length === 0) return this.#only ?? this.#add(labels);
    let level = this.#lookup;
    const last = names.length - 1;
    for (let i = 0; i < last; i++) {
      const next = level.get(String(labels[names[i]] ?? "")) as Map<string, unknown> | undefined;
      if (next === undefined) return this.#add(labels);
      level = next;
    }
    return (level.get(String(labels[names[last]] ?? "")) as T | undefined) ?? this.#add(labels);
  }

  #add(labels: Record<string, string>): T {
    let key = this.key(labels);
    const found = this.series.get(key);
    if (found) return found.data;
    let values: string[] = this.labels.map((l) => String(labels[l] ?? ""));
    // Sets folded into the overflow series stay out of the lookup, which must not grow either.
    const folded = this.series.size >= this.#maxSeries;
    if (folded) {
      values = this.labels.map(() => OVERFLOW_LABEL);
      key = values.map((v) => `${v.length}:${v}`).join("");
      const overflow = this.series.get(key);
      if (overflow) return overflow.data;
    }
    const data = this.fresh();
    this.series.set(key, { values, data });
    if (folded) return data;
    if (values.length === 0) this.#only = data;
    let level = this.#lookup;
    for (let i = 0; i < values.length - 1; i++) {
      let next = level.get(values[i]) as Map<string, unknown> | undefined;
      if (next === undefined) level.set(values[i], next = new Map());
      level = next;
    }
    if (values.length > 0) level.set(values[values.length - 1], data);
    return data;
  }

  /** Number of label sets seen. */
  get size(): number {
    return this.series.size;
  }

  /** Forgets every series. */
  reset(): void {
    this.series.clear();
    this.#lookup = new Map();
    this.#only = undefined;
  }

  /** The `# HELP`, `# TYPE` and sample lines. */
  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    for (const { values, data } of this.series.values()) out += this.renderSeries(values, data);
    return out;
  }

  protected abstract renderSeries(values: LabelValues, data: T): string;
}

/** A value that only goes up. */
export class Counter extends Metric<{ value: number }> {
  readonly type = "counter";
  protected fresh() {
    return { value: 0 };
  }
  /** Adds `by` (default 1; negative or non-finite amounts are ignored). */
  inc(labels: Record<string, string> = {}, by = 1): void {
    if (!(by >= 0) || !Number.isFinite(by)) return;
    this.get(labels).value += by;
  }
  /** The current value of one series (0 when never touched). */
  value(labels: Record<string, string> = {}): number {
    const key = this.key(labels);
    return this.series.get(key)?.data.value ?? 0;
  }
  protected renderSeries(values: LabelValues, data: { value: number }): string {
    return `${this.name}${labelText(this.labels, values)} ${formatValue(data.value)}\n`;
  }
}

/** A value that goes up and down. */
export class Gauge extends Metric<{ value: number }> {
  readonly type = "gauge";
  protected fresh() {
    return { value: 0 };
  }
  /** Sets the value. */
  set(labels: Record<string, string>, value: number): void {
    this.get(labels).value = value;
  }
  /** Adds `by` (default 1). */
  inc(labels: Record<string, string> = {}, by = 1): void {
    this.get(labels).value += by;
  }
  /** Subtracts `by` (default 1). */
  dec(labels: Record<string, string> = {}, by = 1): void {
    this.get(labels).value -= by;
  }
  /** The current value of one series (0 when never set). */
  value(labels: Record<string, string> = {}): number {
    const key = this.key(labels);
    return this.series.get(key)?.data.value ?? 0;
  }
  protected renderSeries(values: LabelValues, data: { value: number }): string {
    return `${this.name}${labelText(this.labels, values)} ${formatValue(data.value)}\n`;
  }
}

/** Options of {@linkcode Histogram}. */
export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, increasing; `+Inf` is added. */
  buckets: readonly number[];
}

interface HistogramData {
  counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into cumulative buckets. */
export class Histogram extends Metric<HistogramData> {
  readonly type = "histogram";
  readonly buckets: readonly number[];

  constructor(options: HistogramOptions) {
    super(options);
    if (this.labels.includes("le")) throw new Error(`${options.name}: "le" is reserved`);
    for (let i = 1; i < options.buckets.length; i++) {
      if (!(options.buckets[i] > options.buckets[i - 1])) {
        throw new Error(`${options.name}: buckets must increase`);
      }
    }
    this.buckets = options.buckets.filter((b) => b !== Infinity);
  }

  protected fresh(): HistogramData {
    return { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }

  /** Records one observation (non-finite values are ignored). */
  observe(labels: Record<string, string>, value: number): void {
    if (!Number.isFinite(value)) return;
    const data = this.get(labels);
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]) data.counts[i]++;
    }
    data.sum += value;
    data.count++;
  }

  /** Count of observations of one series. */
  count(labels: Record<string, string> = {}): number {
    const key = this.key(labels);
    return this.series.get(key)?.data.count ?? 0;
  }

  protected renderSeries(values: LabelValues, data: HistogramData): string {
    let out = "";
    for (let i = 0; i < this.buckets.length; i++) {
      const le = `le="${formatValue(this.buckets[i])}"`;
      out += `${this.name}_bucket${labelText(this.labels, values, le)} ${data.counts[i]}\n`;
    }
    out += `${this.name}_bucket${labelText(this.labels, values, 'le="+Inf"')} ${data.count}\n`;
    out += `${this.name}_sum${labelText(this.labels, values)} ${formatValue(data.sum)}\n`;
    out += `${this.name}_count${labelText(this.labels, values)} ${data.count}\n`;
    return out;
  }
}

/** Any metric of this module. */
export type AnyMetric = Counter | Gauge | Histogram;

/** A set of metrics rendered together; `collect` hooks refresh gauges just before rendering. */
export class MetricsRegistry {
  #metrics: AnyMetric[] = [];
  #collectors: (() => void)[] = [];

  /** Adds a metric; names must be unique. */
  register<M extends AnyMetric>(metric: M): M {
    if (this.#metrics.some((m) => m.name === metric.name)) {
      throw new Error(`Metric registered twice: ${metric.name}`);
    }
    this.#metrics.push(metric);
    return metric;
  }

  /** Runs `fn` before each render (to read gauges from their sources). */
  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  /** The whole registry in the Prometheus text format (version 0.0.4). */
  render(): string {
    for (const fn of this.#collectors) fn();
    return this.#metrics.map((m) => m.render()).join("");
  }
}

/** The `Content-Type` of {@linkcode MetricsRegistry.render}'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
