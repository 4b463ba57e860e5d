/** @module The last requests through the proxy, in a fixed-size ring buffer, for the dashboard. */
import type { RequestContext } from "./request_context.ts";

/** One finished request as the dashboard shows it. */
export interface RecentRequest {
  /** Arrival, ms since the epoch. */
  time: number;
  id: string;
  /** An address or a key's name, never a key. */
  client: string;
  /** The model as the client named it (shown escaped; never used as a metric label). */
  model: string | null;
  /** Null when not known: the request was refused before its body was read (auth, rate limit). */
  stream: boolean | null;
  status: number;
  /** Milliseconds from arrival to the end. */
  ms: number;
  ttfb_ms: number | null;
  tokens_in: number | null;
  tokens_out: number | null;
  /** The tokens were counted here: Poe sent no usage. */
  tokens_estimated: boolean;
  points: number | null;
  points_estimated: boolean;
  /** The guard that answered instead of Poe (`paused`, `cost-cap`), if any. */
  guard: string | null;
  /**
   * How a streamed answer ended when not normally (`upstream-error`, `timeout`, `client-gone`),
   * else null: a stream that failed after its 200 was sent still has status 200 (but for one
   * sent before Poe's verdict that got none: it has its error's status).
   */
  end: string | null;
}

/** Options of {@linkcode RecentRequests}. */
export interface RecentRequestsOptions {
  /** How many are kept. Default: 50. */
  size?: number;
  /** Which requests are kept. Default: `POST /v1/chat/completions` only. */
  filter?: (ctx: RequestContext) => boolean;
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** The row of a finished request context. */
export function recentRequestOf(ctx: RequestContext): RecentRequest {
  const f = ctx.fields;
  return {
    time: ctx.startedAt,
    id: ctx.id,
    client: ctx.client,
    model: typeof f.model === "string" ? f.model.slice(0, 200) : null,
    stream: typeof f.stream === "boolean" ? f.stream : null,
    status: ctx.status,
    ms: round(ctx.elapsedMs()),
    ttfb_ms: ctx.ttfbMs === null ? null : round(ctx.ttfbMs),
    tokens_in: num(f.tokens_in),
    tokens_out: num(f.tokens_out),
    tokens_estimated: f.tokens_estimated === true,
    points: num(f.points),
    points_estimated: f.points_estimated === true,
    guard: typeof f.guard === "string" ? f.guard : null,
    end: typeof f.end === "string" ? f.end : null,
  };
}

/** The last `size` requests, newest first; memory stays fixed however many pass. */
export class RecentRequests {
  readonly size: number;
  #ring: (RecentRequest | undefined)[];
  /**
   * The kept rows by id: under load most costs are found after their row was dropped, and a scan
   * of the ring for each of them showed in the profile.
   */
  #byId = new Map<string, RecentRequest>();
  #next = 0;
  #count = 0;
  #filter: (ctx: RequestContext) => boolean;

  constructor(options: RecentRequestsOptions = {}) {
    this.size = Math.max(1, options.size ?? 50);
    this.#ring = new Array(this.size);
    this.#filter = options.filter ??
      ((ctx) => ctx.method === "POST" && ctx.path === "/v1/chat/completions");
  }

  /** Adds a finished request when the filter keeps it. */
  record(ctx: RequestContext): void {
    if (this.#filter(ctx)) this.add(recentRequestOf(ctx));
  }

  /** Adds a row, dropping the oldest when full. */
  add(row: RecentRequest): void {
    const dropped = this.#ring[this.#next];
    if (dropped && this.#byId.get(dropped.id) === dropped) this.#byId.delete(dropped.id);
    this.#byId.set(row.id, row);
    this.#ring[this.#next] = row;
    this.#next = (this.#next + 1) % this.size;
    this.#count = Math.min(this.size, this.#count + 1);
  }

  /** Sets the real cost of a kept request found after it ended; false when it is gone. */
  updateCost(id: string, points: number): boolean {
    const row = this.#byId.get(id);
    if (!row) return false;
    row.points = points;
    row.points_estimated = false;
    return true;
  }

  /** Copies of the kept rows, newest first. */
  list(): RecentRequest[] {
    const out: RecentRequest[] = [];
    for (let i = 1; i <= this.#count; i++) {
      const row = this.#ring[(this.#next - i + this.size) % this.size];
      if (row) out.push({ ...row });
    }
    return out;
  }
}
