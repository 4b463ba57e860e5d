/** @module A fake Poe API server (chat, models, usage, CDN) for tests, the demo and benchmarks. */

import { parseArgs } from "node:util";
import { printError, printLine } from "../lib/log.ts";
import { sleep } from "../lib/deadlines.ts";

// ---------------------------------------------------------------------------------------------
// Public types

/** Options of {@linkcode FakePoe.start}. */
export interface FakePoeOptions {
  /** TCP port on 127.0.0.1. Default: `0` (any free port). */
  port?: number;
  /** The Bearer key every call but `GET /v1/models` and the CDN needs. Default: `"test-poe-key"`. */
  apiKey?: string;
  /** Starting `current_point_balance`. Default: `1_000_000`. */
  balance?: number;
  /** A points-history entry appears this long after its answer ends. Default: `0`. */
  historyDelayMs?: number;
  /** For this long after appearing, an entry shows `cost_points: 0` and an empty breakdown. Default: `0`. */
  zeroCostMs?: number;
  /** `bot_name` in history: the catalogue's display casing (default) or the request's spelling. */
  botNameCasing?: "display" | "request";
  /** Keep the {@linkcode RecordedRequest} list. Default: `true` (benchmarks turn it off). */
  record?: boolean;
  /** `api_key_name` of history entries. Default: `"test-key"`. */
  apiKeyName?: string;
  /**
   * How far Poe's clock is ahead of this machine's (negative: behind), in milliseconds: history
   * times and the `Date` header of its answers. Default: 0.
   */
  clockOffsetMs?: number;
}

/** One request the fake received. */
export interface RecordedRequest {
  method: string;
  path: string;
  /** The query string with its `?`, or `""`. */
  search: string;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** Parsed JSON body, else its raw text, or `null` when there was none. */
  body: unknown;
  /** The body as it arrived, decoded as UTF-8; `""` when there was none. */
  text: string;
  /** `Date.now()` when it arrived. */
  time: number;
  /** The client's TCP port: requests over one kept-alive connection share it. */
  remotePort: number;
}

/** A points-history entry, shaped as Poe's Usage API returns it. */
export interface HistoryEntry {
  query_id: string;
  bot_name: string;
  /** Microseconds since the epoch. */
  creation_time: number;
  usage_type: string;
  cost_points: number;
  cost_usd: string;
  cost_breakdown_in_points: Record<string, string>;
  chat_name: string | null;
  api_key_name: string | null;
}

/**
 * How one chat request behaves. The string form of each field is the directive in brackets, used in
 * the `x-fake-poe` header, in a `[[fake: ...]]` marker of the last user message, or as a string
 * {@linkcode FakeStep}: comma-separated `name` or `name=value`; values may be URI-encoded (`%2C` for
 * a comma).
 */
export interface FakeDirectives {
  /** `reply=TEXT`: the answer text. Default: {@linkcode DEFAULT_REPLY} (or a CDN URL for media bots). */
  reply?: string;
  /** `chunks=N`: content chunks when streaming. Default: 4 (1 for media, one per word for `words`). */
  chunks?: number;
  /** `words=N`: a deterministic reply of N words (load tests). */
  words?: number;
  /** `usage=finish|separate|none`: where streamed usage goes (default `separate` when
   * `stream_options.include_usage`, else `finish`); `none` also drops it from non-streamed answers. */
  usage?: "finish" | "separate" | "none";
  /** `no-role`: the first streamed delta has no `role`. */
  noRole?: boolean;
  /** `tools`: answer with a call of the request's first tool (else `get_weather`). */
  tools?: boolean;
  /** `tool-no-index`: streamed tool-call deltas omit `index` (default for Gemini models). */
  toolNoIndex?: boolean;
  /** `tool-no-type`: tool calls, streamed and not, have no `type` (as Gemini's streams are seen). */
  toolNoType?: boolean;
  /** `tool-args=TEXT`: raw arguments string, valid JSON or not. Default: built from the schema. */
  toolArgs?: string;
  /** `tool-calls=N`: answer with N calls of the request's first tool (implies `tools`). Default: 1. */
  toolCalls?: number;
  /**
   * `billed-output=N`: the history entry bills N output tokens, whatever the answer's `usage` says
   * (a tool-call answer's `completion_tokens` may be 0).
   */
  billedOutput?: number;
  /**
   * `tool-id=empty|none`: every delta of a call (and a non-streamed call) has `id: ""`, or no id,
   * as Google models have been seen to send. Default: each call has its own `call_` id.
   */
  toolId?: "empty" | "none";
  /** `reasoning` or `reasoning=TEXT`: `reasoning_content` and `reasoning` before the content
   * (default for reasoning models; `reasoning=off` disables it). */
  reasoning?: boolean | string;
  /** `no-finish`: the stream ends with no `finish_reason`, no usage and no `[DONE]`. */
  noFinish?: boolean;
  /** `no-done`: the stream has its finish chunk (or `midstream-error` its error) but no `[DONE]`. */
  noDone?: boolean;
  /** `finish-content`: the last piece of the text rides on the chunk with `finish_reason`. */
  finishContent?: boolean;
  /** `midstream-error`: some content, then `data: {"error":{...}}`, then `[DONE]` (not billed). */
  midstreamError?: boolean;
  /**
   * `open-error=CODE`: the stream opens with its role chunk, then an error event of CODE's type
   * (in the `error-shape`), then `[DONE]` (not billed).
   */
  openError?: number;
  /** `open-drop`: the connection breaks after the stream's role chunk (not billed). */
  openDrop?: boolean;
  /**
   * `json`: a streamed request is answered as one not streamed is, with the whole
   * `chat.completion` as `application/json` (some bots do; billed).
   */
  json?: boolean;
  /**
   * `json-error=CODE`: status 200 with `application/json` and the error body of CODE's type (in
   * the `error-shape`), for a request streamed or not (not billed).
   */
  jsonError?: number;
  /** `slow-first=MS`: delay before the response headers. */
  slowFirst?: number;
  /** `stall=MS`: delay between streamed events; for a JSON answer (or `json-error`), between its headers and its body. */
  stall?: number;
  /** `drop`: the connection breaks mid-stream after some content (not billed). */
  drop?: boolean;
  /**
   * `done-linger=MS`: the streamed body's end (HTTP/1.1's last chunk) comes MS after its last event
   * (`[DONE]`), as a server's does that closes the body only once its own work is over.
   */
  doneLinger?: number;
  /** `crlf`: SSE lines end with `\r\n`. */
  crlf?: boolean;
  /** `comment`: a `: keep-alive` SSE comment before the first event. */
  comment?: boolean;
  /** `finish=REASON`: the finish reason (`stop`, `length`, `content_filter`...). */
  finish?: string;
  /** `status=CODE`: answer with this error status (types as in poe-api.md). */
  status?: number;
  /** `message=TEXT`: the error message of `status`. */
  message?: string;
  /** `retry-after=SECONDS`: adds `Retry-After` to error responses. */
  retryAfter?: number;
  /** `error-shape=openai|documented`: `{message,type,param,code}` (default) or
   * `{code:<number>,type,message,metadata:{}}`. */
  errorShape?: "openai" | "documented";
  /** `reject-max-tokens`: 400 when `max_tokens` or `max_completion_tokens` is present. */
  rejectMaxTokens?: boolean;
  /** `reject-uppercase-model`: 400 when the model name has upper-case letters. */
  rejectUppercaseModel?: boolean;
  /**
   * `reject-feature`: 400 `unsupported_feature_for_model` naming `model`, as Poe refuses images
   * sent to a model without vision, whatever the model's spelling.
   */
  rejectFeature?: boolean;
  /** `reject-field=NAME` (repeatable): 400 when the field is present, top level or in `extra_body`. */
  rejectField?: string[];
  /** `unknown-model=404|400`: how an unknown model is refused. Default: 404 `not_found_error`. */
  unknownModel?: 400 | 404;
  /** `fail-first=N:CODE`: the first N requests carrying this same directive string fail with CODE. */
  failFirst?: { count: number; status: number };
}

/** A scripted step: a directive string (`"status=429,retry-after=1"`) or a {@linkcode FakeDirectives}. */
export type FakeStep = string | FakeDirectives;

/** One model of the fake's catalogue. */
export interface FakeModel {
  /** Display name (`Claude-Sonnet-4.6`); the id is its lower case. */
  name: string;
  kind: "text" | "image" | "video" | "audio";
  owner: string;
  reasoning?: boolean;
  tools?: boolean;
  /** Streamed tool-call deltas omit `index`, as Google models do. */
  google?: boolean;
  /** USD per token, or null. */
  pricing: { prompt: string; completion: string } | null;
  contextLength: number | null;
}

/** The default answer text. */
export const DEFAULT_REPLY = "Hello there, friend.";
/** The default reasoning text. */
export const DEFAULT_REASONING = "Let me think about this step by step.";

/** The fake's model catalogue. */
export const FAKE_MODELS: readonly FakeModel[] = [
  m("GPT-4o", "text", "OpenAI", { tools: true, price: ["0.0000025", "0.00001"], ctx: 128000 }),
  m("GPT-4o-Mini", "text", "OpenAI", { tools: true, price: ["0.00000015", "0.0000006"] }),
  m("GPT-5", "text", "OpenAI", { tools: true, reasoning: true, ctx: 400000 }),
  m("o3-mini", "text", "OpenAI", { tools: true, reasoning: true, ctx: 200000 }),
  m("Claude-Sonnet-4.6", "text", "Anthropic", {
    tools: true,
    price: ["0.000003", "0.000015"],
    ctx: 200000,
  }),
  m("Claude-Haiku-4.5", "text", "Anthropic", { tools: true, ctx: 200000 }),
  m("Gemini-2.5-Pro", "text", "Google", { tools: true, google: true, ctx: 1048576 }),
  m("Gemini-2.5-Flash", "text", "Google", { tools: true, google: true, ctx: 1048576 }),
  m("DeepSeek-R1", "text", "DeepSeek", { reasoning: true, ctx: 64000 }),
  m("Llama-3.3-70B", "text", "Meta", { ctx: null }),
  m("Web-Search", "text", "Poe", {}),
  m("Imagen-4", "image", "Google", {}),
  m("FLUX-pro", "image", "Black Forest Labs", {}),
  m("Veo-3", "video", "Google", {}),
  m("ElevenLabs", "audio", "ElevenLabs", {}),
];

function m(
  name: string,
  kind: FakeModel["kind"],
  owner: string,
  o: {
    tools?: boolean;
    reasoning?: boolean;
    google?: boolean;
    price?: string[];
    ctx?: number | null;
  },
): FakeModel {
  return {
    name,
    kind,
    owner,
    tools: o.tools,
    reasoning: o.reasoning,
    google: o.google,
    pricing: o.price ? { prompt: o.price[0], completion: o.price[1] } : null,
    contextLength: o.ctx === undefined ? (kind === "text" ? 128000 : null) : o.ctx,
  };
}

// ---------------------------------------------------------------------------------------------
// Directives

/** Parses a directive string (see {@linkcode FakeDirectives}); throws on an unknown name or bad value. */
export function parseDirectives(text: string): FakeDirectives {
  const d: FakeDirectives = {};
  for (const raw of text.split(",")) {
    const part = raw.trim();
    if (!part) continue;
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? "" : decode(part.slice(eq + 1).trim());
    const num = () => {
      const n = Number(value);
      if (value === "" || !Number.isFinite(n) || n < 0) {
        throw new Error(`fake-poe directive ${key} needs a number: got "${value}"`);
      }
      return n;
    };
    switch (key) {
      case "reply":
        d.reply = value;
        break;
      case "chunks":
        d.chunks = Math.max(1, Math.floor(num()));
        break;
      case "words":
        d.words = Math.floor(num());
        break;
      case "usage":
        if (value !== "finish" && value !== "separate" && value !== "none") {
          throw new Error(
            `fake-poe directive usage must be finish, separate or none: got "${value}"`,
          );
        }
        d.usage = value;
        break;
      case "no-role":
        d.noRole = true;
        break;
      case "tools":
        d.tools = true;
        break;
      case "tool-no-index":
        d.toolNoIndex = true;
        break;
      case "tool-no-type":
        d.toolNoType = true;
        break;
      case "tool-args":
        d.tools = true;
        d.toolArgs = value;
        break;
      case "billed-output":
        d.billedOutput = Math.max(0, Math.floor(num()));
        break;
      case "tool-calls":
        d.tools = true;
        d.toolCalls = Math.max(1, Math.floor(num()));
        break;
      case "tool-id":
        if (value !== "empty" && value !== "none") {
          throw new Error(`fake-poe directive tool-id must be empty or none: got "${value}"`);
        }
        d.toolId = value;
        break;
      case "reasoning":
        d.reasoning = value === "" ? true : value === "off" ? false : value;
        break;
      case "no-finish":
        d.noFinish = true;
        break;
      case "no-done":
        d.noDone = true;
        break;
      case "finish-content":
        d.finishContent = true;
        break;
      case "midstream-error":
        d.midstreamError = true;
        break;
      case "open-error":
        d.openError = num();
        break;
      case "open-drop":
        d.openDrop = true;
        break;
      case "json":
        d.json = true;
        break;
      case "json-error":
        d.jsonError = num();
        break;
      case "slow-first":
        d.slowFirst = num();
        break;
      case "stall":
        d.stall = num();
        break;
      case "drop":
        d.drop = true;
        break;
      case "done-linger":
        d.doneLinger = num();
        break;
      case "crlf":
        d.crlf = true;
        break;
      case "comment":
        d.comment = true;
        break;
      case "finish":
        d.finish = value;
        break;
      case "status":
        d.status = num();
        break;
      case "message":
        d.message = value;
        break;
      case "retry-after":
        d.retryAfter = num();
        break;
      case "error-shape":
        if (value !== "openai" && value !== "documented") {
          throw new Error(
            `fake-poe directive error-shape must be openai or documented: got "${value}"`,
          );
        }
        d.errorShape = value;
        break;
      case "reject-max-tokens":
        d.rejectMaxTokens = true;
        break;
      case "reject-uppercase-model":
        d.rejectUppercaseModel = true;
        break;
      case "reject-feature":
        d.rejectFeature = true;
        break;
      case "reject-field":
        (d.rejectField ??= []).push(value);
        break;
      case "unknown-model":
        if (value !== "400" && value !== "404") {
          throw new Error(`fake-poe directive unknown-model must be 400 or 404: got "${value}"`);
        }
        d.unknownModel = value === "400" ? 400 : 404;
        break;
      case "fail-first": {
        const match = /^(\d+):(\d{3})$/.exec(value);
        if (!match) throw new Error(`fake-poe directive fail-first must be N:CODE: got "${value}"`);
        d.failFirst = { count: Number(match[1]), status: Number(match[2]) };
        break;
      }
      default:
        throw new Error(`Unknown fake-poe directive: "${key}"`);
    }
  }
  return d;
}

function decode(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

const ERRORS: Record<number, [type: string, message: string]> = {
  400: ["invalid_request_error", "The request is invalid."],
  401: ["authentication_error", "Invalid API key."],
  402: ["insufficient_credits", "You do not have enough points to complete this request."],
  403: ["moderation_error", "The request was refused by moderation."],
  404: ["not_found_error", "Not found."],
  408: ["timeout_error", "The model did not start in time."],
  413: ["request_too_large", "The request exceeds the model's context window."],
  429: ["rate_limit_error", "Rate limit exceeded: 500 requests a minute."],
  500: ["provider_error", "The provider failed to answer."],
  502: ["upstream_error", "The model backend is not working."],
  503: ["upstream_error", "The service is temporarily unavailable."],
  529: ["overloaded_error", "The service is overloaded; try again shortly."],
};

interface ErrorSpec {
  status: number;
  message?: string;
  type?: string;
  param?: string | null;
  code?: string | null;
  shape?: "openai" | "documented";
  retryAfter?: number;
}

function errorBody(e: ErrorSpec): string {
  const [defType, defMessage] = ERRORS[e.status] ??
    [e.status >= 500 ? "provider_error" : "invalid_request_error", `Error ${e.status}.`];
  const type = e.type ?? defType;
  const message = e.message ?? defMessage;
  return JSON.stringify(
    e.shape === "documented"
      ? { error: { code: e.status, type, message, metadata: {} } }
      : { error: { message, type, param: e.param ?? null, code: e.code ?? null } },
  );
}

// ---------------------------------------------------------------------------------------------
// Helpers

const TE = new TextEncoder();
const JSON_TYPE = "application/json";
const DAY_MS = 86_400_000;
/** History entries kept; the oldest are dropped beyond this (benchmarks bill many answers). */
const MAX_HISTORY = 10_000;
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);
const MEDIA: Record<string, [string, Uint8Array]> = {
  image: ["image/png", PNG],
  video: ["video/mp4", TE.encode("\0\0\0\x18ftypmp42\0\0\0\0mp42isomfake-poe-video")],
  audio: ["audio/mpeg", TE.encode("ID3\x04\0\0\0\0\0\0fake-poe-audio")],
};
const MEDIA_PATH = /^\/base\/(image|video|audio)\/[0-9a-f]{64}$/;
const MARKER = /\[\[fake:([^\]]*)\]\]/;
const WORDS =
  "the quick brown fox jumps over a lazy dog while seven bold wizards quietly pack boxes"
    .split(" ");
const ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789";

/** FNV-1a over a string, seeded: a cheap deterministic 32-bit hash. */
function fnv(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function hex64(text: string): string {
  let out = "";
  for (let i = 0; i < 8; i++) out += fnv(text, i * 0x9e3779b1).toString(16).padStart(8, "0");
  return out;
}

/** The cheap token estimate the fake uses: `ceil(characters / 4)`. */
/** The smallest answer limit a request body sets, at its top level or in `extra_body`. */
function answerLimitOf(b: Record<string, unknown>): number | null {
  const extra = b.extra_body && typeof b.extra_body === "object"
    ? b.extra_body as Record<string, unknown>
    : {};
  const limits = [
    b.max_tokens,
    b.max_completion_tokens,
    extra.max_tokens,
    extra.max_completion_tokens,
  ]
    .filter((v): v is number => typeof v === "number" && Number.isInteger(v) && v > 0);
  return limits.length ? Math.min(...limits) : null;
}

export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

function messageText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let text = "";
  for (const part of content) {
    if (part && typeof part === "object" && typeof part.text === "string") text += part.text;
  }
  return text;
}

function split(text: string, n: number): string[] {
  const chars = Array.from(text);
  const count = Math.max(1, Math.min(n, chars.length));
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      chars.slice(Math.floor(i * chars.length / count), Math.floor((i + 1) * chars.length / count))
        .join(""),
    );
  }
  return out;
}

function schemaValue(schema: unknown): unknown {
  const type = (schema as { type?: unknown } | null)?.type;
  if (type === "number" || type === "integer") return 1;
  if (type === "boolean") return true;
  if (type === "array") return [];
  if (type === "object") return {};
  return type === "string" ? "Paris" : null;
}

function toolCallFor(body: Record<string, unknown>, d: FakeDirectives): [string, string] {
  const tools = body.tools;
  const first = Array.isArray(tools) ? tools[0] : undefined;
  const fn = first?.function;
  if (!fn || typeof fn.name !== "string") {
    return ["get_weather", d.toolArgs ?? '{"location":"Paris"}'];
  }
  if (d.toolArgs !== undefined) return [fn.name, d.toolArgs];
  const args: Record<string, unknown> = {};
  const props = fn.parameters?.properties;
  if (props && typeof props === "object") {
    for (const [k, v] of Object.entries(props)) args[k] = schemaValue(v);
  }
  return [fn.name, JSON.stringify(args)];
}

function modelEntry(model: FakeModel, i: number): Record<string, unknown> {
  const id = model.name.toLowerCase();
  const inputs = model.kind === "text" ? ["text", "image"] : ["text"];
  const outputs = [model.kind];
  return {
    id,
    object: "model",
    created: 1_735_689_600_000 + i * 86_400_000,
    description: `${model.name} (fake-poe ${model.kind} bot).`,
    owned_by: model.owner,
    root: id,
    architecture: {
      input_modalities: inputs,
      output_modalities: outputs,
      modality: `${inputs.join(",")}->${outputs.join(",")}`,
    },
    supported_features: model.tools ? ["tools"] : [],
    supported_endpoints: [],
    pricing: model.pricing
      ? { prompt: model.pricing.prompt, completion: model.pricing.completion, request: null }
      : null,
    context_window: model.contextLength === null
      ? null
      : { context_length: model.contextLength, max_output_tokens: 8192 },
    context_length: model.contextLength,
    metadata: {
      display_name: model.name,
      image: { url: `https://qph.cf2.poecdn.net/main-thumb-${id}.png`, width: 200, height: 200 },
      url: `https://poe.com/${model.name}`,
    },
    reasoning: model.reasoning
      ? { budget: null, required: false, supports_reasoning_effort: true }
      : null,
    parameters: model.kind === "image"
      ? [{
        name: "aspect_ratio",
        schema: { type: "string", enum: ["1:1", "16:9", "9:16"] },
        default_value: "1:1",
        description: "Aspect ratio of the image.",
      }]
      : [],
  };
}

const MODELS_BY_ID = new Map(FAKE_MODELS.map((x) => [x.name.toLowerCase(), x]));
const MODELS_JSON = JSON.stringify({ object: "list", data: FAKE_MODELS.map(modelEntry) });

interface StoredEntry {
  entry: HistoryEntry;
  visibleAt: number;
  finalAt: number;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  completion_tokens_details?: { reasoning_tokens: number };
}

interface Answer {
  id: string;
  created: number;
  model: string;
  content: string;
  contentChunks: string[];
  reasoning: string | null;
  /** The answer's tool calls; none for a text answer. `id` undefined: the call has none. */
  tools: { id: string | undefined; name: string; arguments: string }[];
  finish: string;
  usage: Usage;
}

// ---------------------------------------------------------------------------------------------
// The server

/**
 * A fake Poe API on 127.0.0.1, following `poe-api.md`. Scenario of each chat request, first match:
 * the {@linkcode FakePoe.script} queue, the `x-fake-poe` header, a `[[fake: ...]]` marker in the last
 * user message, then the model's defaults (reasoning models reason, Gemini omits tool `index`, media
 * bots answer with URLs served by the fake at `/base/{image|video|audio}/<64 hex>`).
 *
 * Billing: every completed answer (non-streamed answered, or stream ended without error, drop or
 * cancel) creates a points-history entry with `cost_points = 10 + total_tokens`
 * (breakdown: Input `10 + prompt_tokens`, Output `completion_tokens`), `cost_usd = cost_points *
 * 0.00002` as a string, and debits the balance when the entry's final cost lands
 * (`historyDelayMs + zeroCostMs` after the answer; at once by default). Tokens are estimated as
 * `ceil(characters / 4)` of message text; tool-call answers report 0 completion tokens. The newest
 * 10,000 entries are kept; `GET /usage/points_history` defaults to `limit=20`, and hangs while
 * {@linkcode FakePoe.holdHistory} holds it (a slow or hanging Usage API).
 *
 * `slow-first` and held calls watch `request.signal` to see a client leave early, which makes
 * Deno print its one-time "legacy abort" notice (silenced by `--unstable-no-legacy-abort`).
 */
export class FakePoe implements AsyncDisposable {
  /** Base URL, `http://127.0.0.1:PORT`; chat is under `/v1`, usage under `/usage`. */
  readonly url: string;
  /** The TCP port. */
  readonly port: number;
  /** Everything received, in order (empty when `record` is false). */
  readonly requests: RecordedRequest[] = [];
  /** Response streams or pending answers the client abandoned, in order. */
  readonly cancellations: { path: string; time: number }[] = [];

  #server: Deno.HttpServer<Deno.NetAddr>;
  #apiKey: string;
  #auth: string;
  #record: boolean;
  #historyDelayMs: number;
  #zeroCostMs: number;
  #botNameCasing: "display" | "request";
  #apiKeyName: string;
  #balance: number;
  #debits: { amount: number; at: number }[] = [];
  #history: StoredEntry[] = [];
  #historySorted = true;
  #queue: FakeStep[] = [];
  #failCounts = new Map<string, number>();
  #usageCalls = 0;
  #lastBilled = 0;
  #seed = 0x2545f491;
  #window = 0;
  #windowCount = 0;
  #clockOffsetMs: number;
  #active = new Set<AbortController>();
  #closed: Promise<void> | null = null;
  /** While set, chat requests wait for it before they are answered ({@linkcode FakePoe.hold}). */
  #held: Promise<void> | null = null;
  /** While set, points-history calls wait for it ({@linkcode FakePoe.holdHistory}). */
  #historyHeld: Promise<void> | null = null;

  private constructor(options: FakePoeOptions) {
    this.#apiKey = options.apiKey ?? "test-poe-key";
    this.#auth = `Bearer ${this.#apiKey}`;
    this.#record = options.record ?? true;
    this.#historyDelayMs = options.historyDelayMs ?? 0;
    this.#zeroCostMs = options.zeroCostMs ?? 0;
    this.#botNameCasing = options.botNameCasing ?? "display";
    this.#apiKeyName = options.apiKeyName ?? "test-key";
    this.#clockOffsetMs = options.clockOffsetMs ?? 0;
    this.#balance = options.balance ?? 1_000_000;
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: options.port ?? 0,
      onListen: () => {},
      onError: (err) =>
        new Response(errorBody({ status: 500, message: `fake-poe internal error: ${err}` }), {
          status: 500,
          headers: { "content-type": JSON_TYPE },
        }),
    }, async (req, info) => {
      const response = await this.#handle(req, (info.remoteAddr as Deno.NetAddr).port);
      if (this.#clockOffsetMs !== 0) {
        response.headers.set("date", new Date(this.#now()).toUTCString());
      }
      return response;
    });
    this.port = this.#server.addr.port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  /** Starts a fake Poe server; it listens once this resolves. */
  static start(options: FakePoeOptions = {}): Promise<FakePoe> {
    return Promise.resolve(new FakePoe(options));
  }

  /** The API key the fake accepts. */
  get apiKey(): string {
    return this.#apiKey;
  }

  /** Current balance in points. Setting it discards debits still pending. */
  get balance(): number {
    if (this.#debits.length) {
      // Due debits come first (in billing order); apply them with one splice, not a shift each
      // (a shift per entry made one call take 1.7 s after 65k answers).
      const now = Date.now();
      let due = 0;
      while (due < this.#debits.length && this.#debits[due].at <= now) {
        this.#balance -= this.#debits[due].amount;
        due++;
      }
      if (due === this.#debits.length) this.#debits = [];
      else if (due > 0) this.#debits.splice(0, due);
    }
    return this.#balance;
  }
  set balance(value: number) {
    this.#debits = [];
    this.#balance = value;
  }

  /** Only the `POST /v1/chat/completions` requests. */
  chatRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.method === "POST" && r.path === "/v1/chat/completions");
  }

  /** Answers still being sent: open streams (lingering ones too) and delayed answers. */
  get openAnswers(): number {
    return this.#active.size;
  }

  /** How many `/usage/*` calls arrived (counted even when `record` is false). */
  usageCalls(): number {
    return this.#usageCalls;
  }

  /** When set, `GET /usage/current_balance` answers this error status (a failing Usage API). */
  balanceErrorStatus: number | null = null;
  /** The message of that error; default: the status's usual one. */
  balanceErrorMessage: string | undefined = undefined;

  /**
   * Holds every chat request from now on, once recorded, until the returned function is called:
   * they are then answered as they would have been. A request whose client leaves meanwhile is
   * recorded as cancelled. Requests in flight at once, whatever the machine's speed.
   */
  hold(): () => void {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#held = promise;
    return () => {
      if (this.#held === promise) this.#held = null;
      resolve();
    };
  }

  /**
   * Holds every `GET /usage/points_history` call from now on, once recorded and counted, until the
   * returned function is called: a Usage API that takes the call and does not answer (until the
   * client's timeout). Each is then answered with the history as it is at that moment; one whose
   * client leaves meanwhile is recorded as cancelled. Release it after a delay for a slow history.
   */
  holdHistory(): () => void {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#historyHeld = promise;
    return () => {
      if (this.#historyHeld === promise) this.#historyHeld = null;
      resolve();
    };
  }

  /** Queues steps: the next chat requests (one each, in order) behave as these, ignoring directives. */
  script(...steps: FakeStep[]): void {
    this.#queue.push(...steps);
  }

  /**
   * Seeds a points-history entry, visible and final at once, without debiting the balance.
   * Defaults: a fresh `query_id`, `bot_name` `GPT-4o`, `creation_time` now, `usage_type` `API`,
   * `cost_points` 100 with a matching `cost_usd` and breakdown, `chat_name` null.
   */
  addHistory(entry: Partial<HistoryEntry>): void {
    const cost = entry.cost_points ?? 100;
    this.#history.push({
      entry: {
        query_id: entry.query_id ?? this.#queryId(),
        bot_name: entry.bot_name ?? "GPT-4o",
        creation_time: entry.creation_time ?? this.#now() * 1000,
        usage_type: entry.usage_type ?? "API",
        cost_points: cost,
        cost_usd: entry.cost_usd ?? usd(cost),
        cost_breakdown_in_points: entry.cost_breakdown_in_points ?? { Total: `${cost} points` },
        chat_name: entry.chat_name ?? null,
        api_key_name: entry.api_key_name === undefined ? this.#apiKeyName : entry.api_key_name,
      },
      visibleAt: 0,
      finalAt: 0,
    });
    this.#historySorted = false;
  }

  /** Every history entry with its final values, newest first, including ones not visible yet. */
  historyEntries(): HistoryEntry[] {
    return this.#sortedHistory().map((s) => ({ ...s.entry }));
  }

  /** Clears the history (the balance stays). */
  clearHistory(): void {
    this.#history = [];
    this.#historySorted = true;
  }

  /** Clears recorded requests, cancellations, the script queue and `fail-first` counters. */
  reset(): void {
    this.requests.length = 0;
    this.cancellations.length = 0;
    this.#queue = [];
    this.#failCounts.clear();
    this.#usageCalls = 0;
  }

  /** Ends open streams and pending answers, then stops the server. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      for (const ac of this.#active) ac.abort(new Error("fake-poe closed"));
      this.#active.clear();
      this.#closed = this.#server.shutdown();
    }
    return this.#closed;
  }

  /** Same as {@linkcode FakePoe.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // --- routing ---------------------------------------------------------------------------------

  async #handle(req: Request, remotePort: number): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const method = req.method;
    let body: unknown = null;
    let text = "";
    if (method === "POST" || method === "PUT" || method === "PATCH") {
      text = await req.text();
      if (text !== "") {
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
      }
    }
    if (this.#record) {
      this.requests.push({
        method,
        path,
        search: url.search,
        headers: Object.fromEntries(req.headers),
        body,
        text,
        time: Date.now(),
        remotePort,
      });
    }
    if (path === "/v1/chat/completions" && method === "POST") return this.#chat(req, body, text);
    if (path === "/v1/models" && method === "GET") {
      return new Response(MODELS_JSON, { headers: { "content-type": JSON_TYPE } });
    }
    if (path.startsWith("/usage/")) {
      this.#usageCalls++;
      if (req.headers.get("authorization") !== this.#auth) return error({ status: 401 });
      if (method === "GET" && path === "/usage/current_balance") return this.#currentBalance();
      if (method === "GET" && path === "/usage/points_history") {
        if (this.#historyHeld) {
          const outcome = await this.#waitFor(this.#historyHeld, req, path);
          if (outcome !== "ok") return error({ status: 503, message: `fake-poe ${outcome}.` });
        }
        return this.#pointsHistory(url.searchParams);
      }
    }
    if (method === "GET" && MEDIA_PATH.test(path)) {
      const [type, bytes] = MEDIA[path.split("/")[2]];
      return new Response(bytes.slice(), { headers: { "content-type": type } });
    }
    return error({ status: 404, message: `No route for ${method} ${path}.` });
  }

  // --- usage API -------------------------------------------------------------------------------

  #currentBalance(): Response {
    if (this.balanceErrorStatus !== null) {
      return error({ status: this.balanceErrorStatus, message: this.balanceErrorMessage });
    }
    const balance = this.balance;
    const now = new Date();
    const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    const nextDay = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
    return json({
      current_point_balance: balance,
      plan_points_balance: balance,
      addon_point_balance: 0,
      current_point_balance_usd: usd(balance),
      next_monthly_grant_time: nextMonth * 1000,
      next_daily_grant_time: nextDay * 1000,
      next_monthly_grant_amount: 1_000_000,
      auto_recharge: { enabled: false, threshold_points: null, recharge_amount_usd: null },
    });
  }

  #pointsHistory(params: URLSearchParams): Response {
    const rawLimit = params.get("limit");
    const limit = rawLimit === null ? 20 : Number(rawLimit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return error({
        status: 400,
        message: `limit must be an integer from 1 to 100: got "${rawLimit}"`,
        param: "limit",
      });
    }
    const now = Date.now();
    const oldest = (this.#now() - 30 * DAY_MS) * 1000;
    const after = params.get("starting_after");
    // One lazy walk over the newest-first list: the proxy may poll this after every answer.
    const page: HistoryEntry[] = [];
    let started = !after;
    let hasMore = false;
    for (const s of this.#sortedHistory()) {
      if (s.entry.creation_time < oldest) break;
      if (s.visibleAt > now) continue;
      if (!started) {
        started = s.entry.query_id === after;
        continue;
      }
      if (page.length === limit) {
        hasMore = true;
        break;
      }
      page.push(
        now >= s.finalAt
          ? s.entry
          : { ...s.entry, cost_points: 0, cost_usd: "0", cost_breakdown_in_points: {} },
      );
    }
    return json({ has_more: hasMore, length: page.length, data: page });
  }

  /** Poe's clock: this machine's, shifted by `clockOffsetMs`. */
  #now(): number {
    return Date.now() + this.#clockOffsetMs;
  }

  #sortedHistory(): StoredEntry[] {
    if (!this.#historySorted) {
      this.#history.sort((a, b) => b.entry.creation_time - a.entry.creation_time);
      this.#historySorted = true;
    }
    return this.#history;
  }

  #bill(botName: string, usage: Usage, billedOutput = usage.completion_tokens): void {
    const end = Date.now();
    const input = 10 + usage.prompt_tokens;
    const cost = input + billedOutput;
    const visibleAt = end + this.#historyDelayMs;
    const finalAt = visibleAt + this.#zeroCostMs;
    const creation = Math.max((end + this.#clockOffsetMs) * 1000, this.#lastBilled + 1);
    this.#lastBilled = creation;
    const entry: HistoryEntry = {
      query_id: this.#queryId(),
      bot_name: botName,
      creation_time: creation,
      usage_type: "API",
      cost_points: cost,
      cost_usd: usd(cost),
      cost_breakdown_in_points: {
        Input: `${input} points (${usage.prompt_tokens} tokens)`,
        Output: `${billedOutput} points (${billedOutput} tokens)`,
        Total: `${cost} points`,
      },
      chat_name: null,
      api_key_name: this.#apiKeyName,
    };
    // Newest first: a billed entry goes in front unless seeded entries are newer.
    const history = this.#sortedHistory();
    if (history.length && history[0].entry.creation_time > creation) this.#historySorted = false;
    history.unshift({ entry, visibleAt, finalAt });
    if (history.length > MAX_HISTORY) history.length = MAX_HISTORY;
    this.#debits.push({ amount: cost, at: finalAt });
  }

  // --- chat ------------------------------------------------------------------------------------

  async #chat(req: Request, body: unknown, text: string): Promise<Response> {
    if (this.#held) {
      const outcome = await this.#waitFor(this.#held, req, "/v1/chat/completions");
      if (outcome !== "ok") return error({ status: 503, message: `fake-poe ${outcome}.` });
    }
    const step = this.#queue.shift();
    const headers = this.#chatHeaders(req);
    if (req.headers.get("authorization") !== this.#auth) return error({ status: 401 }, headers);
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return error({
        status: 400,
        message: text === "" ? "The request body is empty." : "The request body is not valid JSON.",
      }, headers);
    }
    const b = body as Record<string, unknown>;
    let source: string | undefined;
    let d: FakeDirectives = {};
    try {
      if (step !== undefined) {
        d = typeof step === "string" ? parseDirectives(step) : step;
        source = typeof step === "string" ? step : JSON.stringify(step);
      } else {
        source = req.headers.get("x-fake-poe") ?? markerOf(b.messages);
        if (source !== undefined) d = parseDirectives(source);
      }
    } catch (err) {
      return error({ status: 400, message: (err as Error).message }, headers);
    }
    const shape = d.errorShape;
    const fail = (e: ErrorSpec) =>
      error({ shape, retryAfter: d.retryAfter, ...e }, headers, e.status === 429);

    if (d.failFirst && source !== undefined) {
      const seen = this.#failCounts.get(source) ?? 0;
      this.#failCounts.set(source, seen + 1);
      if (seen < d.failFirst.count) return fail({ status: d.failFirst.status });
    }
    if (d.status !== undefined) return fail({ status: d.status, message: d.message });

    const modelName = b.model;
    if (typeof modelName !== "string" || modelName === "") {
      return fail({ status: 400, message: "model is required.", param: "model" });
    }
    if (!Array.isArray(b.messages) || b.messages.length === 0) {
      return fail({
        status: 400,
        message: "messages must be a non-empty array.",
        param: "messages",
      });
    }
    if (b.n !== undefined && b.n !== 1) {
      return fail({ status: 400, message: "n must be 1.", param: "n" });
    }
    if (d.rejectFeature) {
      return fail({
        status: 400,
        message: "This model does not support image input.",
        param: "model",
        code: "unsupported_feature_for_model",
      });
    }
    if (d.rejectUppercaseModel && modelName !== modelName.toLowerCase()) {
      return fail({
        status: 400,
        message: `Model names must be lower case: got "${modelName}".`,
        param: "model",
        code: "model_not_found",
      });
    }
    const model = MODELS_BY_ID.get(modelName.toLowerCase());
    if (!model) {
      return d.unknownModel === 400
        ? fail({
          status: 400,
          message: `Model "${modelName}" does not exist.`,
          param: "model",
          code: "model_not_found",
        })
        : fail({
          status: 404,
          message: `Model "${modelName}" not found.`,
          param: "model",
          code: "model_not_found",
        });
    }
    const extra = (b.extra_body && typeof b.extra_body === "object" ? b.extra_body : {}) as Record<
      string,
      unknown
    >;
    const rejected = [
      ...(d.rejectMaxTokens ? ["max_tokens", "max_completion_tokens"] : []),
      ...(d.rejectField ?? []),
    ].find((f) => f in b || f in extra);
    if (rejected) {
      return fail({
        status: 400,
        message: `Unsupported parameter: '${rejected}' is not supported with this model.`,
        param: rejected,
        code: "unsupported_parameter",
      });
    }

    if (d.slowFirst) {
      const outcome = await this.#wait(d.slowFirst, req, "/v1/chat/completions");
      if (outcome !== "ok") return error({ status: 503, message: `fake-poe ${outcome}.` }, headers);
    }

    if (d.jsonError !== undefined) {
      headers.set("content-type", JSON_TYPE);
      const text = errorBody({ status: d.jsonError, message: d.message, shape: d.errorShape });
      return d.stall ? this.#stalledBody(text, d.stall, headers) : new Response(text, { headers });
    }
    const answer = this.#answer(b, model, modelName, d);
    const botName = this.#botNameCasing === "display" ? model.name : modelName;
    if (b.stream !== true || d.json) {
      this.#bill(botName, answer.usage, d.billedOutput);
      headers.set("content-type", JSON_TYPE);
      const text = JSON.stringify(nonStreamed(answer, d));
      return d.stall ? this.#stalledBody(text, d.stall, headers) : new Response(text, { headers });
    }
    const includeUsage = (b.stream_options as { include_usage?: unknown } | undefined)
      ?.include_usage === true;
    const usagePos = d.usage ?? (includeUsage ? "separate" : "finish");
    const plan = streamEvents(answer, d, usagePos, model.google === true);
    headers.set("content-type", "text/event-stream");
    headers.set("cache-control", "no-cache");
    const stream = this.#stream(
      plan,
      { stall: d.stall ?? 0, linger: d.doneLinger ?? 0 },
      () => this.#bill(botName, answer.usage, d.billedOutput),
    );
    return new Response(stream, { headers });
  }

  /** A JSON answer whose body comes `stall` ms after its headers. */
  #stalledBody(text: string, stall: number, headers: Headers): Response {
    const ac = new AbortController();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          await sleep(stall, ac.signal);
        } catch {
          return;
        }
        controller.enqueue(new TextEncoder().encode(text));
        controller.close();
      },
      cancel: () => {
        ac.abort(new Error("client cancelled"));
        this.cancellations.push({ path: "/v1/chat/completions", time: Date.now() });
      },
    });
    return new Response(body, { headers });
  }

  #chatHeaders(req: Request): Headers {
    const now = Date.now();
    const window = Math.floor(now / 60_000);
    if (window !== this.#window) {
      this.#window = window;
      this.#windowCount = 0;
    }
    this.#windowCount++;
    const feature = req.headers.get("poe-feature");
    return new Headers({
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": String(Math.max(0, 500 - this.#windowCount)),
      "x-ratelimit-reset-requests": `${Math.ceil(((window + 1) * 60_000 - now) / 1000)}s`,
      "x-poe-feature-active": feature === "chat-completions-strict"
        ? feature
        : "chat-completions-legacy",
    });
  }

  #wait(ms: number, req: Request, path: string): Promise<"ok" | "cancelled" | "closed"> {
    return this.#waitFor((signal) => sleep(ms, signal), req, path);
  }

  /** Waits for `until` (a promise, or one made with an abort signal) unless the client leaves. */
  async #waitFor(
    until: Promise<void> | ((signal: AbortSignal) => Promise<void>),
    req: Request,
    path: string,
  ): Promise<"ok" | "cancelled" | "closed"> {
    const ac = new AbortController();
    this.#active.add(ac);
    const onAbort = () => ac.abort(new Error("client went away"));
    req.signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (typeof until === "function") await until(ac.signal);
      else {
        const { promise, reject } = Promise.withResolvers<void>();
        const stop = () => reject(ac.signal.reason);
        ac.signal.addEventListener("abort", stop, { once: true });
        try {
          await Promise.race([until, promise]);
        } finally {
          ac.signal.removeEventListener("abort", stop);
        }
      }
      return "ok";
    } catch {
      if (req.signal.aborted) {
        this.cancellations.push({ path, time: Date.now() });
        return "cancelled";
      }
      return "closed";
    } finally {
      req.signal.removeEventListener("abort", onAbort);
      this.#active.delete(ac);
    }
  }

  #answer(
    b: Record<string, unknown>,
    model: FakeModel,
    modelName: string,
    d: FakeDirectives,
  ): Answer {
    let promptChars = 0;
    let lastUser = "";
    for (const msg of b.messages as { role?: unknown; content?: unknown }[]) {
      const t = messageText(msg?.content);
      promptChars += t.length;
      if (msg?.role === "user") lastUser = t;
    }
    let content: string;
    let contentChunks: string[];
    if (d.reply !== undefined) {
      content = d.reply;
      contentChunks = split(content, d.chunks ?? 4);
    } else if (d.words !== undefined) {
      const words: string[] = [];
      for (let i = 0; i < d.words; i++) words.push((i ? " " : "") + WORDS[i % WORDS.length]);
      content = words.join("");
      contentChunks = d.chunks ? split(content, d.chunks) : words;
    } else if (model.kind !== "text") {
      content = this.#mediaReply(model.kind, lastUser);
      contentChunks = split(content, d.chunks ?? 1);
    } else {
      content = DEFAULT_REPLY;
      contentChunks = split(content, d.chunks ?? 4);
    }
    // As OpenAI's models do: an answer stops at its limit, with finish_reason "length".
    const limit = answerLimitOf(b);
    let cut = false;
    if (limit !== null && model.kind === "text" && estimateTokens(content.length) > limit) {
      content = content.slice(0, limit * 4);
      const kept: string[] = [];
      let length = 0;
      for (const piece of contentChunks) {
        if (length >= content.length) break;
        kept.push(piece.slice(0, content.length - length));
        length += kept.at(-1)!.length;
      }
      contentChunks = kept;
      cut = true;
    }
    const wantReasoning = d.reasoning ?? model.reasoning ?? false;
    const reasoning = wantReasoning === false
      ? null
      : typeof wantReasoning === "string"
      ? wantReasoning
      : DEFAULT_REASONING;
    const tools: Answer["tools"] = [];
    let completion = estimateTokens(content.length);
    if (d.tools) {
      const [name, args] = toolCallFor(b, d);
      for (let i = 0; i < (d.toolCalls ?? 1); i++) {
        const id = d.toolId === "empty"
          ? ""
          : d.toolId === "none"
          ? undefined
          : `call_${this.#hex(24)}`;
        tools.push({ id, name, arguments: args });
      }
      content = "";
      contentChunks = [];
      completion = 0;
    }
    const reasoningTokens = reasoning === null ? 0 : estimateTokens(reasoning.length);
    const prompt = Math.max(1, estimateTokens(promptChars));
    const usage: Usage = {
      prompt_tokens: prompt,
      completion_tokens: completion + reasoningTokens,
      total_tokens: prompt + completion + reasoningTokens,
    };
    if (reasoning !== null) usage.completion_tokens_details = { reasoning_tokens: reasoningTokens };
    return {
      id: `chatcmpl-${this.#hex(24)}`,
      created: Math.floor(Date.now() / 1000),
      model: modelName,
      content,
      contentChunks,
      reasoning,
      tools,
      finish: d.finish ?? (tools.length > 0 ? "tool_calls" : cut ? "length" : "stop"),
      usage,
    };
  }

  #mediaReply(kind: string, prompt: string): string {
    const url = `${this.url}/base/${kind}/${hex64(`${kind}:${prompt}`)}`;
    if (kind !== "image") return url;
    const slug = prompt.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(
      0,
      40,
    );
    return `![${slug || "image"}.png](${url})\n\n${url}`;
  }

  #stream(
    plan: StreamPlan,
    { stall, linger }: { stall: number; linger: number },
    onComplete: () => void,
  ): ReadableStream<Uint8Array> {
    const ac = new AbortController();
    this.#active.add(ac);
    const events = plan.events;
    let i = 0;
    let finished = false;
    const finish = () => {
      finished = true;
      this.#active.delete(ac);
    };
    const end = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
      if (plan.drop) {
        finish();
        controller.error(new Error("fake-poe dropped the connection"));
        return;
      }
      // The answer is whole once its last event is out: billed then, however late the body ends.
      if (plan.bill) onComplete();
      if (linger > 0) {
        try {
          await sleep(linger, ac.signal);
        } catch {
          return;
        }
        if (finished) return;
      }
      finish();
      controller.close();
    };
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        // close() ends the stream even while nobody reads it.
        ac.signal.addEventListener("abort", () => {
          if (finished) return;
          finish();
          controller.close();
        }, { once: true });
      },
      pull: async (controller) => {
        if (finished) return;
        // Only a dropping stream gets here: error it once its events have been read.
        if (i >= events.length) return end(controller);
        if (stall > 0 && i > 0) {
          try {
            await sleep(stall, ac.signal);
          } catch {
            return;
          }
          if (finished) return;
        }
        if (stall <= 0) { while (i < events.length) controller.enqueue(events[i++]); }
        else controller.enqueue(events[i++]);
        if (i >= events.length && !plan.drop) await end(controller);
      },
      cancel: () => {
        if (finished) return;
        finish();
        ac.abort(new Error("client cancelled"));
        this.cancellations.push({ path: "/v1/chat/completions", time: Date.now() });
      },
    });
  }

  // --- ids ---------------------------------------------------------------------------------------

  #next(): number {
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed;
  }

  #hex(n: number): string {
    let out = "";
    while (out.length < n) out += this.#next().toString(16).padStart(8, "0");
    return out.slice(0, n);
  }

  #queryId(): string {
    let out = "";
    for (let i = 0; i < 17; i++) out += ID_ALPHABET[this.#next() % ID_ALPHABET.length];
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Response bodies

function usd(points: number): string {
  return String(Number((points * 0.00002).toFixed(8)));
}

function json(value: unknown): Response {
  return new Response(JSON.stringify(value), { headers: { "content-type": JSON_TYPE } });
}

function error(e: ErrorSpec, headers = new Headers(), limited = false): Response {
  headers.set("content-type", JSON_TYPE);
  if (e.retryAfter !== undefined) headers.set("retry-after", String(e.retryAfter));
  if (limited) headers.set("x-ratelimit-remaining-requests", "0");
  return new Response(errorBody(e), { status: e.status, headers });
}

function markerOf(messages: unknown): string | undefined {
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role !== "user") continue;
    const text = messageText(messages[i].content);
    if (!text.includes("[[fake:")) return undefined;
    return MARKER.exec(text)?.[1].trim();
  }
  return undefined;
}

function nonStreamed(a: Answer, d: FakeDirectives): Record<string, unknown> {
  const message: Record<string, unknown> = { role: "assistant", content: a.content };
  if (a.reasoning !== null) {
    message.reasoning_content = a.reasoning;
    message.reasoning = a.reasoning;
  }
  if (a.tools.length > 0) {
    message.tool_calls = a.tools.map((tool) => ({
      ...(tool.id === undefined ? {} : { id: tool.id }),
      ...(d.toolNoType ? {} : { type: "function" }),
      function: { name: tool.name, arguments: tool.arguments },
    }));
  }
  const out: Record<string, unknown> = {
    id: a.id,
    object: "chat.completion",
    created: a.created,
    model: a.model,
    choices: [{ index: 0, message, finish_reason: a.finish }],
  };
  if (d.usage !== "none") out.usage = a.usage;
  return out;
}

interface StreamPlan {
  events: Uint8Array[];
  /** Error the stream after the last event. */
  drop: boolean;
  /** Bill when the stream ends. */
  bill: boolean;
}

function streamEvents(
  a: Answer,
  d: FakeDirectives,
  usagePos: "finish" | "separate" | "none",
  google: boolean,
): StreamPlan {
  const nl = d.crlf ? "\r\n" : "\n";
  const head = `{"id":"${a.id}","object":"chat.completion.chunk","created":${a.created},"model":${
    JSON.stringify(a.model)
  },`;
  const out: string[] = [];
  const push = (rest: string) => out.push(`data: ${head}${rest}}${nl}${nl}`);
  const chunk = (delta: unknown, finish: string | null = null, usage?: Usage) =>
    push(
      `"choices":[{"index":0,"delta":${JSON.stringify(delta)},"finish_reason":${
        finish === null ? "null" : JSON.stringify(finish)
      }}]${usage ? `,"usage":${JSON.stringify(usage)}` : ""}`,
    );
  const prefix: string[] = [];
  if (d.comment) prefix.push(`: keep-alive${nl}${nl}`);

  const body: (() => void)[] = [];
  let first = !d.noRole;
  const delta = (fields: Record<string, unknown>) => {
    if (first) {
      first = false;
      return { role: "assistant", ...fields };
    }
    return fields;
  };
  if (!d.noRole) body.push(() => chunk(delta({ content: "" })));
  if (a.reasoning !== null) {
    for (const piece of split(a.reasoning, 2)) {
      body.push(() => chunk(delta({ reasoning_content: piece, reasoning: piece })));
    }
  }
  const pieces = [...a.contentChunks];
  const last = d.finishContent && a.tools.length === 0 ? pieces.pop() : undefined;
  for (const piece of pieces) body.push(() => chunk(delta({ content: piece })));
  const noIndex = d.toolNoIndex ?? google;
  a.tools.forEach((tool, index) => {
    // `tool-id=empty`: each of the call's deltas says `id: ""`; `none`: none has an id.
    const id = tool.id === undefined ? {} : { id: tool.id };
    const call = (fields: Record<string, unknown>) =>
      noIndex ? { tool_calls: [fields] } : { tool_calls: [{ index, ...fields }] };
    body.push(() =>
      chunk(
        delta(
          call({
            ...id,
            ...(d.toolNoType ? {} : { type: "function" }),
            function: { name: tool.name, arguments: "" },
          }),
        ),
      )
    );
    const more = tool.id === "" ? id : {};
    for (const piece of split(tool.arguments, 3)) {
      if (piece) body.push(() => chunk(delta(call({ ...more, function: { arguments: piece } }))));
    }
  });

  if (d.openDrop) {
    body[0]();
    return { events: encode(prefix, out), drop: true, bill: false };
  }
  if (d.openError !== undefined) {
    if (!d.noRole) body[0]();
    out.push(
      `data: ${
        errorBody({ status: d.openError, message: d.message, shape: d.errorShape })
      }${nl}${nl}`,
      `data: [DONE]${nl}${nl}`,
    );
    return { events: encode(prefix, out), drop: false, bill: false };
  }
  if (d.drop || d.midstreamError) {
    const half = Math.max(1, Math.ceil(body.length / 2));
    for (const f of body.slice(0, half)) f();
    if (d.midstreamError) {
      out.push(
        `data: ${
          errorBody({ status: 500, message: d.message ?? "The provider stopped unexpectedly." })
        }${nl}${nl}`,
      );
      if (!d.noDone) out.push(`data: [DONE]${nl}${nl}`);
    }
    return { events: encode(prefix, out), drop: d.drop === true, bill: false };
  }
  for (const f of body) f();
  if (!d.noFinish) {
    chunk(
      last === undefined ? {} : delta({ content: last }),
      a.finish,
      usagePos === "finish" ? a.usage : undefined,
    );
    if (usagePos === "separate") push(`"choices":[],"usage":${JSON.stringify(a.usage)}`);
    if (!d.noDone) out.push(`data: [DONE]${nl}${nl}`);
  }
  return { events: encode(prefix, out), drop: false, bill: true };
}

function encode(prefix: string[], events: string[]): Uint8Array[] {
  return [...prefix, ...events].map((e) => TE.encode(e));
}

// ---------------------------------------------------------------------------------------------
// Entry point: deno run --allow-net tests/fake_poe.ts [--port N] [--api-key K] ...

if (import.meta.main) {
  try {
    const { values } = parseArgs({
      args: Deno.args,
      options: {
        port: { type: "string", default: "0" },
        "api-key": { type: "string" },
        balance: { type: "string" },
        "history-delay-ms": { type: "string" },
        "zero-cost-ms": { type: "string" },
      },
    });
    const num = (name: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) {
        throw new Error(`--${name} must be an integer: got "${v}"`);
      }
      return n;
    };
    const fake = await FakePoe.start({
      port: num("port", values.port),
      apiKey: values["api-key"],
      balance: num("balance", values.balance),
      historyDelayMs: num("history-delay-ms", values["history-delay-ms"]),
      zeroCostMs: num("zero-cost-ms", values["zero-cost-ms"]),
    });
    printLine(`fake-poe listening on ${fake.url}`);
  } catch (err) {
    printError(`fake-poe: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
