/**
 * @module OpenAI's legacy function calling (`functions`, `function_call`, `role: "function"`),
 * which Poe does not read, as the tools it does: the request on its way to Poe, and the answer's
 * tool call back as the `function_call` such a client reads (instructor's FUNCTIONS mode, older
 * LangChain agents).
 */
import type { ChatMessage, ChatRequest, ToolCall } from "./openai_types.ts";

/** Whether a request offers legacy `functions` and no `tools`: its answer is given back as one. */
export function usesLegacyFunctions(body: ChatRequest): boolean {
  const { functions, tools } = body as { functions?: unknown; tools?: unknown };
  return Array.isArray(functions) && functions.length > 0 &&
    !(Array.isArray(tools) && tools.length > 0);
}

/** Whether any message is of the legacy form: a `function` result, or an assistant's call. */
function hasLegacyMessages(messages: readonly ChatMessage[]): boolean {
  return messages.some((m) =>
    m.role === "function" || (m.role === "assistant" && isObject(m.function_call))
  );
}

/**
 * `body` (new, never changed in place) with legacy functions as tools: `functions` as `tools`,
 * `function_call` as `tool_choice`, an assistant's `function_call` as a one-call `tool_calls`, and
 * a `function` result as the `tool` result of that call. `body` itself when nothing is legacy.
 * (`parallel_tool_calls` is not set: reasoning models refuse it; the answer's first call is the
 * one a legacy client gets.)
 */
export function toolsFromFunctions(body: ChatRequest): ChatRequest {
  const legacy = usesLegacyFunctions(body);
  if (!legacy && !hasLegacyMessages(body.messages)) return body;
  const out: Record<string, unknown> = { ...body, messages: legacyMessages(body.messages) };
  if (legacy) {
    out.tools = (body.functions as unknown[]).map((f) => ({ type: "function", function: f }));
    const choice = body.function_call;
    if (choice !== undefined && choice !== null) {
      out.tool_choice = isObject(choice)
        ? { type: "function", function: { name: (choice as { name?: unknown }).name } }
        : choice;
    }
  }
  delete out.functions;
  delete out.function_call;
  return out as ChatRequest;
}

function legacyMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  /** The call the next `function` result answers: the assistant's message right before it. */
  let pending: string | null = null;
  return messages.flatMap((m, i): ChatMessage[] => {
    if (m.role === "assistant" && isObject(m.function_call) && !Array.isArray(m.tool_calls)) {
      const { function_call: call, ...rest } = m;
      const { name, arguments: args } = call as { name: string; arguments?: string };
      pending = `call_legacy_${i}`;
      return [{
        ...rest,
        content: rest.content ?? null,
        tool_calls: [toolCall(pending, name, args)],
      }];
    }
    if (m.role === "function") {
      const { name, ...rest } = m;
      const result: ChatMessage = {
        ...rest,
        role: "tool",
        tool_call_id: pending ?? `call_legacy_${i}`,
      };
      if (pending !== null) {
        pending = null;
        return [result];
      }
      // A result no call asked for (the legacy API took one): a tool result must follow its call,
      // so the call it answers is written before it.
      const call: ChatMessage = {
        role: "assistant",
        content: null,
        tool_calls: [
          toolCall(`call_legacy_${i}`, typeof name === "string" ? name : "function", "{}"),
        ],
      };
      return [call, result];
    }
    pending = null;
    return [m];
  });
}

function toolCall(id: string, name: string, args: string | undefined): ToolCall {
  return { id, type: "function", function: { name, arguments: args ?? "" } };
}

/**
 * A non-streamed answer's choice as a legacy client reads it, in place: its first tool call as
 * `message.function_call`, and `finish_reason: "function_call"`. Returns whether it changed.
 */
// deno-lint-ignore no-explicit-any
export function functionCallAnswer(choice: any): boolean {
  const message = choice?.message;
  const calls = message?.tool_calls;
  if (!Array.isArray(calls) || calls.length === 0) return false;
  const fn = calls[0]?.function ?? {};
  message.function_call = { name: fn.name, arguments: fn.arguments ?? "" };
  delete message.tool_calls;
  if (choice.finish_reason === "tool_calls") choice.finish_reason = "function_call";
  return true;
}

/**
 * A streamed chunk's choice as a legacy client reads it, in place: the pieces of the first tool
 * call as `delta.function_call` (those of any other call are dropped: such a client reads one),
 * and `finish_reason: "function_call"`. Returns whether it changed.
 */
// deno-lint-ignore no-explicit-any
export function functionCallDelta(choice: any): boolean {
  let changed = false;
  const delta = choice?.delta;
  const calls = delta?.tool_calls;
  if (Array.isArray(calls)) {
    const first = calls.find((c) => (c?.index ?? 0) === 0);
    delete delta.tool_calls;
    if (first?.function && typeof first.function === "object") {
      const piece: Record<string, unknown> = {};
      if (typeof first.function.name === "string") piece.name = first.function.name;
      piece.arguments = typeof first.function.arguments === "string"
        ? first.function.arguments
        : "";
      delta.function_call = piece;
    }
    changed = true;
  }
  if (choice?.finish_reason === "tool_calls") {
    choice.finish_reason = "function_call";
    changed = true;
  }
  return changed;
}

function isObject(value: unknown): boolean {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
