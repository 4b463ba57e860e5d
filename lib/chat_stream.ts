/**
 * @module A streamed answer relayed to the client: the relay's timeouts, usage and footer, and what
 * the request's end logs.
 */
import { ProxyError } from "./errors.ts";
import type { RequestContext } from "./request_context.ts";
import type { UpstreamAnswer } from "./upstream.ts";
import { type RelayOutcome, relaySse } from "./sse.ts";
import type { AnswerPoints } from "./answer_points.ts";
import { estimatedUsage } from "./usage_estimate.ts";
import type { ChatDeps } from "./chat.ts";
import { type HeaderList, headerResponse } from "./header_response.ts";
import { clientWantsUsage } from "./chat_request.ts";
import type { ChatRequest } from "./openai_types.ts";
import { usesLegacyFunctions } from "./legacy_functions.ts";

/**
 * Whether a relayed stream that was never settled may still be billed: its client left or it
 * timed out (Poe may have been thinking in silence), or it failed once Poe had sent some of the
 * answer. One that failed before any of it (an error event after the role chunk) is Poe's refusal.
 */
function mayBeBilled(outcome: RelayOutcome): boolean {
  if (outcome.end === "client-gone" || outcome.end === "timeout") return true;
  return outcome.end === "upstream-error" && outcome.answered;
}

/**
 * The response for Poe's streamed answer: its events relayed as they come, within what is left of
 * the first-byte timeout and the idle one. The request ends (and is logged) when the relay does.
 * `request` is the client's: its model names the chunks the proxy makes when Poe's name none.
 */
export function streamAnswer(
  answer: UpstreamAnswer,
  ctx: RequestContext,
  deps: ChatDeps,
  headers: HeaderList,
  request: ChatRequest,
  points: AnswerPoints | null,
  media: boolean,
): Response {
  const { config } = deps;
  const includeUsage = clientWantsUsage(request);
  // A JSON answer was read and made events already, before the client was sent a status.
  const upstreamBody = answer.body ?? answer.response.body;
  if (!upstreamBody) {
    throw new ProxyError(502, "Poe answered without a body.", { type: "upstream_error" });
  }
  const stream = relaySse(upstreamBody, {
    keepaliveMs: config.keepaliveSeconds * 1000,
    // What is left of it: the wait for the answering call's headers counted already (not the
    // client's upload, nor earlier tries).
    firstByteTimeoutMs: Math.max(
      1,
      (media ? config.mediaTimeoutSeconds : config.firstByteTimeoutSeconds) * 1000 -
        answer.attempts[answer.attempts.length - 1].ms,
    ),
    idleTimeoutMs: (media ? config.mediaTimeoutSeconds : config.idleTimeoutSeconds) * 1000,
    timeoutSetting: media ? "MEDIA_TIMEOUT_SECONDS" : undefined,
    includeUsage,
    model: request.model,
    legacyFunctions: usesLegacyFunctions(request),
    redact: deps.loggable,
    // Asked for, or shown in the footer, and Poe may not send it: counted here then.
    estimateUsage: includeUsage || points?.annotates
      ? (answerText) => estimatedUsage(deps.counter, answer.sent, answerText)
      : undefined,
    finish: points?.annotates ? (summary) => points.finish(summary) : undefined,
    onFinishReason: points ? () => points.billable() : undefined,
    abortUpstream: answer.abort,
    cut: deps.shutdown,
    drainUpstream: answer.drain,
    onEnd(outcome) {
      // An unfinished answer was already aborted by the relay; a finished one needs no abort.
      answer.release();
      if (outcome.firstEventAt !== null) ctx.ttfbMs = outcome.firstEventAt - ctx.started;
      if (outcome.usage) {
        ctx.fields.tokens_in = outcome.usage.prompt_tokens;
        ctx.fields.tokens_out = outcome.usage.completion_tokens;
        if (outcome.usage.tokens_estimated) ctx.fields.tokens_estimated = true;
      }
      ctx.fields.finish = outcome.finishReason ?? undefined;
      if (outcome.finishAdded) ctx.fields.finish_added = true;
      if (outcome.droppedEvents > 0) ctx.fields.dropped_events = outcome.droppedEvents;
      // FOOTER=off: the stream got no footer or points; its cost is still attributed for the logs.
      if (points && !points.annotates && outcome.end === "done") void points.finish(outcome);
      // Poe may bill an answer its client left, or one that broke or stalled once it began:
      // watched for, so that its history entry is not taken for the next answer's, its cost is
      // logged, and the guards count it meanwhile.
      if (points && !points.settling && mayBeBilled(outcome)) points.abandoned();
      if (outcome.end !== "done") ctx.fields.end = outcome.end;
      ctx.end(outcome.end === "client-gone" ? 499 : 200);
    },
  });
  // Set once the relay exists: a request whose relay could not be built is ended by the app.
  ctx.deferred = true;
  headers.push(...SSE_HEADERS);
  return headerResponse(stream, 200, headers);
}

/** The headers of every event stream the proxy sends. */
export const SSE_HEADERS: HeaderList = [
  ["content-type", "text/event-stream; charset=utf-8"],
  ["cache-control", "no-cache"],
  ["x-accel-buffering", "no"],
];
