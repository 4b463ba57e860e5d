/** @module Per-request facts gathered along the way, and the one log line written when it ends. */
import type { Logger } from "./log.ts";

/** Options of {@linkcode RequestContext}. */
export interface RequestContextOptions {
  /** The request id: the client's `x-request-id` when it sent a sane one. */
  id: string;
  /** Who asked: an address or a key's name, never a key. */
  client: string;
  method: string;
  path: string;
  logger: Logger;
  /** Called once with the finished context (metrics, recent requests). */
  onEnd?: (ctx: RequestContext) => void;
  /**
   * Called by {@linkcode RequestContext.lateCost} (metrics, recent requests) with the real cost
   * and the estimate it replaces: the one the request's log line reported, or null.
   */
  onLateCost?: (ctx: RequestContext, points: number, replaced: number | null) => void;
}

const REQUEST_ID = /^[\w.:@-]{1,128}$/;

/**
 * The client's request id if it is safe to echo, else a new one. Safe: short, plain, and with
 * nothing `hide` changes (a key sent as the id would be logged and shown on the dashboard).
 */
export function requestIdFrom(headers: Headers, hide: (text: string) => string): string {
  const given = headers.get("x-request-id");
  return given && REQUEST_ID.test(given) && hide(given) === given ? given : crypto.randomUUID();
}

/** What is known of one request; handlers add fields, and it is logged once when it ends. */
export class RequestContext {
  readonly id: string;
  readonly client: string;
  readonly method: string;
  readonly path: string;
  /** `performance.now()` at arrival. */
  readonly started = performance.now();
  /** Wall-clock time at arrival (ms since the epoch). */
  readonly startedAt = Date.now();
  /**
   * Fields for the log line, added by handlers. Metrics and the dashboard read these names:
   * `model` (as the client named it), `stream` (boolean), `attempts` (`reason:status,...`),
   * `tokens_in`, `tokens_out`, `points` (number), `points_estimated` (true when `points` is the
   * models.yaml estimate), `guard` (`paused` or `cost-cap` when a guard answered), `clipped`,
   * `limited` (`client` or `poe` when refused with 429, `poe-retry` when a retry found no token),
   * `end` (how a relayed stream ended when not `done`: `upstream-error`, `timeout`, `client-gone`;
   * `shutdown` for any request still open when the shutdown's grace ran out), `early` (true when
   * a stream's status and headers went out before Poe's verdict; with no answer, `status` is the
   * error's, sent to the client as an error event).
   */
  readonly fields: Record<string, unknown> = {};
  /**
   * Set by a handler that ends the request itself, when its streamed body is done. A stream sent
   * early unsets it when it ends without an answer: it is then counted as the error it was.
   */
  deferred = false;
  /** Set by a handler whose response already carries the app's headers (request id, limits, CORS). */
  headersIncluded = false;
  /**
   * Set while a whole answer waits for its cost (the footer's): a shutdown's cut lets it go out
   * and write its own line, rather than end it unanswered.
   */
  waitsForCost = false;
  /** Milliseconds to the first byte of the body, when known. */
  ttfbMs: number | null = null;
  status = 0;
  #ended = false;
  #logger: Logger;
  #onEnd?: (ctx: RequestContext) => void;
  #onLateCost?: (ctx: RequestContext, points: number, replaced: number | null) => void;
  /** The estimate the log line reported, until a late cost replaces it. */
  #estimate: number | null = null;
  /** Called once at the end; few requests have any. */
  #atEnd: (() => void)[] | null = null;

  constructor(options: RequestContextOptions) {
    this.id = options.id;
    this.client = options.client;
    this.method = options.method;
    this.path = options.path;
    this.#logger = options.logger;
    this.#onEnd = options.onEnd;
    this.#onLateCost = options.onLateCost;
  }

  /** Milliseconds since arrival. */
  elapsedMs(): number {
    return performance.now() - this.started;
  }

  /** Whether the log line was written: what is learnt later goes through {@linkcode lateCost}. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Calls `fn` once when the request ends (at once when it has): what a request holds while it
   * runs is let go there, whichever way it ends (an answer, an error, a client gone, a shutdown).
   */
  atEnd(fn: () => void): void {
    if (this.#ended) fn();
    else (this.#atEnd ??= []).push(fn);
  }

  /** Writes the request's log line, once. */
  end(status: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.status = status;
    if (this.#atEnd) { for (const fn of this.#atEnd) fn(); }
    this.#atEnd = null;
    // An estimate settled after this line (the client left first) was never reported, so a late
    // cost replaces only the one reported here.
    const f = this.fields;
    if (f.points_estimated === true && typeof f.points === "number") this.#estimate = f.points;
    // The line is built only when it will be written (not at LOG_LEVEL=warn or above).
    if (this.#logger.enabled("info")) this.#log(status);
    this.#onEnd?.(this);
  }

  #log(status: number): void {
    const ms = this.elapsedMs();
    this.#logger.info("request", {
      request_id: this.id,
      client: this.client,
      method: this.method,
      path: this.path,
      status,
      ms: Math.round(ms * 10) / 10,
      ttfb_ms: this.ttfbMs === null ? undefined : Math.round(this.ttfbMs * 10) / 10,
      ...this.fields,
    });
  }

  /**
   * The real cost of an answer that ended with an estimate was found later: logs it with the
   * request id and tells the metrics and the dashboard. Call it after {@linkcode end}.
   */
  lateCost(points: number): void {
    const replaced = this.#estimate;
    this.#estimate = null;
    this.#logger.info("late cost", {
      request_id: this.id,
      model: this.fields.model,
      points,
      estimated_points: replaced ?? undefined,
    });
    this.#onLateCost?.(this, points, replaced);
  }
}
