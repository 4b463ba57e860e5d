/** @module A complete chat.completion turned into the SSE events a stream would have carried. */

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

const DELTA_FIELDS = ["content", "reasoning_content", "reasoning", "refusal"];

/**
 * The SSE body of a `chat.completion`: a delta with the whole message, the finish chunk, a
 * usage chunk, `[DONE]`. Some bots answer a streamed request with JSON; the client asked for a
 * stream and must get one.
 */
export function completionToSse(completion: Json): string {
  if (completion?.error) {
    return `data: ${JSON.stringify({ error: completion.error })}\n\ndata: [DONE]\n\n`;
  }
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

/** The body of a JSON answer as an SSE byte stream, read when the relay first pulls. */
export function jsonAnswerAsEvents(response: Response): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from((async function* () {
    const text = await response.text();
    let sse: string;
    try {
      sse = completionToSse(JSON.parse(text));
    } catch {
      sse = `data: ${
        JSON.stringify({
          error: {
            message: "Poe answered with a body that is not JSON.",
            type: "upstream_error",
            param: null,
            code: "upstream_bad_body",
          },
        })
      }\n\ndata: [DONE]\n\n`;
    }
    yield encoder.encode(sse);
  })());
}
