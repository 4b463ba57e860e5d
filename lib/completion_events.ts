/** @module A complete chat.completion turned into the SSE events a stream would have carried. */

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

const DELTA_FIELDS = ["content", "reasoning_content", "reasoning", "refusal"];

/** Whether a parsed JSON answer holds a completion: at least one choice (the SDKs read `choices[0]`). */
// deno-lint-ignore no-explicit-any
export function isCompletion(parsed: any): boolean {
  return Array.isArray(parsed?.choices) && parsed.choices.length > 0;
}

/**
 * The SSE body of a `chat.completion`: a delta with the whole message, the finish chunk, a
 * usage chunk, `[DONE]`. Some bots answer a streamed request with JSON; the client asked for a
 * stream and must get one.
 */
export function completionToSse(completion: Json): string {
  const base = {
    id: completion.id,
    object: "chat.completion.chunk",
    created: completion.created,
    model: completion.model,
  };
  const choice = Array.isArray(completion.choices) ? completion.choices[0] ?? {} : {};
  const message: Json = choice.message ?? {};
  const delta: Json = { role: "assistant" };
  for (const field of DELTA_FIELDS) {
    if (message[field] !== undefined && message[field] !== null) delta[field] = message[field];
  }
  if (Array.isArray(message.tool_calls)) {
    delta.tool_calls = message.tool_calls.map((call: Json, index: number) => ({ index, ...call }));
  }
  const chunks: Json[] = [
    { ...base, choices: [{ index: 0, delta, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: choice.finish_reason ?? "stop" }] },
  ];
  if (completion.usage) chunks.push({ ...base, choices: [], usage: completion.usage });
  return chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("") + "data: [DONE]\n\n";
}
