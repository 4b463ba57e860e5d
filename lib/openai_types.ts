/**
 * @module The OpenAI Chat Completions shapes the proxy reads (everything else passes through
 * untouched), and the form of the completion ids it makes.
 */

/** A content part of a message: text, image, file, or anything newer (kept as is). */
export type ContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: string } }
  | { type: "file"; file: { filename?: string; file_data?: string; file_id?: string } }
  | { type: string; [key: string]: unknown };

/** A tool call of an assistant message. */
export interface ToolCall {
  id: string;
  type: "function" | string;
  function: { name: string; arguments: string };
}

/** One chat message. Unknown fields are kept and forwarded. */
export interface ChatMessage {
  role: string;
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  [key: string]: unknown;
}

/** A chat completions request body, after validation. Unknown fields are kept and forwarded. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  [key: string]: unknown;
}

/** The `usage` object of an answer, with this proxy's additions. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cost_points?: number;
  points_estimated?: boolean;
  balance_points?: number;
  [key: string]: unknown;
}

/** A new completion id in OpenAI's and Poe's form: `chatcmpl-` and 24 hex digits. */
export function completionId(): string {
  return `chatcmpl-${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

const ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * A new tool call id in OpenAI's form: `call_` and 24 random letters and digits. For calls Poe
 * relays without an id (Gemini's `id: ""`): a client matches its tool results to calls by id.
 */
export function toolCallId(): string {
  let id = "call_";
  while (id.length < 29) {
    for (const byte of crypto.getRandomValues(new Uint8Array(32))) {
      // 62 of the 64 values of six bits: no letter is likelier than another.
      const i = byte & 63;
      if (i < 62 && id.length < 29) id += ID_CHARS[i];
    }
  }
  return id;
}
