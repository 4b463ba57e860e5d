/** @module ProxyError and the OpenAI-shaped error bodies every failure becomes. */

/** The `error` object of an OpenAI-style error body. */
export interface ErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

/** Options of a {@linkcode ProxyError}. */
export interface ProxyErrorOptions {
  /** OpenAI error type. Default: derived from the status (`invalid_request_error`, ...). */
  type?: string;
  /** The request field at fault. Default: `null`. */
  param?: string | null;
  /** A machine-readable code. Default: `null`. */
  code?: string | null;
  /** Extra response headers, such as `Retry-After` or `Allow`. */
  headers?: Record<string, string>;
  /** The underlying error, kept for logs; never shown to the client. */
  cause?: unknown;
}

/** An error that becomes an HTTP response with an OpenAI-shaped body. Handlers throw it. */
export class ProxyError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, options: ProxyErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "ProxyError";
    this.status = status;
    this.type = options.type ?? typeForStatus(status);
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    // A copy: the proxy adds to it (`x-poe-proxy-attempts`), and callers may pass a shared object.
    this.headers = { ...options.headers };
  }

  /** The `{"error": {...}}` body of this error. */
  toBody(): { error: ErrorObject } {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

/** The OpenAI error type conventionally used for an HTTP status. */
export function typeForStatus(status: number): string {
  switch (status) {
    case 401:
      return "authentication_error";
    case 402:
      return "insufficient_credits";
    case 403:
      return "permission_error";
    // OpenAI's own 404s (an unknown model, an unknown URL) are invalid_request_error too.
    case 404:
    case 405:
      return "invalid_request_error";
    case 408:
    case 504:
      return "timeout_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 502:
    case 503:
      return "upstream_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

/**
 * Turns anything thrown into a JSON error response. The single place where errors become
 * responses: unknown errors are a 500 with a generic message, never a stack trace.
 */
export function errorResponse(err: unknown, headers: Record<string, string> = {}): Response {
  const error = asProxyError(err);
  // Set one by one on the built response: see `headerResponse`.
  const response = new Response(JSON.stringify(error.toBody()), { status: error.status });
  const h = response.headers;
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  h.set("content-type", "application/json");
  for (const [k, v] of Object.entries(error.headers)) h.set(k, v);
  return response;
}

/** Anything thrown as the error the client gets: unknown errors are a 500 with a generic message. */
export function asProxyError(err: unknown): ProxyError {
  return err instanceof ProxyError
    ? err
    : new ProxyError(500, "Internal error in poe-proxy; see its log for details.", {
      type: "server_error",
      cause: err,
    });
}
