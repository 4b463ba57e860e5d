/**
 * @module Benchmarks of building a response with headers (`deno bench`): what `headerResponse`
 * saves on every answer over headers given in `ResponseInit`.
 */
import { type HeaderList, headerResponse } from "../../lib/header_response.ts";

const TEXT = JSON.stringify({
  id: "chatcmpl-1",
  object: "chat.completion",
  choices: [{ index: 0, message: { role: "assistant", content: "Hi there." } }],
  usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
});

/** The headers of a typical non-streamed answer. */
function answerHeaders(): HeaderList {
  return [
    ["x-request-id", crypto.randomUUID()],
    ["x-ratelimit-remaining-requests", "499"],
    ["x-poe-points", "12"],
    ["x-poe-points-estimated", "true"],
    ["x-poe-balance", "99988"],
    ["content-type", "application/json"],
  ];
}

Deno.bench("headers given in ResponseInit", { group: "response", baseline: true }, () => {
  new Response(TEXT, { status: 200, headers: answerHeaders() });
});

Deno.bench("headerResponse (appended once built)", { group: "response" }, () => {
  headerResponse(TEXT, 200, answerHeaders());
});
