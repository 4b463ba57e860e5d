/** @module `poe-proxy healthcheck`: ask the running server's `/healthz` and answer healthy or not. */

/** Options of {@linkcode healthcheck}. */
export interface HealthcheckOptions {
  /** Give up after this long. Default: 3000 ms (Docker's default check interval is 30 s). */
  timeoutMs?: number;
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch;
}

/** The verdict of {@linkcode healthcheck}: `healthy` and one line that says why. */
export interface HealthcheckResult {
  healthy: boolean;
  /** One line for the terminal or `docker inspect`. */
  message: string;
}

/**
 * The URL of `/healthz` on the server configured with `host` and `port`, as seen from the same
 * machine: a wildcard address (`0.0.0.0`, `::`) is asked on its loopback address.
 */
export function healthUrl(host: string, port: number): string {
  const bare = probedHost(host);
  return `http://${bare.includes(":") ? `[${bare}]` : bare}:${port}/healthz`;
}

/** The address asked for `host`, without brackets: a wildcard one's loopback address. */
function probedHost(host: string): string {
  let target = host;
  if (host === "0.0.0.0" || host === "") target = "127.0.0.1";
  else if (host === "::" || host === "[::]") target = "::1";
  return target.replace(/^\[(.*)\]$/, "$1");
}

/**
 * GETs `/healthz` of the server at `host` and `port`. Healthy means status 200 with
 * `{"status":"ok"}`; anything else (refused, timed out, another status or body) is not. Never
 * throws.
 */
export async function healthcheck(
  host: string,
  port: number,
  options: HealthcheckOptions = {},
): Promise<HealthcheckResult> {
  if (port === 0) {
    return { healthy: false, message: "unhealthy: PORT is 0, so there is no known port to ask" };
  }
  const url = healthUrl(host, port);
  const timeoutMs = options.timeoutMs ?? 3000;
  const doFetch = options.fetch ?? fetch;
  // Straight to the server: Deno's fetch sends even a loopback request through HTTP_PROXY, which a
  // container may have set for its way out, and the proxy would then be reported unhealthy.
  const address = probedHost(host);
  const direct = options.fetch ? null : Deno.createHttpClient({
    // An IPv6 address in brackets: Deno reads the transport's host as part of a URI.
    proxy: { transport: "tcp", hostname: address.includes(":") ? `[${address}]` : address, port },
  });
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`no answer within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    const response = await doFetch(url, {
      signal: controller.signal,
      headers: { "user-agent": "poe-proxy-healthcheck" },
      ...(direct ? { client: direct } : {}),
    });
    const text = await response.text();
    let body: { status?: unknown; models?: unknown; version?: unknown } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: reported below as an unexpected answer.
    }
    if (response.status === 200 && body?.status === "ok") {
      return {
        healthy: true,
        message: `healthy: ${url} answered ok (version ${body.version}, ${body.models} models)`,
      };
    }
    return {
      healthy: false,
      message: `unhealthy: ${url} answered ${response.status}: ${text.slice(0, 200)}`,
    };
  } catch (err) {
    const reason = controller.signal.aborted
      ? `no answer within ${timeoutMs} ms`
      : err instanceof Error
      ? err.message
      : String(err);
    return { healthy: false, message: `unhealthy: ${url}: ${reason}` };
  } finally {
    clearTimeout(timer);
    direct?.close();
  }
}
