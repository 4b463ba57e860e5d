/**
 * @module A non-streamed answer (read whole by the Poe client, `json_answer.ts`): checked, given
 * usage when Poe sent none, and sent on with its points.
 */
import type { RequestContext } from "./request_context.ts";
import type { UpstreamAnswer } from "./upstream.ts";
import { notAnAnswer } from "./poe_errors.ts";
import { isCompletion } from "./completion_events.ts";
import type { AnswerPoints } from "./answer_points.ts";
import { collectAnswerText, estimatedUsage } from "./usage_estimate.ts";
import type { ChatDeps } from "./chat.ts";
import { type HeaderList, headerResponse } from "./header_response.ts";
import { toolCallId } from "./openai_types.ts";
import { functionCallAnswer } from "./legacy_functions.ts";

/**
 * The response for Poe's JSON answer, whose body the Poe client read (`answer.json`): one that
 * holds no answer is a 502 `upstream_bad_body`, which may follow an answer Poe billed
 * (`mayBeBilled`).
 */
export async function jsonAnswer(
  answer: UpstreamAnswer,
  ctx: RequestContext,
  deps: ChatDeps,
  headers: HeaderList,
  points: AnswerPoints | null,
  legacyFunctions = false,
): Promise<Response> {
  // Read whole already: the client's abort has nothing left to end.
  answer.release();
  // The Poe client reads every non-streamed answer's body before it hands the answer on.
  let text = answer.json!.text;
  // deno-lint-ignore no-explicit-any
  const parsed: any = answer.json!.parsed;
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
  // The client offered legacy `functions`: it reads a `function_call` (once usage was counted).
  if (legacyFunctions && functionCallAnswer(parsed.choices[0])) changed = true;
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
    const message = parsed.choices[0]?.message;
    const content = message?.content;
    // Poe's own usage as it is written in its body, where the cost is added (see `withUsage`).
    const before = changed || !points.annotates ? null : JSON.stringify(usage);
    for (const [k, v] of Object.entries(await points.completeJson(parsed))) headers.push([k, v]);
    if (points.annotates) {
      const spliced = before !== null && message?.content === content
        ? withUsage(text, before, usage)
        : null;
      if (spliced === null) changed = true;
      else text = spliced;
    }
  }
  if (changed) text = JSON.stringify(parsed);
  headers.push(["content-type", "application/json"]);
  return headerResponse(text, 200, headers);
}

/**
 * Makes a message with tool calls OpenAI's, in place: `content: null` where Poe sends `""`, an
 * id for each call Poe sent without one (Gemini's `id: ""`), which the client's tool results
 * must name, and the `type` of a call sent without one. Returns whether it changed anything.
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
    if (!call || typeof call !== "object") continue;
    if (typeof call.id !== "string" || call.id === "") {
      call.id = toolCallId();
      changed = true;
    }
    // The SDK's helpers (`parse()`, `runTools()`) refuse a call without its type.
    if ((call.type === undefined || call.type === null) && call.function) {
      call.type = "function";
      changed = true;
    }
  }
  return changed;
}

const USAGE_KEY = '"usage":';

/**
 * Poe's answer `text` with its usage object, written there as `before`, replaced by `usage` (the
 * cost and balance added): the rest of the answer goes on as Poe wrote it, where serializing the
 * whole answer again took up to 7 % of a small answer's instructions, and more the longer the
 * answer. Null when `before` is not found exactly once (Poe wrote it spaced, or with numbers or
 * escapes `JSON.stringify` writes otherwise, or not right after `"usage":`): then the whole answer
 * is serialized. Inside strings quotes are escaped: what is found is the usage object itself.
 */
export function withUsage(text: string, before: string, usage: unknown): string | null {
  const at = text.lastIndexOf(before);
  if (at < USAGE_KEY.length || text.indexOf(before) !== at) return null;
  if (!text.startsWith(USAGE_KEY, at - USAGE_KEY.length)) return null;
  return text.slice(0, at) + JSON.stringify(usage) + text.slice(at + before.length);
}
