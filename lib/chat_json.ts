/**
 * @module A non-streamed answer: read whole within its deadline and size limit, checked, given usage when Poe sent
 * none, and sent on with its points.
 */
import { ProxyError } from "./errors.ts";
import type { RequestContext } from "./request_context.ts";
import type { UpstreamAnswer } from "./upstream.ts";
import { NO_CLIENT_RETRY, noAnswerError, notAnAnswer } from "./poe_errors.ts";
import { readCappedResponse } from "./json_start.ts";
import { MAX_EVENT_CHARS } from "./sse.ts";
import { isCompletion } from "./completion_events.ts";
import type { AnswerPoints } from "./answer_points.ts";
import { collectAnswerText, estimatedUsage } from "./usage_estimate.ts";
import type { ChatDeps, HeaderList } from "./chat.ts";
import { toolCallId } from "./openai_types.ts";

/**
 * The response for Poe's JSON answer. Its read is aborted at the answer deadline
 * (`FIRST_BYTE_TIMEOUT_SECONDS`, or `MEDIA_TIMEOUT_SECONDS`): a 504; a read that breaks: a 502; a
 * body larger than a streamed request's JSON answer may be (`MAX_EVENT_CHARS`) is not read on: a
 * 502 `upstream_bad_body`. All three may follow an answer Poe billed (`mayBeBilled`).
 */
export async function jsonAnswer(
  answer: UpstreamAnswer,
  ctx: RequestContext,
  deps: ChatDeps,
  headers: HeaderList,
  points: AnswerPoints | null,
  media: boolean,
): Promise<Response> {
  // At the deadline the read is aborted, which ends it with an error.
  let timedOut = false;
  const deadline = (media ? deps.deadlines.mediaAnswer : deps.deadlines.answer).add(() => {
    timedOut = true;
    answer.abort(new Error("timeout"));
  });
  let text: string | null;
  try {
    // Capped: an endless body once grew the proxy to 8 GB within the deadline.
    text = await readCappedResponse(answer.response, MAX_EVENT_CHARS);
  } catch (err) {
    if (timedOut) {
      const setting = media ? "MEDIA_TIMEOUT_SECONDS" : "FIRST_BYTE_TIMEOUT_SECONDS";
      throw new ProxyError(504, `Poe did not finish its answer within ${setting}.`, {
        type: "timeout_error",
        code: "upstream_timeout",
        headers: { ...NO_CLIENT_RETRY },
      });
    }
    throw new ProxyError(502, "The connection to Poe broke before the answer was complete.", {
      type: "upstream_error",
      code: "upstream_disconnected",
      cause: err,
      headers: { ...NO_CLIENT_RETRY },
    });
  } finally {
    deadline.cancel();
    answer.release();
  }
  if (text === null) {
    const err = noAnswerError({ kind: "too-large" });
    Object.assign(err.headers, NO_CLIENT_RETRY);
    throw err;
  }
  // deno-lint-ignore no-explicit-any
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isCompletion(parsed)) throw notAnAnswer(parsed);
  let changed = shapeToolCalls(parsed.choices[0]?.message);
  // OpenAI's answers always carry usage: one Poe sent without is counted here.
  if (!parsed.usage || typeof parsed.usage !== "object") {
    const answerText: string[] = [];
    collectAnswerText(parsed.choices[0]?.message, answerText);
    parsed.usage = estimatedUsage(deps.counter, answer.sent, answerText.join(""));
    ctx.fields.tokens_estimated = true;
    changed = true;
  }
  const usage = parsed.usage;
  if (usage) {
    ctx.fields.tokens_in = usage.prompt_tokens;
    ctx.fields.tokens_out = usage.completion_tokens;
  }
  ctx.fields.finish = parsed?.choices?.[0]?.finish_reason ?? undefined;
  if (deps.config.logBodies) {
    deps.logger.debug("response body", { request_id: ctx.id, body: text.slice(0, 100_000) });
  }
  if (points) {
    for (const [k, v] of Object.entries(await points.completeJson(parsed))) headers.push([k, v]);
    if (points.annotates) changed = true;
  }
  if (changed) text = JSON.stringify(parsed);
  headers.push(["content-type", "application/json"]);
  return new Response(text, { status: 200, headers });
}

/**
 * Makes a message with tool calls OpenAI's, in place: `content: null` where Poe sends `""`, and an
 * id for each call Poe sent without one (Gemini's `id: ""`), which the client's tool results
 * must name. Returns whether it changed anything.
 */
// deno-lint-ignore no-explicit-any
export function shapeToolCalls(message: any): boolean {
  const calls = message?.tool_calls;
  if (!Array.isArray(calls) || calls.length === 0) return false;
  let changed = false;
  if (message.content === "") {
    message.content = null;
    changed = true;
  }
  for (const call of calls) {
    if (call && typeof call === "object" && (typeof call.id !== "string" || call.id === "")) {
      call.id = toolCallId();
      changed = true;
    }
  }
  return changed;
}
