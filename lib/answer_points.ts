/** @module The points side of one answer: its cost (real or estimated), footer and usage extras. */
import type { Config } from "./config.ts";
import { type FooterClipping, type FooterPoints, formatFooter } from "./footer.ts";
import { isMedia, type ModelEntry, type ModelRegistry } from "./models.ts";
import type { ChatRequest, Usage } from "./openai_types.ts";
import type { RequestContext } from "./request_context.ts";
import { isDataText } from "./data_answer.ts";
import type { StreamEnding, StreamSummary } from "./sse.ts";
import type { Spending } from "./usage.ts";
import type { Reservation } from "./running_costs.ts";
import type { UsageService } from "./usage_service.ts";
import type { InFlight } from "./in_flight.ts";
import type { FoundCost } from "./cost_settler.ts";

/** Options of {@linkcode AnswerPoints}. */
export interface AnswerPointsOptions {
  usage: UsageService;
  config: Config;
  registry: ModelRegistry;
  entry: ModelEntry;
  ctx: RequestContext;
  /**
   * `FOOTER`: when off, answers get no footer and no usage extras and the cost
   * is only attributed in the background, for logs and metrics.
   */
  annotate: boolean;
  /** The footer may be shown: `FOOTER` on, no `response_format`, no `x-poe-proxy-footer: off`. */
  footer: boolean;
  /** Clipping done on the request, for the footer. */
  clipped?: FooterClipping | null;
  /** The answer limit `MAX_POINTS_PER_MESSAGE` set (`CapCheck.answerLimit`), or null. */
  capLimit?: number | null;
  /**
   * The input tokens to price instead of Poe's prompt count: for a media model, its newest user
   * message's (`pricedInputTokens` in `lib/guards.ts`), as Poe may count the whole chat. Default:
   * Poe's count.
   */
  pricedInput?: number | null;
  /**
   * The points the request held while it ran: released when the answer's own points are counted,
   * so that it never counts twice nor not at all. Default: none.
   */
  reservation?: Reservation;
  /** The request's note of `CostTracker.sent`, when made before this (see `billable`). */
  inFlight?: InFlight | null;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  now?: () => number;
  /** Aborted when the shutdown's grace is over: the footer's wait for the cost ends. */
  shutdown?: AbortSignal;
}

/** Text a person would see: a footer after anything else would stand alone. */
const VISIBLE = /\S/;

/** Values of the `x-poe-proxy-footer` header. */
const OFF = new Set(["off", "false", "0", "no", "none"]);
const ON = new Set(["on", "true", "1", "yes"]);

/**
 * Whether a request allows the footer: no `response_format`, no `x-poe-proxy-footer: off`, and
 * either the header asks for it, or `FOOTER` is on (or `stream` and a streamed request) and the
 * request sets no `stop` sequences, no answer limit of 64 tokens or less, and does not end with an
 * assistant message to continue.
 */
export function footerAllowed(
  config: Config,
  body: ChatRequest,
  headers: Headers,
): boolean {
  const asked = headers.get("x-poe-proxy-footer")?.trim().toLowerCase();
  if (config.footer === "off" || (asked !== undefined && OFF.has(asked))) return false;
  if (body.response_format !== undefined && body.response_format !== null) return false;
  if (asked !== undefined && ON.has(asked)) return true;
  // Stop sequences are a program's: an inline edit, a commit message, a completion, where the
  // footer would land in the code. So is a tiny answer limit: a chat's title (Continue streams
  // its titles with max_tokens 6), a tag, a label.
  if (landsInPlace(body)) return false;
  return config.footer === "on" || body.stream === true;
}

/**
 * Whether the client asked for no footer (`x-poe-proxy-footer: off`): what the README tells Cline
 * and Continue users to send, whose answers land in commit messages and summaries.
 */
export function footerRefused(headers: Headers): boolean {
  const asked = headers.get("x-poe-proxy-footer")?.trim().toLowerCase();
  return asked !== undefined && OFF.has(asked);
}

/**
 * Whether the answer goes where a program puts it, not before a reader: a request with `stop`
 * sequences (an inline edit, a completion), an answer limit of 64 tokens or less (a title, a
 * commit message), or ending with the assistant's words to continue. No footer goes there, and
 * no refusal in prose either (`guard_response.ts`).
 */
export function landsInPlace(body: ChatRequest): boolean {
  return setsStop(body.stop) || smallLimit(body) || continues(body);
}

/**
 * Whether the request ends with the assistant's own words: a prefill (`{` for JSON) or a Continue
 * button's unfinished answer. The answer is glued to them, where a footer would land inside the
 * document or the middle of the text, and stay in the history.
 */
function continues(body: ChatRequest): boolean {
  return body.messages.at(-1)?.role === "assistant";
}

/** Answer limits up to this are a program's, not a person's: no chat answer fits in them. */
const PROGRAM_LIMIT_TOKENS = 64;

function smallLimit(body: ChatRequest): boolean {
  for (const limit of [body.max_tokens, body.max_completion_tokens]) {
    if (typeof limit === "number" && limit <= PROGRAM_LIMIT_TOKENS) return true;
  }
  return false;
}

/** Whether a request's `stop` names a sequence: a non-empty string or array. */
function setsStop(stop: unknown): boolean {
  return (typeof stop === "string" || Array.isArray(stop)) && stop.length > 0;
}

/** What an answer cost and what to add to it. */
export interface AnswerCost {
  /** Text to append to the answer, or null. */
  footer: string | null;
  /** Fields for the final `usage` object: `cost_points`, `points_estimated`, `balance_points`. */
  extras: Record<string, unknown>;
  points: FooterPoints | null;
  balance: number | null;
}

/**
 * Settles one answer's points once it ended: waits up to `FOOTER_WAIT_MS` for the real cost
 * when a footer will be shown (else not at all), falls back to the `models.yaml` estimate, and
 * reports a cost found later through `ctx.lateCost`. Also asks the poller for a fresh balance.
 */
export class AnswerPoints {
  readonly #o: AnswerPointsOptions;
  readonly #now: () => number;
  #settling = false;
  /** Noted by {@linkcode AnswerPoints.billable}, ended once the cost is looked for. */
  #inFlight: InFlight | null = null;

  constructor(options: AnswerPointsOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#inFlight = options.inFlight ?? null;
  }

  /**
   * Whether {@linkcode AnswerPoints.settle} was called: the request's reservation is then released
   * by it, when the answer's points are counted, even if the request ends first.
   */
  get settling(): boolean {
    return this.#settling;
  }

  /**
   * Poe may bill the answer from now on, before the proxy sees it end (a stream's finish came, a
   * JSON answer's headers): until its cost is looked for, or the request ends, no answer of its
   * model is paired with an entry by order (`CostTracker.sent`). Idempotent.
   */
  billable(): void {
    if (this.#inFlight || this.#settling) return;
    const inFlight = this.#o.usage.costs.sent(this.#o.entry.id, this.#o.ctx.startedAt);
    this.#inFlight = inFlight;
    this.#o.ctx.atEnd(inFlight.end);
  }

  /** Whether answers get a footer or usage extras at all (`FOOTER` on). */
  get annotates(): boolean {
    return this.#o.annotate;
  }

  /**
   * The cost of an answer with these tokens. A `footerless` answer (tool calls, no text, or text
   * that is data: a JSON document or a URL) never gets a footer.
   */
  async settle(usage: Usage | null, footerless: boolean): Promise<AnswerCost> {
    this.#settling = true;
    try {
      return await this.#settle(usage, footerless);
    } finally {
      // Released already when the points were counted; this covers a failure before that.
      this.#o.reservation?.release();
    }
  }

  async #settle(usage: Usage | null, footerless: boolean): Promise<AnswerCost> {
    const { usage: service, config, registry, entry, ctx } = this.#o;
    const showFooter = this.#o.annotate && this.#o.footer && !footerless;
    const total = usage
      ? (usage.total_tokens ?? (usage.prompt_tokens ?? 0) + (usage.completion_tokens ?? 0))
      : 0;
    service.poller.answered();
    let settled = false;
    /** The estimate counted against the balance, for a late correction. */
    let counted: Spending | null = null;
    const waitMs = showFooter ? config.footerWaitMs : 0;
    const attributed = service.costs.attribute({
      model: entry.id,
      startedAt: ctx.startedAt,
      // Counts of this proxy's never match Poe's history entries: paired by order instead, where
      // the order leaves no doubt (else the estimate stays). Nor may a count of no answer tokens:
      // Poe reports a tool-call answer's as 0, and bills the tokens of its calls.
      tokens: usage && !usage.tokens_estimated && usage.completion_tokens > 0
        ? { prompt: usage.prompt_tokens, completion: usage.completion_tokens }
        : null,
      // Its prompt count is Poe's all the same: two agents' calls at once are told apart by it.
      promptTokens: usage && !usage.tokens_estimated && usage.completion_tokens === 0 &&
          usage.prompt_tokens > 0
        ? usage.prompt_tokens
        : null,
      waitMs,
      inFlight: this.#inFlight ?? undefined,
      onFound: (cost) => {
        if (!settled) return;
        ctx.lateCost(cost.points);
        // Without an estimate or a stand-in (a model without a price) nothing was counted: the
        // cost found is.
        if (counted) service.poller.confirm(counted, cost.points);
        else service.poller.spent(cost.points, true);
        service.poller.answered();
      },
    });
    let found: FoundCost | null;
    const shutdown = this.#o.shutdown;
    if (waitMs > 0 && shutdown) {
      // The answer is whole and waits for its footer's cost only: a shutdown's cut lets it go out
      // without it (`App.cutOpen`), rather than drop a paid answer the client would ask again.
      ctx.waitsForCost = true;
      found = await untilAborted(attributed, shutdown);
      ctx.waitsForCost = false;
    } else found = await attributed;
    settled = true;
    // The client left while the answer waited for its cost (a stream ended, then the tab closed):
    // the request's line is written, and Poe billed the answer all the same.
    if (found && ctx.ended) ctx.lateCost(found.points);
    // Answer tokens may cost more than the prompt's: priced apart when Poe told them apart.
    const split = usage && typeof usage.prompt_tokens === "number" &&
      typeof usage.completion_tokens === "number";
    const input = this.#o.pricedInput ?? (split ? usage.prompt_tokens : total);
    const output = split ? usage.completion_tokens : 0;
    const estimate = registry.estimatePoints(entry, input, output);
    const points: FooterPoints | null = found
      ? { estimated: false, points: found.points }
      : estimate
      ? { estimated: true, points: estimate.points, base: estimate.base, tokens: estimate.tokens }
      : null;
    const snap = service.poller.snapshot;
    // With no wait between: the answer's points take the place of what the request held.
    this.#o.reservation?.release();
    if (points) {
      ctx.fields.points = Math.round(points.points);
      ctx.fields.points_estimated = points.estimated;
      // The guards count it against the balance until a reading shows it.
      const spending = service.poller.spent(points.points, !points.estimated);
      if (points.estimated) counted = spending;
    } else if (this.#o.reservation?.standIn) {
      // No price, no cost yet: what the request held at its stand-in counts as spent until the
      // real cost is found (as for an answer its client left), else an agent's next request to the
      // same model would pass POINTS_CUTOFF before a reading shows this one's cost.
      // Priced at the answer's own tokens once Poe told them; else at what the request held.
      // Not for a media model: it is priced by its newest message, Poe's count is the chat's.
      const known = usage && !usage.tokens_estimated && !isMedia(entry)
        ? registry.standIn(entry, input, output)?.estimate.points ?? 0
        : 0;
      // The guards' caution, not a cost: the balance shown does not take it off.
      counted = service.poller.spent(known > 0 ? known : this.#o.reservation.points, false, true);
    }
    // The snapshot less every answer settled since it was read, this one included: answers in
    // quick succession (an agent's) show a balance that only goes down.
    const balance = snap === null
      ? null
      : Math.round(snap.balance - service.poller.shownSpentSinceSnapshot);
    if (balance !== null) ctx.fields.balance = balance;
    const extras: Record<string, unknown> = {};
    if (points) {
      extras.cost_points = Math.round(points.points);
      extras.points_estimated = points.estimated;
    }
    if (balance !== null) extras.balance_points = balance;
    const warn = points !== null && config.pointsPerMessageWarn > 0 &&
      points.points > config.pointsPerMessageWarn;
    const footer = showFooter
      ? formatFooter({
        usage,
        points,
        balance,
        balanceAgeMs: snap && service.poller.stale ? this.#now() - snap.takenAt : null,
        warnAbove: config.pointsPerMessageWarn,
        cap: config.maxPointsPerMessage,
        cheaper: warn
          ? registry.cheaperThan(entry, input, output, 3, config.maxPointsPerMessage)
          : [],
        media: isMedia(entry),
        inputHeavy: estimate === null ||
          2 * (estimate.points - registry.estimatePoints(entry, 0, output)!.points) >=
            estimate.points,
        clipped: this.#o.clipped,
        // Poe counted the answer up to the cap's limit: it was stopped there, not finished.
        cutAt: this.#o.capLimit != null && typeof usage?.completion_tokens === "number" &&
            usage.completion_tokens >= this.#o.capLimit
          ? this.#o.capLimit
          : null,
      })
      : null;
    return { footer, extras, points, balance };
  }

  /**
   * An answer whose client left before it was complete, or that broke after Poe accepted it: no
   * footer and no wait, but its history entry is watched for in the background (a cost found is
   * reported with `ctx.lateCost`), and what the request held counts as spent meanwhile.
   */
  abandoned(): void {
    const { usage, entry, ctx, reservation } = this.#o;
    watchAbandoned(usage, entry.id, ctx, reservation, this.#inFlight ?? undefined);
  }

  /** The `finish` hook of {@linkcode relaySse}. */
  async finish(summary: StreamSummary): Promise<StreamEnding> {
    const toolCalls = summary.toolCalls || summary.finishReason === "tool_calls";
    // An answer without text (a refusal, reasoning only, nothing) keeps its content empty.
    const cost = await this.settle(
      summary.usage,
      toolCalls || summary.dataText || !summary.hasText,
    );
    return { footer: cost.footer ?? undefined, usage: cost.extras };
  }

  /**
   * Adds the footer and usage extras to a parsed non-streamed answer (in place, unless `FOOTER` is
   * off) and returns the `x-poe-points`, `x-poe-points-estimated` and `x-poe-balance` headers.
   */
  // deno-lint-ignore no-explicit-any
  async completeJson(answer: any): Promise<Record<string, string>> {
    const choice = answer?.choices?.[0];
    const message = choice?.message;
    const toolCalls = choice?.finish_reason === "tool_calls" ||
      choice?.finish_reason === "function_call" || !!message?.function_call ||
      (Array.isArray(message?.tool_calls) && message.tool_calls.length > 0);
    const usage = answer?.usage && typeof answer.usage === "object" ? answer.usage : null;
    const content = message?.content;
    // Data, or no text at all (a refusal, reasoning only, nothing): no footer.
    const footerless = typeof content !== "string" || !VISIBLE.test(content) ||
      isDataText(content);
    const cost = await this.settle(usage, toolCalls || footerless);
    if (cost.footer && message && typeof message.content === "string") {
      message.content += cost.footer;
    }
    if (usage && this.#o.annotate) Object.assign(usage, cost.extras);
    const headers: Record<string, string> = {};
    if (cost.points) headers["x-poe-points"] = String(Math.round(cost.points.points));
    if (cost.points?.estimated) headers["x-poe-points-estimated"] = "true";
    if (cost.balance !== null) headers["x-poe-balance"] = String(cost.balance);
    return headers;
  }
}

/**
 * Watches for the history entry of an answer its client left, or that broke after Poe accepted
 * it: Poe may bill it all the same. Its cost is reported with `ctx.lateCost`, and the entry is
 * not left for the next answer to take. Whether and when Poe bills it is unknown: while it is
 * watched, it takes no entry that a later answer of its model could own, and such an answer
 * without token counts keeps its estimate. The request's reservation (`held`), when still held,
 * becomes an estimate spent.
 */
export function watchAbandoned(
  usage: UsageService,
  model: string,
  ctx: RequestContext,
  held?: Reservation,
  inFlight?: InFlight,
): void {
  // Billed all the same, most likely: what the request held counts on as spent for the guards, at
  // its estimate, with no moment between, until its real cost is found (or, never found, for a
  // minute). The balance shown takes off only that cost, once found: Poe may not bill it at all.
  const counted = held?.release() ? usage.poller.spent(held.points, false, true) : null;
  void usage.costs.attribute({
    model,
    startedAt: ctx.startedAt,
    tokens: null,
    abandoned: true,
    waitMs: 0,
    inFlight,
    onFound: (cost) => {
      // The guards count it until a balance read shows it, and one is asked.
      if (counted) usage.poller.confirm(counted, cost.points);
      else usage.poller.spent(cost.points, true);
      usage.poller.answered();
      ctx.lateCost(cost.points);
    },
  });
}

/** `promise`'s value, or null once `signal` aborts (whichever comes first). */
function untilAborted<T>(promise: Promise<T | null>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then((value) => {
      signal.removeEventListener("abort", onAbort);
      resolve(value);
    }, (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(err);
    });
  });
}
