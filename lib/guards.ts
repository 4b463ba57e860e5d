/** @module Spending guards: pause below the cutoff, refuse a request over the cost cap. */
import { answerLimit } from "./answer_limit.ts";
import { errorResponse, ProxyError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { isMedia, type ModelEntry, type ModelRegistry } from "./models.ts";
import { type ChatMessage, type ChatRequest, completionId } from "./openai_types.ts";
import { definitionsText, TokenCounter } from "./tokens.ts";
import type { BalanceSnapshot } from "./usage.ts";
import type { RunningTotal } from "./running_costs.ts";

/**
 * Completion tokens assumed for the cost cap when the request sets neither `max_completion_tokens`
 * nor `max_tokens` (nor either in `extra_body`): a long but ordinary answer.
 */
export const DEFAULT_COMPLETION_TOKENS = 1000;

/** A request a guard refused: what to tell the client, and the `x-poe-proxy-guard` value. */
export interface GuardRefusal {
  guard: "paused" | "cost-cap";
  message: string;
  /** The balance shown in the answer's usage, when known. */
  balance: number | null;
}

/** Options of {@linkcode Guards}. */
export interface GuardsOptions {
  /** `POINTS_CUTOFF`: below this balance, requests are paused. */
  pointsCutoff: number;
  /** `MAX_POINTS_PER_MESSAGE`: a request estimated above this is refused; 0 turns it off. */
  maxPointsPerMessage: number;
  /** The poller's current snapshot (never waits). */
  snapshot: () => BalanceSnapshot | null;
  /** Points this proxy spent since that snapshot, subtracted from its balance. Default: 0. */
  spentSince?: () => number;
  /**
   * What requests still running hold (see `lib/running_costs.ts`), subtracted too by the pause
   * check. Default: nothing.
   */
  running?: () => RunningTotal;
  /** Counts the input tokens for the cost cap. Default: a new counter. */
  counter?: TokenCounter;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

const NONE_RUNNING: RunningTotal = Object.freeze({ points: 0, count: 0 });

/** Built once: `toLocaleString` builds a formatter on every call (about 17 µs). */
const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const grouped = (n: number) => GROUPED.format(Math.round(n));

function when(time: number, now: number): string {
  const date = new Date(time).toISOString().slice(0, 16).replace("T", " ");
  const hours = (time - now) / 3_600_000;
  const rel = hours < 1
    ? "within the hour"
    : hours < 1.5
    ? "in about an hour"
    : hours < 48
    ? `in about ${Math.round(hours)} hours`
    : `in ${Math.round(hours / 24)} days`;
  return `${date} UTC (${rel})`;
}

/** What one answer of a media model is, for the per-item part of a refusal. */
const ITEM: Record<string, string> = { image: "image", video: "video", audio: "audio clip" };

/** The text of the newest user message: string content, or its text parts joined. */
export function newestUserText(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role !== "user") continue;
    if (typeof m.content === "string") return m.content;
    if (!Array.isArray(m.content)) return "";
    const texts: string[] = [];
    for (const part of m.content) {
      if (part?.type === "text" && typeof part.text === "string") texts.push(part.text);
    }
    return texts.join("\n");
  }
  return "";
}

/**
 * The input tokens a request is priced by: the whole conversation and its tool definitions for a
 * text model; for an image, video or audio model only the newest user message's text (see
 * {@linkcode isMedia}). Needs the tokenizer loaded.
 */
export function pricedInputTokens(
  counter: TokenCounter,
  body: ChatRequest,
  entry: ModelEntry,
): number {
  return isMedia(entry)
    ? counter.countText(newestUserText(body.messages))
    : counter.countMessages(body.messages) + counter.countDefinitions(definitionsText(body));
}

/** What {@linkcode Guards.capCheck} found. */
export interface CapCheck {
  refusal: GuardRefusal | null;
  /** The input tokens the estimate counted, or null when the cap is off. */
  input: number | null;
}

/** The pause and cost-cap checks, run before Poe is called. Reads only the poller's snapshot. */
export class Guards {
  readonly #options: GuardsOptions;
  readonly #counter: TokenCounter | undefined;
  readonly #now: () => number;
  #warnedNoSnapshot = false;
  /** Whether the last pause check refused, for the log lines of its turns; null before one. */
  #pausedBefore: boolean | null = null;

  constructor(options: GuardsOptions) {
    this.#options = options;
    this.#counter = options.maxPointsPerMessage > 0
      ? options.counter ?? new TokenCounter()
      : undefined;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The refusal for a request, or null to let it through. `body.messages` should be what goes
   * upstream (footers stripped, context clipped), so the estimate counts what Poe will bill.
   */
  check(body: ChatRequest, entry: ModelEntry, registry: ModelRegistry): GuardRefusal | null {
    return this.paused() ?? this.overCap(body, entry, registry);
  }

  /**
   * The pause refusal when the snapshot's balance, less this proxy's spending since and what its
   * requests still running hold, is below `POINTS_CUTOFF`. Logs when the answer turns (`guard on`
   * / `guard off`).
   */
  paused(): GuardRefusal | null {
    const snap = this.#options.snapshot();
    const cutoff = this.#options.pointsCutoff;
    if (snap === null) {
      if (cutoff > 0 && !this.#warnedNoSnapshot) {
        this.#warnedNoSnapshot = true;
        this.#options.logger?.warn("no balance yet", {
          message:
            "Poe's Usage API has not answered yet; requests go through without the POINTS_CUTOFF check",
        });
      }
      return null;
    }
    const spent = this.#options.spentSince?.() ?? 0;
    const running = this.#options.running?.() ?? NONE_RUNNING;
    const balance = snap.balance - spent - running.points;
    this.#logTurn(balance < cutoff, balance, snap.balance, spent, running);
    if (balance >= cutoff) return null;
    const now = this.#now();
    let grant = "";
    if (snap.nextGrant && snap.nextGrant.time > now) {
      const amount = snap.nextGrant.amount === null
        ? "Poe grants points"
        : `Poe grants ${grouped(snap.nextGrant.amount)} points`;
      grant = ` ${amount} next on ${when(snap.nextGrant.time, now)}.`;
    }
    const ageMin = Math.round((now - snap.takenAt) / 60_000);
    const less: string[] = [];
    if (spent > 0) less.push(`less ${grouped(spent)} spent through this proxy since`);
    if (running.points > 0) {
      less.push(
        `less about ${grouped(running.points)} points for ${running.count} ${
          running.count === 1 ? "request" : "requests"
        } still running`,
      );
    }
    const asOf = less.length > 0
      ? ` (${grouped(snap.balance)} at Poe's last reading${
        ageMin >= 2 ? `, ${ageMin} minutes ago` : ""
      }, ${less.join(", ")})`
      : ageMin >= 2
      ? ` (as of ${ageMin} minutes ago)`
      : "";
    // Paused by what is still running alone: the answer may change once those are done.
    const wait = snap.balance - spent >= cutoff
      ? " Ask again once they are done: what they cost decides."
      : "";
    return {
      guard: "paused",
      balance,
      message:
        `⏸️ poe-proxy is paused: your Poe balance is about ${grouped(balance)} points${asOf}, ` +
        `below the POINTS_CUTOFF of ${grouped(cutoff)} points.${grant}${wait} ` +
        "Nothing was sent to Poe; lower POINTS_CUTOFF to go on spending.",
    };
  }

  /**
   * Logs the pause turning on or off, with the figures this check compared: the balance moves
   * between Poe's readings as requests start and end and answers are counted at their estimates
   * and then at their real costs, so Poe's last reading alone may stand on the other side of the
   * cutoff.
   */
  #logTurn(
    paused: boolean,
    balance: number,
    reading: number,
    spent: number,
    running: RunningTotal,
  ): void {
    const before = this.#pausedBefore;
    this.#pausedBefore = paused;
    // Spending allowed is what nobody needs told at the first check.
    if (before === paused || (before === null && !paused)) return;
    const fields = {
      balance: Math.round(balance),
      points_cutoff: this.#options.pointsCutoff,
      ...(spent > 0 || running.points > 0 ? { poe_balance: reading } : {}),
      ...(spent > 0 ? { spent_since: Math.round(spent) } : {}),
      ...(running.points > 0
        ? { running_points: Math.round(running.points), running_requests: running.count }
        : {}),
    };
    if (paused) this.#options.logger?.warn("guard on: paused", fields);
    else this.#options.logger?.info("guard off: spending allowed again", fields);
  }

  /** The cost-cap refusal when the estimate is over `MAX_POINTS_PER_MESSAGE` (when set). */
  overCap(body: ChatRequest, entry: ModelEntry, registry: ModelRegistry): GuardRefusal | null {
    return this.capCheck(body, entry, registry).refusal;
  }

  /**
   * {@linkcode Guards.overCap}, with the input tokens it counted: what the request holds while it
   * runs is priced by them (`runningEstimate` in `lib/running_costs.ts`).
   */
  capCheck(body: ChatRequest, entry: ModelEntry, registry: ModelRegistry): CapCheck {
    const cap = this.#options.maxPointsPerMessage;
    if (cap <= 0 || !this.#counter) return { refusal: null, input: null };
    const asked = answerLimit(body);
    const completion = asked ?? DEFAULT_COMPLETION_TOKENS;
    const input = pricedInputTokens(this.#counter, body, entry);
    const estimate = registry.estimatePoints(entry, input, completion);
    if (estimate === null || estimate.points <= cap) return { refusal: null, input };
    const cheaper = registry.cheaperThan(entry, input, completion, 3);
    const answerPart = asked !== null
      ? `up to ${grouped(completion)} answer tokens`
      : `${grouped(completion)} answer tokens assumed`;
    const media = isMedia(entry);
    const snapshot = this.#options.snapshot();
    // What the estimate counted, and what the client can change to lower it.
    const parts: string[] = [];
    const advice: string[] = [];
    if (!media) {
      parts.push(`${grouped(input)} input tokens`, answerPart);
      advice.push("Start a new chat or lower max_tokens to send less.");
    } else {
      if (entry.base !== null) {
        parts.push(`${grouped(entry.base)} points per ${ITEM[entry.modality]}`);
      }
      if (entry.per1kTokens !== null) {
        parts.push(`${grouped(input)} tokens in your newest message`);
        advice.push("A shorter message costs less.");
      }
      if (entry.per1kOutputTokens !== null) {
        parts.push(answerPart);
        advice.push("A lower max_tokens costs less.");
      }
    }
    const refusal: GuardRefusal = {
      guard: "cost-cap",
      // The balance the footers show: the reading less spending since (not what requests still
      // running hold, which only the pause check counts).
      balance: snapshot === null ? null : snapshot.balance - (this.#options.spentSince?.() ?? 0),
      message:
        `⛔ poe-proxy refused this request: ${entry.id} would cost about ${
          grouped(estimate.points)
        } points (${parts.join(", ")}), over MAX_POINTS_PER_MESSAGE of ${grouped(cap)} points. ` +
        (cheaper.length ? `Cheaper models: ${cheaper.join(", ")}. ` : "") +
        (advice.length ? `${advice.join(" ")} ` : "") + "Nothing was sent to Poe.",
    };
    return { refusal, input };
  }
}

/**
 * Whether a program parses the answer: the request offers tools or asks for a `response_format`
 * other than text. A refusal in prose would then break it where an error is handled.
 */
function parsedByProgram(body: ChatRequest): boolean {
  if (Array.isArray(body.tools) && body.tools.length > 0) return true;
  const format = body.response_format as { type?: unknown } | null | undefined;
  return typeof format === "object" && format !== null && format.type !== "text";
}

/**
 * The answer to a refused request. For a person, in the request's own format: SSE chunks (role
 * and content, then `finish_reason: "stop"`, a usage chunk when asked for, `[DONE]`) when
 * streaming, else a complete `chat.completion`, status 200. For a program (tools or a
 * `response_format`), an error: 402, as Poe answers when points run out. Both carry
 * `x-poe-proxy-guard`.
 */
export function guardResponse(
  refusal: GuardRefusal,
  body: ChatRequest,
  now = Date.now(),
): Response {
  if (parsedByProgram(body)) {
    const code = refusal.guard === "paused" ? "points_paused" : "cost_cap_exceeded";
    return errorResponse(new ProxyError(402, refusal.message, { code }), {
      "x-poe-proxy-guard": refusal.guard,
    });
  }
  const id = completionId();
  const created = Math.floor(now / 1000);
  const usage = {
    prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 0,
    cost_points: 0,
    points_estimated: false,
    ...(refusal.balance === null ? {} : { balance_points: Math.round(refusal.balance) }),
  };
  const headers = new Headers({ "x-poe-proxy-guard": refusal.guard });
  const base = { id, created, model: body.model };
  if (body.stream !== true) {
    headers.set("content-type", "application/json");
    return new Response(
      JSON.stringify({
        ...base,
        object: "chat.completion",
        choices: [{
          index: 0,
          message: { role: "assistant", content: refusal.message },
          finish_reason: "stop",
        }],
        usage,
      }),
      { headers },
    );
  }
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices, ...extra })}\n\n`;
  const includeUsage =
    (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  const text = chunk([{
    index: 0,
    delta: { role: "assistant", content: refusal.message },
    finish_reason: null,
  }]) +
    chunk([{ index: 0, delta: {}, finish_reason: "stop" }]) +
    (includeUsage ? chunk([], { usage }) : "") +
    "data: [DONE]\n\n";
  headers.set("content-type", "text/event-stream; charset=utf-8");
  headers.set("cache-control", "no-cache");
  return new Response(text, { headers });
}
