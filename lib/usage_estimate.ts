/**
 * @module The `usage` of an answer Poe sent without one, counted here: OpenAI's clients (token
 * meters, agents that budget their context) expect it on every answer, and in the last chunk of a
 * stream that asked with `stream_options.include_usage`.
 */
import type { ChatRequest, Usage } from "./openai_types.ts";
import { requestBudget } from "./count_budget.ts";
import { messageTokenGuess, utf8Length } from "./token_bounds.ts";
import { definitionsText, loadTokenizer, type TokenCounter, tokenizerLoaded } from "./tokens.ts";

/**
 * Counts the prompt Poe was sent (messages, tool definitions, a response_format schema) and the
 * answer's text. Marked
 * `tokens_estimated`: the points history is never matched against these counts. Until the
 * tokenizer is loaded (it takes about 300 ms, once, started here), a token is taken for every four
 * bytes: an answer is not held for it.
 */
export function estimatedUsage(
  counter: TokenCounter,
  sent: ChatRequest,
  answerText: string,
): Usage {
  const definitions = definitionsText(sent);
  let prompt: number;
  let completion: number;
  if (tokenizerLoaded()) {
    // Bounded like the request's own counts; most of the prompt is in the counter's cache.
    const budget = requestBudget(sent.messages, definitions + answerText);
    prompt = counter.countMessages(sent.messages, budget) +
      counter.countDefinitions(definitions, budget);
    completion = counter.countText(answerText, budget);
  } else {
    loadTokenizer().catch(() => {});
    prompt = sent.messages.reduce((n, m) => n + messageTokenGuess(m), 0) +
      Math.ceil(utf8Length(definitions) / 4);
    completion = Math.ceil(utf8Length(answerText) / 4);
  }
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
  const reasoning = part.reasoning_content || part.reasoning;
  if (typeof reasoning === "string") into.push(reasoning);
  if (Array.isArray(part.tool_calls)) {
    for (const call of part.tool_calls) {
      const fn = call?.function;
      if (typeof fn?.name === "string") into.push(fn.name);
      if (typeof fn?.arguments === "string") into.push(fn.arguments);
    }
  }
}
