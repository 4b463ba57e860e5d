/** @module The door's token buckets: each client's, wrong keys per address, and Poe's for the whole account. */
import type { Config } from "./config.ts";
import { ProxyError } from "./errors.ts";
import { RateLimiter, rateLimitError, rateLimitHeaders } from "./rate_limit.ts";
import type { RequestContext } from "./request_context.ts";
import { localNetworkKey } from "./client_id.ts";

/** Wrong inbound keys one address may send a minute (and at once) before it has to wait. */
const AUTH_FAILURES_PER_MINUTE = 10;
/**
 * Wrong keys one local IPv6 network (`/64`) may send a minute: its hosts are counted one address
 * each, but any of them can take new addresses at will.
 */
const NETWORK_AUTH_FAILURES_PER_MINUTE = 10 * AUTH_FAILURES_PER_MINUTE;

/** The settings {@linkcode DoorLimits} reads. */
export type DoorLimitsConfig = Pick<
  Config,
  "rateLimitPerMinute" | "rateLimitBurst" | "maxTrackedClients" | "poeRateLimitPerMinute"
>;

/**
 * The door's buckets: a client's and a wrong key's refuse with 429 and `Retry-After`, as does Poe's
 * before a first call; a retry without Poe's token is not made.
 */
export class DoorLimits {
  readonly #clients: RateLimiter;
  readonly #authFailures: RateLimiter;
  readonly #networkFailures: RateLimiter;
  /** Local IPv6 addresses that sent a right key lately, oldest first. */
  readonly #known = new Set<string>();
  readonly #maxKnown: number;
  readonly #poe: RateLimiter;
  readonly #poePerMinute: number;
  readonly #clientPerMinute: number;

  /** `now`: the clock of every bucket. */
  constructor(config: DoorLimitsConfig, now: () => number) {
    this.#clients = new RateLimiter({
      perMinute: config.rateLimitPerMinute,
      burst: config.rateLimitBurst,
      maxClients: config.maxTrackedClients,
      now,
    });
    // Wrong keys from one address: a few a minute, then that address waits, right key or not, so
    // that no key can be found by trying.
    this.#authFailures = new RateLimiter({
      perMinute: AUTH_FAILURES_PER_MINUTE,
      burst: AUTH_FAILURES_PER_MINUTE,
      maxClients: config.maxTrackedClients,
      now,
    });
    this.#networkFailures = new RateLimiter({
      perMinute: NETWORK_AUTH_FAILURES_PER_MINUTE,
      burst: NETWORK_AUTH_FAILURES_PER_MINUTE,
      maxClients: config.maxTrackedClients,
      now,
    });
    // Poe allows 500 a minute per account; a small burst keeps any 60 s window under it.
    this.#poe = new RateLimiter({
      perMinute: config.poeRateLimitPerMinute,
      burst: Math.min(50, Math.max(1, config.poeRateLimitPerMinute)),
      maxClients: 1,
      now,
    });
    this.#maxKnown = Math.max(1, config.maxTrackedClients);
    this.#poePerMinute = config.poeRateLimitPerMinute;
    this.#clientPerMinute = config.rateLimitPerMinute;
  }

  /** Client buckets held now; never more than `MAX_TRACKED_CLIENTS`. */
  get trackedClients(): number {
    return this.#clients.size;
  }

  /**
   * Throws 429 while `address` (or its local IPv6 network) waits for having sent too many wrong
   * keys, or, for a request that a DNS-rebinding page could have sent (`page`: the host name it
   * used), while the web pages at that address wait.
   */
  refuseGuesser(ctx: RequestContext, address: string, page: string | null = null): void {
    // An address that showed a right key lately knows one: its network's guessers do not hold it.
    const network = this.#known.has(address) ? null : localNetworkKey(address);
    const wait = Math.max(
      this.#authFailures.waitSeconds(address),
      network === null ? 0 : this.#networkFailures.waitSeconds(network),
    );
    if (wait > 0) throw guesserError(ctx, wait, "from this address");
    if (page === null) return;
    const pageWait = this.#authFailures.waitSeconds(pageKey(address));
    if (pageWait > 0) {
      throw guesserError(
        ctx,
        pageWait,
        `from web pages (at ${JSON.stringify(page.slice(0, 100))}) on this address`,
      );
    }
  }

  /**
   * Counts a wrong key sent from `address`; from a web page (`page`: the host name it used, see
   * `BrowserGuard.pageHost`), against the pages at that address instead: a DNS-rebinding page in
   * the owner's browser shares the address of the owner's programs, which must not wait for it.
   * Keyed by the address, not the name, which the sender chooses. `count`: the keys it sent.
   */
  wrongKey(address: string, page: string | null = null, count = 1): void {
    const network = localNetworkKey(address);
    for (let i = 0; i < count; i++) {
      this.#authFailures.take(page === null ? address : pageKey(address));
      if (network !== null) this.#networkFailures.take(network);
    }
  }

  /**
   * Notes that `address` sent a right key: the wrong keys of other addresses of its local IPv6
   * network no longer hold it up. Only addresses such a network could hold up are kept, at most
   * `MAX_TRACKED_CLIENTS`, the least recent dropped first.
   */
  rightKey(address: string): void {
    if (localNetworkKey(address) === null) return;
    this.#known.delete(address);
    if (this.#known.size >= this.#maxKnown) this.#known.delete(this.#known.keys().next().value!);
    this.#known.add(address);
  }

  /** Takes Poe's token for a first call to Poe, or throws 429 (`limited=poe`). */
  // Taken only for a request that will really reach Poe: garbage and guarded requests spend none.
  takePoeToken(ctx: RequestContext): void {
    const global = this.#poe.take("poe");
    if (global.allowed) return;
    ctx.fields.limited = "poe";
    throw rateLimitError(global, {
      message:
        `This proxy keeps Poe under POE_RATE_LIMIT_PER_MINUTE (${this.#poePerMinute}); try again in ${global.retryAfterSeconds} s.`,
    });
  }

  /**
   * Counts a Usage API call against POE_RATE_LIMIT_PER_MINUTE: Poe's 500 a minute may count them
   * too. It is made whatever the bucket holds; chat calls are refused (429) until what it owes is
   * refilled.
   */
  chargePoe(): void {
    this.#poe.charge("poe");
  }

  /** Takes Poe's token for a retry: false (`limited=poe-retry`) when there is none. */
  // A retry is a call to Poe too: without a token the request ends with Poe's last error.
  takePoeRetryToken(ctx: RequestContext): boolean {
    if (this.#poe.take("poe").allowed) return true;
    ctx.fields.limited = "poe-retry";
    return false;
  }

  /**
   * Runs `answer` within the client's bucket, or throws 429 (`limited=client`). `answer` gets the
   * client's `x-ratelimit-*` headers; its response and its errors carry them, but for a 429 (with
   * the headers that explain it) and a refusal at Poe's bucket (the client's refunded figures).
   */
  async forClient(
    ctx: RequestContext,
    answer: (limitHeaders: Record<string, string>) => Promise<Response>,
  ): Promise<Response> {
    const clients = this.#clients;
    const decision = clients.take(ctx.client);
    const limitHeaders = rateLimitHeaders(decision);
    if (!decision.allowed) {
      ctx.fields.limited = "client";
      const seconds = Math.max(1, decision.retryAfterSeconds);
      // Named, as Poe's own limit and the proxy's limit in front of Poe are: which one to raise.
      throw rateLimitError(decision, {
        message: `Rate limit reached for requests: this client may send ${this.#clientPerMinute} ` +
          `a minute (RATE_LIMIT_PER_MINUTE, bursts of ${decision.limit}: RATE_LIMIT_BURST); ` +
          `retry after ${seconds} s.`,
      });
    }
    let response: Response;
    try {
      response = await answer(limitHeaders);
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
  }
}

/** The wrong-key bucket of web pages at an address; no address has a space. */
function pageKey(address: string): string {
  return `page ${address}`;
}

function guesserError(ctx: RequestContext, wait: number, from: string): ProxyError {
  ctx.fields.limited = "auth";
  return new ProxyError(
    429,
    `Too many requests with a wrong API key ${from}; try again in ${wait} s.`,
    {
      type: "rate_limit_error",
      code: "too_many_auth_failures",
      headers: { "retry-after": String(wait) },
    },
  );
}
