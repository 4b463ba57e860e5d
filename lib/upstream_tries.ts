/**
 * @module The tries of one call to the Poe client: the body and reason of the next try, the
 * transient retries left and their backoff, the 400 ladder's variants, and what a failed try leads
 * to, another try or its error (marked for the client not to retry, where that is right). The
 * ladder's rules are in `retry_ladder.ts`.
 */
import type { ProxyError } from "./errors.ts";
import type { ChatRequest } from "./openai_types.ts";
import type { BodyDrains } from "./body_drain.ts";
import type { SendOptions } from "./upstream_call.ts";
import { LARGE_BODY_BYTES } from "./upstream_bytes.ts";
import type { CallFailure } from "./upstream_timeouts.ts";
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
  poeError,
  SDK_MAX_WAIT_SECONDS,
  sdkRetries,
  tooLongToWait,
} from "./poe_errors.ts";

/** What the tries of every call follow: the client's settings. */
export interface TryRules {
  /** More tries on transient failures. */
  retries: number;
  /** Sleeps that end early when the signal aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Randomness for jitter, in [0, 1). */
  random: () => number;
  /** Where failed answers' bodies are read to their end. */
  drains: BodyDrains;
}

/** A 400 of a try that carried an answer limit, in `field`. */
export interface LimitRefusal {
  error: ProxyError;
  field: "max_tokens" | "max_completion_tokens";
}

/**
 * The tries of one call: the send loop sends {@linkcode Tries.body} for
 * {@linkcode Tries.reason}, and after a failed try asks {@linkcode Tries.retry} or
 * {@linkcode Tries.refused} for the next one, which they set, or throw the call's error.
 */
export class Tries {
  /** The body of the next try: the request, or the ladder's variant of it. */
  body: ChatRequest;
  /** Why the next try is made: `first`, a ladder step, or `retry-<status|network|html>`. */
  reason = "first";
  /**
   * Poe's 400s of tries that carried an answer limit, and in which field: their words tell
   * whether the field or its size was refused.
   */
  readonly limitRefusals: LimitRefusal[] = [];
  readonly #request: ChatRequest;
  readonly #options: SendOptions;
  readonly #rules: TryRules;
  #left: number;
  #made = 0;
  /** Built at the first 400 only: nearly every request is accepted as sent. */
  #variants: ReturnType<typeof ladderVariants> | null = null;

  constructor(request: ChatRequest, options: SendOptions, rules: TryRules) {
    this.body = request;
    this.#request = request;
    this.#options = options;
    this.#rules = rules;
    this.#left = rules.retries;
  }

  /** Waits out the backoff before another try, when one is left and allowed. */
  async #pause(retryAfter: number | null = null, failed?: Response): Promise<boolean> {
    if (this.#left <= 0 || !(this.#options.mayRetry?.() ?? true)) return false;
    // The failed answer's body ends during the wait: its connection then serves the retry.
    if (failed?.body) this.#rules.drains.drain(failed.body);
    this.#left--;
    await this.#rules.sleep(
      backoffMs(this.#made++, {
        retryAfterSeconds: retryAfter,
        random: this.#rules.random,
      }),
      this.#options.signal,
    );
    return true;
  }

  /**
   * After a try that failed without Poe's error answer: when `failure` may be retried and a retry
   * is left and allowed, waits out the backoff and sets `reason` for the next try; else throws
   * its error.
   */
  async retry(failure: CallFailure, reason: string): Promise<void> {
    if (failure.retry && await this.#pause()) {
      this.reason = reason;
      return;
    }
    throw this.final(failure.error, failure.retry);
  }

  /**
   * After Poe's error answer (or the one its 200's body stood for): sets the next try, a step of
   * the 400 ladder or a retry after the backoff, or throws the error the call ends in.
   */
  async refused(response: Response): Promise<void> {
    const status = response.status;
    if (status === 400) {
      const error = await poeError(response);
      // Poe named another field it refuses (`reasoning_effort`, say): no variant changes it.
      const named = refusedField(error, this.#request);
      if (!ladderMayCure(error, named)) throw error;
      // A large body's 400 that names nothing is most likely its attachment's (an image the
      // model cannot read): each variant would upload it again, to the same refusal. But for an
      // answer limit the proxy added itself: the one variant without it is tried.
      const field = "max_tokens" in this.body
        ? "max_tokens"
        : "max_completion_tokens" in this.body
        ? "max_completion_tokens"
        : null;
      if (field !== null) this.limitRefusals.push({ error, field });
      const large = named === null && (this.#options.bodyBytes ?? 0) > LARGE_BODY_BYTES;
      if (large && !this.#options.addedLimit) throw error;
      // Planned at the first 400, from the field it names; later ones only take the next step.
      this.#variants ??= ladderVariants(this.#request, named)
        .filter((v) => this.#options.allowVariant?.(v.body) ?? true)
        .filter((v) => !large || v.reason === "drop-max-tokens");
      if (this.#variants.length === 0 || !(this.#options.mayRetry?.() ?? true)) throw error;
      const next = this.#variants.shift()!;
      this.body = next.body;
      this.reason = next.reason;
      return;
    }
    if (TRANSIENT.has(status)) {
      const retryAfter = retryAfterOf(response);
      // With no retry left here (UPSTREAM_RETRIES=0), the client's own retries wait it out, but
      // the SDKs retry within a second when it is over their 60 s.
      const longest = this.#left > 0 ? MAX_WAIT_SECONDS : SDK_MAX_WAIT_SECONDS;
      if (retryAfter !== null && retryAfter > longest) {
        throw tooLongToWait(await poeError(response), retryAfter);
      }
      if (this.#left > 0 && await this.#pause(retryAfter, response)) {
        this.reason = `retry-${status}`;
        return;
      }
    }
    throw this.final(await poeError(response), TRANSIENT.has(status));
  }

  /**
   * Marks an error the client should not retry: the proxy retried it already, or retrying would
   * start the work (and the bill) again. Only with `UPSTREAM_RETRIES=0` are transient failures
   * left to the client's own retries.
   */
  final(err: ProxyError, transient: boolean): ProxyError {
    if (sdkRetries(err.status) && (!transient || this.#rules.retries > 0)) {
      Object.assign(err.headers, NO_CLIENT_RETRY);
    }
    return err;
  }
}
