/** @module One chat call to Poe: its URL, headers and body, sent within its first-byte deadline. */
import type { ChatRequest } from "./openai_types.ts";
import type { RawStrings } from "./upstream_bytes.ts";
import { firstByteDeadline, type Phases, TimeoutError } from "./upstream_timeouts.ts";

/** Request headers a client may send that are meant for Poe. */
const FORWARDED_REQUEST_HEADERS = ["poe-feature"];

/** Response headers of Poe's that the client should see. */
const PASSED_RESPONSE_HEADERS = [
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
  "x-poe-feature-active",
];

/** Adds the headers of Poe's answer the client should see to `to`, but those named in `except`. */
export function passPoeHeaders(
  from: Headers,
  to: [string, string][],
  except: [string, string][],
): void {
  for (const name of PASSED_RESPONSE_HEADERS) {
    if (except.some(([n]) => n === name)) continue;
    const value = from.get(name);
    if (value !== null) to.push([name, value]);
  }
}

/** Options of a {@linkcode PoeRequester}. */
export interface PoeRequesterOptions {
  /** Poe's base URL without a trailing slash, e.g. `https://api.poe.com`. */
  baseUrl: string;
  /** The Poe key; `null` sends no Authorization (the request then fails at Poe with 401). */
  apiKey: string | null;
  /** The `User-Agent` sent to Poe. */
  userAgent: string;
  /** How long to wait for a TCP connection before calling Poe unreachable. */
  connectTimeoutMs: number;
  /** `fetch` to use. */
  fetch: typeof fetch;
}

/**
 * Sends chat calls to Poe's `/v1/chat/completions`: the body as JSON, the Poe key, the
 * `User-Agent`, and the few client headers meant for Poe; nothing else of the client's.
 */
export class PoeRequester {
  readonly #options: PoeRequesterOptions;
  readonly #chatUrl: string;

  constructor(options: PoeRequesterOptions) {
    this.#options = options;
    this.#chatUrl = `${options.baseUrl}/v1/chat/completions`;
  }

  /**
   * Sends `body` and resolves with Poe's response once its headers arrive. Aborting `controller`
   * cancels the call; the connect and first-byte deadlines of `phases` abort it with a
   * {@linkcode TimeoutError}, which is what it then rejects with. A large body's long strings
   * are spliced from `raw`, the client's bytes, not serialized and encoded again.
   */
  async post(
    body: ChatRequest,
    controller: AbortController,
    phases: Phases,
    clientHeaders?: Headers,
    raw?: RawStrings | null,
  ): Promise<Response> {
    const { connectTimeoutMs } = this.#options;
    // A list, not a Headers object: fetch converts it once, without sorting and combining.
    const headers: [string, string][] = [
      ["content-type", "application/json"],
      ["accept", body.stream ? "text/event-stream" : "application/json"],
      ["user-agent", this.#options.userAgent],
    ];
    if (this.#options.apiKey) headers.push(["authorization", `Bearer ${this.#options.apiKey}`]);
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = clientHeaders?.get(name);
      if (value) headers.push([name, value]);
    }
    const deadline = firstByteDeadline(phases, {
      connectMs: connectTimeoutMs,
      url: this.#chatUrl,
      controller,
    });
    try {
      return await this.#options.fetch(this.#chatUrl, {
        method: "POST",
        headers,
        body: raw ? raw.serialize(body) : JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (err) {
      if (controller.signal.reason instanceof TimeoutError) throw controller.signal.reason;
      throw err;
    } finally {
      deadline.cancel();
    }
  }
}
