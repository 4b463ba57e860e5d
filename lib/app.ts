/** @module The route table, the doors every request passes, and the one place errors become responses. */
import { errorResponse, ProxyError } from "./errors.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { ModelEntry, ModelRegistry } from "./models.ts";
import { ApiKeys, authenticationError } from "./api_keys.ts";
import { clientKey } from "./client_id.ts";
import { RateLimiter, rateLimitError, rateLimitHeaders } from "./rate_limit.ts";
import { RequestContext, requestIdFrom } from "./request_context.ts";
import { UpstreamClient } from "./upstream.ts";
import { chatDeadlines, handleChat } from "./chat.ts";
import { TokenCounter } from "./tokens.ts";
import { ProxyMetrics } from "./proxy_metrics.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";
import { RecentRequests } from "./recent_requests.ts";
import { UsageDashboard } from "./dashboard.ts";
import { dashboardResponse } from "./dashboard_page.ts";
import { createUsageService, type UsageService } from "./usage_service.ts";
import { HIDDEN, Redactor } from "./redact.ts";
import { BrowserGuard } from "./browser_guard.ts";

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
}

type Handler = (
  req: Request,
  ctx: RequestContext,
  params: Record<string, string>,
) => Promise<Response> | Response;

interface Route {
  method: string;
  /** A literal path, or a prefix whose rest is the route's one parameter, `rest`. */
  path: string | { prefix: string };
  handler: Handler;
  /** Needs an inbound key when keys are configured. */
  auth: boolean;
}

function matchesPath(r: Route, pathname: string): boolean {
  if (typeof r.path === "string") return r.path === pathname;
  // The rest is one or more non-empty segments, as in `/v1/models/{id}`.
  return pathname.startsWith(r.path.prefix) &&
    !`/${pathname.slice(r.path.prefix.length)}/`.includes("//");
}

function routeParams(r: Route, pathname: string): Record<string, string> {
  return typeof r.path === "string" ? {} : { rest: pathname.slice(r.path.prefix.length) };
}

function json(body: unknown, init: ResponseInit = {}): Response {
  const headers = new Headers(init.headers);
  headers.set("content-type", "application/json");
  return new Response(JSON.stringify(body), { ...init, headers });
}

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
    // The client waits for its headers while a stream's opening is read: not past a keep-alive.
    streamStartMs: Math.min(config.keepaliveSeconds * 1000, 5_000),
    logger,
    userAgent: `poe-proxy/${deps.version}`,
  });
  const clients = new RateLimiter({
    perMinute: config.rateLimitPerMinute,
    burst: config.rateLimitBurst,
    maxClients: config.maxTrackedClients,
    now,
  });
  // Wrong keys from one address: a few a minute, then that address waits, right key or not, so
  // that no key can be found by trying.
  const authFailures = new RateLimiter({
    perMinute: AUTH_FAILURES_PER_MINUTE,
    burst: AUTH_FAILURES_PER_MINUTE,
    maxClients: config.maxTrackedClients,
    now,
  });
  // Poe allows 500 a minute per account; a small burst keeps any 60 s window under it.
  const poe = new RateLimiter({
    perMinute: config.poeRateLimitPerMinute,
    burst: Math.min(50, Math.max(1, config.poeRateLimitPerMinute)),
    maxClients: 1,
    now,
  });
  const counter = deps.counter ?? new TokenCounter();
  const poeKey = new Redactor([config.poeApiKey]);
  /** A client-sent text made safe to log and show: a key pasted into it is hidden. */
  const loggable = (text: string) => keys.isKey(text) ? HIDDEN : poeKey.redact(text);
  const usage = deps.usage ?? createUsageService(config, {
    logger,
    counter,
    userAgent: `poe-proxy/${deps.version}`,
  });
  // `created` must not change between calls: the time this app was built.
  const created = Math.floor(now() / 1000);
  const cors = new Set(config.corsOrigins);
  const browsers = new BrowserGuard({
    corsOrigins: config.corsOrigins,
    allowedHosts: config.allowedHosts,
    keysEnabled: keys.enabled,
  });
  const metrics = deps.metrics ?? new ProxyMetrics({
    models: deps.registry,
    balance: () => usage.poller.snapshot,
    version: deps.version,
  });
  const recent = deps.recent ?? new RecentRequests();
  const deadlines = chatDeadlines(config);
  const dashboard = deps.dashboard ?? new UsageDashboard({
    api: usage.api,
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

  // Taken only for a request that will really reach Poe: garbage and guarded requests spend none.
  const takePoeToken = (ctx: RequestContext) => {
    const global = poe.take("poe");
    if (global.allowed) return;
    ctx.fields.limited = "poe";
    throw rateLimitError(global, {
      message:
        `This proxy keeps Poe under POE_RATE_LIMIT_PER_MINUTE (${config.poeRateLimitPerMinute}); try again in ${global.retryAfterSeconds} s.`,
    });
  };

  // A retry is a call to Poe too: without a token the request ends with Poe's last error.
  const takePoeRetryToken = (ctx: RequestContext) => {
    if (poe.take("poe").allowed) return true;
    ctx.fields.limited = "poe-retry";
    return false;
  };

  const chat: Handler = async (req, ctx) => {
    const decision = clients.take(ctx.client);
    const limitHeaders = rateLimitHeaders(decision);
    if (!decision.allowed) {
      ctx.fields.limited = "client";
      throw rateLimitError(decision);
    }
    let response: Response;
    try {
      response = await handleChat(req, ctx, {
        config,
        registry: deps.registry,
        upstream,
        logger,
        counter,
        usage,
        beforeUpstream: takePoeToken,
        beforeRetry: takePoeRetryToken,
        loggable,
        deadlines,
        shutdown: cutting.signal,
        responseHeaders: [
          ["x-request-id", ctx.id],
          ...Object.entries(corsHeaders(req)),
          ...Object.entries(limitHeaders),
        ],
      });
    } catch (err) {
      if (ctx.fields.limited === "poe" && clients.enabled && err instanceof ProxyError) {
        // Refused in front of Poe: the client's own allowance is not spent on it (the SDKs retry
        // a 429 twice), and its headers stay its own, with the global bucket's wait.
        clients.refund(ctx.client);
        for (const name of Object.keys(err.headers)) {
          if (name.startsWith("x-ratelimit-")) delete err.headers[name];
        }
        Object.assign(err.headers, rateLimitHeaders(clients.peek(ctx.client)));
      } else if (err instanceof ProxyError && err.status !== 429) {
        // Errors carry the client's limit too; a 429 keeps the headers that explain it (Poe's).
        Object.assign(err.headers, limitHeaders);
      }
      throw err;
    }
    // The client's own bucket is the limit that binds it; Poe's account-wide figures (passed on
    // when this limiter is off) would tell every client how busy the others are.
    if (!ctx.headersIncluded) {
      for (const [k, v] of Object.entries(limitHeaders)) response.headers.set(k, v);
    }
    return response;
  };

  const routes: Route[] = [
    {
      method: "GET",
      path: "/healthz",
      auth: false,
      handler: () => json({ status: "ok", version: deps.version, models: deps.registry().size }),
    },
    {
      method: "GET",
      path: "/v1/models",
      auth: true,
      handler: () => {
        const registry = deps.registry();
        return json({
          object: "list",
          data: registry.list().map((e) => modelObject(e, created, registry.contextCap(e))),
        });
      },
    },
    {
      method: "GET",
      path: { prefix: "/v1/models/" },
      auth: true,
      handler: (_req, _ctx, params) => {
        const id = safeDecode(params.rest);
        const registry = deps.registry();
        const entry = id === null ? undefined : registry.lookup(id);
        if (!entry) {
          throw new ProxyError(
            404,
            `The model ${JSON.stringify(id ?? params.rest)} is not in this proxy's models.yaml.`,
            {
              param: "model",
              code: "model_not_found",
            },
          );
        }
        return json(modelObject(entry, created, registry.contextCap(entry)));
      },
    },
    {
      method: "POST",
      path: "/v1/chat/completions",
      auth: true,
      handler: chat,
    },
    {
      method: "GET",
      path: "/metrics",
      auth: true,
      handler: () => {
        dashboard.sample();
        return new Response(metrics.render(), {
          headers: { "content-type": PROMETHEUS_CONTENT_TYPE, "cache-control": "no-store" },
        });
      },
    },
  ];
  if (config.dashboard) {
    routes.push({
      method: "GET",
      path: "/",
      // The page holds no data: it asks for a key and sends it with its API calls.
      auth: false,
      handler: () => dashboardResponse(),
    }, {
      method: "GET",
      path: "/api/usage",
      auth: true,
      handler: async () =>
        json(await dashboard.build(), { headers: { "cache-control": "no-store" } }),
    });
  }

  // Literal paths are looked up, not tested one route at a time; prefix routes still match these.
  const byPath = new Map<string, Route[]>();
  for (const r of routes) {
    if (typeof r.path !== "string") continue;
    byPath.set(r.path, routes.filter((m) => matchesPath(m, r.path as string)));
  }

  function corsHeaders(req: Request): Record<string, string> {
    const origin = req.headers.get("origin");
    if (!origin || cors.size === 0) return {};
    if (!cors.has("*") && !cors.has(origin)) return {};
    return {
      "access-control-allow-origin": cors.has("*") ? "*" : origin,
      "access-control-expose-headers":
        "x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, retry-after, retry-after-ms, x-should-retry, x-poe-points, x-poe-points-estimated, x-poe-balance, x-poe-proxy-clipped, x-poe-proxy-attempts, x-poe-proxy-guard",
      vary: "Origin",
    };
  }

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
      throw new ProxyError(404, unknownEndpoint(req.method, path), { code: "unknown_endpoint" });
    }
    const allowed = () => [...new Set(matching.map((r) => r.method))];
    if (req.method === "OPTIONS") {
      const allow = allowed();
      const headers = new Headers(corsHeaders(req));
      headers.set("allow", [...allow, "OPTIONS"].join(", "));
      if (headers.has("access-control-allow-origin")) {
        headers.set("access-control-allow-methods", [...allow, "OPTIONS"].join(", "));
        headers.set(
          "access-control-allow-headers",
          req.headers.get("access-control-request-headers") ??
            "authorization, content-type, x-api-key",
        );
        headers.set("access-control-max-age", "600");
      }
      return new Response(null, { status: 204, headers });
    }
    const method = req.method === "HEAD" ? "GET" : req.method;
    const r = matching.find((m) => m.method === method);
    if (!r) {
      const allow = allowed();
      throw new ProxyError(
        405,
        `Method ${req.method} is not allowed on ${path}; use ${allow.join(" or ")}.`,
        {
          code: "method_not_allowed",
          headers: { allow: allow.join(", ") },
        },
      );
    }
    if (r.auth && keys.enabled) {
      const wait = authFailures.waitSeconds(address);
      if (wait > 0) {
        ctx.fields.limited = "auth";
        throw new ProxyError(
          429,
          `Too many requests with a wrong API key from this address; try again in ${wait} s.`,
          {
            type: "rate_limit_error",
            code: "too_many_auth_failures",
            headers: { "retry-after": String(wait) },
          },
        );
      }
      if (!authed) {
        // Only a key that was sent counts: a page anywhere can make a browser send requests
        // without one (an image), and must not lock the owner's programs out.
        if (req.headers.has("authorization") || req.headers.has("x-api-key")) {
          authFailures.take(address);
        }
        throw authenticationError();
      }
    }
    return await r.handler(req, ctx, routeParams(r, path));
  }

  return {
    usage,
    stats: () => ({ trackedClients: clients.size, drainingBodies: upstream.draining }),
    cutOpen: () => {
      const count = open.size;
      // A stream ends itself: an error event, its own log line, end=shutdown.
      cutting.abort();
      for (const ctx of [...open]) {
        ctx.fields.end = "shutdown";
        ctx.end(ctx.deferred ? 200 : 503);
      }
      return count;
    },
    close: async () => {
      deadlines.body.clear();
      deadlines.answer.clear();
      deadlines.mediaAnswer.clear();
      if (!deps.upstream) upstream.close();
      await dashboard.close();
      if (!deps.usage) await usage.close();
    },
    async handler(req, info) {
      const url = new URL(req.url);
      // Base URLs are typed without /v1, or with a trailing slash that clients then double.
      const path = byPath.has(url.pathname) ? url.pathname : clientPath(url.pathname);
      const peer = info?.remoteAddr?.hostname ?? "unknown";
      const keyName = keys.enabled ? keys.identify(req.headers) : null;
      // Known for every request while keys are required: wrong keys are counted by address.
      const address = keyName === null || keys.enabled
        ? clientKey(peer, req.headers.get("x-forwarded-for"), config.trustProxy)
        : "";
      const ctx = new RequestContext({
        id: requestIdFrom(req.headers),
        client: keyName ?? address,
        method: req.method,
        path,
        logger,
        onEnd: ended,
        onLateCost: lateCost,
      });
      metrics.arrived();
      open.add(ctx);
      let response: Response;
      try {
        response = await route(req, ctx, path, keyName !== null, address);
      } catch (err) {
        // An answer that failed half-way never carried the headers its error response needs.
        ctx.headersIncluded = false;
        // Poe may quote the key it refused, whole or shortened: it never reaches a client or a log.
        if (err instanceof Error) err.message = poeKey.redact(err.message);
        if (!(err instanceof ProxyError)) {
          logger.error("unhandled error", { request_id: ctx.id, error: err });
        } else if (err.status >= 500) {
          logger.warn("request failed", { request_id: ctx.id, error: err.message });
        }
        response = errorResponse(err);
      }
      if (!ctx.headersIncluded) {
        response.headers.set("x-request-id", ctx.id);
        for (const [k, v] of Object.entries(corsHeaders(req))) response.headers.set(k, v);
      }
      // A client that left before the answer was ready is logged as 499, whatever was prepared.
      if (!ctx.deferred) ctx.end(req.signal.aborted ? 499 : response.status);
      return response;
    },
  };
}

/** Wrong inbound keys one address may send a minute (and at once) before it has to wait. */
const AUTH_FAILURES_PER_MINUTE = 10;

/** Paths of the dashboard and the figures: what a DNS-rebinding page would read. */
const DATA_PATHS = new Set(["/", "/api/usage", "/metrics"]);

/**
 * The path a client meant: slashes collapsed, no trailing one, and `/v1` added to the API's paths
 * when the base URL was set without it.
 */
function clientPath(path: string): string {
  let p = path.replace(/\/{2,}/g, "/");
  if (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  if (p === "/chat/completions" || p === "/models" || p.startsWith("/models/")) p = `/v1${p}`;
  return p;
}

/** Endpoints of OpenAI's that Poe has no counterpart of, and what to use instead. */
const OTHER_APIS: [RegExp, string][] = [
  [
    /^\/(v1\/)?responses(\/|$)/,
    'poe-proxy serves the Chat Completions API, not the Responses API: point the client at /v1/chat/completions (Vercel AI SDK: openai.chat(model) or createOpenAICompatible; Codex: wire_api = "chat").',
  ],
  [
    /^\/(v1\/)?(completions|embeddings|images|audio|files|assistants|threads|batches|moderations)(\/|$)/,
    "Poe has no such API: poe-proxy serves POST /v1/chat/completions and GET /v1/models.",
  ],
];

function unknownEndpoint(method: string, path: string): string {
  const other = OTHER_APIS.find(([pattern]) => pattern.test(path));
  return `No such endpoint: ${method} ${path.slice(0, 200)}.${
    other ? ` ${other[1]}` : " poe-proxy serves POST /v1/chat/completions and GET /v1/models."
  }`;
}

function safeDecode(value: string): string | null {
  try {
    return decodeURIComponent(value);
  } catch {
    return null;
  }
}
