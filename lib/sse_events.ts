/**
 * @module The SSE events this proxy writes of its own (data and error events, chunks, the end),
 * and the small readers of Poe's events they are built from.
 */
import { completionId } from "./openai_types.ts";
import { collectAnswerText } from "./usage_estimate.ts";

/** One parsed chunk of a streamed answer, as Poe sent it or as this proxy makes it. */
// deno-lint-ignore no-explicit-any
export type Chunk = Record<string, any>;

/** The fields of an answer that each of its chunks repeats; null where Poe sent none. */
export interface ChunkIds {
  id: string | null;
  model: string | null;
  created: number | null;
}

/** The event that ends every stream. */
export const DONE = "data: [DONE]\n\n";
/** An SSE comment, sent while Poe is silent so that nothing between gives up on the stream. */
export const KEEPALIVE = new TextEncoder().encode(": keep-alive\n\n");

/** An SSE event carrying `data`, which may span several lines. */
export function dataEvent(data: string): string {
  // An event of several `data:` lines arrives joined by "\n"; each line needs its own field again.
  if (data.includes("\n")) data = data.replaceAll("\n", "\ndata: ");
  return `data: ${data}\n\n`;
}

/**
 * Poe's error event made OpenAI's: Poe's documented shape has a numeric `code` and `metadata`, and a
 * named `event: error` may carry a bare message.
 */
// deno-lint-ignore no-explicit-any
export function openAiErrorEvent(e: any, redact?: (text: string) => string): string {
  const text = (v: unknown) => typeof v === "string" ? v : null;
  const message = text(e?.message) ?? "Poe reported an error in the stream.";
  const event = errorEvent(
    message,
    text(e?.type) ?? "upstream_error",
    e?.code === null || e?.code === undefined ? null : String(e.code),
    text(e?.param),
  );
  return redact ? redact(event) : event;
}

/** An OpenAI-shaped error event. */
export function errorEvent(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): string {
  return dataEvent(JSON.stringify({ error: { message, type, param, code } }));
}

/** The error event of a stream the proxy's shutdown cuts off before its answer was whole. */
export const SHUTDOWN_EVENT = errorEvent(
  "poe-proxy is shutting down: this answer was cut off. Ask again.",
  "server_error",
  "server_shutting_down",
);

/**
 * Whether an event is an ordinary delta with nothing this relay watches: choices, one of them, not
 * finished, no usage, tool calls or error. Inside JSON strings every quote is escaped, so these
 * quoted keys can only match the structure; an event they do not settle is parsed. Most events of
 * an answer are like this, and skipping their parse keeps the relay's cost per event low.
 */
export function isPlainDelta(data: string): boolean {
  const finish = data.indexOf('"finish_reason":null');
  return finish >= 0 && data.includes('"choices":[') &&
    data.indexOf('"finish_reason"', finish + 1) < 0 &&
    data.indexOf('"finish_reason"') === finish && !data.includes('"usage"') &&
    !data.includes('"tool_calls"') && !data.includes('"error"');
}

/** The text of kept events (content, reasoning, tool calls), for counting. */
export function answerTextOf(events: string[]): string {
  const text: string[] = [];
  for (const data of events) {
    try {
      collectAnswerText(JSON.parse(data)?.choices?.[0]?.delta, text);
    } catch {
      // Kept events were parsed once already.
    }
  }
  return text.join("");
}

/** The fields every chunk of the answer repeats. */
export function chunkBase(summary: ChunkIds): Chunk {
  return {
    id: summary.id ?? completionId(),
    object: "chat.completion.chunk",
    created: summary.created ?? Math.floor(Date.now() / 1000),
    model: summary.model ?? "",
  };
}

/** A content chunk carrying the footer, shaped like the answer's own chunks. */
export function footerChunk(summary: ChunkIds, footer: string): Chunk {
  return {
    ...chunkBase(summary),
    choices: [{ index: 0, delta: { content: footer }, finish_reason: null }],
  };
}
