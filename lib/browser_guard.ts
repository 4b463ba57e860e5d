/**
 * @module Keeps web pages from spending the owner's points: a request from a page of a foreign
 * `Origin`, or, without inbound keys, for a `Host` that only a DNS-rebinding page would send; with
 * keys, names such a page's requests, so that its wrong keys lock out no program of the owner.
 *
 * A page can send a "simple" cross-origin POST (`text/plain`, `no-cors`) without a preflight: CORS
 * only stops it from reading the answer, not the proxy from calling Poe. And a page whose name
 * resolves to 127.0.0.1 after it loaded is same-origin to the proxy; only its `Host` tells. The
 * `Host` is checked on every request for the dashboard and the figures (`/`, `/api/usage`,
 * `/metrics`), which only browsers and scrapers read; on the API's paths, on browsers' requests
 * only (`Origin`, `Sec-Fetch-*` or a `Mozilla/` user agent: over plain http Chromium sends none of
 * the first two on a same-origin GET, and a Firefox page may change the last), so that programs
 * reach the API by any name, such as a Compose service's or `host.docker.internal`.
 */
import { ProxyError } from "./errors.ts";
import { isIpAddress } from "./client_id.ts";

/** Options of {@linkcode BrowserGuard}. */
export interface BrowserGuardOptions {
  /** `CORS_ORIGINS`: pages of these origins (or any, with `*`) may call the proxy. */
  corsOrigins: readonly string[];
  /**
   * `ALLOWED_HOSTS`: host names browsers may use besides localhost and IP addresses; `*` for any.
   */
  allowedHosts: readonly string[];
  /** Inbound keys are required: a page cannot know one, so the `Host` needs no check. */
  keysEnabled: boolean;
}

/** Checks the `Origin` and `Host` of each request. */
export class BrowserGuard {
  #origins: ReadonlySet<string>;
  #anyOrigin: boolean;
  #hosts: ReadonlySet<string>;
  #anyHost: boolean;
  #checkHost: boolean;

  constructor(options: BrowserGuardOptions) {
    this.#origins = new Set(options.corsOrigins);
    this.#anyOrigin = this.#origins.has("*");
    this.#hosts = new Set(options.allowedHosts);
    this.#anyHost = this.#hosts.has("*");
    this.#checkHost = !options.keysEnabled && !this.#anyHost;
  }

  /**
   * Throws a 403 for a request a web page must not make. `anyClient`: the `Host` is checked
   * whoever asks.
   */
  check(req: Request, anyClient = false): void {
    const host = req.headers.get("host");
    const origin = req.headers.get("origin");
    if (this.#checkHost && host !== null && this.#rebindable(req, host, origin, anyClient)) {
      throw new ProxyError(
        403,
        `Requests for the host ${
          JSON.stringify(hostnameOf(host).slice(0, 100))
        } are refused while no inbound keys are set: a web page could reach this proxy through DNS rebinding. Add the name to ALLOWED_HOSTS, or set PROXY_API_KEYS.`,
        { type: "permission_error", code: "host_not_allowed" },
      );
    }
    // A preflight only asks; its answer carries CORS headers for allowed origins alone.
    if (req.method === "OPTIONS") return;
    if (origin === null || this.#anyOrigin || this.#origins.has(origin.toLowerCase())) return;
    if (host !== null && sameHost(origin, host)) return;
    throw new ProxyError(
      403,
      `Requests from web pages of ${
        JSON.stringify(origin.slice(0, 100))
      } are refused: a page could spend your Poe points. Add the origin to CORS_ORIGINS to allow it.`,
      { type: "permission_error", code: "origin_not_allowed" },
    );
  }

  /**
   * The host name of a browser's request that a DNS-rebinding page could have sent, whatever the
   * keys: one for a `Host` that is not localhost, an IP address or in `ALLOWED_HOSTS`, from no
   * origin allowed by name. Null for any other request. With inbound keys such a page is answered
   * 401, and its wrong keys must not lock the owner's programs at the same address out.
   */
  pageHost(req: Request): string | null {
    const host = req.headers.get("host");
    if (this.#anyHost || host === null) return null;
    return this.#rebindable(req, host, req.headers.get("origin"), false)
      ? hostnameOf(host).slice(0, 255)
      : null;
  }

  /** Whether a page that rebound a name of its own to this proxy could have sent `req`. */
  #rebindable(req: Request, host: string, origin: string | null, anyClient: boolean): boolean {
    const browser = anyClient || origin !== null || req.headers.has("sec-fetch-mode") ||
      req.headers.get("user-agent")?.startsWith("Mozilla/") === true;
    if (!browser || this.#hostAllowed(host)) return false;
    // A page of an origin allowed by name is no DNS-rebinding page: that one's origin is the host.
    return origin === null || !this.#origins.has(origin.toLowerCase()) || sameHost(origin, host);
  }

  /** Verdicts by `Host` header: clients send one or two, and parsing it showed in the profile. */
  #hostVerdicts = new Map<string, boolean>();

  #hostAllowed(host: string): boolean {
    let allowed = this.#hostVerdicts.get(host);
    if (allowed === undefined) {
      const name = hostnameOf(host);
      allowed = name === "localhost" || name.endsWith(".localhost") || isIpAddress(name) ||
        this.#hosts.has(name);
      // Bounded: any client may send any Host.
      if (this.#hostVerdicts.size >= 256) this.#hostVerdicts.clear();
      this.#hostVerdicts.set(host, allowed);
    }
    return allowed;
  }
}

/** The name of a `Host` header: lower case, without port, brackets or a final dot. */
function hostnameOf(host: string): string {
  let name = host.trim().toLowerCase();
  if (name.startsWith("[")) return name.slice(1, name.indexOf("]") >>> 0);
  const colon = name.lastIndexOf(":");
  if (colon >= 0) name = name.slice(0, colon);
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** Whether a page of `origin` is this proxy's own (the dashboard). */
function sameHost(origin: string, host: string): boolean {
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}
