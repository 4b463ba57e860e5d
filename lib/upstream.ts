/**
 * @module The Poe client: the send loop that climbs the layered retry ladder within each call's
 * timeouts. Each call is built and sent by `poe_request.ts`, the ladder's rules are in
 * `retry_ladder.ts`, the timeouts' phases in `upstream_timeouts.ts`, a non-streamed answer is read
 * in `json_answer.ts`, and Poe's failed answers become ProxyErrors in `poe_errors.ts`.
 */
import { ProxyError } from "./errors.ts";
import type { ChatRequest } from "./openai_types.ts";
import type { Logger } from "./log.ts";
import { BodyDrains } from "./body_drain.ts";
import { Deadlines, sleep } from "./deadlines.ts";
import { type BodyReader, readStreamStart } from "./stream_start.ts";
import { type JsonStart, readJsonStart } from "./json_start.ts";
import { type JsonBody, type JsonVerdict, readJsonAnswer } from "./json_answer.ts";
import { MAX_EVENT_CHARS } from "./sse.ts";
import {
  backoffMs,
  ladderMayCure,
  ladderVariants,
  MAX_WAIT_SECONDS,
  refusedField,
  retryAfterOf,
  TRANSIENT,
} from "./retry_ladder.ts";
import {
  NO_CLIENT_RETRY,
  noAnswerError,
  poeError,
  sdkRetries,
  streamErrorAnswer,
  tooLongToWait,
} from "./poe_errors.ts";
import {
  brokeWhileHeld,
  heldBreakError,
  networkError,
  openingWait,
  type Phases,
  phases,
  quickFailureMs,
  TimeoutError,
} from "./upstream_timeouts.ts";
import { PoeRequester } from "./poe_request.ts";
import type { RawStrings } from "./upstream_bytes.ts";

/** Options of {@linkcode UpstreamClient}. */
export interface UpstreamOptions {
  /** Poe's base URL without a trailing slash, e.g. `https://api.poe.com`. */
  baseUrl: string;
  /** The Poe key; `null` sends no Authorization (the request then fails at Poe with 401). */
  apiKey: string | null;
  /** More tries on transient failures. Default: 2. */
  retries?: number;
  /**
   * How long to wait for a TCP connection before calling Poe unreachable. Default: 10 s. A network
   * failure within the lesser of this and 1 s is retried; a later one, not to Poe's connection,
   * is a connection that broke while Poe held the call, and is not.
   */
  connectTimeoutMs?: number;
  /**
   * How long to wait for Poe's response headers, and then for the whole body of an answer to a
   * non-streamed request. Default: 300 s.
   */
  firstByteTimeoutMs?: number;
  /** The same, for calls marked `slow` (image, video and audio models). Default: 900 s. */
  slowFirstByteTimeoutMs?: number;
  /**
   * How long a JSON answer to a streamed request may stay silent once its body began (for `slow`
   * calls: `slowFirstByteTimeoutMs`). Default: 120 s.
   */
  idleTimeoutMs?: number;
  /**
   * How long a stream's opening is read for an error before the answer is passed on as it is
   * (the client then gets its headers). Default: 5 s.
   */
  streamStartMs?: number;
  /** `fetch` to use. Default: the global one. */
  fetch?: typeof fetch;
  /** Sleeps that end early when the signal aborts. Default: timers. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Randomness for jitter, in [0, 1). Default: `Math.random`. */
  random?: () => number;
  /** Where attempts are logged. */
  logger?: Logger;
  /** The `User-Agent` sent to Poe. */
  userAgent?: string;
}

/** One try at Poe, and why it was made. */
export interface Attempt {
  /** Why this try was made: `first`, `drop-max-tokens`, `lowercase-model`, `both`, or `retry-<status|network>`. */
  reason: string;
  /** Poe's status; 0 for a network failure or timeout, 499 when the client left before Poe's headers. */
  status: number;
  /**
   * `status` is that of an error in Poe's 200 body (a stream that opened with an error event, a
   * JSON error), not of its HTTP answer: Poe refused the call, its gateway did not give up.
   */
  inBody?: true;
  /**
   * Milliseconds until Poe's headers (a stream's: until its opening was read; a JSON answer's:
   * until its body was), or the failure.
   */
  ms: number;
}

/** The `attempts` log field: `reason:status,...`, the form metrics parse. */
export function attemptsField(attempts: Attempt[]): string {
  // Nearly every request is one call: no array of strings built for it.
  if (attempts.length === 1) return `${attempts[0].reason}:${attempts[0].status}`;
  return attempts.map((a) => `${a.reason}:${a.status}`).join(",");
}

/** Options of one call. */
export interface SendOptions {
  /** Aborts the call: the client went away. */
  signal: AbortSignal;
  /** The client's request headers, for the few meant for Poe. */
  headers?: Headers;
  /** Request id, for log lines. */
  requestId?: string;
  /**
   * Whether a variant of the 400 ladder may be sent: without `max_tokens` an answer may run
   * longer, so the cost cap checks it again. Default: every variant.
   */
  allowVariant?: (body: ChatRequest) => boolean;
  /** A media model's call: `slowFirstByteTimeoutMs` applies. */
  slow?: boolean;
  /**
   * Asked before each further call to Poe (a retry or a ladder step): false ends the tries with
   * the last error. The global limit in front of Poe takes a token here, so retries count too.
   */
  mayRetry?: () => boolean;
  /**
   * Where each try is recorded as it is made: a call that ends in an error (thrown) made calls to
   * Poe too, and the caller's metrics and log line count them. Default: a new array.
   */
  attempts?: Attempt[];
  /** A large body's long strings in the client's bytes, spliced into each call's body. */
  raw?: RawStrings | null;
  /**
   * Called when Poe's 200 is JSON (every answer to a non-streamed request, and one to a streamed
   * request that is not a stream), before its body is read: Poe sends such an answer once its
   * model is done, so it may be billed from then on.
   */
  onJsonAnswer?: () => void;
}

/** A successful answer from Poe: headers arrived with a 2xx status. */
export interface UpstreamAnswer {
  response: Response;
  /** Every try, the last one being the success. */
  attempts: Attempt[];
  /** The body that Poe accepted (after the ladder's changes). */
  sent: ChatRequest;
  /** Aborts the upstream request (and its body stream). */
  abort: (reason?: unknown) => void;
  /** Lets go of the client's signal once the answer is read; nothing is aborted. */
  release: () => void;
  /**
   * Takes the answer's body once its `[DONE]` was read and reads what is left of it in the
   * background (bounded, then cancelled), so that its connection serves the next call.
   */
  drain: (body: BodyReader) => void;
  /**
   * A streamed answer's body from its first byte, when its opening was read for an error (then
   * `response.body` is locked): Poe's events, or those of the JSON completion Poe sent instead
   * (then `response.body` is read); null otherwise.
   */
  body: BodyReader | null;
  /**
   * A non-streamed answer's body, read whole and parsed (`response.body` is read): it held no
   * error of Poe's, but may hold no answer either. Null for a streamed request.
   */
  json: JsonBody | null;
}

/**
 * The Poe client. One instance serves every request; it keeps no per-request state but the bodies
 * of answers that are over, read to their end so that their connections are kept.
 */
export class UpstreamClient {
  #options: Required<Omit<UpstreamOptions, "logger" | "apiKey">> & {
    logger?: Logger;
    apiKey: string | null;
  };
  #requester: PoeRequester;
  /** The connect deadline (or the first-byte one, when shorter), then the rest of the first-byte one. */
  #phases: Phases;
  #slowPhases: Phases;
  #streamStart: Deadlines;
  /** A non-streamed answer's body must be whole within these from Poe's headers. */
  #answer: Deadlines;
  #slowAnswer: Deadlines;
  #drains = new BodyDrains();
  /** A network failure sooner than this came before Poe could run the model: it is retried. */
  #quickFailureMs: number;

  constructor(options: UpstreamOptions) {
    // An option given as `undefined` keeps its default rather than erasing it.
    const given = Object.fromEntries(
      Object.entries(options).filter(([, value]) => value !== undefined),
    ) as UpstreamOptions;
    this.#options = {
      retries: 2,
      connectTimeoutMs: 10_000,
      firstByteTimeoutMs: 300_000,
      slowFirstByteTimeoutMs: 900_000,
      idleTimeoutMs: 120_000,
      fetch: globalThis.fetch,
      sleep,
      random: Math.random,
      userAgent: "poe-proxy",
      streamStartMs: 5_000,
      ...given,
    };
    const { connectTimeoutMs, firstByteTimeoutMs, slowFirstByteTimeoutMs } = this.#options;
    this.#requester = new PoeRequester({
      baseUrl: options.baseUrl,
      apiKey: this.#options.apiKey,
      userAgent: this.#options.userAgent,
      connectTimeoutMs,
      fetch: this.#options.fetch,
    });
    this.#quickFailureMs = quickFailureMs(connectTimeoutMs);
    this.#phases = phases(connectTimeoutMs, firstByteTimeoutMs);
    this.#slowPhases = phases(connectTimeoutMs, slowFirstByteTimeoutMs);
    this.#streamStart = new Deadlines(this.#options.streamStartMs);
    this.#answer = new Deadlines(firstByteTimeoutMs);
    this.#slowAnswer = new Deadlines(slowFirstByteTimeoutMs);
  }

  /**
   * Sends a chat request to Poe, running the retry ladder until Poe answers with a 2xx, and
   * returns that answer: a stream's body unread (past its opening), a non-streamed one's read
   * whole (`json`). Throws a ProxyError otherwise, a 200 whose body is Poe's error included.
   */
  async send(body: ChatRequest, options: SendOptions): Promise<UpstreamAnswer> {
    const attempts = options.attempts ?? [];
    // Built at the first 400 only: nearly every request is accepted as sent.
    let variants: ReturnType<typeof ladderVariants> | null = null;
    let current = body;
    let reason = "first";
    const transient = { left: this.#options.retries, made: 0 };
    /** Waits out the backoff before another try, when one is left and allowed. */
    const pause = async (
      retryAfter: number | null = null,
      failed?: Response,
    ): Promise<boolean> => {
      if (transient.left <= 0 || !(options.mayRetry?.() ?? true)) return false;
      // The failed answer's body ends during the wait: its connection then serves the retry.
      if (failed?.body) this.#drains.drain(failed.body);
      transient.left--;
      await this.#options.sleep(
        backoffMs(transient.made++, {
          retryAfterSeconds: retryAfter,
          random: this.#options.random,
        }),
        options.signal,
      );
      return true;
    };
    for (;;) {
      if (options.signal.aborted) throw options.signal.reason;
      const started = performance.now();
      let response: Response;
      const controller = new AbortController();
      const onClientAbort = () => controller.abort(options.signal.reason);
      options.signal.addEventListener("abort", onClientAbort, { once: true });
      try {
        response = await this.#requester.post(
          current,
          controller,
          options.slow ? this.#slowPhases : this.#phases,
          options.headers,
          options.raw,
        );
      } catch (err) {
        options.signal.removeEventListener("abort", onClientAbort);
        if (options.signal.aborted) {
          // The call reached Poe all the same: it is counted, as the client's leaving.
          attempts.push({ reason, status: 499, ms: performance.now() - started });
          throw options.signal.reason;
        }
        const attempt = { reason, status: 0, ms: performance.now() - started };
        attempts.push(attempt);
        this.#logAttempt(attempt, options, err);
        // A model that stayed silent for FIRST_BYTE_TIMEOUT_SECONDS is not worth another wait.
        const slowModel = err instanceof TimeoutError && err.phase === "first-byte";
        // A connection that broke after Poe held the call: its model may have run, as behind a
        // gateway's 504, so it is not sent again.
        const held = brokeWhileHeld(err, attempt.ms, this.#quickFailureMs);
        if (!slowModel && !held && await pause()) {
          reason = "retry-network";
          continue;
        }
        throw this.#final(
          held
            ? heldBreakError(err, attempt.ms)
            : networkError(err, { attempts: attempts.length, slow: options.slow }),
          !slowModel && !held,
        );
      }
      const attempt: Attempt = { reason, status: response.status, ms: performance.now() - started };
      attempts.push(attempt);
      // A 200 web page is a captive portal's or a broken gateway's, not Poe's answer: for a stream
      // it would become a 200 with an error inside, so it fails here, where it can be retried.
      if (response.ok && response.headers.get("content-type")?.includes("text/html")) {
        options.signal.removeEventListener("abort", onClientAbort);
        // Not Poe's 200: a failed call, as a broken opening is (a client leaving now left no answer).
        attempt.status = 0;
        this.#logAttempt(attempt, options);
        if (response.body) this.#drains.drain(response.body);
        if (await pause()) {
          reason = "retry-html";
          continue;
        }
        throw this.#final(
          new ProxyError(502, "Poe answered 200 with a web page instead of an answer.", {
            type: "upstream_error",
            code: "upstream_bad_body",
          }),
          true,
        );
      }
      let opened: BodyReader | null = null;
      let json: JsonBody | null = null;
      const type = response.ok && current.stream === true && response.body !== null
        ? response.headers.get("content-type") ?? ""
        : "";
      const events = type.includes("text/event-stream");
      if (!events && type.includes("json")) options.onJsonAnswer?.();
      if (events || type.includes("json")) {
        // Nothing has reached the client yet: a stream that opens with an error, or a JSON answer
        // that is one (some bots answer a stream with JSON), is still a failed call, with its own
        // status and retries.
        let start: JsonStart;
        try {
          const phases = options.slow ? this.#slowPhases : this.#phases;
          const leftMs = phases.firstByteMs - (performance.now() - started);
          const opening = openingWait(this.#streamStart, leftMs);
          try {
            start = events
              ? await readStreamStart(response.body!, opening.wait, { drain: this.#drains.drain })
              : await readJsonStart(response.body!, {
                firstByteMs: leftMs,
                idleMs: options.slow ? phases.firstByteMs : this.#options.idleTimeoutMs,
                maxBytes: MAX_EVENT_CHARS,
                // Past the first-byte budget the body times out here, with its own status.
                wait: leftMs > this.#streamStart.ms ? opening.wait : undefined,
              });
          } finally {
            opening.cancel();
          }
        } catch (err) {
          options.signal.removeEventListener("abort", onClientAbort);
          attempt.ms = performance.now() - started;
          // Poe accepted the call and its model runs: it stays a 200, as a relayed stream's does.
          if (options.signal.aborted) throw options.signal.reason;
          attempt.status = 0;
          this.#logAttempt(attempt, options, err);
          if (!events) {
            // Poe sends a JSON answer once the model is done: billed, so it is not asked again.
            throw this.#final(
              new ProxyError(502, "The connection to Poe broke before the answer was complete.", {
                type: "upstream_error",
                code: "upstream_disconnected",
                cause: err,
              }),
              false,
            );
          }
          // Poe's 200 came and the call was held: its model may have run, so it is not sent again.
          if (brokeWhileHeld(err, attempt.ms, this.#quickFailureMs)) {
            throw this.#final(heldBreakError(err, attempt.ms), false);
          }
          if (await pause()) {
            reason = "retry-network";
            continue;
          }
          throw this.#final(
            new ProxyError(502, "The connection to Poe broke before the answer began.", {
              type: "upstream_error",
              code: "upstream_disconnected",
              cause: err,
            }),
            true,
          );
        }
        attempt.ms = performance.now() - started;
        if (start.kind === "answer") opened = start.body;
        else if (start.kind === "error") {
          response = streamErrorAnswer(start.error, {
            headers: response.headers,
            answered: events
              ? "Poe answered 200, and its stream opened with an error"
              : "Poe answered 200 with an error",
          });
          attempt.status = response.status;
          attempt.inBody = true;
        } else {
          options.signal.removeEventListener("abort", onClientAbort);
          const err = noAnswerError(start, options.slow);
          this.#logAttempt(attempt, options, err);
          // Like a 200 without choices: Poe may have billed it, and it is not retried.
          throw this.#final(err, false);
        }
      } else if (response.ok && current.stream !== true) {
        // Read whole before it is taken, as a streamed request's JSON answer is: a body that is
        // Poe's error takes the path of Poe's error answers (its status, retries, the ladder).
        options.onJsonAnswer?.();
        let verdict: JsonVerdict;
        try {
          verdict = await readJsonAnswer(response, {
            deadline: options.slow ? this.#slowAnswer : this.#answer,
            abort: (why) => controller.abort(why),
            slow: options.slow ?? false,
          });
        } catch (err) {
          options.signal.removeEventListener("abort", onClientAbort);
          attempt.ms = performance.now() - started;
          if (options.signal.aborted) throw options.signal.reason;
          this.#logAttempt(attempt, options, err);
          // Poe sends a JSON answer once its model is done: billed, so it is not asked again.
          throw this.#final(err as ProxyError, false);
        }
        attempt.ms = performance.now() - started;
        if (verdict.kind === "answer") json = verdict.body;
        else {
          response = streamErrorAnswer(verdict.error, {
            headers: response.headers,
            answered: "Poe answered 200 with an error",
          });
          attempt.status = response.status;
          attempt.inBody = true;
        }
      }
      if (response.ok) {
        // The client's abort keeps reaching the upstream body until the answer is done.
        const release = () => options.signal.removeEventListener("abort", onClientAbort);
        const abort = (why?: unknown) => {
          release();
          controller.abort(why);
        };
        if (attempts.length > 1) this.#logAttempt(attempt, options);
        const drain = this.#drains.drain;
        return { response, attempts, sent: current, abort, release, drain, body: opened, json };
      }
      options.signal.removeEventListener("abort", onClientAbort);
      this.#logAttempt(attempt, options);
      const status = response.status;
      if (status === 400) {
        const error = await poeError(response);
        // Poe named another field it refuses (`reasoning_effort`, say): no variant changes it.
        const named = refusedField(error, body);
        if (!ladderMayCure(error, named)) throw error;
        // Planned at the first 400, from the field it names; later ones only take the next step.
        variants ??= ladderVariants(body, named)
          .filter((v) => options.allowVariant?.(v.body) ?? true);
        if (variants.length === 0 || !(options.mayRetry?.() ?? true)) throw error;
        const next = variants.shift()!;
        current = next.body;
        reason = next.reason;
        continue;
      }
      if (TRANSIENT.has(status) && transient.left > 0) {
        const retryAfter = retryAfterOf(response);
        if (retryAfter !== null && retryAfter > MAX_WAIT_SECONDS) {
          throw tooLongToWait(await poeError(response), retryAfter);
        }
        if (await pause(retryAfter, response)) {
          reason = `retry-${status}`;
          continue;
        }
      }
      throw this.#final(await poeError(response), TRANSIENT.has(status));
    }
  }

  /**
   * Marks an error the client should not retry: the proxy retried it already, or retrying would
   * start the work (and the bill) again. Only with `UPSTREAM_RETRIES=0` are transient failures
   * left to the client's own retries.
   */
  #final(err: ProxyError, transient: boolean): ProxyError {
    if (sdkRetries(err.status) && (!transient || this.#options.retries > 0)) {
      Object.assign(err.headers, NO_CLIENT_RETRY);
    }
    return err;
  }

  /** Bodies of answers that are over, still being read to their end. */
  get draining(): number {
    return this.#drains.size;
  }

  /**
   * Stops the timer of its timeouts, and cancels the bodies being read to their end; requests
   * still in flight lose their timeouts. Idempotent.
   */
  close(): void {
    for (const p of [this.#phases, this.#slowPhases]) {
      p.first.clear();
      p.second.clear();
    }
    this.#streamStart.clear();
    this.#answer.clear();
    this.#slowAnswer.clear();
    this.#drains.close();
  }

  #logAttempt(attempt: Attempt, options: SendOptions, err?: unknown): void {
    this.#options.logger?.info("upstream attempt", {
      request_id: options.requestId,
      reason: attempt.reason,
      status: attempt.status,
      ms: Math.round(attempt.ms),
      error: err instanceof Error ? err.message : undefined,
    });
  }
}
