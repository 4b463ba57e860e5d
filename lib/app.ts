/** @module The app built from config: the doors every request passes, and where errors become responses. */
import { errorResponse, ProxyError } from "./errors.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { ModelRegistry } from "./models.ts";
import { ApiKeys, authenticationError, keysSent } from "./api_keys.ts";
import { clientKey } from "./client_id.ts";
import { DoorLimits } from "./door_limits.ts";
import { RequestContext, requestIdFrom } from "./request_context.ts";
import { UpstreamClient } from "./upstream.ts";
import { chatDeadlines, handleChat } from "./chat.ts";
import { BodyBudget } from "./body_budget.ts";
import { streamStartMs } from "./early_stream.ts";
import { TokenCounter } from "./tokens.ts";
import { ProxyMetrics } from "./proxy_metrics.ts";
import { RecentRequests } from "./recent_requests.ts";
import { UsageDashboard } from "./dashboard.ts";
import { UsageApi } from "./usage_api.ts";
import { createUsageService, type UsageService } from "./usage_service.ts";
import { Redactor } from "./redact.ts";
import { BrowserGuard } from "./browser_guard.ts";
import { CorsPolicy } from "./cors.ts";
import { appRoutes } from "./app_routes.ts";
import {
  clientPath,
  type Handler,
  indexByPath,
  matchesPath,
  requestPath,
  routeParams,
  shortened,
  shownPath,
  unknownEndpoint,
} from "./routes.ts";

/** What the app is built from. Everything long-lived is created by the caller or from `config`. */
export interface AppDeps {
  config: Config;
  version: string;
  /** The current registry; main.ts swaps it on reload. */
  registry: () => ModelRegistry;
  logger: Logger;
  /** Inbound keys. Default: from `config.proxyApiKeys`. */
  keys?: ApiKeys;
  /** The Poe client. Default: built from `config` with the global `fetch`. */
  upstream?: UpstreamClient;
  /** Token counter shared by all requests. Default: a new one. */
  counter?: TokenCounter;
  /** Clock for rate limiting. Default: `Date.now`. */
  now?: () => number;
  /**
   * The points machinery (balance poller, Usage API, cost tracker, guards). Default: built from
   * `config`, its poller not started (main.ts starts it once listening), closed by `App.close`.
   */
  usage?: UsageService;
  /** What `GET /metrics` shows. Default: new, fed by every request. */
  metrics?: ProxyMetrics;
  /** The last requests shown on the dashboard. Default: the last 50 chat completions. */
  recent?: RecentRequests;
  /** Builds `GET /api/usage`. Default: one reading `usage`. */
  dashboard?: UsageDashboard;
}

/** Connection facts Deno.serve hands to a handler; tests may omit them. */
export interface ConnInfo {
  remoteAddr?: { hostname: string };
}

/** The built application. */
export interface App {
  handler(req: Request, info?: ConnInfo): Promise<Response>;
  /** The points machinery in use; start its poller once the server listens. */
  usage: UsageService;
  /** Stops what the app built itself (the usage service when not given). Idempotent. */
  close(): Promise<void>;
  /**
   * Writes the log line of every request still open, with `end=shutdown`, for a process that is
   * about to exit at the end of its shutdown's grace: nothing is waited for, and the exit cuts
   * their connections (Poe's too). Status 200 for an answer under way, 503 for one not begun.
   * Returns how many there were.
   */
  cutOpen(): number;
  /** Read-only figures for tests and diagnostics. */
  stats(): AppStats;
}

/** What {@linkcode App.stats} reports. */
export interface AppStats {
  /** Client rate-limit buckets held now; never more than `MAX_TRACKED_CLIENTS`. */
  trackedClients: number;
  /** Poe bodies of answers that are over, still being read to their end to keep the connection. */
  drainingBodies: number;
  /** Memory counted for large request bodies now (`MAX_BODY_MEMORY_MB`), and how many wait. */
  largeBodies: { held: number; waiting: number };
}

/** Builds the application from its dependencies. */
export function createApp(deps: AppDeps): App {
  const { config, logger } = deps;
  const keys = deps.keys ?? new ApiKeys(config.proxyApiKeys);
  const now = deps.now ?? Date.now;
  const upstream = deps.upstream ?? new UpstreamClient({
    baseUrl: config.poeBaseUrl,
    apiKey: config.poeApiKey,
    retries: config.upstreamRetries,
    connectTimeoutMs: config.connectTimeoutSeconds * 1000,
    firstByteTimeoutMs: config.firstByteTimeoutSeconds * 1000,
    slowFirstByteTimeoutMs: config.mediaTimeoutSeconds * 1000,
    idleTimeoutMs: config.idleTimeoutSeconds * 1000,
    streamStartMs: streamStartMs(config),
    logger,
    userAgent: `poe-proxy/${deps.version}`,
  });
  const limits = new DoorLimits(config, now);
  const counter = deps.counter ?? new TokenCounter();
  const poeKey = new Redactor([config.poeApiKey]);
  /**
   * A client-sent text made safe to log and show: a key pasted into it, anywhere, is hidden. Read
   * from `keys` at each call: a reload of the keys file applies at once.
   */
  const loggable = (text: string) => keys.hide(poeKey.redact(text));
  const usage = deps.usage ?? createUsageService(config, {
    logger,
    counter,
    userAgent: `poe-proxy/${deps.version}`,
    onCall: () => limits.chargePoe(),
  });
  // `created` must not change between calls: the time this app was built.
  const created = Math.floor(now() / 1000);
  const cors = new CorsPolicy(config.corsOrigins);
  const browsers = new BrowserGuard({
    corsOrigins: config.corsOrigins,
    allowedHosts: config.allowedHosts,
    keysEnabled: keys.enabled,
  });
  const metrics = deps.metrics ?? new ProxyMetrics({
    models: deps.registry,
    balance: () => usage.poller.snapshot,
    guard: () => ({
      running: usage.running.total.points,
      unshown: usage.poller.spentSinceSnapshot,
    }),
    version: deps.version,
  });
  const recent = deps.recent ?? new RecentRequests();
  const deadlines = chatDeadlines(config);
  const bodyBudget = config.maxBodyMemoryMb > 0
    ? new BodyBudget(config.maxBodyMemoryMb * 2 ** 20, deadlines.body)
    : null;
  // The dashboard's reads are the owner's, and its first one may take 100 pages at once: not
  // counted against POE_RATE_LIMIT_PER_MINUTE, whose debt would refuse chat calls for seconds.
  const dashboardApi = deps.usage || deps.dashboard ? null : new UsageApi({
    baseUrl: config.poeBaseUrl,
    apiKey: config.poeApiKey,
    userAgent: `poe-proxy/${deps.version}`,
  });
  const dashboard = deps.dashboard ?? new UsageDashboard({
    api: dashboardApi ?? usage.api,
    poller: usage.poller,
    paused: () => usage.guards.paused(),
    guards: config,
    recent,
    version: deps.version,
    logger,
  });
  /** Requests whose log line is not written yet, for {@linkcode App.cutOpen}. */
  const open = new Set<RequestContext>();
  /** Aborted by {@linkcode App.cutOpen}: the streams still open end with an error event. */
  const cutting = new AbortController();
  const ended = (ctx: RequestContext) => {
    open.delete(ctx);
    metrics.ended(ctx);
    recent.record(ctx);
    dashboard.sample();
  };
  const lateCost = (ctx: RequestContext, points: number, replaced: number | null) => {
    metrics.lateCost(ctx.fields.model, points, replaced);
    recent.updateCost(ctx.id, points);
  };

  const chat: Handler = (req, ctx) =>
    limits.forClient(ctx, (limitHeaders) =>
      handleChat(req, ctx, {
        config,
        registry: deps.registry,
        upstream,
        logger,
        counter,
        usage,
        beforeUpstream: (c) => limits.takePoeToken(c),
        beforeRetry: (c) => limits.takePoeRetryToken(c),
        loggable,
        deadlines,
        bodyBudget,
        shutdown: cutting.signal,
        responseHeaders: [
          ["x-request-id", ctx.id],
          ...Object.entries(cors.headers(req)),
          ...Object.entries(limitHeaders),
        ],
      }));

  const routes = appRoutes({
    version: deps.version,
    registry: deps.registry,
    created,
    chat,
    metrics,
    dashboard,
    dashboardEnabled: config.dashboard,
    loggable,
  });

  const byPath = indexByPath(routes);

  /** Origins whose refused preflight was logged: the browser shows only "CORS error". */
  const toldOrigins = new Set<string>();
  const refusedPreflight = (origin: string) => {
    if (cors.allows(origin) || toldOrigins.has(origin) || toldOrigins.size >= 100) return;
    toldOrigins.add(origin);
    logger.warn("origin not allowed", {
      origin: loggable(origin.slice(0, 200)),
      message: "a web page's preflight was refused; add its origin to CORS_ORIGINS to allow it",
    });
  };

  async function route(
    req: Request,
    ctx: RequestContext,
    path: string,
    authed: boolean,
    address: string,
  ): Promise<Response> {
    // The pages and figures are read by browsers alone: any client's Host is checked there.
    browsers.check(req, DATA_PATHS.has(path));
    const matching = byPath.get(path) ?? routes.filter((r) => matchesPath(r, path));
    if (matching.length === 0) {
      throw new ProxyError(404, unknownEndpoint(ctx.method, ctx.path), {
        code: "unknown_endpoint",
      });
    }
    const allowed = () => [...new Set(matching.map((r) => r.method))];
    if (req.method === "OPTIONS") {
      const origin = req.headers.get("origin");
      if (origin !== null && req.headers.has("access-control-request-method")) {
        refusedPreflight(origin);
      }
      return cors.preflight(req, allowed());
    }
    const method = req.method === "HEAD" ? "GET" : req.method;
    const r = matching.find((m) => m.method === method);
    if (!r) {
      const allow = allowed();
      throw new ProxyError(
        405,
        `Method ${ctx.method} is not allowed on ${ctx.path}; use ${allow.join(" or ")}.`,
        {
          code: "method_not_allowed",
          headers: { allow: allow.join(", ") },
        },
      );
    }
    if (r.auth && keys.enabled) {
      // A DNS-rebinding page in the owner's browser has the address of the owner's programs: its
      // wrong keys count against the web pages at that address, so it locks out pages alone.
      const page = browsers.pageHost(req);
      limits.refuseGuesser(ctx, address, page);
      if (!authed) {
        // Only a key that was sent counts: a page anywhere can make a browser send requests
        // without one (an image), and must not lock the owner's programs out.
        if (req.headers.has("authorization") || req.headers.has("x-api-key")) {
          // Each key sent is a guess: two headers with two keys are two.
          limits.wrongKey(address, page, Math.max(1, keysSent(req.headers)));
        }
        throw authenticationError();
      }
      limits.rightKey(address);
    }
    return await r.handler(req, ctx, routeParams(r, path));
  }

  return {
    usage,
    stats: () => ({
      trackedClients: limits.trackedClients,
      drainingBodies: upstream.draining,
      largeBodies: { held: bodyBudget?.held ?? 0, waiting: bodyBudget?.waiting ?? 0 },
    }),
    cutOpen: () => {
      const count = open.size;
      // A stream ends itself: an error event, its own log line, end=shutdown.
      cutting.abort();
      for (const ctx of [...open]) {
        // Its wait ended with the cut: the answer goes out now, and logs itself.
        if (ctx.waitsForCost && !ctx.deferred) continue;
        ctx.fields.end = "shutdown";
        ctx.end(ctx.deferred ? 200 : 503);
      }
      return count;
    },
    close: async () => {
      deadlines.body.clear();
      deadlines.streamStart.clear();
      if (!deps.upstream) upstream.close();
      await dashboard.close();
      dashboardApi?.close();
      if (!deps.usage) await usage.close();
    },
    async handler(req, info) {
      const pathname = requestPath(req.url, req.headers.get("host"));
      // Base URLs are typed without /v1, or with a trailing slash that clients then double.
      const known = byPath.has(pathname);
      const path = known ? pathname : clientPath(pathname);
      const peer = info?.remoteAddr?.hostname ?? "unknown";
      const keyName = keys.enabled ? keys.identify(req.headers) : null;
      // Known for every request while keys are required: wrong keys are counted by address.
      const address = keyName === null || keys.enabled
        ? clientKey(peer, req.headers.get("x-forwarded-for"), {
          trusted: config.trustProxy,
          ipv6Prefix: config.rateLimitIpv6Prefix,
        })
        : "";
      const ctx = new RequestContext({
        id: requestIdFrom(req.headers, loggable),
        client: keyName ?? address,
        // What the client sent, as logged, shown and quoted: a key pasted into it is hidden (an
        // endpoint's own path, and a standard method, hold none).
        method: STANDARD_METHODS.has(req.method) ? req.method : shortened(loggable(req.method)),
        path: known ? path : shortened(shownPath(path, loggable)),
        logger,
        onEnd: ended,
        onLateCost: lateCost,
      });
      metrics.arrived();
      open.add(ctx);
      let response: Response;
      try {
        response = await route(req, ctx, path, keyName !== null, address);
      } catch (thrown) {
        // An answer that failed half-way never carried the headers its error response needs.
        ctx.headersIncluded = false;
        // Poe may quote the key it refused, whole or shortened, and a message may quote what the
        // client sent: no key reaches a client or a log.
        const err = thrown instanceof ProxyError ? withKeysHidden(thrown, loggable) : thrown;
        if (err instanceof Error && !(err instanceof ProxyError)) {
          err.message = loggable(err.message);
        }
        if (!(err instanceof ProxyError)) {
          logger.error("unhandled error", { request_id: ctx.id, error: err });
        } else if (err.status >= 500) {
          logger.warn("request failed", { request_id: ctx.id, error: err.message });
        }
        response = errorResponse(err);
      }
      if (!ctx.headersIncluded) {
        response.headers.set("x-request-id", ctx.id);
        for (const [k, v] of Object.entries(cors.headers(req))) response.headers.set(k, v);
      }
      // A client that left before the answer was ready is logged as 499, whatever was prepared.
      if (!ctx.deferred) ctx.end(req.signal.aborted ? 499 : response.status);
      return response;
    },
  };
}

/**
 * `err` with `hide` (which hides keys in a text) applied to each field the client gets: its
 * message, type, param, code and headers, which Poe's error and headers may fill. `err` itself
 * when none held one.
 */
function withKeysHidden(err: ProxyError, hide: (text: string) => string): ProxyError {
  const hideOrNull = (v: string | null) => v === null ? undefined : hide(v);
  const headers: Record<string, string> = {};
  let changed = false;
  for (const [k, v] of Object.entries(err.headers)) {
    headers[k] = hide(v);
    changed ||= headers[k] !== v;
  }
  const message = hide(err.message);
  const fields = { type: hide(err.type), param: hideOrNull(err.param), code: hideOrNull(err.code) };
  changed ||= message !== err.message || fields.type !== err.type ||
    (fields.param ?? null) !== err.param || (fields.code ?? null) !== err.code;
  if (!changed) return err;
  return new ProxyError(err.status, message, { ...fields, headers, cause: err.cause });
}

/** Methods that are no client's text: never a key to hide. */
const STANDARD_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/** Paths of the dashboard and the figures: what a DNS-rebinding page would read. */
const DATA_PATHS = new Set(["/", "/api/usage", "/metrics"]);
