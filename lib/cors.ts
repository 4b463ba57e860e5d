/** @module CORS: the headers an allowed origin gets, and the answer to its preflight. */

/** Answers browsers from the origins of `CORS_ORIGINS` (`*` for any); none when it is empty. */
export class CorsPolicy {
  readonly #origins: ReadonlySet<string>;

  /** `origins`: the allowed origins, `*` for any. */
  constructor(origins: Iterable<string>) {
    this.#origins = new Set(origins);
  }

  /** Whether pages of `origin` may call the proxy. */
  allows(origin: string): boolean {
    return this.#origins.has("*") || this.#origins.has(origin.toLowerCase());
  }

  /** The CORS headers for `req`'s origin; none without an origin or for one not allowed. */
  headers(req: Request): Record<string, string> {
    const cors = this.#origins;
    const origin = req.headers.get("origin");
    if (!origin || cors.size === 0) return {};
    // Listed in lower case; an app's or an extension's origin keeps its case in the browser
    // (Safari's `safari-web-extension://<UUID>`), and the answer must name it as it came.
    if (!cors.has("*") && !cors.has(origin.toLowerCase())) return {};
    return {
      "access-control-allow-origin": cors.has("*") ? "*" : origin,
      "access-control-expose-headers":
        "x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, retry-after, retry-after-ms, x-should-retry, x-poe-points, x-poe-points-estimated, x-poe-balance, x-poe-proxy-clipped, x-poe-proxy-attempts, x-poe-proxy-guard, x-poe-proxy-answer-limit",
      vary: "Origin",
    };
  }

  /**
   * The 204 answer to `OPTIONS` on a path whose routes take the methods `allow`: `Allow` always,
   * the preflight's headers only for an allowed origin.
   */
  preflight(req: Request, allow: string[]): Response {
    const headers = new Headers(this.headers(req));
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
}
