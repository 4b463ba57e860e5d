/** @module The usage counted for an answer Poe sent without one. */
import assert from "node:assert/strict";
import { collectAnswerText, estimatedUsage } from "../lib/usage_estimate.ts";
import { definitionsText, loadTokenizer, TokenCounter, tokenizerLoaded } from "../lib/tokens.ts";

const sent = {
  model: "GPT-4o",
  messages: [
    { role: "system", content: "Be brief." },
    {
      role: "user",
      content: [{ type: "text", text: "What is in this picture?" }, {
        type: "image_url",
        image_url: { url: "data:image/png;base64,AAAA" },
      }],
    },
  ],
  tools: [{ type: "function", function: { name: "get_weather", parameters: {} } }],
};

Deno.test("estimatedUsage: a guess before the tokenizer is loaded, which it starts; exact after", async () => {
  const counter = new TokenCounter();
  const answer = "The picture shows a cat on a sofa.";
  if (!tokenizerLoaded()) {
    const guess = estimatedUsage(counter, sent, answer);
    // Four bytes a token: not held for the tokenizer's 300 ms.
    assert.equal(guess.completion_tokens, Math.ceil(answer.length / 4));
    assert.ok(guess.prompt_tokens > 765, "the image's fixed estimate is in");
    assert.equal(guess.tokens_estimated, true);
  }
  await loadTokenizer();
  const u = estimatedUsage(counter, sent, answer);
  assert.equal(u.completion_tokens, counter.countText(answer));
  const withoutTools = estimatedUsage(counter, { ...sent, tools: undefined }, answer);
  assert.equal(
    u.prompt_tokens - withoutTools.prompt_tokens,
    counter.countDefinitions(definitionsText(sent)),
  );
  assert.equal(withoutTools.prompt_tokens, counter.countMessages(sent.messages));
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(u.tokens_estimated, true);
});

Deno.test("collectAnswerText: content, refusal, reasoning once, tool calls' names and arguments", () => {
  const text: string[] = [];
  collectAnswerText({
    role: "assistant",
    content: "Hi",
    refusal: "no",
    reasoning_content: "think",
    reasoning: "think",
    tool_calls: [{ function: { name: "f", arguments: "{}" } }, { function: null }, null],
  }, text);
  assert.deepEqual(text, ["Hi", "no", "think", "f", "{}"]);
  const reasoning: string[] = [];
  collectAnswerText({ reasoning_content: "", reasoning: "only here" }, reasoning);
  assert.deepEqual(reasoning, ["only here"]);
  for (const odd of [null, undefined, "text", 42, { content: null, tool_calls: "x" }]) {
    const none: string[] = [];
    collectAnswerText(odd, none);
    assert.deepEqual(none, []);
  }
});
