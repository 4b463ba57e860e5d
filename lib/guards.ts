/**
 * @module Spending guards: pause below the cutoff, refuse a request over the cost cap, and the
 * tokens the cap prices a request by. The refusals' texts are in `guard_messages.ts`, the answer a
 * refusal becomes in `guard_response.ts`.
 */
import { pricedAnswer } from "./answer_limit.ts";
import type { Logger } from "./log.ts";
import { isMedia, type ModelEntry, type ModelRegistry } from "./models.ts";
import type { ChatMessage, ChatRequest } from "./openai_types.ts";
import { type CountBudget, requestBudget } from "./count_budget.ts";
import { definitionsText, TokenCounter } from "./tokens.ts";
import type { BalanceSnapshot } from "./usage.ts";
import type { RunningTotal } from "./running_costs.ts";
import { capMessage, pausedMessage } from "./guard_messages.ts";

/**
 * Completion tokens assumed for the cost cap when the request sets neither `max_completion_tokens`
 * nor `max_tokens` (nor either in `extra_body`): a long but ordinary answer.
 */
export const DEFAULT_COMPLETION_TOKENS = 1000;

/**
 * A limit the cap leaves at or above this is not sent: no model writes an answer that long
 * (GPT-5's and Claude's longest are 128k), and a limit over a model's own may be refused.
 */
export const CAP_LIMIT_CEILING = 131_072;

/**
 * Refusals of ever smaller answer limits after which a model is taken to refuse the field, in
 * words not recognized as such: each would cost a growing chat two refused calls a turn.
 */
const SIZE_REFUSALS = 3;

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
  /**
   * What the balance shown to clients takes off the snapshot (no caution): a refusal's balance is
   * the footers'. Default: `spentSince`.
   */
  shownSpentSince?: () => number;
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
 *
 * @param budget The request's allowance of tokenizing (shared with clipping, whose counts the
 * counter remembers). Default: one for this count.
 */
export function pricedInputTokens(
  counter: TokenCounter,
  body: ChatRequest,
  entry: ModelEntry,
  budget?: CountBudget,
): number {
  if (isMedia(entry)) return counter.countText(newestUserText(body.messages), budget);
  const definitions = definitionsText(body);
  budget ??= requestBudget(body.messages, definitions);
  return counter.countMessages(body.messages, budget) +
    counter.countDefinitions(definitions, budget);
}

/** What {@linkcode Guards.capCheck} found. */
export interface CapCheck {
  refusal: GuardRefusal | null;
  /** The input tokens the estimate counted, or null when the cap is off. */
  input: number | null;
  /**
   * For a request that sets no answer limit, the one to send Poe: the most answer tokens the cap
   * leaves. The estimate assumed 1,000, and an answer without a limit may run to many times that:
   * past the cap, though no check refused it. Null when the cap is off or refused the request,
   * when the request sets a limit, for a model whose answer tokens cost nothing here, when it is
   * {@linkcode CAP_LIMIT_CEILING} or more, or no smaller than one the model refused.
   */
  answerLimit: number | null;
}

/** The pause and cost-cap checks, run before Poe is called. Reads only the poller's snapshot. */
export class Guards {
  readonly #options: GuardsOptions;
  readonly #counter: TokenCounter | undefined;
  readonly #now: () => number;
  #warnedNoSnapshot = false;
  /** Whether the last pause check refused, for the log lines of its turns; null before one. */
  #pausedBefore: boolean | null = null;
  /**
   * By model, the smallest answer limit the cap set that Poe refused (answering only once the 400
   * ladder dropped it): a limit over a model's own maximum is refused ("at most 16384"), and the
   * model's own maximum then holds the answer within the cap anyway.
   */
  readonly #limitRefused = new Map<string, number>();
  /** Size refusals learnt by model, toward {@linkcode SIZE_REFUSALS}. */
  readonly #sizeRefusals = new Map<string, number>();
  /** Models that took the cap's limit only as `max_completion_tokens` (the ladder's first step). */
  readonly #completionLimit = new Set<string>();

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
    return {
      guard: "paused",
      balance,
      message: pausedMessage(snap, { balance, spent, running, cutoff, now: this.#now() }),
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
      ...(running.standIns ? { running_stand_ins: running.standIns } : {}),
    };
    if (paused) this.#options.logger?.warn("guard on: paused", fields);
    else this.#options.logger?.info("guard off: spending allowed again", fields);
  }

  /**
   * The cost-cap refusal when the estimate is over `MAX_POINTS_PER_MESSAGE` (when set). `budget`
   * is the request's allowance of tokenizing (default: one for this check).
   */
  overCap(
    body: ChatRequest,
    entry: ModelEntry,
    registry: ModelRegistry,
    budget?: CountBudget,
  ): GuardRefusal | null {
    return this.capCheck(body, entry, registry, budget).refusal;
  }

  /**
   * {@linkcode Guards.overCap}, with the input tokens it counted: what the request holds while it
   * runs is priced by them (`runningHold` in `lib/running_costs.ts`).
   */
  capCheck(
    body: ChatRequest,
    entry: ModelEntry,
    registry: ModelRegistry,
    budget?: CountBudget,
  ): CapCheck {
    const cap = this.#options.maxPointsPerMessage;
    if (cap <= 0 || !this.#counter) return { refusal: null, input: null, answerLimit: null };
    const answer = pricedAnswer(body, DEFAULT_COMPLETION_TOKENS);
    const completion = answer.tokens;
    const input = pricedInputTokens(this.#counter, body, entry, budget);
    const estimate = registry.estimatePoints(entry, input, completion);
    if (estimate === null || estimate.points <= cap) {
      let answerLimit: number | null = null;
      if (estimate !== null && answer.limit === null && entry.modality === "text") {
        const room = registry.answerTokensWithin(entry, input, cap);
        // Thinking is billed as answer tokens on top of the answer, as the estimate prices it.
        const limit = room === null ? null : room - (answer.thinking ?? 0);
        const refused = this.#limitRefused.get(entry.id) ?? Infinity;
        if (limit !== null && limit < Math.min(CAP_LIMIT_CEILING, refused)) {
          answerLimit = Math.max(1, limit);
        }
      }
      return { refusal: null, input, answerLimit };
    }
    const cheaper = registry.cheaperThan(entry, input, completion, 3, cap);
    const snapshot = this.#options.snapshot();
    const refusal: GuardRefusal = {
      guard: "cost-cap",
      // The balance the footers show: the reading less spending since (not what requests still
      // running hold, which only the pause check counts).
      balance: snapshot === null ? null : snapshot.balance -
        (this.#options.shownSpentSince?.() ?? this.#options.spentSince?.() ?? 0),
      message: capMessage(entry, {
        points: estimate.points,
        cap,
        input,
        answer,
        cheaper,
        single: body.messages.filter((m) => m.role !== "system" && m.role !== "developer")
          .length <= 1,
        price: (tokensIn, tokensOut) =>
          registry.estimatePoints(entry, tokensIn, tokensOut)?.points ?? 0,
      }),
    };
    return { refusal, input, answerLimit: null };
  }

  /**
   * Poe answered `entry` only once the 400 ladder dropped the answer limit the cap set. When its
   * refusal says the field is not supported (`fieldRefused`), no limit goes to the model again,
   * and its answers are held to the cap's estimate only. Otherwise the refusal was most likely of
   * the size, over the model's own maximum ("at most 16384"), which then holds its answers within
   * the cap: no limit as large is sent again, smaller ones are. Logged when it changes.
   */
  limitRefused(entry: ModelEntry, limit: number, fieldRefused: boolean): void {
    const before = this.#limitRefused.get(entry.id);
    if (before === 0) return;
    // Two requests refused at once, or a larger limit than one refused already: nothing new.
    if (!fieldRefused && before !== undefined && before <= limit) return;
    // Refused again and again, each time smaller (a growing chat): whatever the words, the field.
    const sizes = fieldRefused ? 0 : (this.#sizeRefusals.get(entry.id) ?? 0) + 1;
    this.#sizeRefusals.set(entry.id, sizes);
    if (sizes >= SIZE_REFUSALS) fieldRefused = true;
    this.#limitRefused.set(entry.id, fieldRefused ? 0 : limit);
    this.#options.logger?.warn("answer limit refused", {
      model: entry.id,
      max_tokens: limit,
      note: fieldRefused
        ? "MAX_POINTS_PER_MESSAGE sends this model no limit; its answers are held to the estimate"
        : "MAX_POINTS_PER_MESSAGE sends this model only smaller limits",
    });
  }

  /** Poe took the cap's limit for `entry` only as `max_completion_tokens`: it is sent so. */
  limitTakenAsCompletion(entry: ModelEntry): void {
    this.#completionLimit.add(entry.id);
  }

  /** The field the cap's answer limit is sent in, for `entry`. */
  limitField(entry: ModelEntry): "max_tokens" | "max_completion_tokens" {
    return this.#completionLimit.has(entry.id) ? "max_completion_tokens" : "max_tokens";
  }
}
