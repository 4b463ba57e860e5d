/**
 * @module The answer a guard's refusal becomes: an assistant message in the request's own format for
 * a person, a 402 error for a program.
 */
import { errorResponse, ProxyError } from "./errors.ts";
import type { GuardRefusal } from "./guards.ts";
import { type ChatRequest, completionId } from "./openai_types.ts";
import { footerRefused, landsInPlace } from "./answer_points.ts";

/**
 * Whether a program parses the answer: the request offers tools or legacy `functions`, forces a
 * call, asks for a `response_format` other than text, or its answer lands in place
 * (`landsInPlace`: stop sequences, a tiny limit, a prefill; or the client asks for no footer). A
 * refusal in prose would then break it where an error is handled (instructor's FUNCTIONS mode and
 * older LangChain agents still send `functions`, and would read the refusal as the model's answer).
 */
function parsedByProgram(body: ChatRequest, headers?: Headers): boolean {
  // Written into a file, a commit or a title bar (what gets no footer): no refusal in prose. So
  // is the answer to a client that asks for no footer for that reason.
  if (landsInPlace(body) || (headers !== undefined && footerRefused(headers))) return true;
  if (Array.isArray(body.tools) && body.tools.length > 0) return true;
  if (Array.isArray(body.functions) && body.functions.length > 0) return true;
  if (forcesCall(body.tool_choice) || forcesCall(body.function_call)) return true;
  const format = body.response_format as { type?: unknown } | null | undefined;
  return typeof format === "object" && format !== null && format.type !== "text";
}

/** A `tool_choice` or `function_call` that asks for a call: `"required"`, or one naming it. */
function forcesCall(choice: unknown): boolean {
  return choice === "required" || (typeof choice === "object" && choice !== null);
}

/**
 * The answer to a refused request. For a person, in the request's own format: SSE chunks (role
 * and content, then `finish_reason: "stop"`, a usage chunk when asked for, `[DONE]`) when
 * streaming, else a complete `chat.completion`, status 200. For a program (tools, `functions`, a
 * forced call or a `response_format`), an error: 402, as Poe answers when points run out. Both carry
 * `x-poe-proxy-guard`.
 */
export function guardResponse(
  refusal: GuardRefusal,
  body: ChatRequest,
  requestHeaders?: Headers,
  now = Date.now(),
): Response {
  if (parsedByProgram(body, requestHeaders)) {
    const code = refusal.guard === "paused" ? "points_paused" : "cost_cap_exceeded";
    return errorResponse(new ProxyError(402, refusal.message, { code }), {
      "x-poe-proxy-guard": refusal.guard,
    });
  }
  const id = completionId();
  const created = Math.floor(now / 1000);
  const usage = {
    prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 0,
    cost_points: 0,
    points_estimated: false,
    ...(refusal.balance === null ? {} : { balance_points: Math.round(refusal.balance) }),
  };
  const headers = new Headers({ "x-poe-proxy-guard": refusal.guard });
  const base = { id, created, model: body.model };
  if (body.stream !== true) {
    headers.set("content-type", "application/json");
    return new Response(
      JSON.stringify({
        ...base,
        object: "chat.completion",
        choices: [{
          index: 0,
          message: { role: "assistant", content: refusal.message },
          finish_reason: "stop",
        }],
        usage,
      }),
      { headers },
    );
  }
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices, ...extra })}\n\n`;
  const includeUsage =
    (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  const text = chunk([{
    index: 0,
    delta: { role: "assistant", content: refusal.message },
    finish_reason: null,
  }]) +
    chunk([{ index: 0, delta: {}, finish_reason: "stop" }]) +
    (includeUsage ? chunk([], { usage }) : "") +
    "data: [DONE]\n\n";
  headers.set("content-type", "text/event-stream; charset=utf-8");
  headers.set("cache-control", "no-cache");
  return new Response(text, { headers });
}
