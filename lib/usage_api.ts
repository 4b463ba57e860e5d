/** @module The client of Poe's Usage API: `current_balance` and one page of `points_history`. */
import { Deadlines } from "./deadlines.ts";
import { Redactor } from "./redact.ts";
import { readCappedResponse } from "./json_start.ts";

/** Poe's answer to `GET /usage/current_balance`, with times converted to milliseconds. */
export interface BalanceReport {
  /** `current_point_balance`: plan plus add-on points. The only field Poe guarantees. */
  balance: number;
  /** The next point grant Poe announced (the earlier of daily and monthly), or null. */
  nextGrant: { time: number; amount: number | null; kind: "daily" | "monthly" } | null;
}

/** One `points_history` entry, with `creation_time` kept in microseconds as Poe sends it. */
export interface PointsEntry {
  query_id: string;
  bot_name: string;
  /** Microseconds since the epoch. */
  creation_time: number;
  /** `API`, `Chat` or `Canvas App`. */
  usage_type: string;
  /** 0 while Poe has not settled the cost yet; negative for refunds. */
  cost_points: number;
  cost_breakdown_in_points?: Record<string, string>;
  [key: string]: unknown;
}

/** One page of `GET /usage/points_history`, newest first. */
export interface PointsPage {
  data: PointsEntry[];
  hasMore: boolean;
}

/** Options of {@linkcode UsageApi.pointsHistory}. */
export interface PointsPageOptions {
  /** Entries per page, 1 to 100. Default: 100. */
  limit?: number;
  /** The `query_id` after which the page starts (the last entry of the previous page). */
  startingAfter?: string;
  signal?: AbortSignal;
}

/** What any reader of the Usage API needs; tests substitute their own. */
export interface UsageSource {
  currentBalance(signal?: AbortSignal): Promise<BalanceReport>;
  pointsHistory(options?: PointsPageOptions): Promise<PointsPage>;
  /** How far Poe's clock is ahead of this machine's, in ms (negative: behind); null: unknown. */
  readonly clockOffsetMs?: number | null;
}

/**
 * The largest body of the Usage API read: a page of 100 history entries is about 30 KB. A larger
 * one is not read on (an endless body once took 1.47 GB per poll before the call's timeout).
 */
export const MAX_USAGE_BODY_BYTES = 1024 * 1024;

/** Clock readings kept: the median of the last few smooths out network delays. */
const CLOCK_SAMPLES = 5;

/** Options of a {@linkcode UsageApi}. */
export interface UsageApiOptions {
  /** Poe's base URL without `/v1`, such as `https://api.poe.com`. */
  baseUrl: string;
  /** The Poe API key; without one every call fails with status 401. */
  apiKey: string | null;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Each call is abandoned after this long. Default: 10,000 ms. */
  timeoutMs?: number;
  /** Sent as `User-Agent`. Default: none. */
  userAgent?: string;
  /** Called before each call: Poe's rate limit counts them (`POE_RATE_LIMIT_PER_MINUTE`). */
  onCall?: () => void;
}

/** A Usage API call that failed: `status` is the HTTP status, or 0 when there was no answer. */
export class UsageApiError extends Error {
  readonly status: number;
  constructor(message: string, status: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageApiError";
    this.status = status;
  }
}

/**
 * A Poe time as milliseconds since the epoch. Poe documents microseconds; a value small enough to
 * be milliseconds or seconds is taken as such, so a change of unit cannot put grants in 1970.
 */
export function poeTimeToMs(value: unknown): number | null {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) return null;
  if (value > 1e14) return Math.round(value / 1000);
  if (value > 1e11) return Math.round(value);
  return Math.round(value * 1000);
}

/** Parses the body of `current_balance`; throws when `current_point_balance` is not a number. */
export function parseBalance(body: unknown): BalanceReport {
  const b = (body ?? {}) as Record<string, unknown>;
  const balance = b.current_point_balance;
  if (typeof balance !== "number" || !Number.isFinite(balance)) {
    throw new UsageApiError(
      `current_balance has no numeric current_point_balance: got ${
        JSON.stringify(balance)?.slice(0, 40)
      }`,
      200,
    );
  }
  const monthly = poeTimeToMs(b.next_monthly_grant_time);
  const daily = poeTimeToMs(b.next_daily_grant_time);
  const amount = typeof b.next_monthly_grant_amount === "number"
    ? b.next_monthly_grant_amount
    : null;
  let nextGrant: BalanceReport["nextGrant"] = null;
  if (monthly !== null && (daily === null || monthly <= daily)) {
    nextGrant = { time: monthly, amount, kind: "monthly" };
  } else if (daily !== null) {
    nextGrant = { time: daily, amount: null, kind: "daily" };
  }
  return { balance, nextGrant };
}

function isEntry(e: unknown): e is PointsEntry {
  const x = e as Record<string, unknown> | null;
  return x !== null && typeof x === "object" && typeof x.query_id === "string" &&
    typeof x.bot_name === "string" && typeof x.creation_time === "number" &&
    typeof x.usage_type === "string" && typeof x.cost_points === "number";
}

const TOKENS = /\(([\d,]+) tokens?\)/;

/** Input and output token counts of an entry's breakdown, as Poe writes them, or null. */
export function breakdownTokens(entry: PointsEntry): { prompt: number; completion: number } | null {
  const b = entry.cost_breakdown_in_points;
  const read = (s: unknown) => {
    const m = typeof s === "string" ? TOKENS.exec(s) : null;
    return m ? Number(m[1].replaceAll(",", "")) : null;
  };
  const prompt = read(b?.Input);
  const completion = read(b?.Output);
  return prompt === null || completion === null ? null : { prompt, completion };
}

/** Parses a `points_history` page; malformed entries are skipped. */
export function parsePointsPage(body: unknown): PointsPage {
  const b = (body ?? {}) as Record<string, unknown>;
  if (!Array.isArray(b.data)) {
    throw new UsageApiError("points_history answered without a data array", 200);
  }
  return { data: b.data.filter(isEntry), hasMore: b.has_more === true };
}

/**
 * The HTTP client of Poe's Usage API (`/usage/*`, outside `/v1`). Keeps no state but the last few
 * readings of Poe's clock, from the `Date` header of its answers.
 */
export class UsageApi implements UsageSource {
  /** Poe's clock minus this machine's, in ms, newest last. */
  readonly #clock: number[] = [];
  /** Their median, kept as they come: every answer asks for it. */
  #clockOffset: number | null = null;
  readonly #base: string;
  readonly #apiKey: string | null;
  /** Poe may quote the key in an error: the message is logged and shown on the dashboard. */
  readonly #redactor: Redactor;
  readonly #fetch: typeof fetch;
  readonly #onCall?: () => void;
  /** `timeoutMs` for every call on one timer; a timeout signal each piled up under load. */
  readonly #deadlines: Deadlines;
  /** Built once: a list, which fetch takes without sorting or validating an object's keys. */
  readonly #headers: [string, string][];

  constructor(options: UsageApiOptions) {
    this.#base = options.baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#redactor = new Redactor([options.apiKey]);
    this.#fetch = options.fetch ?? fetch;
    this.#deadlines = new Deadlines(options.timeoutMs ?? 10_000);
    this.#onCall = options.onCall;
    this.#headers = [["authorization", `Bearer ${options.apiKey}`]];
    if (options.userAgent) this.#headers.push(["user-agent", options.userAgent]);
  }

  /** `GET /usage/current_balance`. */
  async currentBalance(signal?: AbortSignal): Promise<BalanceReport> {
    return parseBalance(await this.#get("/usage/current_balance", signal));
  }

  /** One page of `GET /usage/points_history`, newest first. */
  async pointsHistory(options: PointsPageOptions = {}): Promise<PointsPage> {
    let query = `limit=${options.limit ?? 100}`;
    if (options.startingAfter) {
      query += `&starting_after=${encodeURIComponent(options.startingAfter)}`;
    }
    return parsePointsPage(await this.#get(`/usage/points_history?${query}`, options.signal));
  }

  /** Stops the timer of its timeouts; calls still in flight lose them. Idempotent. */
  close(): void {
    this.#deadlines.clear();
  }

  /**
   * How far Poe's clock is ahead of this machine's, in ms: the median of the last readings, each
   * good to about half a second (the header has whole seconds). Null before the first answer.
   */
  get clockOffsetMs(): number | null {
    return this.#clockOffset;
  }

  #readClock(response: Response): void {
    const date = response.headers.get("date");
    const at = date === null ? NaN : Date.parse(date);
    if (Number.isNaN(at)) return;
    // The header drops the milliseconds: on average, its second is half over.
    this.#clock.push(at + 500 - Date.now());
    if (this.#clock.length > CLOCK_SAMPLES) this.#clock.shift();
    const sorted = [...this.#clock].sort((a, b) => a - b);
    this.#clockOffset = sorted[Math.floor(sorted.length / 2)];
  }

  async #get(path: string, signal?: AbortSignal): Promise<unknown> {
    if (!this.#apiKey) throw new UsageApiError(`Cannot call ${path}: POE_API_KEY is not set`, 401);
    const name = path.split("?")[0];
    this.#onCall?.();
    const controller = new AbortController();
    const deadline = this.#deadlines.add(() =>
      controller.abort(new DOMException("The Usage API did not answer in time.", "TimeoutError"))
    );
    const onAbort = () => controller.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let response: Response;
      try {
        response = await this.#fetch(`${this.#base}${path}`, {
          headers: this.#headers,
          signal: controller.signal,
        });
      } catch (err) {
        throw new UsageApiError(`Cannot reach Poe's ${name}: ${err}`, 0, {
          cause: err,
        });
      }
      this.#readClock(response);
      let text: string | null = "";
      try {
        text = await readCappedResponse(response, MAX_USAGE_BODY_BYTES);
      } catch (err) {
        // A body that stalls past the timeout, or breaks, is no answer: not a body "not JSON".
        if (response.ok) {
          throw new UsageApiError(`Poe's ${name} stopped answering: ${err}`, 0, {
            cause: err,
          });
        }
      }
      if (text === null) {
        throw new UsageApiError(
          `Poe's ${name} answered ${response.status} with a body larger than ${MAX_USAGE_BODY_BYTES} bytes`,
          response.status,
        );
      }
      if (!response.ok) {
        const hint = response.status === 401
          ? " (Poe refused the key: check POE_API_KEY; keys are at https://poe.com/api/keys)"
          : "";
        throw new UsageApiError(
          `Poe's ${name} answered ${response.status}${hint}: ${
            this.#redactor.redact(text).slice(0, 200)
          }`,
          response.status,
        );
      }
      try {
        return JSON.parse(text);
      } catch {
        throw new UsageApiError(
          `Poe's ${name} answered with a body that is not JSON`,
          200,
        );
      }
    } finally {
      deadline.cancel();
      signal?.removeEventListener("abort", onAbort);
    }
  }
}
