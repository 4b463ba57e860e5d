/** @module Validation of a chat completions body, and the body that goes to Poe. */
import { ProxyError } from "./errors.ts";
import type { ChatMessage, ChatRequest } from "./openai_types.ts";
import { extraBodyOf, LIMIT_FIELDS, THINKING_FIELDS } from "./answer_limit.ts";
import { toolsFromFunctions } from "./legacy_functions.ts";

/** Fields the proxy decides by: in a literal `extra_body`, Poe could read them instead. */
const TOP_LEVEL_ONLY = ["model", "messages", "stream"] as const;

/**
 * Model names are printable ASCII and short; anything else never reaches a header or a log line.
 * `models.yaml` names and aliases follow it too, so every model listed can be asked for.
 */
export const MODEL_NAME = /^[\x21-\x7e][\x20-\x7e]{0,127}$/;

function invalid(message: string, param: string): ProxyError {
  return new ProxyError(400, message, { param, code: "invalid_value" });
}

function missing(param: string): ProxyError {
  return new ProxyError(400, `Missing required parameter: ${param}.`, {
    param,
    code: "missing_required_parameter",
  });
}

/** Strings in error messages are cut here: the value may be a pasted document. */
const SHOWN_CHARS = 40;

/**
 * A value, as an error message shows what the client sent (`got ${describe(value)}`): a string
 * quoted and cut, a number or boolean as it is, and what the other kinds are.
 */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) {
    return value.length === 0 ? "an empty array" : `an array of ${count(value.length, "item")}`;
  }
  switch (typeof value) {
    case "string":
      if (value === "") return "an empty string";
      return value.length > SHOWN_CHARS
        ? `${JSON.stringify(value.slice(0, SHOWN_CHARS))}... (${count(value.length, "character")})`
        : JSON.stringify(value);
    case "number":
    case "boolean":
      return String(value);
    case "object": {
      const keys = Object.keys(value);
      return keys.length === 0 ? "an empty object" : `an object with ${count(keys.length, "key")}`;
    }
    default:
      return `a ${typeof value}`;
  }
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** Checks the fields this proxy relies on; every other field passes through untouched. */
export function validateChatRequest(body: unknown): ChatRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ProxyError(400, `The request body must be a JSON object: got ${describe(body)}.`, {
      code: "invalid_json",
    });
  }
  const b = body as Record<string, unknown>;
  if (b.model === undefined || b.model === null || b.model === "") {
    throw new ProxyError(400, "Missing required field: model.", {
      param: "model",
      code: "missing_required_parameter",
    });
  }
  if (typeof b.model !== "string") {
    throw invalid(`model must be a string: got ${describe(b.model)}.`, "model");
  }
  if (!MODEL_NAME.test(b.model)) {
    throw invalid(
      "model must be up to 128 printable ASCII characters, without control characters.",
      "model",
    );
  }
  if (b.messages === undefined) {
    throw new ProxyError(400, "Missing required field: messages.", {
      param: "messages",
      code: "missing_required_parameter",
    });
  }
  if (!Array.isArray(b.messages)) {
    throw invalid(`messages must be an array: got ${describe(b.messages)}.`, "messages");
  }
  if (b.messages.length === 0) {
    throw invalid("messages must hold at least one message.", "messages");
  }
  for (let i = 0; i < b.messages.length; i++) validateMessage(b.messages[i], `messages[${i}]`);
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== "boolean") {
    throw invalid(`stream must be a boolean: got ${describe(b.stream)}.`, "stream");
  }
  checkTypes(b);
  checkLimits(b, "");
  // The cost cap prices these in extra_body too (Poe reads it): a value it cannot price is refused.
  const extra = extraBodyOf(b);
  if (extra) {
    checkLimits(extra, "extra_body.");
    for (const field of TOP_LEVEL_ONLY) {
      if (extra[field] === undefined) continue;
      // Poe reads extra_body too: a model or messages there would be billed unchecked, a stream
      // there would answer in a form the proxy does not read.
      throw new ProxyError(
        400,
        `extra_body.${field} is not supported: set ${field} at the top level, where this proxy ` +
          "checks, clips and prices the request.",
        { param: `extra_body.${field}`, code: "unsupported_parameter" },
      );
    }
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1) {
    // Poe answers with one choice: a client asking for more would read choices[1] and crash.
    throw new ProxyError(
      400,
      `Poe returns one choice per request: n must be 1, got ${
        describe(b.n)
      }. Send n requests instead.`,
      { param: "n", code: "unsupported_value" },
    );
  }
  return b as ChatRequest;
}

/** What each of these OpenAI fields must be (null aside), as an error message says it. */
const FIELD_KINDS: readonly [string, "number" | "array" | "boolean" | "object", string][] = [
  ["temperature", "number", "a number"],
  ["top_p", "number", "a number"],
  ["tools", "array", "an array of tool definitions"],
  ["parallel_tool_calls", "boolean", "a boolean"],
  ["stream_options", "object", "an object"],
];

/** The fields with a range, and their upper bound (from 0). */
const RANGES: readonly [string, number][] = [["temperature", 2], ["top_p", 1]];

function kindOf(value: unknown): string {
  return Array.isArray(value) ? "array" : typeof value;
}

/**
 * OpenAI's types for the fields Poe reads: a wrong one is refused here with its `param`, rather
 * than sent to Poe, whose 400 the retry ladder would try up to three more times.
 */
function checkTypes(b: Record<string, unknown>): void {
  for (const [field, kind, what] of FIELD_KINDS) {
    const v = b[field];
    if (v !== undefined && v !== null && kindOf(v) !== kind) {
      throw invalid(`${field} must be ${what}: got ${describe(v)}.`, field);
    }
  }
  // OpenAI's ranges, and Poe's: Poe's 400 for them names no field the retry ladder could drop.
  for (const [field, max] of RANGES) {
    const v = b[field];
    if (typeof v === "number" && !(v >= 0 && v <= max)) {
      throw invalid(`${field} must be between 0 and ${max}: got ${describe(v)}.`, field);
    }
  }
  const choice = b.tool_choice;
  if (choice !== undefined && choice !== null && !["string", "object"].includes(kindOf(choice))) {
    throw invalid(
      `tool_choice must be "auto", "none", "required" or an object naming a function: got ${
        describe(choice)
      }.`,
      "tool_choice",
    );
  }
  const stop = b.stop;
  if (
    stop !== undefined && stop !== null && typeof stop !== "string" &&
    !(Array.isArray(stop) && stop.every((s) => typeof s === "string"))
  ) {
    throw invalid(`stop must be a string or an array of strings: got ${describe(stop)}.`, "stop");
  }
}

function checkLimits(source: Record<string, unknown>, prefix: string): void {
  for (const field of LIMIT_FIELDS) {
    const v = source[field];
    if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isInteger(v) || v < 1)) {
      throw invalid(
        `${prefix}${field} must be a positive integer: got ${describe(v)}.`,
        prefix + field,
      );
    }
  }
  for (const field of THINKING_FIELDS) {
    const v = source[field];
    if (v !== undefined && v !== null && (typeof v !== "number" || !Number.isInteger(v) || v < 0)) {
      throw invalid(
        `${prefix}${field} must be a whole number of tokens (0 or more): got ${describe(v)}.`,
        prefix + field,
      );
    }
  }
}

function validateMessage(m: unknown, path: string): void {
  if (m === null || typeof m !== "object" || Array.isArray(m)) {
    throw invalid(`${path} must be an object: got ${describe(m)}.`, path);
  }
  const msg = m as Record<string, unknown>;
  if (typeof msg.role !== "string") {
    throw invalid(`${path}.role must be a string: got ${describe(msg.role)}.`, `${path}.role`);
  }
  const content = msg.content;
  if (content === undefined || content === null || typeof content === "string") return;
  if (!Array.isArray(content)) {
    throw invalid(
      `${path}.content must be a string, an array of parts or null: got ${describe(content)}.`,
      `${path}.content`,
    );
  }
  for (let j = 0; j < content.length; j++) {
    const part = content[j];
    if (
      part === null || typeof part !== "object" ||
      typeof (part as { type?: unknown }).type !== "string"
    ) {
      throw invalid(
        `${path}.content[${j}] must be an object with a string type.`,
        `${path}.content[${j}]`,
      );
    }
    checkPart(part as Record<string, unknown>, `${path}.content[${j}]`);
  }
}

/**
 * OpenAI's shape of the content parts it defines, checked with the path at fault: Poe's 400 for a
 * malformed part names no field, and the 400 ladder would send the whole body (its images with it)
 * up to three more times. Parts of other types pass as they are: Poe may read more kinds.
 */
function checkPart(part: Record<string, unknown>, path: string): void {
  switch (part.type) {
    case "text":
      stringAt(part, "text", path);
      return;
    case "image_url":
      // The first vision API's form, a bare URL string, which Poe is left to judge.
      if (typeof part.image_url === "string") return;
      stringAt(objectAt(part, "image_url", path, "a url"), "url", `${path}.image_url`);
      return;
    case "input_audio": {
      const audio = objectAt(part, "input_audio", path, "data and a format");
      stringAt(audio, "data", `${path}.input_audio`);
      if (audio.format !== undefined && audio.format !== null) {
        stringAt(audio, "format", `${path}.input_audio`);
      }
      return;
    }
    case "file": {
      const file = objectAt(part, "file", path, "file_data or a file_id");
      for (const key of ["file_data", "file_id"]) {
        if (file[key] !== undefined && file[key] !== null) stringAt(file, key, `${path}.file`);
      }
      if (typeof file.file_data !== "string" && typeof file.file_id !== "string") {
        throw invalid(`${path}.file must hold a string file_data or file_id.`, `${path}.file`);
      }
    }
  }
}

/** `holder[key]` as an object, or the error for what it is (`what` it should hold). */
function objectAt(
  holder: Record<string, unknown>,
  key: string,
  path: string,
  what: string,
): Record<string, unknown> {
  const v = holder[key];
  if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  if (v === undefined) throw missing(`${path}.${key}`);
  throw invalid(
    `${path}.${key} must be an object with ${what}: got ${describe(v)}.`,
    `${path}.${key}`,
  );
}

/** Throws unless `holder[key]` is a string. */
function stringAt(holder: Record<string, unknown>, key: string, path: string): void {
  const v = holder[key];
  if (typeof v === "string") return;
  if (v === undefined) throw missing(`${path}.${key}`);
  throw invalid(`${path}.${key} must be a string: got ${describe(v)}.`, `${path}.${key}`);
}

/**
 * The body sent to Poe: the client's, every field kept, with the registry's model name,
 * `stream` explicit, `developer` messages as `system`, and usage requested when streaming.
 */
export function upstreamBody(
  req: ChatRequest,
  poeName: string,
  messages: ChatMessage[],
): ChatRequest {
  const stream = req.stream === true;
  const out: ChatRequest = {
    ...req,
    model: poeName,
    messages: messages.map(developerAsSystem),
    stream,
  };
  // `n: null` is OpenAI's default; Poe wants 1 or nothing (validation refused any other n).
  if (out.n === null) delete out.n;
  if (stream) {
    const so = req.stream_options;
    out.stream_options = { ...(so && typeof so === "object" ? so : {}), include_usage: true };
  }
  // Poe reads tools, not the legacy functions.
  return toolsFromFunctions(out);
}

function developerAsSystem(m: ChatMessage): ChatMessage {
  return m.role === "developer" ? { ...m, role: "system" } : m;
}

/** Whether the client itself asked for a usage chunk in a streamed answer. */
export function clientWantsUsage(req: ChatRequest): boolean {
  const so = req.stream_options as { include_usage?: unknown } | undefined;
  return so?.include_usage === true;
}
