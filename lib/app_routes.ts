/** @module The routes served besides chat: health, the model list, metrics and the dashboard. */
import { ProxyError } from "./errors.ts";
import type { ModelRegistry } from "./models.ts";
import type { ProxyMetrics } from "./proxy_metrics.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";
import type { UsageDashboard } from "./dashboard.ts";
import { dashboardResponse } from "./dashboard_page.ts";
import { modelObject } from "./model_listing.ts";
import { type Handler, type Route, safeDecode } from "./routes.ts";

/** What {@linkcode appRoutes} builds the table from. */
export interface AppRoutesOptions {
  version: string;
  /** The current registry; main.ts swaps it on reload. */
  registry: () => ModelRegistry;
  /** The `created` of every model listed: when the app was built, in seconds since the epoch. */
  created: number;
  /** `POST /v1/chat/completions`. */
  chat: Handler;
  /** What `GET /metrics` shows. */
  metrics: ProxyMetrics;
  /** Builds `GET /api/usage`, and samples the figures the metrics show. */
  dashboard: UsageDashboard;
  /** Whether the dashboard's page and `GET /api/usage` are served (`DASHBOARD`). */
  dashboardEnabled: boolean;
  /** A client-sent text made safe to show: a key pasted into it hidden. Default: as it is. */
  loggable?: (text: string) => string;
}

function json(body: unknown, init: ResponseInit = {}): Response {
  const headers = new Headers(init.headers);
  headers.set("content-type", "application/json");
  return new Response(JSON.stringify(body), { ...init, headers });
}

/** The route table, in matching order: which method and path, whether a key is needed, handler. */
export function appRoutes(options: AppRoutesOptions): Route[] {
  const { version, created, chat, metrics, dashboard } = options;
  const routes: Route[] = [
    {
      method: "GET",
      path: "/healthz",
      auth: false,
      handler: () => json({ status: "ok", version, models: options.registry().size }),
    },
    {
      method: "GET",
      path: "/v1/models",
      auth: true,
      handler: () => {
        const registry = options.registry();
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
        const registry = options.registry();
        const entry = id === null ? undefined : registry.lookup(id);
        if (!entry) {
          throw new ProxyError(
            404,
            `The model ${
              JSON.stringify((options.loggable ?? String)(id ?? params.rest))
            } is not in this proxy's models.yaml.`,
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
  if (options.dashboardEnabled) {
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
  return routes;
}
