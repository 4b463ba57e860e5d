/**
 * @module The `usage` of an answer Poe sent without one, counted here: OpenAI's clients (token
 * meters, agents that budget their context) expect it on every answer, and in the last chunk of a
 * stream that asked with `stream_options.include_usage`.
 */
import type { ChatRequest, Usage } from "./openai_types.ts";
import { loadTokenizer, type TokenCounter, tokenizerLoaded } from "./tokens.ts";

/**
 * Counts the prompt Poe was sent (messages and tool definitions) and the answer's text. Marked
 * `tokens_estimated`: the points history is never matched against these counts.
 */
export async function estimatedUsage(
  counter: TokenCounter,
  sent: ChatRequest,
  answerText: string,
): Promise<Usage> {
  if (!tokenizerLoaded()) await loadTokenizer();
  const prompt = counter.countMessages(sent.messages) +
    (Array.isArray(sent.tools) ? counter.countText(JSON.stringify(sent.tools)) : 0);
  const completion = counter.countText(answerText);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    tokens_estimated: true,
  };
}

/**
 * Collects the text of a message or a stream's delta that counts as answer tokens: content,
 * refusal, reasoning (once: Poe repeats it in `reasoning_content` and `reasoning`), and tool calls'
 * names and arguments.
 */
// deno-lint-ignore no-explicit-any
export function collectAnswerText(part: any, into: string[]): void {
  if (!part || typeof part !== "object") return;
  for (const field of ["content", "refusal"]) {
    if (typeof part[field] === "string") into.push(part[field]);
  }
  const reasoning = part.reasoning_content ?? part.reasoning;
  if (typeof reasoning === "string") into.push(reasoning);
  if (Array.isArray(part.tool_calls)) {
    for (const call of part.tool_calls) {
      const fn = call?.function;
      if (typeof fn?.name === "string") into.push(fn.name);
      if (typeof fn?.arguments === "string") into.push(fn.arguments);
    }
  }
}
