/**
 * @module The Poe client: the send loop that climbs the layered retry ladder within each call's
 * timeouts. Each call is built and sent by `poe_request.ts`, the ladder's rules are in
 * `retry_ladder.ts`, the timeouts' phases in `upstream_timeouts.ts`, what a 2xx answer's start is
 * read as in `answer_start.ts` (a non-streamed answer is read in `json_answer.ts`), and Poe's failed
 * answers become ProxyErrors in `poe_errors.ts`; what a failed try leads to is decided in
 * `upstream_tries.ts`. The options are in `upstream_options.ts`, what a call is given and gives
 * back in `upstream_call.ts`.
 */
import type { ProxyError } from "./errors.ts";
import type { ChatRequest } from "./openai_types.ts";
import { BodyDrains } from "./body_drain.ts";
import { Deadlines } from "./deadlines.ts";
import { type BodyReader, readStreamStart } from "./stream_start.ts";
import { type JsonStart, readJsonStart } from "./json_start.ts";
import { type JsonBody, type JsonVerdict, readJsonAnswer } from "./json_answer.ts";
import { MAX_EVENT_CHARS } from "./sse.ts";
import { noAnswerError, streamErrorAnswer } from "./poe_errors.ts";
import {
  fetchFailure,
  openingWait,
  type Phases,
  phases,
  quickFailureMs,
} from "./upstream_timeouts.ts";
import { PoeRequester } from "./poe_request.ts";
import {
  type UpstreamOptions,
  type UpstreamSettings,
  upstreamSettings,
} from "./upstream_options.ts";
import type { Attempt, SendOptions, UpstreamAnswer } from "./upstream_call.ts";
import { answerForm, startFailure, webPageError } from "./answer_start.ts";
import { Tries, type TryRules } from "./upstream_tries.ts";

export type { UpstreamOptions } from "./upstream_options.ts";
export {
  type Attempt,
  attemptsField,
  type SendOptions,
  type UpstreamAnswer,
} from "./upstream_call.ts";

/**
 * The Poe client. One instance serves every request; it keeps no per-request state but the bodies
 * of answers that are over, read to their end so that their connections are kept.
 */
export class UpstreamClient {
  #options: UpstreamSettings;
  #requester: PoeRequester;
  /** The connect deadline (or the first-byte one, when shorter), then the rest of the first-byte one. */
  #phases: Phases;
  #slowPhases: Phases;
  #streamStart: Deadlines;
  /** A non-streamed answer's body must be whole within these from Poe's headers. */
  #answer: Deadlines;
  #slowAnswer: Deadlines;
  #drains = new BodyDrains();
  #rules: TryRules;
  /** A network failure sooner than this came before Poe could run the model: it is retried. */
  #quickFailureMs: number;

  constructor(options: UpstreamOptions) {
    this.#options = upstreamSettings(options);
    const { connectTimeoutMs, firstByteTimeoutMs, slowFirstByteTimeoutMs } = this.#options;
    this.#requester = new PoeRequester({
      baseUrl: options.baseUrl,
      apiKey: this.#options.apiKey,
      userAgent: this.#options.userAgent,
      connectTimeoutMs,
      fetch: this.#options.fetch,
    });
    const { retries, sleep, random } = this.#options;
    this.#rules = { retries, sleep, random, drains: this.#drains };
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
    const tries = new Tries(body, options, this.#rules);
    for (;;) {
      if (options.signal.aborted) throw options.signal.reason;
      const started = performance.now();
      let response: Response;
      const controller = new AbortController();
      const onClientAbort = () => controller.abort(options.signal.reason);
      options.signal.addEventListener("abort", onClientAbort, { once: true });
      try {
        response = await this.#requester.post(
          tries.body,
          controller,
          options.slow ? this.#slowPhases : this.#phases,
          options.headers,
          options.raw,
        );
      } catch (err) {
        options.signal.removeEventListener("abort", onClientAbort);
        if (options.signal.aborted) {
          // The call reached Poe all the same: it is counted, as the client's leaving.
          attempts.push({ reason: tries.reason, status: 499, ms: performance.now() - started });
          throw options.signal.reason;
        }
        const attempt = { reason: tries.reason, status: 0, ms: performance.now() - started };
        attempts.push(attempt);
        this.#logAttempt(attempt, options, err);
        const failure = fetchFailure(err, {
          ms: attempt.ms,
          quickMs: this.#quickFailureMs,
          attempts: attempts.length,
          slow: options.slow,
        });
        await tries.retry(failure, "retry-network");
        continue;
      }
      const attempt: Attempt = {
        reason: tries.reason,
        status: response.status,
        ms: performance.now() - started,
      };
      attempts.push(attempt);
      const form = answerForm(response, tries.body.stream === true);
      if (form === "page") {
        options.signal.removeEventListener("abort", onClientAbort);
        // Not Poe's 200: a failed call, as a broken opening is (a client leaving now left no answer).
        attempt.status = 0;
        this.#logAttempt(attempt, options);
        if (response.body) this.#drains.drain(response.body);
        await tries.retry({ error: webPageError(), retry: true }, "retry-html");
        continue;
      }
      let opened: BodyReader | null = null;
      let json: JsonBody | null = null;
      if (form === "events" || form === "json") {
        const events = form === "events";
        if (!events) options.onJsonAnswer?.();
        // Nothing has reached the client yet: a stream that opens with an error, or a JSON answer
        // that is one, is still a failed call, with its own status and retries.
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
          const failure = startFailure(err, {
            events,
            ms: attempt.ms,
            quickMs: this.#quickFailureMs,
          });
          await tries.retry(failure, "retry-network");
          continue;
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
          throw tries.final(err, false);
        }
      } else if (form === "whole") {
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
          throw tries.final(err as ProxyError, false);
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
        return {
          response,
          attempts,
          sent: tries.body,
          limitRefusals: tries.limitRefusals,
          abort,
          release,
          drain,
          body: opened,
          json,
        };
      }
      options.signal.removeEventListener("abort", onClientAbort);
      this.#logAttempt(attempt, options);
      await tries.refused(response);
    }
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
