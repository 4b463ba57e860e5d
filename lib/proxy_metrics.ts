/** @module The proxy's own metrics: what each finished request adds, and gauges read at scrape time. */
import { Counter, Gauge, Histogram, MetricsRegistry } from "./metrics.ts";
import type { ModelRegistry } from "./models.ts";
import type { RequestContext } from "./request_context.ts";

/** Label of requests that named no model (health checks, the dashboard, `/v1/models`). */
export const NO_MODEL = "none";
/** Label of a model name that is not in the registry: raw client input never becomes a label. */
export const OTHER_MODEL = "other";

const CHAT = "/v1/chat/completions";
/** Routes that get their own `route` label; everything else is `other`. */
const ROUTES = [CHAT, "/v1/models", "/healthz", "/", "/metrics", "/api/usage"];

const SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const TTFB_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120];
const REASON = /^[a-z0-9-]{1,40}$/;
const GUARDS = new Set(["paused", "cost-cap"]);
/** `limited` values that mean a 429 from this proxy (`poe-retry` is a retry left unsent). */
const LIMITS = new Set(["client", "poe", "auth"]);
/** How a relayed stream ends (`RelayOutcome.end`). */
const ENDS = new Set(["done", "upstream-error", "timeout", "client-gone", "shutdown"]);

/** The `route` label of a path. */
export function routeLabel(path: string): string {
  if (ROUTES.includes(path)) return path;
  if (path.startsWith("/v1/models/")) return "/v1/models/{id}";
  return "other";
}

/**
 * The `model` label of a requested model name: the registry's canonical id (aliases and any
 * casing resolve to it), {@linkcode NO_MODEL} when none was named, else {@linkcode OTHER_MODEL}.
 */
export function modelLabel(requested: unknown, registry: ModelRegistry): string {
  if (requested === undefined || requested === null) return NO_MODEL;
  if (typeof requested !== "string") return OTHER_MODEL;
  return registry.lookup(requested)?.id ?? OTHER_MODEL;
}

/** Parses the `attempts` log field (`reason:status,reason:status`). */
export function parseAttempts(value: unknown): { reason: string; status: string }[] {
  if (typeof value !== "string" || value === "") return [];
  return value.split(",").map((part) => {
    const at = part.lastIndexOf(":");
    const reason = at < 0 ? part : part.slice(0, at);
    const status = at < 0 ? "" : part.slice(at + 1);
    return {
      reason: REASON.test(reason) ? reason : "other",
      status: /^\d{1,3}$/.test(status) ? status : "0",
    };
  });
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** What the balance gauges read at scrape time. */
export interface BalanceReading {
  balance: number;
  /** When the poller last succeeded, ms since the epoch. */
  takenAt: number;
}

/** What the guard gauges read at scrape time: points the pause check takes off the reading. */
export interface GuardReading {
  /** Points held by chat requests still running, at their estimates. */
  running: number;
  /** Points spent through the proxy that Poe's last reading may not show yet. */
  unshown: number;
}

/** Options of {@linkcode ProxyMetrics}. */
export interface ProxyMetricsOptions {
  /** The current registry: the only source of `model` label values. */
  models: () => ModelRegistry;
  /** The poller's last good snapshot, or null. Default: none (balance gauges absent). */
  balance?: () => BalanceReading | null;
  /** What the pause check takes off the balance. Default: none (guard gauges absent). */
  guard?: () => GuardReading;
  /** Shown as `poe_proxy_build_info{version}`. Default: `"dev"`. */
  version?: string;
}

/** Every metric the proxy exposes at `GET /metrics`. */
export class ProxyMetrics {
  readonly registry = new MetricsRegistry();
  readonly requests = this.registry.register(
    new Counter({
      name: "poe_proxy_requests_total",
      help:
        "Finished requests by route, model and HTTP status (499: the client left). model is the models.yaml id, other for a name not in it, none when no model is known: none named, or refused before the body was read (inbound auth, the client's rate limit, a body too large).",
      labels: ["route", "model", "status"],
    }),
  );
  readonly duration = this.registry.register(
    new Histogram({
      name: "poe_proxy_request_duration_seconds",
      help:
        "Chat completions: time from arrival to the end of the response (streams: the last byte).",
      buckets: SECONDS_BUCKETS,
    }),
  );
  readonly ttfb = this.registry.register(
    new Histogram({
      name: "poe_proxy_time_to_first_byte_seconds",
      help: "Chat completions: time from arrival to the first byte of Poe's answer.",
      buckets: TTFB_BUCKETS,
    }),
  );
  readonly attempts = this.registry.register(
    new Counter({
      name: "poe_proxy_upstream_attempts_total",
      help:
        "Calls to Poe by why they were made (first, retry-<status>, ...) and Poe's status (0: network failure or timeout, 499: the client left before Poe's headers), whether the request succeeded or not.",
      labels: ["reason", "status"],
    }),
  );
  readonly tokens = this.registry.register(
    new Counter({
      name: "poe_proxy_tokens_total",
      help: "Tokens Poe reported, by model and kind (prompt or completion).",
      labels: ["model", "kind"],
    }),
  );
  readonly points = this.registry.register(
    new Counter({
      name: "poe_proxy_points_spent_total",
      help:
        "Points by model; kind=real from Poe's points history (including costs found late), kind=estimated when the answer ended before the real cost was known. Points spent: real + estimated - poe_proxy_points_estimate_replaced_total.",
      labels: ["model", "kind"],
    }),
  );
  readonly estimateReplaced = this.registry.register(
    new Counter({
      name: "poe_proxy_points_estimate_replaced_total",
      help:
        "Estimated points (counted in poe_proxy_points_spent_total as kind=estimated) whose real cost was found later and counted as kind=real: subtract them from the sum.",
      labels: ["model"],
    }),
  );
  readonly streamEnds = this.registry.register(
    new Counter({
      name: "poe_proxy_stream_ends_total",
      help:
        "Streamed chat answers by how the stream ended: done, upstream-error (Poe's error event or a broken connection), timeout (Poe fell silent), client-gone, shutdown (cut by the proxy's shutdown). The status was sent first, so poe_proxy_requests_total counts the failed ones as 200 (499 when the client left). A stream whose status went out before Poe's verdict and that got no answer is not counted here but by its error's status.",
      labels: ["end"],
    }),
  );
  readonly rateLimited = this.registry.register(
    new Counter({
      name: "poe_proxy_rate_limited_total",
      help:
        "Requests refused with 429 by this proxy: scope=client (per client), poe (global) or auth (an address that sent too many wrong keys).",
      labels: ["scope"],
    }),
  );
  readonly retriesSkipped = this.registry.register(
    new Counter({
      name: "poe_proxy_upstream_retries_skipped_total",
      help:
        "Requests whose retry (or 400-ladder step) was not sent for lack of a POE_RATE_LIMIT_PER_MINUTE token: the client got Poe's last error.",
    }),
  );
  readonly guarded = this.registry.register(
    new Counter({
      name: "poe_proxy_guarded_total",
      help: "Requests answered by a guard without calling Poe: guard=paused or cost-cap.",
      labels: ["guard"],
    }),
  );
  readonly clipped = this.registry.register(
    new Counter({
      name: "poe_proxy_clipped_total",
      help: "Chat requests whose context was clipped to the model's token cap.",
    }),
  );
  readonly inFlight = this.registry.register(
    new Gauge({
      name: "poe_proxy_requests_in_flight",
      help: "Requests that arrived and have not ended (open streams included).",
    }),
  );
  readonly balance = this.registry.register(
    new Gauge({
      name: "poe_proxy_balance_points",
      help: "Poe point balance at the poller's last success.",
    }),
  );
  readonly runningPoints = this.registry.register(
    new Gauge({
      name: "poe_proxy_points_running",
      help:
        "Points held by chat requests still running, at their estimates: the POINTS_CUTOFF check takes them off the balance.",
    }),
  );
  readonly unshownPoints = this.registry.register(
    new Gauge({
      name: "poe_proxy_points_unshown",
      help:
        "Points spent through this proxy that Poe's last balance reading may not show yet: the POINTS_CUTOFF check takes them off the balance.",
    }),
  );
  readonly lastPoll = this.registry.register(
    new Gauge({
      name: "poe_proxy_usage_poll_last_success_timestamp_seconds",
      help: "Unix time of the usage poller's last successful refresh.",
    }),
  );
  readonly buildInfo = this.registry.register(
    new Gauge({
      name: "poe_proxy_build_info",
      help: "Always 1; the version is a label.",
      labels: ["version"],
    }),
  );
  readonly #models: () => ModelRegistry;
  readonly #attempts = new Map<string, { reason: string; status: string }[]>();

  constructor(options: ProxyMetricsOptions) {
    this.#models = options.models;
    this.buildInfo.set({ version: options.version ?? "dev" }, 1);
    const balance = options.balance;
    if (balance) {
      this.registry.onCollect(() => {
        const reading = balance();
        if (reading === null) return;
        this.balance.set({}, reading.balance);
        this.lastPoll.set({}, Math.floor(reading.takenAt / 1000));
      });
    }
    const guard = options.guard;
    if (guard) {
      this.registry.onCollect(() => {
        const reading = guard();
        this.runningPoints.set({}, reading.running);
        this.unshownPoints.set({}, reading.unshown);
      });
    }
  }

  /** A request arrived. */
  arrived(): void {
    this.inFlight.inc();
  }

  /** A request ended (its context's `onEnd`): counts it and takes it out of flight. */
  ended(ctx: RequestContext): void {
    this.inFlight.dec();
    const f = ctx.fields;
    const route = routeLabel(ctx.path);
    const model = modelLabel(f.model, this.#models());
    this.requests.inc({ route, model, status: String(ctx.status) });
    if (route === CHAT) {
      this.duration.observe({}, ctx.elapsedMs() / 1000);
      if (ctx.ttfbMs !== null) this.ttfb.observe({}, ctx.ttfbMs / 1000);
      // Only a relayed stream ends itself (deferred); `end` is set when it did not end `done`. An
      // early stream that got no answer is no longer deferred when it ends: counted by its status.
      if (ctx.deferred) {
        const end = f.end === undefined ? "done" : String(f.end);
        this.streamEnds.inc({ end: ENDS.has(end) ? end : "other" });
      }
    }
    for (const a of this.#attemptsOf(f.attempts)) this.attempts.inc(a);
    // Counted here for an answer Poe sent none for: not Poe's figures.
    const estimated = f.tokens_estimated === true;
    const tokensIn = estimated ? null : num(f.tokens_in);
    const tokensOut = estimated ? null : num(f.tokens_out);
    if (tokensIn !== null) this.tokens.inc({ model, kind: "prompt" }, tokensIn);
    if (tokensOut !== null) this.tokens.inc({ model, kind: "completion" }, tokensOut);
    const points = num(f.points);
    if (points !== null) {
      this.points.inc({ model, kind: f.points_estimated === true ? "estimated" : "real" }, points);
    }
    if (typeof f.limited === "string") {
      if (LIMITS.has(f.limited)) this.rateLimited.inc({ scope: f.limited });
      else if (f.limited === "poe-retry") this.retriesSkipped.inc();
    }
    if (typeof f.guard === "string") {
      this.guarded.inc({ guard: GUARDS.has(f.guard) ? f.guard : "other" });
    }
    if (f.clipped !== undefined && f.clipped !== false && f.clipped !== 0) this.clipped.inc();
  }

  /** {@linkcode parseAttempts}, remembered: nearly every request says `first:200`. */
  #attemptsOf(value: unknown): { reason: string; status: string }[] {
    if (typeof value !== "string") return [];
    let parsed = this.#attempts.get(value);
    if (parsed === undefined) {
      // The remembered forms stay few whatever Poe answers.
      if (this.#attempts.size >= 64) this.#attempts.clear();
      parsed = parseAttempts(value);
      this.#attempts.set(value, parsed);
    }
    return parsed;
  }

  /**
   * The real cost of an answer arrived after it ended; `replaced` is the estimate counted for it
   * then (null when none was), so that the sum stays right while every counter only goes up.
   */
  lateCost(requestedModel: unknown, points: number, replaced: number | null): void {
    const model = modelLabel(requestedModel, this.#models());
    this.points.inc({ model, kind: "real" }, points);
    if (replaced !== null) this.estimateReplaced.inc({ model }, replaced);
  }

  /** The Prometheus text. */
  render(): string {
    return this.registry.render();
  }
}
